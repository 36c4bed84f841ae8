// Charts: Chart.js (static/vendor/chart.umd.min.js) draws every
// <canvas data-chart="ID"> from the JSON in <template id="ID"> (a template, not a
// <script type="application/json">: htmx removes every script from swapped content).
// The numbers are also in a table next to the canvas, so nothing depends on this file.
// No inline scripts or style attributes (CSP): Chart.js sizes the canvas through the CSSOM.
(function () {
  "use strict";

  var PALETTE = ["#0f766e", "#2563eb", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#64748b"];
  var cents = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var compactMoney = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", notation: "compact" });
  var count = new Intl.NumberFormat("en-US");
  var compactCount = new Intl.NumberFormat("en-US", { notation: "compact" });

  // The money rule of costguardian/money.py (format_usd): $1 and more in
  // cents; under $1 four significant digits, trailing zeros trimmed to two
  // decimals ($0.0075, $0.4717, $0.50); zero is $0.00; a minus in front.
  function usd(value) {
    var amount = Number(value);
    if (!isFinite(amount)) { return "—"; }
    if (amount === 0) { return "$0.00"; }
    var sign = amount < 0 ? "-" : "";
    amount = Math.abs(amount);
    if (amount < 1) {
      var rounded = Number(amount.toPrecision(4));
      if (rounded < 1) {
        var text = rounded.toFixed(Math.min(20, Math.max(2, 3 - Math.floor(Math.log10(rounded)))));
        text = text.replace(/0+$/, "");
        var decimals = text.split(".")[1] || "";
        while (decimals.length < 2) { decimals += "0"; text += "0"; }
        return sign + "$" + text.replace(/\.$/, ".00");
      }
    }
    return sign + "$" + cents.format(amount);
  }

  // Axis labels: compact where that keeps them apart ($1.2K), else by the
  // money rule, else with more digits; never the same label on two ticks.
  function distinct(labels) { return new Set(labels).size === labels.length; }
  function moneyTicks(ticks) {
    var values = ticks.map(function (t) { return t.value; });
    var labels = values.map(function (v) { return Math.abs(v) >= 1000 ? compactMoney.format(v) : usd(v); });
    if (distinct(labels)) { return labels; }
    labels = values.map(usd);
    for (var digits = 3; !distinct(labels) && digits <= 9; digits++) {
      labels = values.map(function (v) { return v === 0 ? "$0.00" : "$" + v.toFixed(digits); });
    }
    return labels;
  }
  function moneyTick(value, index, ticks) {
    return moneyTicks(ticks)[index];
  }

  // A day reads as the pages write it (2026-12-06), not in the browser's locale.
  function shortDay(iso) {
    return iso;
  }

  // Data: {labels, datasets: [{label, data}], unit}; unit "count" (events,
  // sign-ups) shows plain numbers, anything else dollars.
  function config(data) {
    var counts = data.unit === "count";
    var datasets = (data.datasets || []).map(function (set, i) {
      return {
        label: set.label,
        data: set.data.map(Number),
        backgroundColor: PALETTE[i % PALETTE.length],
        borderWidth: 0,
        stack: "spend"
      };
    });
    return {
      type: "bar",
      data: { labels: data.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: {
            stacked: true,
            grid: { display: false },
            ticks: {
              autoSkip: true, maxRotation: 0,
              callback: function (value) { return shortDay(this.getLabelForValue(value)); }
            }
          },
          y: {
            stacked: true, beginAtZero: true,
            ticks: { callback: function (value, index, ticks) {
              if (counts) { return value >= 1000 ? compactCount.format(value) : count.format(value); }
              return moneyTick(value, index, ticks);
            } }
          }
        },
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom" },
          tooltip: {
            callbacks: {
              title: function (items) { return items.length ? shortDay(items[0].label) : ""; },
              label: function (item) {
                return item.dataset.label + ": " + (counts ? count.format(item.parsed.y) : usd(item.parsed.y));
              }
            }
          }
        }
      }
    };
  }

  // A budget's period: cumulative spend (a line up to today), the limit (a
  // flat line) and the forecast to the period end (dashed) inside its band.
  // Data: {kind: "budget", labels, spent, limit, expected, low, high}; null = no point.
  function budgetConfig(data) {
    function numbers(list) { return (list || []).map(function (v) { return v === null ? null : Number(v); }); }
    var datasets = [
      { label: "Forecast low", data: numbers(data.low), borderColor: "rgba(109, 40, 217, 0.25)", borderWidth: 1,
        pointRadius: 0, fill: false, spanGaps: false },
      { label: "Forecast range", data: numbers(data.high), borderColor: "rgba(109, 40, 217, 0.25)", borderWidth: 1,
        backgroundColor: "rgba(109, 40, 217, 0.12)", pointRadius: 0, fill: "-1", spanGaps: false },
      { label: "Forecast", data: numbers(data.expected), borderColor: "#6d28d9", borderDash: [6, 4], borderWidth: 2,
        pointRadius: 0, fill: false },
      { label: "Spent so far", data: numbers(data.spent), borderColor: PALETTE[0], backgroundColor: PALETTE[0],
        borderWidth: 2.5, pointRadius: 2, fill: false },
      { label: "Limit", data: numbers(data.limit), borderColor: "#dc2626", borderWidth: 2, pointRadius: 0,
        fill: false, stepped: true }
    ];
    return {
      type: "line",
      data: { labels: data.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: {
            grid: { display: false },
            ticks: { autoSkip: true, maxRotation: 0,
                     callback: function (value) { return shortDay(this.getLabelForValue(value)); } }
          },
          y: {
            beginAtZero: true,
            ticks: { callback: moneyTick }
          }
        },
        plugins: {
          legend: { position: "bottom", labels: { filter: function (item) { return item.text !== "Forecast low"; } } },
          tooltip: {
            filter: function (item) { return item.parsed.y !== null; },
            callbacks: {
              title: function (items) { return items.length ? shortDay(items[0].label) : ""; },
              label: function (item) { return item.dataset.label + ": " + usd(item.parsed.y); }
            }
          }
        }
      }
    };
  }

  function forget(chart) {
    var canvas = chart.canvas;
    chart.destroy();
    if (canvas) { canvas.removeAttribute("style"); }
  }

  // Charts whose canvas htmx swapped out are destroyed; new canvases are drawn.
  function drawAll() {
    if (!window.Chart) { return; }
    Object.values(window.Chart.instances || {}).forEach(function (chart) {
      if (!chart.canvas || !chart.canvas.isConnected) { forget(chart); }
    });
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (window.Chart.getChart(canvas)) { return; }
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source) { return; }
      var data;
      try { data = JSON.parse(source.content ? source.content.textContent : source.textContent); } catch (e) { return; }
      new window.Chart(canvas, data.kind === "budget" ? budgetConfig(data) : config(data));
    });
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
  document.addEventListener("htmx:historyRestore", drawAll);
  // htmx keeps a copy of the page for the back button: take it without the
  // drawn charts (their inline sizes would break the CSP when restored).
  document.addEventListener("htmx:beforeHistorySave", function () {
    if (!window.Chart) { return; }
    Object.values(window.Chart.instances || {}).forEach(forget);
  });
})();
