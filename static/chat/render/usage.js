// The small tokens-and-cost line at the foot of a finished reply (usage.js decides the text).

import { formatNumber, t } from "../strings.js";
import { usageLine } from "../usage.js";

export function usageNote(message) {
  const text = usageLine(message, t, formatNumber);
  if (!text) return null;
  const note = document.createElement("p");
  note.className = "message-note message-usage";
  note.textContent = text;
  return note;
}
