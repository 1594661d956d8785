// The strings the chat shows, with English fallbacks; chat.html's #chat-strings table holds the
// translations (tests/test_i18n.py checks every key below is there), read by loadStrings().
// Also the locale's number and date formats. Nothing here reads the document at import.

const strings = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  offline_hint: "The server can't be reached. Still trying —",
  gone_hint: "This conversation isn't available any more. Still trying —",
  session_ended: "Your session has ended.",
  log_in_again: "Log in again",
  run_active_hint: "The agent is replying — press Stop to interrupt.",
  sending_hint: "Sending…",
  queued_hint: "Not connected — your message will be sent when the connection is back.",
  awaiting_hint: "The agent is waiting for your answer above.",
  too_long: "The message is too long.",
  not_connected: "Not connected — try again in a moment.",
  counter: "{count} / {max} characters",
  you: "You",
  note: "Internal note",
  note_by: "Internal note · {name}",
  event: "Event",
  unassigned: "Unassigned",
  assigned_to_you: "Assigned to you",
  assigned_to: "Assigned to {name}",
  note_placeholder: "Internal note: the agent never sees it",
  also_here: "{name} has this conversation open",
  system: "System",
  tool: "Tool",
  replying: "Replying…",
  copy: "Copy",
  copied: "Copied",
  copy_failed: "Copy failed",
  code: "code",
  image: "Image",
  retry: "Retry",
  stopped: "Stopped",
  sending: "Sending…",
  tool_started: "Running…",
  tool_completed: "Done",
  tool_failed: "Failed",
  arguments: "Arguments",
  result: "Result",
  no_result: "No result yet.",
  reasoning: "Reasoning",
  interrupt_title: "The agent needs your input",
  interrupt_title_past: "The agent asked",
  interrupt_reason: "Reason: {reason}",
  interrupt_details: "Details",
  answer_label: "Your answer",
  answer_json_label: "Your answer (JSON)",
  answer_json_invalid: "The answer must be valid JSON.",
  send_answer: "Send answer",
  answer_given: "Your answer: {answer}",
  answer_sending: "Sending your answer…",
  interrupt_expired: "This question was already answered or has expired.",
  interrupt_unanswered: "Not answered — the conversation went on without it.",
  interrupt_answer_tag: "Answer",
  data_data_spec: "Data",
  data_unknown_events: "Vendor events",
  start_new_conversation: "Start a new conversation",
  show_sidebar: "Show conversations",
  hide_sidebar: "Hide conversations",
  feedback_label: "Rate this reply",
  feedback_up: "Good reply",
  feedback_down: "Bad reply",
  feedback_comment_label: "Comment (optional)",
  feedback_comment_placeholder: "What was good or wrong about this reply?",
  feedback_add_comment: "Add a comment",
  feedback_save: "Save comment",
  feedback_cancel: "Cancel",
  alternatives: "Alternatives",
  previous_alternative: "Previous alternative",
  next_alternative: "Next alternative",
  alternative_position: "{index} / {count}",
  regenerate: "Regenerate",
  regenerate_in_new: "Regenerate in a new conversation",
  edit: "Edit",
  edit_in_new: "Edit in a new conversation",
  edit_message: "Edit your message",
  save_and_send: "Save and send",
  send_in_new: "Send in a new conversation",
  cancel: "Cancel",
  copy_message: "Copy the whole message",
  feedback_saved: "Thanks — saved.",
  feedback_cleared: "Rating removed.",
  request_network_error: "The server can't be reached — try again.",
  request_failed: "The request failed (HTTP {status}).",
  context_saving: "Saving…",
  context_saved: "Saved",
  context_metadata_invalid: "Metadata is not valid JSON: {error}",
  context_metadata_not_object: 'Metadata must be a JSON object, like {"plan": "gold"}.',
  show_context: "Show the customer context",
  attach: "Attach files",
  attach_unsupported: "This agent can't take files.",
  attach_after_first: "Files can be attached once the conversation has started.",
  attachment_uploading: "Uploading…",
  attachment_remove: "Remove {name}",
  attachment_failed: "{name}: {error}",
  attachment_empty: "{name} is empty.",
  attachment_too_large: "{name} is larger than {size}.",
  attachments_too_many: "At most {max} files per message.",
  hide_context: "Hide the customer context",
  usage_tokens: "{tokens} tokens",
  usage_cost: "cost {cost}",
  canned_label: "Canned replies",
  canned_none: "No canned reply matches.",
  canned_count: "Canned replies found: {count}. ↑ and ↓ to choose, Enter to insert, Esc to close.",
  canned_fill: "Fill in {name} before sending (it is selected).",
};

// Takes the translated text of each `data-key` entry of the template (`<template id="chat-strings">`).
export function loadStrings(template) {
  for (const el of template?.content.querySelectorAll("[data-key]") ?? []) {
    const text = el.textContent.trim();
    if (text) strings[el.dataset.key] = text;
  }
}

export function t(key, vars) {
  const text = strings[key] ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m)) : text;
}

// A string for `key`, or undefined when there is none (for keys built from data: tool_<status>).
export function maybeString(key) {
  return strings[key];
}

let numberFormat = new Intl.NumberFormat();
let timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
let dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

// The page's language (`<html lang>`); undefined keeps the browser's.
let currentLocale;

export function setLocale(locale) {
  currentLocale = locale;
  numberFormat = new Intl.NumberFormat(locale);
  timeFormat = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" });
  dateTimeFormat = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
}

// `options`: Intl.NumberFormat's (e.g. a cost's decimals, usage.js).
export function formatNumber(n, options) {
  return options ? new Intl.NumberFormat(currentLocale, options).format(n) : numberFormat.format(n);
}

export function formatTime(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return null;
  const today = new Date().toDateString() === date.toDateString();
  return { short: today ? timeFormat.format(date) : dateTimeFormat.format(date), full: dateTimeFormat.format(date) };
}
