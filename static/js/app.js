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
  // A request htmx aborts on purpose (hx-sync "replace": a newer keystroke or
  // filter change supersedes it) is no error, but htmx 2 reports the abort's
  // events (htmx:afterRequest, htmx:sendAbort) with console.error. While an
  // htmx:abort is being handled (the XHR's abort event fires synchronously
  // inside it; the capture listener runs first), those two messages are
  // dropped; every other error still reaches the console.
  var aborting = 0;
  document.addEventListener("htmx:abort", function () {
    aborting += 1;
    setTimeout(function () { aborting -= 1; }, 0);
  }, true);
  var consoleError = console.error;
  console.error = function (message) {
    if (aborting && typeof message === "string" && /^htmx:(sendAbort|afterRequest)\b/.test(message)) { return; }
    return consoleError.apply(console, arguments);
  };

  document.addEventListener("htmx:sendError", function () {
    showToast({ message: "Could not reach the server. Check your connection and try again.", level: "error" });
  });

  // Onboarding: preselect the browser's time zone while the field still says UTC.
  function guessTimeZone(root) {
    var select = root.querySelector && root.querySelector("select[data-guess-timezone]");
    if (!select || select.value !== "UTC" || !window.Intl) { return; }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && select.querySelector('option[value="' + zone + '"]')) { select.value = zone; }
  }
  document.addEventListener("DOMContentLoaded", function () { guessTimeZone(document); });
  document.addEventListener("htmx:load", function (event) { guessTimeZone(event.detail.elt); });
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

// "Select all" checkboxes: <input type="checkbox" data-select-all="#form"> ticks
// every ids checkbox in that form.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("[data-select-all]")) { return; }
    var form = document.querySelector(box.getAttribute("data-select-all"));
    if (!form) { return; }
    form.querySelectorAll('input[type="checkbox"][name="ids"]').forEach(function (item) { item.checked = box.checked; });
  });
})();

// Forms marked data-autosubmit submit themselves once they appear (page load
// or an htmx swap): the email template preview posts the template to its
// sandboxed iframe this way, so the email's HTML renders outside our CSP.
(function () {
  "use strict";

  function submitAll(root) {
    if (!root || !root.querySelectorAll) { return; }
    var forms = root.matches && root.matches("form[data-autosubmit]") ? [root] : [];
    forms = forms.concat(Array.prototype.slice.call(root.querySelectorAll("form[data-autosubmit]")));
    forms.forEach(function (form) { form.submit(); });
  }
  document.addEventListener("htmx:load", function (event) { submitAll(event.detail.elt); });
  document.addEventListener("DOMContentLoaded", function () { if (!window.htmx) { submitAll(document); } });
})();

// Members: <input data-select-all-of="bulk-form"> ticks every ids checkbox
// that belongs to that form, including the table's rows (form="bulk-form").
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-select-all-of]")) { return; }
    var form = document.getElementById(box.getAttribute("data-select-all-of"));
    if (!form) { return; }
    Array.prototype.forEach.call(form.elements, function (item) {
      if (item.type === "checkbox" && item.name === "ids") { item.checked = box.checked; }
    });
  });
})();

// Print buttons: <button data-print> opens the browser's print dialog (the
// budget report has a print stylesheet in app.css).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-print]");
    if (!button) { return; }
    event.preventDefault();
    window.print();
  });
})();

// Typing before the page's scripts ran (a slow network, a fast typist):
// htmx binds its "input"/"change" triggers at DOMContentLoaded, after the
// deferred scripts, so what was typed earlier fired no request. Once htmx
// is bound (its DOMContentLoaded listener was added before this one), a
// field whose value differs from the one the server rendered gets its
// request sent once, so the live search or slug check catches up. Only
// reads (hx-get) and forms marked data-catch-up (the template preview):
// a field the browser restored on reload must never re-send a change.
(function () {
  "use strict";
  function changed(field) {
    if (field.type === "checkbox" || field.type === "radio") { return field.checked !== field.defaultChecked; }
    if (field.tagName === "SELECT" && field.multiple) {
      return Array.prototype.some.call(field.options, function (o) { return o.selected !== o.defaultSelected; });
    }
    if (field.tagName === "SELECT") {  // with no option marked selected, the first one is the rendered value
      var marked = Array.prototype.filter.call(field.options, function (o) { return o.defaultSelected; })[0];
      var rendered = marked || field.options[0];
      return rendered ? field.value !== rendered.value : false;
    }
    return field.value !== field.defaultValue;
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.htmx) { return; }
    var replayed = [];  // a field's event once, even when both it and its form listen
    document.querySelectorAll("[hx-trigger], input[hx-get], select[hx-get], textarea[hx-get]").forEach(function (element) {
      // A field with no hx-trigger fires on "change", htmx's default for inputs, selects and textareas.
      var trigger = element.getAttribute("hx-trigger") || "change";
      var name = /(^|[\s,])input\b/.test(trigger) ? "input" : (/(^|[\s,])change\b/.test(trigger) ? "change" : null);
      if (!name || !(element.hasAttribute("hx-get") || element.hasAttribute("data-catch-up"))) { return; }
      var from = /from:(#[\w-]+)/.exec(trigger);  // "input from:#field": the event comes from that field
      var fields = from ? [document.querySelector(from[1])].filter(Boolean)
        : element.matches("input, textarea, select") ? [element]
        : Array.prototype.slice.call(element.querySelectorAll("input, textarea, select"));
      var typed = fields.filter(function (field) { return field.type !== "hidden" && changed(field); })[0];
      if (!typed || replayed.indexOf(typed) >= 0) { return; }
      replayed.push(typed);
      if (element.hasAttribute("hx-get")) {
        // The request itself, as the element would send it (its target, swap, includes and push-url):
        // a "changed" trigger noted the typed value when htmx bound it, so an event would be ignored.
        window.htmx.ajax("GET", element.getAttribute("hx-get"), {source: element});
      } else {
        window.htmx.trigger(typed, name);  // a form marked data-catch-up: the field's event reaches its listener
      }
    });
  });
})();
