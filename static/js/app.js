// Samplescope's only script of its own. Inline scripts are forbidden by the CSP, so charts are
// described by JSON in <script type="application/json"> elements and drawn from here.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn === "1") return;
      var source = document.getElementById(el.dataset.chart);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var layout = Object.assign({ margin: { t: 30, r: 10, b: 40, l: 50 }, autosize: true,
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" }, spec.layout || {});
      window.Plotly.newPlot(el, spec.data || [], layout, { displayModeBar: false, responsive: true });
      el.dataset.drawn = "1";
    });
  }

  // A 429 (rate limit) from an htmx request carries a short notice: show it where the results would go
  // (htmx swaps no 4xx by default). Retry-After says when to try again.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 429) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });
  window.samplescope = { drawCharts: drawCharts };
})();
