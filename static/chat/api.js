// The JSON API (session cookie + CSRF header): feedback, the customer context, omitted texts.

import { t } from "./strings.js";

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  // No readable cookie (CSRF_USE_SESSIONS, HttpOnly): the token the page's forms carry.
  return document.querySelector('input[name="csrfmiddlewaretoken"]')?.value ?? "";
}

// fetch() with the session cookie and the CSRF header. Resolves to { ok, status, data } or
// { ok: false, status, code, field, error } with a message for people; never rejects.
export async function apiRequest(method, url, body) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    return { ok: false, status: 0, code: "network", field: null, error: t("request_network_error") };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.ok) return { ok: true, status: response.status, data };
  const error = data && typeof data.error === "object" ? data.error : null;
  return {
    ok: false,
    status: response.status,
    code: typeof error?.code === "string" ? error.code : null,
    field: typeof error?.details?.field === "string" ? error.details.field : null,
    error: typeof error?.message === "string" && error.message ? error.message : t("request_failed", { status: response.status }),
  };
}
