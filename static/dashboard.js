// Optional niceties only: every page works without this file.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("click", function (event) {
  var target = event.target;
  if (target && target.matches && target.matches("[data-select-all]")) {
    var area = document.getElementById(target.getAttribute("data-select-all"));
    if (area) { area.focus(); area.select(); }
  }
});
document.addEventListener("click", function (event) {
  var target = event.target;
  if (target && target.matches && target.matches("[data-print]")) { window.print(); }
});
// A figure too costly to add up inline (a payments total over a million rows) fills itself in.
document.querySelectorAll("[data-fill-from]").forEach(function (slot) {
  fetch(slot.getAttribute("data-fill-from"), { credentials: "same-origin", headers: { "X-Fragment": "1" } })
    .then(function (answer) { return answer.ok ? answer.text() : null; })
    .then(function (html) { if (html) { slot.outerHTML = html; } });
});
// Phones: every table under .table-wrap becomes a list of cards (dashboard.css, max-width 40rem);
// each cell is labelled with its column's heading, so any page's new table works unchanged.
document.querySelectorAll(".table-wrap table").forEach(function (table) {
  var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
    return th.textContent.trim();
  });
  if (!headings.length) { return; }
  table.querySelectorAll("tbody tr").forEach(function (row) {
    Array.prototype.forEach.call(row.children, function (cell, index) {
      if (!cell.hasAttribute("data-label")) { cell.setAttribute("data-label", headings[index] || ""); }
    });
  });
  table.classList.add("cards");
});
