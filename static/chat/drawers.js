// The two drawers: the conversations sidebar (900px and below) and the customer context panel (a
// column on wide screens, collapsible and remembered; a drawer below). One open drawer closes the
// other. An open drawer takes the focus (its first control), keeps Tab inside it, and closes with
// its × button, Esc or the backdrop, giving the focus back to its toggle.

import { page } from "./page.js";
import { t } from "./strings.js";

// From this width the customer context is a column beside the transcript (collapsible);
// below it, a drawer opened with #context-toggle.
const CONTEXT_WIDE_QUERY = "(min-width: 1100px)";
const CONTEXT_COLLAPSED_KEY = "chatsite.contextCollapsed";
const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

// window.matchMedia(CONTEXT_WIDE_QUERY), made by initDrawers().
let wideContext = null;

function setSidebarOpen(open) {
  const { els } = page;
  if (open && els.layout.classList.contains("context-open")) {
    els.layout.classList.remove("context-open");
    syncContextToggle();
  }
  els.layout.classList.toggle("sidebar-open", open);
  els.sidebarToggle.setAttribute("aria-expanded", String(open));
  els.sidebarToggle.title = open ? t("hide_sidebar") : t("show_sidebar");
  els.sidebarBackdrop.hidden = !open;
  if (open) focusables(els.sidebar)[0]?.focus();
}

function focusables(container) {
  return [...container.querySelectorAll(FOCUSABLE)].filter((el) => !el.hidden && el.getClientRects().length > 0);
}

// The drawer open over the page (not the wide-screen column), if any.
function openDrawer() {
  const { els } = page;
  if (els.layout.classList.contains("sidebar-open")) return els.sidebar;
  if (els.layout.classList.contains("context-open") && !wideContext.matches) return els.contextPanel;
  return null;
}

// Tab and Shift+Tab cycle inside an open drawer, as in a modal dialog.
function keepFocusInside(event) {
  const drawer = openDrawer();
  if (event.key !== "Tab" || !drawer) return;
  const items = focusables(drawer);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  const inside = drawer.contains(document.activeElement);
  if (event.shiftKey && (!inside || document.activeElement === first)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (!inside || document.activeElement === last)) {
    event.preventDefault();
    first.focus();
  }
}

function contextVisible() {
  const { els } = page;
  return wideContext.matches ? !els.layout.classList.contains("context-collapsed") : els.layout.classList.contains("context-open");
}

function syncContextToggle() {
  const { els } = page;
  const visible = contextVisible();
  els.contextToggle.setAttribute("aria-expanded", String(visible));
  els.contextToggle.title = visible ? t("hide_context") : t("show_context");
  els.contextBackdrop.hidden = wideContext.matches || !visible;
}

function readContextCollapsed() {
  try {
    return localStorage.getItem(CONTEXT_COLLAPSED_KEY) === "1";
  } catch {
    return false;
  }
}

function setContextVisible(visible, { focus = true } = {}) {
  const { els } = page;
  if (wideContext.matches) {
    els.layout.classList.toggle("context-collapsed", !visible);
    try {
      if (visible) localStorage.removeItem(CONTEXT_COLLAPSED_KEY);
      else localStorage.setItem(CONTEXT_COLLAPSED_KEY, "1");
    } catch {
      // Storage disabled: the choice lasts for this page only.
    }
  } else {
    els.layout.classList.toggle("context-open", visible);
    if (visible && els.layout.classList.contains("sidebar-open")) setSidebarOpen(false);
  }
  syncContextToggle();
  if (!focus) return;
  if (visible) els.contextExternal.focus();
  else els.contextToggle.focus();
}

export function initDrawers() {
  const { els } = page;
  wideContext = window.matchMedia(CONTEXT_WIDE_QUERY);
  els.sidebarToggle?.addEventListener("click", () => setSidebarOpen(!els.layout.classList.contains("sidebar-open")));
  els.sidebarBackdrop?.addEventListener("click", () => setSidebarOpen(false));
  document.getElementById("sidebar-close")?.addEventListener("click", () => {
    setSidebarOpen(false);
    els.sidebarToggle.focus();
  });
  document.addEventListener("keydown", keepFocusInside);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (els.layout.classList.contains("sidebar-open")) {
      setSidebarOpen(false);
      els.sidebarToggle.focus();
    } else if (els.layout.classList.contains("context-open") && !wideContext.matches) {
      setContextVisible(false);
    }
  });
  if (els.contextPanel && els.contextForm) {
    els.layout.classList.toggle("context-collapsed", readContextCollapsed());
    syncContextToggle();
    wideContext.addEventListener("change", () => {
      els.layout.classList.remove("context-open");
      syncContextToggle();
    });
    els.contextToggle.addEventListener("click", () => setContextVisible(!contextVisible()));
    els.contextClose?.addEventListener("click", () => setContextVisible(false));
    els.contextBackdrop?.addEventListener("click", () => setContextVisible(false, { focus: false }));
  }
}
