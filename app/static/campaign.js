// Live counters: poll the stats endpoint until the campaign reaches a final state.
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const url = section.dataset.statsUrl;
  const final = new Set(["completed", "stopped", "failed", "cancelled", "draft"]);
  const rendered = document.getElementById("campaign-status").textContent.trim();

  // The deliveries table is drawn with the page: once the campaign has finished while being
  // watched, fetch the page again and swap the table in, so it agrees with the counters.
  async function refreshDeliveries() {
    try {
      const html = await (await fetch(location.href, { credentials: "same-origin" })).text();
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#deliveries tbody");
      const current = document.querySelector("#deliveries tbody");
      if (fresh && current) current.replaceWith(fresh);
    } catch (e) { /* the counters above stay right; a reload shows the table */ }
  }

  async function tick() {
    let res, data;
    try { res = await fetch(url, { credentials: "same-origin" }); data = await res.json(); } catch (e) { return setTimeout(tick, 2000); }
    if (res.status === 401 || res.status === 404) return;  // logged out or gone: polling cannot help
    const counts = data.counts || {};
    for (const cell of section.querySelectorAll("td[id^=count-]")) {
      cell.textContent = counts[cell.id.slice(6)] || 0;
    }
    const bar = document.getElementById("progress-bar");
    bar.max = counts.total || 1; bar.value = (counts.total || 0) - (counts.open || 0);
    const status = document.getElementById("campaign-status");
    status.textContent = data.status; status.className = "status " + data.status;
    if (!final.has(data.status)) return setTimeout(tick, 1000);
    if (data.status !== rendered) refreshDeliveries();
  }
  tick();
})();
