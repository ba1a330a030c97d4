// The console's only script: live refresh of the deliveries list and of
// an event while it waits for its handlers. Pages read fine without it.
(function () {
  "use strict";
  var POLL_MS = 3000;

  function visible() {
    return document.visibilityState !== "hidden";
  }

  function getJSON(url, done) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(done)
      .catch(function () { /* the next poll tries again */ });
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function row(item, fresh) {
    var tr = document.createElement("tr");
    tr.dataset.pk = item.pk;
    if (fresh) { tr.className = "fresh"; }
    var when = document.createElement("td");
    var time = document.createElement("time");
    time.dateTime = item.iso;
    time.textContent = item.received_at;
    when.appendChild(time);
    tr.appendChild(when);
    tr.appendChild(cell(item.source));
    tr.appendChild(cell(item.type));
    var idCell = document.createElement("td");
    var link = document.createElement("a");
    link.href = item.url;
    link.textContent = item.event_id;
    idCell.appendChild(link);
    tr.appendChild(idCell);
    var statusCell = document.createElement("td");
    var badge = document.createElement("span");
    badge.className = "badge badge-" + item.status;
    badge.textContent = item.status_label;
    statusCell.appendChild(badge);
    if (item.duplicates) {
      var repeats = document.createElement("small");
      repeats.className = "repeats";
      repeats.textContent = "+" + item.duplicates + " duplicate" + (item.duplicates > 1 ? "s" : "");
      statusCell.appendChild(document.createTextNode(" "));
      statusCell.appendChild(repeats);
    }
    tr.appendChild(statusCell);
    return tr;
  }

  function liveDeliveries(table) {
    var url = table.dataset.liveUrl;
    var toggle = document.getElementById("live");
    var status = document.getElementById("live-status");
    if (toggle) { toggle.parentElement.hidden = false; }
    function known() {
      var seen = {};
      table.querySelectorAll("tbody tr[data-pk]").forEach(function (tr) {
        seen[tr.dataset.pk] = true;
      });
      return seen;
    }
    function poll() {
      if (!visible() || (toggle && !toggle.checked)) { return; }
      getJSON(url, function (body) {
        var seen = known();
        var tbody = document.createElement("tbody");
        var added = 0;
        body.events.forEach(function (item) {
          var fresh = !seen[item.pk];
          if (fresh) { added += 1; }
          tbody.appendChild(row(item, fresh));
        });
        if (!body.events.length) {
          var empty = document.createElement("tr");
          var td = cell("No delivery matches.");
          td.colSpan = 5;
          empty.appendChild(td);
          tbody.appendChild(empty);
        }
        table.replaceChild(tbody, table.tBodies[0]);
        var now = new Date().toISOString().slice(11, 19);
        status.textContent = (added ? added + " new deliveries. " : "") + "Updated " + now + " UTC.";
      });
    }
    window.setInterval(poll, POLL_MS);
  }

  function watchEvent(box) {
    var url = box.dataset.statusUrl;
    var version = box.dataset.version;
    var status = document.getElementById("watch-status");
    var tries = 0;
    if (box.dataset.pending) {
      status.textContent = "Waiting for handlers; this page refreshes by itself.";
    }
    var timer = window.setInterval(function () {
      tries += 1;
      if (tries > 200) { window.clearInterval(timer); status.textContent = ""; return; }
      getJSON(url, function (body) {
        if (body.version !== version) { window.location.reload(); }
        else if (body.status !== "pending" && tries > 3) {
          window.clearInterval(timer);
          status.textContent = "";
        }
      });
    }, POLL_MS / 2);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.getElementById("deliveries");
    if (table && table.dataset.liveUrl) { liveDeliveries(table); }
    var box = document.getElementById("event");
    if (box && box.dataset.watch) { watchEvent(box); }
  });
})();
