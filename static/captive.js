// Small progressive enhancement: the pages work without it (forms post, meta refresh polls).
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-once]");
  Array.prototype.forEach.call(buttons, function (b) {
    b.form.addEventListener("submit", function () { setTimeout(function () { b.disabled = true; }, 0); });
  });
  var box = document.getElementById("purchase");
  var login = document.getElementById("router-login");
  if (login) { login.submit(); return; }
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
      if (data && data.message) {
        var m = document.getElementById("message");
        if (m) { m.textContent = data.message; }
      }
      setTimeout(poll, 2000);
    };
    xhr.onerror = function () { setTimeout(poll, 2000); };
    xhr.send();
  }
  setTimeout(poll, 2000);
})();
