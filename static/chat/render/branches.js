// Under each message: its alternatives ("‹ 2 / 3 ›"), Copy, Regenerate on a reply, Edit on a
// message of the user's, and the inline edit form. Built once per message and updated in place; what
// the buttons do is in controls.js, the rules in branches.js.

import { canEdit, canRegenerate, siblingInfo } from "../branches.js";
import { page } from "../page.js";
import { t } from "../strings.js";

// Message id -> the text being edited (the form survives re-renders and keeps what was typed).
export const editDrafts = new Map();

function button(className, label, text) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = `button button-small ${className}`;
  el.title = label;
  el.setAttribute("aria-label", label);
  el.textContent = text;
  return el;
}

function createBranchView() {
  const el = document.createElement("div");
  el.className = "message-branch";
  const nav = document.createElement("span");
  nav.className = "branch-nav";
  nav.setAttribute("role", "group");
  nav.setAttribute("aria-label", t("alternatives"));
  const previous = button("branch-previous", t("previous_alternative"), "‹");
  const position = document.createElement("span");
  position.className = "branch-position";
  const next = button("branch-next", t("next_alternative"), "›");
  nav.append(previous, position, next);
  const regenerate = button("regenerate-button", t("regenerate"), t("regenerate"));
  const edit = button("edit-button", t("edit"), t("edit"));
  const copy = button("message-copy", t("copy_message"), t("copy"));
  el.append(nav, copy, regenerate, edit);
  return { el, nav, previous, position, next, regenerate, edit, copy, form: null, key: null };
}

export function renderBranch(message, view) {
  const { state } = page;
  const info = siblingInfo(state, message.id);
  const regenerable = canRegenerate(state, message);
  const editable = canEdit(state, message);
  // Copy the whole message: any message with text that is not still arriving.
  const copyable = Boolean(message.content) && message.status !== "streaming" && message.status !== "pending";
  if (!info && !regenerable && !editable && !copyable && !editDrafts.has(message.id)) {
    view.branch?.el.remove();
    view.branch = null;
    return;
  }
  if (!view.branch) {
    view.branch = createBranchView();
    view.footer.after(view.branch.el);
  }
  const branch = view.branch;
  // A vendor that keeps its own history forks: the buttons say the work goes on elsewhere.
  const inPlace = state.conversation.capabilities?.branches_in_place !== false;
  const key = JSON.stringify([info, regenerable, editable, copyable, inPlace, editDrafts.has(message.id)]);
  if (branch.key !== key) {
    branch.key = key;
    branch.nav.hidden = !info;
    if (info) {
      branch.position.textContent = t("alternative_position").replace("{index}", info.index).replace("{count}", info.count);
      branch.previous.disabled = !info.previous;
      branch.next.disabled = !info.next;
      branch.previous.dataset.target = info.previous ?? "";
      branch.next.dataset.target = info.next ?? "";
    }
    branch.copy.hidden = !copyable;
    branch.regenerate.hidden = !regenerable;
    branch.regenerate.textContent = inPlace ? t("regenerate") : t("regenerate_in_new");
    branch.regenerate.title = branch.regenerate.textContent;
    branch.edit.hidden = !editable || editDrafts.has(message.id);
    branch.edit.title = inPlace ? t("edit") : t("edit_in_new");
    branch.edit.setAttribute("aria-label", branch.edit.title);
  }
  renderEditForm(message, view, inPlace);
}

function renderEditForm(message, view, inPlace) {
  const branch = view.branch;
  if (!editDrafts.has(message.id)) {
    branch.form?.remove();
    branch.form = null;
    view.content.hidden = false;
    return;
  }
  view.content.hidden = true;
  if (branch.form) return;
  const form = document.createElement("form");
  form.className = "edit-form";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.textContent = t("edit_message");
  const area = document.createElement("textarea");
  area.className = "edit-input";
  area.rows = 3;
  area.maxLength = page.state.maxChars;
  area.value = editDrafts.get(message.id);
  area.id = `edit-${message.id}`;
  label.htmlFor = area.id;
  const actions = document.createElement("div");
  actions.className = "edit-actions";
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "button button-small button-primary edit-save";
  save.textContent = inPlace ? t("save_and_send") : t("send_in_new");
  const cancel = button("edit-cancel", t("cancel"), t("cancel"));
  actions.append(save, cancel);
  form.append(label, area, actions);
  view.content.after(form);
  branch.form = form;
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}
