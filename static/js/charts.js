// Charts: Chart.js (static/vendor/chart.umd.min.js) draws every
// <canvas data-chart="ID"> from the JSON in <template id="ID"> (a template, not a
// <script type="application/json">: htmx removes every script from swapped content).
// The numbers are also in a table next to the canvas, so nothing depends on this file.
// No inline scripts or style attributes (CSP): Chart.js sizes the canvas through the CSSOM.
(function () {
  "use strict";

  var PALETTE = ["#0f766e", "#2563eb", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#64748b"];
  var money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  var compactMoney = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", notation: "compact" });
  var count = new Intl.NumberFormat("en-US");
  var compactCount = new Intl.NumberFormat("en-US", { notation: "compact" });

  function shortDay(iso) {
    var day = new Date(iso + "T00:00:00Z");
    if (isNaN(day)) { return iso; }
    return day.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
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
            ticks: { callback: function (value) {
              if (counts) { return value >= 1000 ? compactCount.format(value) : count.format(value); }
              return value >= 1000 ? compactMoney.format(value) : money.format(value);
            } }
          }
        },
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom" },
          tooltip: {
            callbacks: {
              title: function (items) { return items.length ? shortDay(items[0].label) : ""; },
              label: function (item) {
                return item.dataset.label + ": " + (counts ? count : money).format(item.parsed.y);
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
            ticks: { callback: function (value) { return value >= 1000 ? compactMoney.format(value) : money.format(value); } }
          }
        },
        plugins: {
          legend: { position: "bottom", labels: { filter: function (item) { return item.text !== "Forecast low"; } } },
          tooltip: {
            filter: function (item) { return item.parsed.y !== null; },
            callbacks: {
              title: function (items) { return items.length ? shortDay(items[0].label) : ""; },
              label: function (item) { return item.dataset.label + ": " + money.format(item.parsed.y); }
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
