// Files sent with a message (docs/protocol.md, `message.send`'s `attachments`): the attach
// button, drag and drop onto the composer or the transcript, a pasted image; each file is
// uploaded at once (POST /api/v1/conversations/<id>/attachments) and shown as a chip until the
// message goes. The server sniffs the type and has the last word; the checks here only spare a
// doomed upload. The pure parts at the top are tested by static/chat/tests/attachments.test.mjs.

// The server's limits (services/attachments.py): 10 files per message, 10 MB each by default
// (the page says the configured size).
export const MAX_FILES = 10;
export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
// Extensions the file picker offers per sniffed type (the picker filters on names).
const EXTENSIONS = {
  "image/png": [".png"],
  "image/jpeg": [".jpg", ".jpeg"],
  "image/webp": [".webp"],
  "image/gif": [".gif"],
  "application/pdf": [".pdf"],
  "text/plain": [".txt", ".log", ".md"],
  "text/csv": [".csv"],
  "application/json": [".json"],
};

export function isImageType(type) {
  return typeof type === "string" && type.startsWith("image/");
}

// "12 KB", "3.4 MB", "512 B", with the locale's number format.
export function formatSize(bytes, formatNumber = (n) => String(n)) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  if (bytes < 1024) return `${formatNumber(bytes)} B`;
  if (bytes < 1024 * 1024) return `${formatNumber(Math.round(bytes / 1024))} KB`;
  return `${formatNumber(Math.round((bytes / (1024 * 1024)) * 10) / 10)} MB`;
}

// The conversation's `capabilities.attachments` (content types), or [] when it takes none.
export function acceptedTypes(conversation) {
  const list = conversation?.capabilities?.attachments;
  return Array.isArray(list) ? list.filter((t) => typeof t === "string") : [];
}

// The picker's `accept` attribute for those types.
export function acceptAttribute(types) {
  return types.flatMap((t) => [t, ...(EXTENSIONS[t] ?? [])]).join(",");
}

// Which of `files` ({name, size}) may be uploaded next to `pending` chips already there:
// { files, errors: [{ key, vars }] } with string keys for strings.js.
export function checkFiles(files, { pending = 0, maxBytes = DEFAULT_MAX_BYTES, maxFiles = MAX_FILES } = {}) {
  const accepted = [];
  const errors = [];
  for (const file of files) {
    if (pending + accepted.length >= maxFiles) {
      errors.push({ key: "attachments_too_many", vars: { max: maxFiles } });
      break;
    }
    if (!file.size) errors.push({ key: "attachment_empty", vars: { name: file.name } });
    else if (file.size > maxBytes) errors.push({ key: "attachment_too_large", vars: { name: file.name } });
    else accepted.push(file);
  }
  return { files: accepted, errors };
}

// Files carried by a drag or a paste (DataTransfer-like: `files`, or `items` of kind "file").
export function filesFrom(transfer) {
  if (!transfer) return [];
  const files = Array.from(transfer.files ?? []);
  if (files.length) return files;
  return Array.from(transfer.items ?? [])
    .filter((item) => item.kind === "file")
    .map((item) => item.getAsFile())
    .filter(Boolean);
}

// A pasted image without a name (a screenshot from the clipboard) gets one: "pasted-image.png".
export function pastedName(file, index = 0) {
  if (file.name && file.name !== "image.png") return file.name;
  const ext = { "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp" }[file.type] ?? "png";
  return `pasted-image${index ? `-${index + 1}` : ""}.${ext}`;
}

// Whether a drag carries files (dragover cannot read them, only their kinds).
export function draggingFiles(event) {
  return Array.from(event.dataTransfer?.types ?? []).includes("Files");
}

// The chips' state: [{ key, name, size, status: "uploading" | "ready", attachment }].
export function readyAttachments(chips) {
  return chips.filter((c) => c.status === "ready").map((c) => c.attachment);
}

export function uploading(chips) {
  return chips.some((c) => c.status === "uploading");
}

// ---- The page ---------------------------------------------------------------------------------
// Everything below needs the document; it is loaded by composer.js.

let chips = [];
let nextKey = 1;
let env = null;
let maxBytes = DEFAULT_MAX_BYTES;

function csrfToken() {
  // As api.js: the cookie, else the token the page's forms carry.
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return document.querySelector('input[name="csrfmiddlewaretoken"]')?.value ?? "";
}

// `env`: { page, t, formatNumber, showError, onChange }.
export function initAttachments(options) {
  env = options;
  const { els } = env.page;
  els.attachButton = document.getElementById("attach-button");
  els.attachInput = document.getElementById("attach-input");
  els.attachChips = document.getElementById("attachment-chips");
  if (!els.attachButton || !els.attachInput || !els.attachChips) return;
  try {
    maxBytes = Number(JSON.parse(document.getElementById("chat-initial")?.textContent ?? "{}").attachment_max_bytes) || DEFAULT_MAX_BYTES;
  } catch {
    maxBytes = DEFAULT_MAX_BYTES;
  }
  els.attachButton.addEventListener("click", () => els.attachInput.click());
  els.attachInput.addEventListener("change", () => {
    addFiles(Array.from(els.attachInput.files ?? []));
    els.attachInput.value = "";
  });
  els.input.addEventListener("paste", (event) => {
    const files = filesFrom(event.clipboardData).filter((f) => isImageType(f.type));
    if (!files.length || !canAttach()) return;
    event.preventDefault();
    addFiles(files.map((f, i) => new File([f], pastedName(f, i), { type: f.type })));
  });
  for (const zone of [els.composer, els.transcript]) {
    zone.addEventListener("dragover", (event) => {
      if (!draggingFiles(event) || !canAttach()) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      els.composer.classList.add("is-dropping");
    });
    zone.addEventListener("dragleave", () => els.composer.classList.remove("is-dropping"));
    zone.addEventListener("drop", (event) => {
      els.composer.classList.remove("is-dropping");
      if (!draggingFiles(event) || !canAttach()) return;
      event.preventDefault();
      addFiles(filesFrom(event.dataTransfer));
    });
  }
  updateAttachButton();
}

function canAttach() {
  const { state } = env.page;
  return Boolean(state.conversation.id) && acceptedTypes(state.conversation).length > 0 && !env.page.els.input.disabled;
}

// Where files are uploaded: the conversation's own endpoint (none for the home page's draft).
export function uploadUrl(conversationId) {
  return conversationId ? `/api/v1/conversations/${encodeURIComponent(conversationId)}/attachments` : "";
}

// The attach button's state: { disabled, titleKey }.
export function attachButtonState(conversation, { busy = false, count = 0 } = {}) {
  const types = acceptedTypes(conversation);
  if (!types.length) return { disabled: true, titleKey: "attach_unsupported" };
  if (!conversation?.id) return { disabled: true, titleKey: "attach_after_first" };
  return { disabled: busy || count >= MAX_FILES, titleKey: "attach" };
}

export function updateAttachButton() {
  if (!env) return;
  const { els, state } = env.page;
  if (!els.attachButton) return;
  const types = acceptedTypes(state.conversation);
  const { disabled, titleKey } = attachButtonState(state.conversation, { busy: els.input.disabled, count: chips.length });
  els.attachButton.disabled = disabled;
  const title = env.t(titleKey);
  if (els.attachButton.title !== title) {
    els.attachButton.title = title;
    els.attachButton.setAttribute("aria-label", title);
  }
  const accept = acceptAttribute(types);
  if (els.attachInput.accept !== accept) els.attachInput.accept = accept;
}

function addFiles(files) {
  const checked = checkFiles(files, { pending: chips.length, maxBytes });
  for (const error of checked.errors) {
    const vars = { ...error.vars };
    if (error.key === "attachment_too_large") vars.size = formatSize(maxBytes, env.formatNumber);
    env.showError(env.t(error.key, vars));
  }
  for (const file of checked.files) upload(file);
}

async function upload(file) {
  const chip = { key: nextKey++, name: file.name, size: file.size, type: file.type, status: "uploading", attachment: null };
  chips.push(chip);
  changed();
  const body = new FormData();
  body.append("file", file, file.name);
  let response = null;
  let data = null;
  try {
    response = await fetch(uploadUrl(env.page.state.conversation.id), {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
    data = await response.json().catch(() => null);
  } catch {
    response = null;
  }
  if (!chips.includes(chip)) return; // removed while uploading
  if (response?.status === 201 && data?.id) {
    chip.status = "ready";
    chip.attachment = data;
  } else {
    chips = chips.filter((c) => c !== chip);
    const message = response ? data?.error?.message || env.t("request_failed", { status: response.status }) : env.t("request_network_error");
    env.showError(env.t("attachment_failed", { name: file.name, error: message }));
  }
  changed();
}

function changed() {
  renderChips();
  updateAttachButton();
  env.onChange();
}

function renderChips() {
  const list = env.page.els.attachChips;
  list.hidden = chips.length === 0;
  list.replaceChildren(
    ...chips.map((chip) => {
      const item = document.createElement("li");
      item.className = `attachment-chip is-${chip.status}`;
      item.dataset.name = chip.name;
      if (chip.attachment) item.dataset.attachmentId = chip.attachment.id;
      if (chip.status === "ready" && isImageType(chip.attachment.content_type)) {
        const img = document.createElement("img");
        img.className = "attachment-chip-thumb";
        img.src = chip.attachment.url;
        img.alt = "";
        item.append(img);
      }
      const label = document.createElement("span");
      label.className = "attachment-chip-name";
      label.textContent = chip.name;
      const meta = document.createElement("span");
      meta.className = "attachment-chip-size";
      meta.textContent = chip.status === "uploading" ? env.t("attachment_uploading") : formatSize(chip.size, env.formatNumber);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button button-link attachment-chip-remove";
      remove.setAttribute("aria-label", env.t("attachment_remove", { name: chip.name }));
      remove.textContent = "×";
      remove.addEventListener("click", () => {
        chips = chips.filter((c) => c !== chip);
        changed();
        env.page.els.input.focus();
      });
      item.append(label, meta, remove);
      return item;
    }),
  );
}

// For the composer: files ready to go, and whether any is still uploading.
export function pendingAttachments() {
  return { ready: readyAttachments(chips), uploading: uploading(chips) };
}

// The message takes the ready files; the chips empty.
export function takeAttachments() {
  const ready = readyAttachments(chips);
  chips = chips.filter((c) => c.status !== "ready");
  if (env) changed();
  return ready;
}

// A refused message gives its files back to the composer.
export function restoreAttachments(attachments) {
  if (!attachments?.length) return;
  const back = attachments.map((attachment) => ({
    key: nextKey++, name: attachment.name, size: attachment.size, type: attachment.content_type, status: "ready", attachment,
  }));
  chips = [...back, ...chips].slice(0, MAX_FILES);
  if (env) changed();
}
