// Cost Guardian's only script: htmx glue. No inline scripts anywhere (CSP).
(function () {
  "use strict";

  // CSRF: every htmx request carries the token in the X-CSRFToken header.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
  });

  // Toasts: the server sends HX-Trigger: {"showToast": {"message": ..., "level": ...}}.
  function showToast(detail) {
    var region = document.getElementById("toasts");
    if (!region || !detail) { return; }
    var toast = document.createElement("div");
    toast.className = "toast" + (detail.level === "error" ? " toast-error" : "");
    toast.setAttribute("role", detail.level === "error" ? "alert" : "status");
    toast.textContent = detail.message || String(detail);
    region.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 5000);
  }
  document.addEventListener("showToast", function (event) { showToast(event.detail.value || event.detail); });
  document.addEventListener("htmx:sendError", function () {
    showToast({ message: "Could not reach the server. Check your connection and try again.", level: "error" });
  });

  // Onboarding: preselect the browser's time zone while the field still says UTC.
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.querySelector("select[data-guess-timezone]");
    if (!select || select.value !== "UTC" || !window.Intl) { return; }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && select.querySelector('option[value="' + zone + '"]')) { select.value = zone; }
  });
})();
