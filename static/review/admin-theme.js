// The admin follows chatsite's `theme` cookie (chatsite/theme.py) instead of Django's
// localStorage choice: the server writes the value on this script's tag (the cookie is HttpOnly)
// and this sets <html data-theme>, which the admin's dark_mode.css reads, before first paint.
// A classic script, not a module, so it runs at once in <head>.
"use strict";
{
  const theme = document.currentScript ? document.currentScript.dataset.theme : "";
  document.documentElement.dataset.theme = ["light", "dark", "auto"].includes(theme) ? theme : "auto";
}
