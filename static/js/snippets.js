// Copy buttons of code snippets: <button data-copy-snippet="#code-id"> copies
// that element's text. Where the Clipboard API is unavailable (plain http on a
// host other than localhost), the snippet is selected for Ctrl+C instead.
(function () {
  "use strict";

  function select(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function show(button, label) {
    button.textContent = label;
    button.classList.toggle("copied", label === "Copied");
    setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 2500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy-snippet]");
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy-snippet"));
    if (!source) { return; }

    function fallback() {
      select(source);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      show(button, ok ? "Copied" : "Press Ctrl+C");
    }

    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(function () { show(button, "Copied"); }, fallback);
    } else {
      fallback();
    }
  });
})();
