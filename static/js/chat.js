// The chat (/chat): answers stream into the page. Each pending answer
// (<article data-stream-url>) is fetched with POST and its body read as it
// arrives (server-sent events: `delta` {text}, then `done` {html, totals}).
// The live text is set with textContent (never HTML); the finished answer is
// the server's sanitized Markdown. Stop asks the server to end the upstream
// call (the stream then ends with `done`); if nothing comes within a few
// seconds, the request is aborted and the answer reloaded.
(function () {
  "use strict";

  var STOP_GRACE_MS = 5000;
  var POLL_MS = 1000;

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function replace(old, html) {
    var template = document.createElement("template");
    template.innerHTML = (html || "").trim();
    var fresh = template.content.firstElementChild;
    if (!fresh || !old.parentNode) { return null; }
    old.replaceWith(fresh);
    if (window.htmx) { window.htmx.process(fresh); }
    scan(fresh);
    return fresh;
  }

  function reload(article) {
    fetch(article.getAttribute("data-message-url"), { headers: { "HX-Request": "true" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html) { replace(article, html); } });
  }

  function poll(article) {
    setTimeout(function () { if (article.isConnected) { reload(article); } }, POLL_MS);
  }

  function stream(article) {
    if (article.getAttribute("data-started")) { return; }
    article.setAttribute("data-started", "1");
    var live = article.querySelector("[data-live]");
    var stop = article.querySelector("[data-stop]");
    var controller = window.AbortController ? new AbortController() : null;
    var finished = false;

    function finish(payload) {
      finished = true;
      var totals = document.getElementById("chat-totals");
      if (totals && payload.totals) { replace(totals, payload.totals); }
      replace(article, payload.html);
    }

    function handle(raw) {
      var name = "message";
      var data = "";
      raw.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
        else if (line.indexOf("data:") === 0) { data += line.slice(5).trim(); }
      });
      if (!data) { return; }
      var payload = JSON.parse(data);
      if (name === "delta" && live) {
        live.textContent += payload.text;
        live.scrollIntoView({ block: "end", behavior: "auto" });
      } else if (name === "done") {
        finish(payload);
      }
    }

    if (stop) {
      stop.addEventListener("click", function () {
        stop.disabled = true;
        stop.textContent = "Stopping…";
        fetch(stop.getAttribute("data-stop-url"), { method: "POST", headers: { "X-CSRFToken": csrf() } });
        setTimeout(function () {
          if (finished) { return; }
          if (controller) { controller.abort(); }
          poll(article);
        }, STOP_GRACE_MS);
      });
    }

    fetch(article.getAttribute("data-stream-url"), {
      method: "POST",
      headers: { "X-CSRFToken": csrf(), "Accept": "text/event-stream" },
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      if (!response.ok || !response.body) { throw new Error("HTTP " + response.status); }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            if (!finished) { poll(article); }
            return;
          }
          buffer += decoder.decode(chunk.value, { stream: true });
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(handle);
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      if (!finished) { poll(article); }
    });
  }

  function scan(root) {
    if (!root || !root.querySelectorAll) { return; }
    var all = Array.prototype.slice.call(root.querySelectorAll("[data-stream-url], [data-poll]"));
    if (root.matches && root.matches("[data-stream-url], [data-poll]")) { all.unshift(root); }
    all.forEach(function (article) {
      if (article.hasAttribute("data-stream-url")) { stream(article); return; }
      if (article.getAttribute("data-started")) { return; }
      article.setAttribute("data-started", "1");
      poll(article);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (event) { scan(event.detail.elt); });

  // The composer: emptied once its message was accepted; Ctrl+Enter (⌘+Enter) sends.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form.matches && form.matches("form[data-chat-composer]") && event.detail.successful) {
      var box = form.querySelector('textarea[name="content"]');
      if (box) { box.value = ""; box.focus(); }
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) { return; }
    var form = event.target.closest && event.target.closest("form[data-chat-composer], #compare-form");
    if (form) { event.preventDefault(); form.requestSubmit(); }
  });
})();
