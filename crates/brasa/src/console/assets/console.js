// brasa console: draws the sparklines of /ui/series.json with uPlot and keeps them moving.
// Everything else (forms, links, live tables) is plain HTML that htmx enhances; without
// JavaScript the pages work as they are, with the latest rates as numbers.
(function () {
  "use strict";
  var charts = new WeakMap();

  function rate(value) {
    return (value >= 100 ? value.toFixed(0) : value.toFixed(1)) + "/s";
  }

  function draw(data) {
    document.querySelectorAll("figure.spark[data-series]").forEach(function (figure) {
      var series = data.series[Number(figure.dataset.series)];
      if (!series || typeof uPlot === "undefined") {
        return;
      }
      var now = figure.querySelector(".now");
      if (now && series.data.length) {
        now.textContent = rate(series.data[series.data.length - 1]);
      }
      var points = [data.t, series.data];
      var chart = charts.get(figure);
      if (chart) {
        chart.setData(points);
        return;
      }
      chart = new uPlot({
        width: 240,
        height: 56,
        cursor: { show: false },
        legend: { show: false },
        select: { show: false },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
        series: [{}, { stroke: "#1f6fa8", fill: "rgba(31,111,168,0.12)", width: 1.5, points: { show: false } }],
      }, points, figure);
      charts.set(figure, chart);
    });
  }

  function refresh() {
    if (!document.querySelector("figure.spark")) {
      return;
    }
    fetch("/ui/series.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { draw(data); } })
      .catch(function () { /* the daemon is restarting; the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:afterSettle", refresh);
  setInterval(refresh, 2000);
})();
