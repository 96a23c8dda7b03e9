// Sorting, filtering and charts for a static report. Reads data only from the page itself:
// table cells' data-sort attributes and the application/json elements that hold each figure.
(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  function sortTable(table, index, header) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    // First click on a column sorts descending: scores are "higher = more urgent".
    var descending = !header.classList.contains("desc");
    var numeric = rows.every(function (r) {
      var v = cellValue(r, index);
      return v === "" || isFinite(Number(v));
    });
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === "" && y !== "") return 1;  // empty cells last either way
      if (y === "" && x !== "") return -1;
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, { numeric: true });
      return descending ? -order : order;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (r) { fragment.appendChild(r); });
    body.appendChild(fragment);
    each(table.tHead.rows[0].cells, function (th) {
      th.classList.remove("asc", "desc");
      th.removeAttribute("aria-sort");
    });
    header.classList.add(descending ? "desc" : "asc");
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  each(document.querySelectorAll("table.data"), function (table) {
    each(table.tHead.rows[0].cells, function (th, index) {
      th.querySelector("button.sort").addEventListener("click", function () {
        sortTable(table, index, th);
      });
    });
  });

  // Filter: show rows (or groups) whose text contains every word typed, case-insensitive.
  each(document.querySelectorAll(".table-block, .groups-block"), function (block) {
    var input = block.querySelector("input.filter");
    var matches = block.querySelector(".matches");
    var table = block.querySelector("table.data");
    var units = table ? table.tBodies[0].rows : block.querySelectorAll(".group");
    if (!input) return;
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      each(units, function (unit) {
        var text = unit.textContent.toLowerCase();
        var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
        unit.style.display = hit ? "" : "none";
        if (hit) shown += 1;
      });
      matches.textContent = words.length ? shown + " of " + units.length + " match" : "";
    });
  });

  function drawCharts() {
    each(document.querySelectorAll("div.chart"), function (div) {
      var source = document.getElementById(div.getAttribute("data-chart"));
      var figure = JSON.parse(source.textContent);
      div.textContent = "";
      window.Plotly.newPlot(div, figure.data || [], figure.layout || {}, {
        displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
        showEditInChartStudio: false, modeBarButtonsToRemove: ["sendDataToCloud"]
      });
    });
  }
  if (window.Plotly) drawCharts();
})();
