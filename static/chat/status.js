// The connection's status in the header, and the banner (with its reload / log-in link) when
// the chat is offline.

import { updateComposer } from "./composer.js";
import { page } from "./page.js";
import { t } from "./strings.js";

// `kind`: "connecting", "connected", "reconnecting" or "offline".
export function setConnection(kind) {
  const { els, state, conn } = page;
  state.connection = kind;
  els.status.dataset.state = kind;
  els.status.textContent = t(kind);
  const offline = kind === "offline";
  els.banner.hidden = !offline;
  if (offline) {
    // The session ended: no retry can fix it, so the page's link leads to the login form.
    if (conn.ended && els.reloadLink) els.reloadLink.textContent = t("log_in_again");
    els.bannerText.textContent = conn.ended ? t("session_ended") : conn.gone ? t("gone_hint") : t("offline_hint");
  }
  updateComposer();
}
