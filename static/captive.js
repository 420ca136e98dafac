// Progressive enhancement only: every page works without it (forms post, the wait page refreshes).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("button[data-once]"), function (b) {
    // One tap, one request: a second tap while the first is on its way sends nothing.
    b.form.addEventListener("submit", function () { setTimeout(function () { b.disabled = true; }, 0); });
  });
  var login = document.getElementById("router-login");
  if (login) {
    // Give the customer a moment to see (and save) the code, then log in at the router.
    var note = document.getElementById("connecting");
    if (note) { note.hidden = false; }
    setTimeout(function () {
      if (login.tagName === "FORM") { login.submit(); } else { window.location.replace(login.href); }
    }, 2500);
    return;
  }
  var box = document.getElementById("purchase");
  if (!box) { return; }
  var state = box.getAttribute("data-status");
  if (state !== "pending" && state !== "paid") { return; }
  var seconds = document.getElementById("seconds");
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
      var m = document.getElementById("message");
      if (data && data.message && m) { m.textContent = data.message; }
      setTimeout(poll, 2000);
    };
    xhr.onerror = function () { setTimeout(poll, 2000); };
    xhr.send();
  }
  setTimeout(poll, 2000);
})();
