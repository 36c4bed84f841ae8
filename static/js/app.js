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

// Copy buttons: <button data-copy-target="#field"> copies that field's value
// (or an element's text) to the clipboard, e.g. a new API key shown once.
(function () {
  "use strict";

  function announce(message, level) {
    document.dispatchEvent(new CustomEvent("showToast", { detail: { value: { message: message, level: level } } }));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) { return; }
    var text = "value" in source ? source.value : source.textContent;

    function done(ok) {
      button.textContent = ok ? "Copied" : "Copy failed";
      button.classList.toggle("copied", ok);
      if (ok) {
        announce("Copied to the clipboard.", "success");
      } else {
        if (source.select) { source.select(); }
        announce("Could not copy automatically: press Ctrl+C (⌘C) to copy the selected text.", "error");
      }
      setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 3000);
    }

    function fallback() {
      if (!source.select) { done(false); return; }
      source.select();
      try { done(document.execCommand("copy")); } catch (e) { done(false); }
    }

    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  });
})();
