// Progressive enhancement only: every page works without it (forms post, the wait page refreshes).
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  Array.prototype.forEach.call(document.querySelectorAll("button[data-once]"), function (b) {
    // One tap, one request: a second tap while the first is on its way sends nothing.
    b.form.addEventListener("submit", function () { setTimeout(function () { b.disabled = true; }, 0); });
  });
  // Later choices (no prompt? send again) come from the server when it said they would, so the
  // page shows them with fresh facts (how long the rate limit still holds).
  Array.prototype.forEach.call(document.querySelectorAll("[data-show-in],[data-reload-in]"), function (el) {
    var s = el.getAttribute("data-show-in") || el.getAttribute("data-reload-in");
    setTimeout(function () { window.location.reload(); }, 1000 * parseInt(s, 10) + 500);
  });
  var copy = $("copy"), code = $("code");
  if (copy && code) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      var range = document.createRange();
      range.selectNodeContents(code);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      var done = false;
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
      if (!done && navigator.clipboard) { navigator.clipboard.writeText(code.textContent.trim()); }
      copy.textContent = copy.getAttribute("data-done");
    });
  }
  var login = $("router-login");
  if (login) {
    // Show the code, the plan and "connecting", give a moment to copy the code, then log in at
    // the router; the router then sends the browser on, and only then is the customer online.
    var note = $("connecting");
    if (note) { note.hidden = false; }
    setTimeout(function () {
      if (login.tagName === "FORM") { login.submit(); } else { window.location.replace(login.href); }
    }, 4000);
    return;
  }
  var box = $("purchase");
  if (!box) { return; }
  var state = box.getAttribute("data-status");
  if (state !== "pending" && state !== "paid") { return; }
  var seconds = $("seconds");
  if (seconds) {
    setInterval(function () {
      var n = parseInt(seconds.textContent, 10);
      if (n > 0) { seconds.textContent = String(n - 1); }
    }, 1000);
  }
  function poll() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", box.getAttribute("data-status-url"));
    xhr.onload = function () {
      var data;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (data && data.status !== state) { window.location.reload(); return; }
      var m = $("message");
      if (data && data.message && m) { m.textContent = data.message; }
      setTimeout(poll, 2000);
    };
    xhr.onerror = function () { setTimeout(poll, 2000); };
    xhr.send();
  }
  setTimeout(poll, 2000);
})();
