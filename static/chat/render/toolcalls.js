// Tool-call cards and vendor data blocks under a reply: collapsible, one per key, kept in place
// across re-renders (reconcile.js) so an open card stays open while the reply streams.

import { reconcileKeyed } from "../reconcile.js";
import { dataEntries } from "../state.js";
import { formatNumber, maybeString, t } from "../strings.js";
import { prettyArguments, prettyJson } from "../text.js";

export function renderToolCalls(message, view) {
  reconcileKeyed(view.tools, view.toolViews, message.tool_calls.map((call) => [call.id, call]),
    createToolCallView, updateToolCallView);
}

function createToolCallView(id) {
  const el = document.createElement("details");
  el.className = "tool-call";
  el.dataset.toolCallId = id;
  const summary = document.createElement("summary");
  const name = document.createElement("span");
  name.className = "tool-call-name";
  const status = document.createElement("span");
  status.className = "tool-call-status";
  summary.append(name, status);
  const body = document.createElement("div");
  body.className = "tool-call-body";
  const argsLabel = document.createElement("div");
  argsLabel.className = "tool-call-label";
  argsLabel.textContent = t("arguments");
  const args = document.createElement("pre");
  args.className = "tool-call-arguments";
  const resultLabel = document.createElement("div");
  resultLabel.className = "tool-call-label";
  resultLabel.textContent = t("result");
  const result = document.createElement("pre");
  result.className = "tool-call-result";
  body.append(argsLabel, args, resultLabel, result);
  el.append(summary, body);
  return { el, name, status, args, result, last: {} };
}

function updateToolCallView(tv, call) {
  const status = call.status || "started";
  const args = prettyArguments(call.arguments || "");
  const hasResult = call.result !== null && call.result !== undefined;
  const result = hasResult ? prettyJson(call.result) : t("no_result");
  if (tv.last.status !== status) {
    tv.el.dataset.status = status;
    tv.status.textContent = maybeString(`tool_${status}`) ?? status;
    tv.last.status = status;
  }
  if (tv.last.name !== call.name) {
    tv.name.textContent = call.name || call.id;
    tv.last.name = call.name;
  }
  if (tv.last.args !== args) {
    tv.args.textContent = args;
    tv.last.args = args;
  }
  if (tv.last.result !== result) {
    tv.result.textContent = result;
    tv.result.classList.toggle("is-empty", !hasResult);
    tv.last.result = result;
  }
}

export function renderData(message, view) {
  reconcileKeyed(view.data, view.dataViews, dataEntries(message), createDataView, (dv, values) => {
    // The lists only grow (frames append), so the same list at the same length is unchanged.
    if (dv.values !== values || dv.length !== values.length) {
      dv.values = values;
      dv.length = values.length;
      dv.count.textContent = formatNumber(values.length);
      dv.body.textContent = prettyJson(values.length === 1 ? values[0] : values);
    }
  });
}

function createDataView(key) {
  const el = document.createElement("details");
  el.className = "message-data";
  el.dataset.key = key;
  const summary = document.createElement("summary");
  const label = document.createElement("span");
  label.className = "message-data-label";
  label.textContent = maybeString(`data_${key}`) ?? key;
  const count = document.createElement("span");
  count.className = "message-data-count";
  summary.append(label, count);
  const body = document.createElement("pre");
  body.className = "message-data-body";
  el.append(summary, body);
  return { el, count, body, values: null, length: 0 };
}
