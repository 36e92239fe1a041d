// restyle-bot's page: pick a picture, run, watch the queue live, compare, download.
"use strict";

const $ = (id) => document.getElementById(id);
const TERMINAL = ["ready", "failed", "cancelled"];
const NO_PICTURE = "Pick or drop a picture first.";

const state = {
  session: null,
  file: null,
  fileUrl: null,
  job: null,
  source: null, // EventSource of the job being watched
  pollTimer: null,
  busy: false,
};

// Helpers ----------------------------------------------------------------------------------

function strengthWord(s) {
  if (s < 0.35) return "subtle";
  if (s < 0.65) return "clear";
  return "heavy";
}

function seconds(s) {
  if (s == null) return "";
  if (s < 1.5) return "a moment";
  if (s < 90) return `about ${Math.round(s)} s`;
  return `about ${Math.round(s / 60)} min`;
}

function megabytes(n) {
  return (n / 1e6).toFixed(1);
}

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch (err) {
    return { ok: false, data: { error: "The bot cannot be reached. Is it still running?" } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = { error: `The bot answered ${response.status} ${response.statusText}.` };
  }
  return { ok: response.ok, status: response.status, data };
}

// Ready-made styles ------------------------------------------------------------------------

function showStyles(styles) {
  const select = $("style");
  for (const style of styles) {
    const option = document.createElement("option");
    option.value = style.name;
    option.textContent = `${style.name} (strength ${style.strength}): ${style.about}`;
    select.append(option);
  }
  select.addEventListener("change", () => {
    const picked = styles.find((s) => s.name === select.value);
    if (picked) {
      $("strength").value = String(picked.strength); // the recipe's own strength, still adjustable
      showStrength();
    }
  });
}

// Account line -----------------------------------------------------------------------------

async function loadSession() {
  const { ok, data } = await api("/api/session");
  if (!ok) {
    showError(data.error);
    return null;
  }
  state.session = data;
  const account = $("account");
  account.replaceChildren();
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = data.tier;
  account.append(badge, `${data.used_today} of ${data.daily_quota} today`);
  $("drop-hint").textContent = `PNG, JPEG or WebP, up to ${data.max_upload_mb} MB`;
  $("engine-note").textContent = data.engine_ready
    ? ""
    : "The model is still loading; jobs wait in the queue until it is ready.";
  return data;
}

// Strength slider --------------------------------------------------------------------------

function showStrength() {
  const value = parseFloat($("strength").value);
  const word = strengthWord(value);
  $("strength-out").textContent = `${value.toFixed(2)} · ${word}`;
  $("strength").setAttribute("aria-valuetext", `${value.toFixed(2)}, ${word}`);
  for (const tick of document.querySelectorAll(".tick")) {
    tick.classList.toggle("on", tick.textContent === word);
  }
}

// Picking a picture ------------------------------------------------------------------------

function pick(file) {
  if (!file) return;
  showError("");
  const limit = state.session ? state.session.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(
      `That picture is ${megabytes(file.size)} MB; the most the bot takes is ${state.session.max_upload_mb} MB.`
    );
    return;
  }
  stopWatching();
  state.job = null;
  state.file = file;
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.fileUrl = URL.createObjectURL(file);
  showPreview(state.fileUrl);
  $("status").hidden = true;
  $("actions").hidden = true;
}

function showPreview(src) {
  const img = $("preview-img");
  img.onload = () => {
    // Shown as large as the compare view will be, so the picture does not jump when it is done.
    if (img.naturalHeight) $("preview-frame").style.setProperty("--ratio-num", String(img.naturalWidth / img.naturalHeight));
  };
  img.src = src;
  $("drop").hidden = true;
  $("compare-wrap").hidden = true;
  $("preview").hidden = false;
  $("change-picture").hidden = false;
}

// Running ----------------------------------------------------------------------------------

function setBusy(busy) {
  state.busy = busy;
  const run = $("run");
  run.disabled = busy;
  run.classList.toggle("busy", busy);
  for (const b of document.querySelectorAll("[data-change]")) b.disabled = busy;
}

function requestId() {
  // getRandomValues works on plain http too (randomUUID needs a secure context).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function run(event) {
  event.preventDefault();
  showError("");
  if (!state.file) {
    showError(NO_PICTURE);
    return;
  }
  const form = new FormData();
  form.append("picture", state.file, state.file.name || "picture");
  form.append("prompt", $("prompt").value);
  form.append("style", $("style").value);
  form.append("strength", $("strength").value);
  form.append("seed", $("seed").value.trim());
  form.append("no", $("negative").value.trim());
  // One id per press of Run: if this post reaches the bot twice, it still queues one job.
  form.append("request_id", requestId());
  setBusy(true);
  const { ok, data } = await api("/api/jobs", { method: "POST", body: form });
  setBusy(false);
  if (!ok) {
    showError(data.error);
    return;
  }
  if (state.fileUrl) showPreview(state.fileUrl);
  watch(data.job);
  loadSession();
}

async function again(change) {
  if (!state.job) return;
  showError("");
  setBusy(true);
  const { ok, data } = await api(`/api/jobs/${state.job.id}/again`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ change }),
  });
  setBusy(false);
  if (!ok) {
    showError(data.error);
    return;
  }
  showPreview(data.job.original_url);
  watch(data.job);
  loadSession();
}

async function cancel() {
  if (!state.job) return;
  const { ok, data } = await api(`/api/jobs/${state.job.id}/cancel`, { method: "POST" });
  if (ok && data.job) render(data.job);
  else if (!ok) showError(data.error);
}

// Watching a job ---------------------------------------------------------------------------

function stopWatching() {
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

function watch(job) {
  stopWatching();
  render(job);
  if (TERMINAL.includes(job.status)) return;
  const source = new EventSource(`/api/jobs/${job.id}/events`);
  state.source = source;
  source.onmessage = (event) => {
    if (state.source !== source) return;
    const update = JSON.parse(event.data);
    render(update);
    if (TERMINAL.includes(update.status)) stopWatching();
  };
  source.onerror = () => {
    // The stream broke (a proxy, a restart): fall back to asking every second.
    if (state.source !== source) return;
    stopWatching();
    poll(job.id);
  };
}

async function poll(jobId) {
  if (!state.job || state.job.id !== jobId) return;
  const { ok, data } = await api(`/api/jobs/${jobId}`);
  if (!state.job || state.job.id !== jobId) return;
  if (ok) render(data);
  if (!ok || !TERMINAL.includes(data.status)) {
    state.pollTimer = setTimeout(() => poll(jobId), 1000);
  }
}

function statusLine(job) {
  switch (job.status) {
    case "queued":
      if (!job.position) return `Next in line · ${seconds(job.eta_s)}`;
      return `Waiting in line: ${job.position} ahead · ${seconds(job.eta_s)}`;
    case "running":
      return job.progress ? `Restyling… ${Math.round(job.progress * 100)}%` : "Restyling…";
    case "finishing":
      return `Done. ${job.tier[0].toUpperCase()}${job.tier.slice(1)} tier results appear in ${seconds(job.eta_s)}`;
    default:
      return "";
  }
}

function render(job) {
  const previous = state.job;
  state.job = job;
  const status = $("status");
  if (job.status === "ready") {
    status.hidden = true;
    if (!previous || previous.id !== job.id || previous.status !== "ready" || $("compare-wrap").hidden) {
      showCompare(job);
    }
    loadSession();
    return;
  }
  $("actions").hidden = true;
  if (job.status === "failed" || job.status === "cancelled") {
    status.hidden = true;
    if (job.status === "failed") showError(job.error || "The picture engine failed on this job; try again.");
    loadSession();
    return;
  }
  status.hidden = false;
  $("status-text").textContent = statusLine(job);
  const bar = $("bar");
  const fill = $("bar-fill");
  let percent = 0;
  if (job.status === "running" && job.progress != null) percent = Math.round(job.progress * 100);
  if (job.status === "finishing") percent = 100;
  bar.classList.toggle("indeterminate", job.status === "queued" || (job.status === "running" && !job.progress));
  fill.style.width = bar.classList.contains("indeterminate") ? "" : `${percent}%`;
  bar.setAttribute("aria-valuenow", String(percent));
  $("cancel").hidden = !(job.status === "queued" || job.status === "running");
}

function showCompare(job) {
  const compare = $("compare");
  const ratio = job.width && job.height ? job.width / job.height : 4 / 3;
  compare.style.setProperty("--ratio", `${job.width} / ${job.height}`);
  compare.style.setProperty("--ratio-num", String(ratio));
  $("compare-before").src = job.original_url;
  $("compare-after").src = job.result_url;
  setCompare(50);
  $("preview").hidden = true;
  $("drop").hidden = true;
  $("compare-wrap").hidden = false;
  $("change-picture").hidden = false;

  const bits = [`seed ${job.seed}`, `strength ${job.strength} (${job.strength_word})`, `${job.steps} steps`];
  if (job.seconds) bits.push(`${job.seconds < 10 ? job.seconds.toFixed(1) : Math.round(job.seconds)} s`);
  $("result-info").textContent = bits.join(" · ");

  $("dl-png").href = job.downloads.png;
  $("dl-webp").href = job.downloads.webp;
  $("dl-jpeg").href = job.downloads.jpeg;
  document.querySelector('[data-change="subtler"]').disabled = job.strength <= 0.05;
  document.querySelector('[data-change="stronger"]').disabled = job.strength >= 1.0;
  $("actions").hidden = false;
}

function setCompare(value) {
  const range = $("compare-range");
  range.value = String(value);
  $("compare").style.setProperty("--pos", `${value}%`);
  range.setAttribute("aria-valuetext", `${100 - value}% restyled`);
}

// Wiring -----------------------------------------------------------------------------------

function wireDrop() {
  const stage = $("stage");
  let depth = 0;
  stage.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth += 1;
    stage.classList.add("dragging");
    $("drop").classList.add("dragging");
  });
  stage.addEventListener("dragover", (e) => e.preventDefault());
  stage.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) {
      stage.classList.remove("dragging");
      $("drop").classList.remove("dragging");
    }
  });
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    stage.classList.remove("dragging");
    $("drop").classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) pick(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) pick(item.getAsFile());
  });
}

function init() {
  $("picture").addEventListener("change", (e) => {
    pick(e.target.files[0]);
    e.target.value = ""; // picking the same file again still fires
  });
  $("change-picture").addEventListener("click", () => $("picture").click());
  $("form").addEventListener("submit", run);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      $("form").requestSubmit();
    }
  });
  $("strength").addEventListener("input", showStrength);
  for (const tick of document.querySelectorAll(".tick")) {
    tick.addEventListener("click", () => {
      $("strength").value = tick.dataset.strength;
      showStrength();
    });
  }
  $("compare-range").addEventListener("input", (e) => setCompare(Number(e.target.value)));
  for (const button of document.querySelectorAll("[data-change]")) {
    button.addEventListener("click", () => again(button.dataset.change));
  }
  $("cancel").addEventListener("click", cancel);
  wireDrop();
  showStrength();

  loadSession().then(async (session) => {
    if (!session) return;
    $("strength").value = String(session.default_strength);
    showStrength();
    showStyles(session.styles || []);
    // A reload while a job waits picks it up again.
    const last = session.active_jobs[session.active_jobs.length - 1];
    if (last && !state.job) {
      const { ok, data } = await api(`/api/jobs/${last}`);
      if (ok && !state.job) {
        showPreview(data.original_url);
        watch(data);
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", init);
