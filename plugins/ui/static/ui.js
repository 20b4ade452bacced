// flow ui: the few lines of script the pages need (no framework, no build).
// 1. the runs page fetches the totals of the filtered runs (counting may take a moment on big stores);
// 2. a running run's page follows Server-Sent Events and swaps in the re-rendered live part.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var totals = document.getElementById("totals");
  if (totals && totals.dataset.src) {
    fetch(totals.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (t) {
        if (t.error) { totals.textContent = t.error; return; }
        totals.textContent = "";
        var parts = [
          [t.runs.toLocaleString("en-US"), t.runs === 1 ? " run" : " runs"],
          [t.total_tokens.toLocaleString("en-US"), " tokens"],
          [t.cost, " cost"],
        ];
        parts.forEach(function (p, i) {
          var b = document.createElement("strong");
          b.textContent = p[0];
          totals.appendChild(b);
          totals.appendChild(document.createTextNode(p[1] + (i < parts.length - 1 ? " · " : "")));
        });
        totals.dataset.runs = String(t.runs);
      })
      .catch(function () { totals.textContent = "Totals unavailable."; });
  }
  var live = document.getElementById("live");
  if (live && live.dataset.events && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    live.classList.add("following");
    source.addEventListener("update", function (e) { live.innerHTML = e.data; });
    source.addEventListener("end", function () {
      source.close();
      live.classList.remove("following");
      live.dataset.ended = "1";
    });
  }
});
