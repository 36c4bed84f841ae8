// Member pickers (partials/members/_picker.html): when the typed text is one
// of the suggestions, copy that suggestion's id into the picker's hidden
// field; any other text clears it, so the server resolves the text itself
// (an email) and answers 422 when nobody matches. Without this script the
// hidden field simply stays as rendered and the server reads the text.
(function () {
  "use strict";

  document.addEventListener("input", function (event) {
    var input = event.target;
    var name = input.getAttribute && input.getAttribute("data-picker");
    if (!name) { return; }
    var hidden = document.querySelector("[data-picker-id='" + name + "']");
    if (!hidden) { return; }
    var key = hidden.getAttribute("data-picker-key") === "membership" ? "membershipId" : "userId";
    var chosen = "";
    var list = document.getElementById(name + "-matches");
    if (list) {
      Array.prototype.forEach.call(list.options, function (option) {
        if (option.value.toLowerCase() === input.value.trim().toLowerCase()) { chosen = option.dataset[key] || ""; }
      });
    }
    hidden.value = chosen;
  });
})();
