// Import progress: poll the import's JSON until it is done or failed, filling the bar and counts.
(function () {
  const section = document.getElementById("import-progress");
  if (!section) return;
  const url = section.dataset.url;
  const bar = document.getElementById("import-bar");
  const phase = document.getElementById("import-phase");
  const status = document.getElementById("import-status");
  const keys = ["inserted", "updated", "skipped", "rejected", "duplicates"];

  function show(data) {
    status.textContent = data.status;
    status.className = "status " + data.status;
    document.getElementById("import-rows").textContent = data.rows_read;
    if (data.phase === "merging") {
      bar.removeAttribute("value");  // indeterminate: one transaction, no steps to count
      phase.textContent = "Merging into the contacts…";
    } else if (data.status === "running") {
      bar.value = data.progress;
      phase.textContent = "Reading the file… " + Math.round(data.progress * 100) + " %";
    }
    const error = document.getElementById("import-error");
    error.hidden = !data.error;
    error.textContent = data.error || "";
    const requeue = document.getElementById("requeue-form");
    if (requeue && (data.status === "done" || data.status === "failed")) requeue.hidden = true;
    if (data.status === "done") {
      bar.value = 1;
      phase.textContent = "Done.";
      for (const k of keys) document.getElementById("count-" + k).textContent = data[k];
      document.getElementById("report-text").textContent =
        `${data.inserted} new, ${data.updated} updated, ${data.skipped} skipped, ${data.rejected} rejected, ` +
        `${data.duplicates} duplicates in the file.`;
      document.getElementById("rejects-link").hidden = !data.rejected;
      document.getElementById("import-report").hidden = false;
    }
    if (data.status === "failed") {
      bar.value = 0;
      phase.textContent = "The import failed; the contacts are as they were.";
      document.getElementById("import-retry").hidden = false;
    }
  }

  async function tick() {
    let data;
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      data = await r.json();
    } catch (e) {
      return setTimeout(tick, 2000);
    }
    show(data);
    if (data.status === "queued" || data.status === "running") setTimeout(tick, 500);
  }
  if (section.dataset.status !== "done") tick();
})();
