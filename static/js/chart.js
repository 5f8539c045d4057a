// Line charts with uPlot. A chart is a <div class="fw-chart" data-chart-source="ID"> next to a
// <script type="application/json" id="ID"> holding {"x": [epoch seconds], "unit": "°C",
// "series": [{"label": "avg", "values": [...]}, ...]} (null values leave gaps).
// Charts draw on page load and after every htmx swap, so switching a range redraws in place.
(function () {
  const colours = ["#0d6efd", "#20c997", "#fd7e14", "#6f42c1", "#dc3545", "#6c757d"];

  function draw(element) {
    const source = document.getElementById(element.dataset.chartSource);
    if (!source) return;
    const data = JSON.parse(source.textContent);
    element.replaceChildren();
    if (!data.x.length) {
      const empty = document.createElement("div");
      empty.className = "text-body-secondary small py-5 text-center";
      empty.textContent = "No readings in this range.";
      element.appendChild(empty);
      return;
    }
    const unit = data.unit ? " " + data.unit : "";
    const options = {
      width: Math.max(element.clientWidth, 300),
      height: Number(element.dataset.height || 260),
      // one point alone would stretch the axis over years: give it an hour either side
      scales: { x: data.x.length === 1 ? { time: true, range: () => [data.x[0] - 3600, data.x[0] + 3600] } : { time: true } },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => v + unit), size: 70 }],
      series: [{}].concat(data.series.map((s, i) => ({
        label: s.label, stroke: colours[i % colours.length], width: 1.5, spanGaps: false,
        value: (u, v) => (v == null ? "–" : v.toFixed(2) + unit),
      }))),
      legend: { live: true },
    };
    const chart = new uPlot(options, [data.x].concat(data.series.map((s) => s.values)), element);
    element.dataset.drawn = "true";
    new ResizeObserver(() => chart.setSize({ width: Math.max(element.clientWidth, 300), height: options.height })).observe(element);
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".fw-chart").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll());
  document.addEventListener("htmx:afterSettle", (event) => drawAll(event.detail.elt));
})();
