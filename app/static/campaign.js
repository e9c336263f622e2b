// Live counters: poll the stats endpoint until the campaign reaches a final state.
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const url = section.dataset.statsUrl;
  const final = new Set(["completed", "stopped", "failed", "cancelled", "draft"]);
  async function tick() {
    let data;
    try { data = await (await fetch(url, { credentials: "same-origin" })).json(); } catch (e) { return setTimeout(tick, 2000); }
    const counts = data.counts || {};
    for (const cell of section.querySelectorAll("td[id^=count-]")) {
      cell.textContent = counts[cell.id.slice(6)] || 0;
    }
    const bar = document.getElementById("progress-bar");
    bar.max = counts.total || 1; bar.value = (counts.total || 0) - (counts.open || 0);
    const status = document.getElementById("campaign-status");
    status.textContent = data.status; status.className = "status " + data.status;
    if (!final.has(data.status)) setTimeout(tick, 1000);
  }
  tick();
})();
