// Accessibility glue (issue 18): where focus goes after an htmx swap, form
// errors announced, and wide tables that scroll sideways made visible and
// reachable by keyboard. A file, not an inline script (CSP).
(function () {
  "use strict";

  // One polite live region for announcements (the toasts have their own).
  function liveRegion() {
    var region = document.getElementById("a11y-status");
    if (!region) {
      region = document.createElement("div");
      region.id = "a11y-status";
      region.className = "visually-hidden";
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    return region;
  }

  function announce(message) {
    var region = liveRegion();
    region.textContent = "";
    // A fresh text node after a tick, so the same message is read again.
    setTimeout(function () { region.textContent = message; }, 50);
  }

  function focusOn(el) {
    if (!el) { return; }
    if (!el.matches("a[href], button, input, select, textarea, summary, [tabindex]")) {
      el.setAttribute("tabindex", "-1");
    }
    el.focus({ preventScroll: false });
  }

  var FOCUSABLE = "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), " +
                  "textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

  // Remember what had focus before a swap, to find it (or its successor) after.
  var before = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var el = document.activeElement;
    before = el && el !== document.body ? {
      el: el, id: el.id, name: el.getAttribute("name"), sort: el.getAttribute("data-sort"),
      href: el.getAttribute("href"), text: (el.textContent || "").trim()
    } : null;
  });

  function successor(target, was) {
    if (was.id) {
      var same = document.getElementById(was.id);
      if (same) { return same; }
    }
    var candidates = target.querySelectorAll(FOCUSABLE);
    for (var i = 0; i < candidates.length; i++) {
      var c = candidates[i];
      if ((was.name && c.getAttribute("name") === was.name) || (was.sort && c.getAttribute("data-sort") === was.sort) ||
          (was.href && c.getAttribute("href") === was.href) || (was.text && (c.textContent || "").trim() === was.text)) {
        return c;
      }
    }
    return null;
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    var xhr = event.detail.xhr;
    if (target && !target.isConnected && target.id) {  // an outerHTML swap: the new element has its id
      target = document.getElementById(target.id);
    }
    if (!target || !target.isConnected) { return; }
    if (xhr && xhr.status === 422) {
      // A form came back with errors: go to the first field to fix and say what is wrong.
      var field = target.querySelector("[aria-invalid='true']");
      var messages = target.querySelectorAll(".field-error, .form-error, [role='alert']");
      var first = "";
      for (var i = 0; i < messages.length && !first; i++) { first = (messages[i].textContent || "").trim(); }
      focusOn(field || messages[0] || target);
      announce("The form has " + (messages.length > 1 ? messages.length + " problems" : "a problem") +
               (first ? ": " + first : "."));
      before = null;
      return;
    }
    var was = before;
    before = null;
    if (!was || was.el.isConnected) { return; }  // focus was not inside what was swapped
    focusOn(successor(target, was) || target);
  });

  // Tables in an .overflow-auto wrapper: mark the ones wider than their card
  // (a fading edge shows there is more), let the keyboard scroll them, and
  // track the scroll position for the cue.
  function sync(box) {
    box.classList.toggle("scrolled", box.scrollLeft > 1);
    box.classList.toggle("at-end", box.scrollLeft + box.clientWidth >= box.scrollWidth - 1);
  }

  function markScrollers(root) {
    var boxes = (root || document).querySelectorAll(".overflow-auto");
    Array.prototype.forEach.call(boxes, function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("scrolls", scrolls);
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        if (!box.hasAttribute("aria-label")) {
          var caption = box.querySelector("caption");
          box.setAttribute("aria-label", (caption ? caption.textContent.trim() + ": " : "") + "table, scrolls sideways");
        }
      }
      var next = box.nextElementSibling;
      if (scrolls && !(next && next.classList.contains("scroll-hint"))) {
        var hint = document.createElement("p");
        hint.className = "scroll-hint";
        hint.setAttribute("aria-hidden", "true");
        hint.textContent = "Scroll sideways for more \u2192";
        box.insertAdjacentElement("afterend", hint);
      }
      if (!box.dataset.scrollWatched) {
        box.dataset.scrollWatched = "1";
        box.addEventListener("scroll", function () { sync(box); }, { passive: true });
      }
      sync(box);
    });
  }

  // <details open data-collapse-below="640">: folded on screens that narrow
  // (the usage explorer's filters), open everywhere else and without JavaScript.
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details[data-collapse-below]"), function (details) {
      if (window.innerWidth <= Number(details.getAttribute("data-collapse-below"))) { details.open = false; }
    });
  });

  var pending = null;
  var loaded = false;
  function later() {
    if (pending) { cancelAnimationFrame(pending); }
    pending = requestAnimationFrame(function () {
      pending = null;
      markScrollers(document);
      // Marked once the page's whole layout is known (what a browser test waits for before it checks).
      if (loaded) { document.documentElement.setAttribute("data-scrollers", "marked"); }
    });
  }
  document.addEventListener("DOMContentLoaded", later);
  window.addEventListener("load", function () { loaded = true; later(); });
  window.addEventListener("resize", later);
  document.addEventListener("htmx:afterSettle", later);
})();
