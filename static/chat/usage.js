// A reply's tokens and cost as its footer shows them (render/usage.js). Pure: the strings and
// number format are passed in, so node --test checks it without a page.

// Tokens as /stats/ counts them: the vendor's total, else input + output; null without counts.
export function replyTokens(usage) {
  if (!usage || typeof usage !== "object") return null;
  const count = (key) => (Number.isInteger(usage[key]) ? usage[key] : null);
  const total = count("total_tokens");
  if (total !== null) return total;
  const input = count("prompt_tokens");
  const output = count("completion_tokens");
  return input === null && output === null ? null : (input ?? 0) + (output ?? 0);
}

// Six decimals at most (the server's precision, services/costs.py), two at least: 0.000042,
// 0.0123, 1.50.
export const COST_FORMAT = { minimumFractionDigits: 2, maximumFractionDigits: 6 };

// `message`: a message_json; `t(key, vars)`; `formatNumber(n, options)`. The footer's line, or
// "" when there is nothing to show (a user message, a streaming reply, no usage reported).
export function usageLine(message, t, formatNumber) {
  if (message.role !== "assistant" || message.status === "streaming" || message.status === "pending") return "";
  const tokens = replyTokens(message.token_usage);
  const cost = typeof message.cost === "number" && Number.isFinite(message.cost) ? message.cost : null;
  const parts = [];
  if (tokens !== null) parts.push(t("usage_tokens", { tokens: formatNumber(tokens) }));
  if (cost !== null) parts.push(t("usage_cost", { cost: formatNumber(cost, COST_FORMAT) }));
  return parts.join(" · ");
}
