/* Monitoring charts: read the monitoring JSON (same origin, the session's cookie) and draw
 * it with the vendored uPlot. Redrawn whenever htmx refreshes the tables (every 30 s), so
 * charts and tables show the same numbers. No inline code: the page's CSP allows none. */
(function () {
  "use strict";
  var root = document.getElementById("monitoring-charts");
  if (!root || typeof window.uPlot !== "function") {
    return;
  }
  var url = root.dataset.url;
  var charts = {};
  var loads = 0;

  function width(el) {
    return Math.max(320, Math.min(960, el.clientWidth || 640));
  }

  function draw(id, opts, data) {
    var el = document.getElementById(id);
    if (!el) {
      return;
    }
    if (charts[id]) {
      charts[id].destroy();
    }
    opts.width = width(el);
    opts.height = 220;
    charts[id] = new window.uPlot(opts, data, el);
  }

  function bars() {
    return window.uPlot.paths.bars({ size: [0.7, 60] });
  }

  function categoryAxis(names) {
    return {
      splits: function () { return names.map(function (_n, i) { return i; }); },
      values: function (_u, splits) { return splits.map(function (i) { return names[i] === undefined ? "" : names[i]; }); },
    };
  }

  function traffic(data) {
    var series = data.traffic.series;
    var xs = series.map(function (b) { return Date.parse(b.t) / 1000; });
    // The whole window, not just the buckets with traffic (one point would span years).
    var span = [Date.parse(data.from) / 1000 - data.traffic.step_seconds, Date.parse(data.to) / 1000];
    draw("chart-traffic", {
      scales: {
        x: { time: true, range: function () { return span; } },
        y: { range: function (_u, _min, max) { return [0, Math.max(1, max * 1.1)]; } },
      },
      series: [
        {},
        { label: "requests", stroke: "#2f6fdf", width: 2 },
        { label: "predictions", stroke: "#3a9a5b", width: 2 },
        { label: "errors", stroke: "#d0453a", width: 2 },
      ],
    }, [xs, series.map(function (b) { return b.requests; }),
        series.map(function (b) { return b.rows; }),
        series.map(function (b) { return b.errors; })]);
  }

  function confidence(data) {
    var names = data.confidence.histogram.map(function (_n, i) { return (i / 10).toFixed(1); });
    draw("chart-confidence", {
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
      axes: [categoryAxis(names), {}],
      series: [{}, { label: "predictions", fill: "#2f6fdf88", stroke: "#2f6fdf", paths: bars() }],
    }, [names.map(function (_n, i) { return i; }), data.confidence.histogram]);
  }

  function classes(data) {
    var predicted = data.classes.predicted || {};
    var training = data.classes.training || {};
    var names = Object.keys(Object.assign({}, training, predicted));
    var total = function (counts) {
      return Object.keys(counts).reduce(function (s, k) { return s + counts[k]; }, 0) || 1;
    };
    var p = total(predicted);
    var t = total(training);
    draw("chart-classes", {
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: [0, 1] } },
      axes: [categoryAxis(names), {}],
      series: [
        {},
        { label: "predicted share", fill: "#2f6fdf88", stroke: "#2f6fdf", paths: bars() },
        { label: "training share", stroke: "#e08a1e", width: 2, points: { size: 8 } },
      ],
    }, [names.map(function (_n, i) { return i; }),
        names.map(function (n) { return (predicted[n] || 0) / p; }),
        names.map(function (n) { return (training[n] || 0) / t; })]);
  }

  function load() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("monitoring JSON: HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        traffic(data);
        confidence(data);
        classes(data);
        loads += 1;
        root.dataset.loads = String(loads);
        root.dataset.requests = String(data.traffic.requests);
        delete root.dataset.error;
      })
      .catch(function (error) {
        root.dataset.error = String(error);
      });
  }

  load();
  document.body.addEventListener("htmx:afterSettle", load);
})();
