// Bulk actions: a button with data-needs-selection="<form id>" is disabled
// until at least one "ids" checkbox of that form (the table's rows use
// form="<id>") is ticked. The server renders the buttons enabled, so the
// page still works without JavaScript; this only spares a pointless click.
(function () {
  "use strict";

  function refresh() {
    var buttons = document.querySelectorAll("[data-needs-selection]");
    Array.prototype.forEach.call(buttons, function (button) {
      var form = document.getElementById(button.getAttribute("data-needs-selection"));
      var chosen = 0;
      if (form) {
        Array.prototype.forEach.call(form.elements, function (item) {
          if (item.type === "checkbox" && item.name === "ids" && item.checked) { chosen += 1; }
        });
      }
      button.disabled = chosen === 0;
      var count = document.querySelector("[data-selection-count='" + button.getAttribute("data-needs-selection") + "']");
      if (count) { count.textContent = chosen ? chosen + " selected" : "Select members to act on them"; }
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.type === "checkbox") { refresh(); }
  });
  document.addEventListener("htmx:afterSettle", refresh);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refresh);
  } else {
    refresh();
  }
})();
