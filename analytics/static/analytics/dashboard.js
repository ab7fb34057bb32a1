// Refreshes the admin dashboard: every data-refresh-seconds, fetch the same URL with
// fragment=1 and swap the charts in place. Served from our own static files (no CDN, no inline
// script). Skips refreshes while the tab is hidden and keeps the last charts on errors.
(function () {
  "use strict";
  function start() {
    var box = document.getElementById("dashboard");
    var status = document.getElementById("dashboard-status");
    if (!box) { return; }
    var seconds = parseInt(box.getAttribute("data-refresh-seconds"), 10) || 15;
    var busy = false;
    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      var url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      fetch(url.toString(), {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          box.setAttribute("data-refreshed-at", new Date().toISOString());
          if (status) { status.textContent = "Updated " + new Date().toLocaleTimeString() + "; refreshes every " + seconds + " s."; }
        })
        .catch(function (error) {
          if (status) { status.textContent = "Refresh failed (" + error.message + "); retrying in " + seconds + " s."; }
        })
        .finally(function () { busy = false; });
    }
    window.setInterval(refresh, seconds * 1000);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
