// Line charts with uPlot. A chart is a <div class="fw-chart" data-chart-source="ID"> next to a
// <script type="application/json" id="ID"> holding (portal/core/charts.py):
//   {"x": [epoch seconds], "series": [{"label": "avg", "values": [...]}, ...], "unit": "°C",
//    "gap": seconds, "window": seconds or null, "tz": "Europe/Lisbon", "precision": 2,
//    "step": seconds (optional: the bucket width, the finest x tick)}
// A null value leaves a gap: wherever two neighbours are more than `gap` apart the data holds
// a null at prev + gap, so no line is drawn across missing data.
// Charts draw on page load and after every htmx swap. Live updates (portal/core/live.py) bring a
// <script type="application/json" data-chart-updates> of {ID: {"x": [...], "series": [...]}}:
// the points are merged by time (a bucket that changed is replaced), points older than `window`
// drop off, and uPlot's setData redraws in place; a range the person zoomed into is kept.
(function () {
  const colours = ["#0d6efd", "#20c997", "#fd7e14", "#6f42c1", "#dc3545", "#6c757d"];
  // 24-hour axis labels (uPlot's own are 12-hour): [tick size, label, then what a new year,
  // month, day, hour, minute, second adds below it, mode]
  const AXIS = [
    [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [3600 * 24 * 28, "{YYYY}-{MM}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600 * 24, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
  ];

  // The x axis' tick steps in seconds (uPlot's own, 1 s to 10 years); a chart of buckets
  // (`step`: a day, a month) ticks no finer than one bucket, so day charts show no 12:00 ticks.
  const TIME_INCRS = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200,
    86400, 172800, 259200, 345600, 432000, 604800, 1209600, 2592000, 5184000, 7776000, 15552000,
    31536000, 63072000, 157680000, 315360000];

  // Real points only, as [x, v1, v2, ...] rows (nulls that mark gaps are dropped).
  function rows(data) {
    const out = [];
    data.x.forEach((x, i) => {
      const values = data.series.map((s) => s.values[i]);
      if (values.some((v) => v != null)) out.push([x].concat(values));
    });
    return out;
  }

  // Columns for uPlot from rows, with a null row wherever neighbours are more than `gap` apart
  // (the same rule as portal.core.charts.with_gaps).
  function columns(points, width, gap) {
    const cols = [[]];
    for (let s = 0; s < width; s++) cols.push([]);
    points.forEach((row, i) => {
      if (gap && i > 0 && row[0] - points[i - 1][0] > gap) {
        cols[0].push(points[i - 1][0] + gap);
        for (let s = 1; s <= width; s++) cols[s].push(null);
      }
      row.forEach((v, s) => cols[s].push(v));
    });
    return cols;
  }

  function emptyNote(element) {
    const empty = document.createElement("div");
    empty.className = "text-body-secondary small py-5 text-center";
    empty.textContent = "No readings in this range.";
    element.replaceChildren(empty);
  }

  function options(element, data) {
    const unit = data.unit ? " " + data.unit : "";
    const digits = Number.isInteger(data.precision) ? data.precision : 2;
    const single = data.x.length === 1;
    return {
      width: Math.max(element.clientWidth, 300),
      height: Number(element.dataset.height || 260),
      tzDate: (ts) => (data.tz ? uPlot.tzDate(new Date(ts * 1e3), data.tz) : new Date(ts * 1e3)),
      // one point alone would stretch the axis over years: give it an hour either side
      scales: { x: single ? { time: true, range: () => [data.x[0] - 3600, data.x[0] + 3600] } : { time: true } },
      axes: [
        data.step ? { values: AXIS, incrs: TIME_INCRS.filter((incr) => incr >= data.step) } : { values: AXIS },
        { values: (u, ticks) => ticks.map((v) => v + unit), size: 70 },
      ],
      series: [{ value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }].concat(data.series.map((s, i) => ({
        label: s.label, stroke: colours[i % colours.length], width: 1.5, spanGaps: false,
        value: (u, v) => (v == null ? "–" : v.toFixed(digits) + unit),
      }))),
      legend: { live: true },
    };
  }

  function draw(element) {
    const source = document.getElementById(element.dataset.chartSource);
    if (!source) return;
    const data = JSON.parse(source.textContent);
    if (element.fwChart) element.fwChart.destroy();
    element.fwChart = null;
    element.fwData = data;
    element.fwPoints = rows(data);
    if (!element.fwPoints.length) {
      emptyNote(element);
      return;
    }
    element.replaceChildren();
    const chart = new uPlot(options(element, data), columns(element.fwPoints, data.series.length, data.gap), element);
    element.fwChart = chart;
    element.dataset.drawn = "true";
    if (!element.fwObserver) {
      element.fwObserver = new ResizeObserver(() => {
        if (element.fwChart) element.fwChart.setSize({ width: Math.max(element.clientWidth, 300), height: element.fwChart.height });
      });
      element.fwObserver.observe(element);
    }
  }

  // Did the person zoom in? (the x scale no longer spans all the data)
  function zoomed(chart) {
    const xs = chart.data[0];
    if (!xs.length) return false;
    const scale = chart.scales.x;
    return scale.min > xs[0] + 1e-6 || scale.max < xs[xs.length - 1] - 1e-6;
  }

  function merge(element, update) {
    const data = element.fwData;
    if (!data) return;
    const byX = new Map(element.fwPoints.map((row) => [row[0], row]));
    rows({ x: update.x, series: update.series }).forEach((row) => byX.set(row[0], row));
    let points = Array.from(byX.values()).sort((a, b) => a[0] - b[0]);
    if (data.window) {
      const oldest = Date.now() / 1000 - data.window;
      points = points.filter((row) => row[0] >= oldest);
    }
    data.x = points.map((row) => row[0]);
    data.series.forEach((s, i) => { s.values = points.map((row) => row[i + 1]); });
    // keep the page's JSON in step, so a redraw (a swap, a reload from cache) shows the same points
    const source = document.getElementById(element.dataset.chartSource);
    if (source) source.textContent = JSON.stringify(data);
    const chart = element.fwChart;
    if (!chart || points.length < 3) {
      draw(element); // the first points, or too few for uPlot to scale on its own
    } else {
      const keep = zoomed(chart) ? { min: chart.scales.x.min, max: chart.scales.x.max } : null;
      element.fwPoints = points;
      chart.setData(columns(points, data.series.length, data.gap), !keep);
      if (keep) chart.setScale("x", keep);
    }
    element.dataset.points = String(points.length);
  }

  function applyUpdates(root) {
    root.querySelectorAll("script[data-chart-updates]").forEach((script) => {
      script.removeAttribute("data-chart-updates"); // once, however many settle events follow
      const updates = JSON.parse(script.textContent);
      Object.keys(updates).forEach((id) => {
        document.querySelectorAll(`.fw-chart[data-chart-source="${id}"]`).forEach((element) => merge(element, updates[id]));
      });
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".fw-chart").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll());
  document.addEventListener("htmx:afterSettle", (event) => {
    const root = event.detail.elt;
    if (!root || !root.querySelectorAll) return;
    if (root.querySelector("script[data-chart-updates]")) applyUpdates(root);
    else drawAll(root);
  });
  window.fieldwatchCharts = { draw: draw, merge: merge };
})();
