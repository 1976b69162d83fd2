// The live check-in screen: replace the figures whenever the server streams new ones.
"use strict";
(function () {
  const root = document.getElementById("live");
  const figures = document.getElementById("figures");
  const state = document.getElementById("stream-state");
  const source = new EventSource("/live/sessions/" + root.dataset.session + "/events");
  source.addEventListener("figures", function (event) {
    const data = JSON.parse(event.data);
    figures.innerHTML = data.html;
    root.dataset.arrived = String(data.arrived);
    root.dataset.stream = "open";
    root.dataset.updatedAt = String(Date.now());
    state.textContent = "实时更新中";
  });
  source.onerror = function () {
    root.dataset.stream = "reconnecting";
    state.textContent = "连接中断，正在重连…";
  };
})();
