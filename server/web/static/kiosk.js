// The kiosk screen: show each tap the server streams, then clear after a while.
// No framework: EventSource in, innerHTML (rendered and escaped by the server) out.
"use strict";
(function () {
  const root = document.getElementById("kiosk");
  const idle = document.getElementById("idle");
  const shown = document.getElementById("shown");
  const state = document.getElementById("stream-state");
  const clearMs = Number(root.dataset.clearMs) || 10000;
  let timer = null;

  function clear() {
    timer = null;
    shown.hidden = true;
    shown.innerHTML = "";
    idle.hidden = false;
    root.dataset.state = "idle";
    delete root.dataset.eventId;
  }

  function show(tap) {
    if (timer !== null) clearTimeout(timer);
    shown.innerHTML = tap.html;
    idle.hidden = true;
    shown.hidden = false;
    root.dataset.state = tap.kind;
    root.dataset.eventId = tap.event_id;
    // Wall-clock time the tap became visible, for the latency benchmark.
    root.dataset.shownAt = String(Date.now());
    timer = setTimeout(clear, clearMs);
  }

  const source = new EventSource("/kiosk/events");
  source.addEventListener("ready", function () {
    root.dataset.stream = "open";
    state.textContent = "已连接";
  });
  source.addEventListener("tap", function (event) {
    show(JSON.parse(event.data));
  });
  source.onerror = function () {
    root.dataset.stream = "reconnecting";
    state.textContent = "连接中断，正在重连…";
  };
})();
