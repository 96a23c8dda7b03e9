// Sorting, filtering and charts for a static report. Reads data only from the page itself.
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    return cell ? cell.getAttribute("data-sort") : "";
  }
  function sortTable(table, index, header) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var descending = !header.classList.contains("desc");
    var numeric = rows.every(function (r) {
      var v = cellValue(r, index);
      return v === "" || !isNaN(parseFloat(v));
    });
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === "" && y !== "") return 1;
      if (y === "" && x !== "") return -1;
      var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.classList.remove("asc", "desc");
    });
    header.classList.add(descending ? "desc" : "asc");
  }
  document.querySelectorAll("table.data").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.querySelector("button.sort").addEventListener("click", function () {
        sortTable(table, index, th);
      });
    });
  });
  document.querySelectorAll(".table-block").forEach(function (block) {
    var input = block.querySelector("input.filter");
    var table = block.querySelector("table.data");
    if (!input || !table) return;
    input.addEventListener("input", function () {
      var needle = input.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.style.display = row.textContent.toLowerCase().indexOf(needle) >= 0 ? "" : "none";
      });
    });
  });
  if (window.Plotly) {
    document.querySelectorAll("div.chart").forEach(function (div) {
      var source = document.getElementById(div.getAttribute("data-chart"));
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(div, figure.data || [], figure.layout || {},
        { displaylogo: false, responsive: true, showLink: false, showSendToCloud: false });
    });
  }
})();
