// The reviewer page's keyboard (templates/review/reviewer_item.html). `reviewKey` is the pure
// key -> action mapping (unit-tested in static/chat/tests/reviewer.test.mjs); `initReviewer`
// runs the actions on the page.
//   1..9     pick the n-th option of the current score (boolean: 1 yes, 2 no); on a numeric
//            score the digit is typed into its field
//   j / k    next / previous score
//   Enter    save and open the next item
//   s        skip the item
//   ?        the list of keys (a <dialog>; Esc closes it)
//   Esc      in a comment, the label or the note: leave the field (keys work again)
// In those text fields every other key is text. The page opens with the first score focused.

// `key`: a KeyboardEvent-like {key, ctrlKey, metaKey, altKey, shiftKey, isComposing}.
// `ctx`: {inText, onControl, inNumber, kind, options, dialogOpen}: the focus is in a text field
// (comment, note, label), on a button or link, in a numeric score's input; the current score's
// kind and its number of options. Returns {type, ...} or null (the browser's own behaviour).
export function reviewKey(key, ctx = {}) {
  if (!key || typeof key.key !== "string" || key.isComposing) return null;
  if (key.ctrlKey || key.metaKey || key.altKey) return null;
  if (ctx.dialogOpen) return null; // the dialog handles its own keys (Esc closes it)
  const name = key.key;
  if (ctx.inText) return name === "Escape" ? { type: "leave" } : null;
  if (name === "Enter") return ctx.onControl || key.shiftKey ? null : { type: "save" };
  if (name === "j") return { type: "move", by: 1 };
  if (name === "k") return { type: "move", by: -1 };
  if (name === "s") return { type: "skip" };
  if (name === "?") return { type: "help" };
  if (/^[0-9]$/.test(name)) {
    const n = Number(name);
    if (ctx.kind === "numeric") return ctx.inNumber ? null : { type: "type", digit: name };
    if (ctx.kind === "boolean") return n === 1 || n === 2 ? { type: "pick", index: n - 1 } : null;
    if (ctx.kind === "categorical") {
      return n >= 1 && n <= (ctx.options || 0) ? { type: "pick", index: n - 1 } : null;
    }
  }
  return null;
}

// The score `by` fields away from `current`, kept within [0, count - 1] (no wrapping: at the
// last score, j stays there rather than jumping back to the top).
export function moveIndex(current, by, count) {
  if (count <= 0) return -1;
  const from = Number.isInteger(current) && current >= 0 ? current : 0;
  return Math.min(count - 1, Math.max(0, from + by));
}

const TEXT_FIELDS = "textarea, select, input:not([type]), input[type=text], input[type=search], [contenteditable='true'], [contenteditable='']";

function controlOf(field) {
  const number = field.querySelector("input[type=number]");
  if (number) return number;
  return field.querySelector("input[type=radio]:checked") || field.querySelector("input[type=radio]");
}

export function initReviewer() {
  const root = document.getElementById("reviewer");
  const form = document.getElementById("review-form");
  if (!root || !form) return;
  const fields = [...form.querySelectorAll(".score-field")];
  const dialog = document.getElementById("reviewer-keys");
  let current = 0;
  let opener = null;
  let submitting = false;

  const focusField = (index) => {
    const field = fields[index];
    if (!field) return;
    current = index;
    const control = controlOf(field);
    control?.focus();
    if (control?.type === "number") control.select();
    field.scrollIntoView({ block: "nearest" });
  };

  form.addEventListener("focusin", (event) => {
    const i = fields.findIndex((f) => f.contains(event.target));
    if (i >= 0) current = i;
  });
  form.addEventListener("submit", () => { submitting = true; });

  const openHelp = () => {
    if (!dialog || dialog.open) return;
    opener = document.activeElement;
    dialog.showModal();
    dialog.querySelector(".shortcuts-close")?.focus();
  };
  dialog?.addEventListener("close", () => {
    opener?.focus?.();
    opener = null;
  });
  document.querySelector(".reviewer-keys-open")?.addEventListener("click", openHelp);

  document.addEventListener("keydown", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    const field = fields[current];
    const action = reviewKey(event, {
      inText: Boolean(target?.closest(TEXT_FIELDS)),
      onControl: Boolean(target?.closest("button, a[href], summary")),
      inNumber: target?.matches?.("input[type=number]") ?? false,
      kind: field?.dataset.kind,
      options: field ? field.querySelectorAll("input[type=radio]").length : 0,
      dialogOpen: Boolean(dialog?.open),
    });
    if (!action) return;
    if (action.type === "leave") {
      event.preventDefault();
      target.blur();
      focusField(current);
    } else if (action.type === "move") {
      event.preventDefault();
      focusField(moveIndex(current, action.by, fields.length));
    } else if (action.type === "pick") {
      const radios = field?.querySelectorAll("input[type=radio]");
      const radio = radios?.[action.index];
      if (!radio) return;
      event.preventDefault();
      radio.checked = true;
      radio.focus();
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (action.type === "type") {
      const input = field?.querySelector("input[type=number]");
      if (!input) return;
      event.preventDefault();
      input.focus();
      input.value += action.digit;
    } else if (action.type === "save" || action.type === "skip") {
      event.preventDefault();
      if (submitting) return; // one item per press, however fast the keys repeat
      submitting = true;
      form.requestSubmit(document.getElementById(action.type === "save" ? "review-save" : "review-skip"));
    } else if (action.type === "help") {
      event.preventDefault();
      openHelp();
    }
  });

  // The reply under review: marked and brought into view; then the first score (or the first
  // one with an error) takes the focus, so the page works without the mouse from the start.
  const highlight = root.dataset.highlight && document.getElementById(root.dataset.highlight);
  if (highlight) {
    highlight.classList.add("turn-under-review");
    highlight.setAttribute("aria-current", "true");
    highlight.scrollIntoView({ block: "center" });
  }
  const firstError = fields.findIndex((f) => f.classList.contains("has-errors"));
  const start = firstError >= 0 ? firstError : 0;
  const control = fields[start] && controlOf(fields[start]);
  if (control) {
    current = start;
    control.focus({ preventScroll: true });
  } else if (!fields.length) {
    document.getElementById("review-save")?.focus({ preventScroll: true });
  }
}

// Module scripts run after the document is parsed; node's tests import the pure parts only.
if (typeof document !== "undefined") initReviewer();
