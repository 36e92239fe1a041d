// restyle-bot's page: pick a picture, run, watch the queue live, compare, download.
"use strict";

const $ = (id) => document.getElementById(id);
const TERMINAL = ["ready", "failed", "cancelled"];
// What the page says before its words have come from the bot (then they cannot come from it).
const UNREACHABLE = "The bot cannot be reached. Is it still running?";
const BAD_ANSWER = "The bot answered {status} {reason}.";

const state = {
  texts: null, // the page's words in the browser's language, from /api/texts (page_texts.py)
  lang: "en",
  session: null,
  file: null,
  fileUrl: null,
  job: null,
  sweep: null, // the strength sweep shown or watched (then job is null)
  source: null, // EventSource of the job or sweep being watched
  watching: null, // the id of what is being followed (a job's, or a sweep's lead's)
  pollTimer: null,
  busy: false,
};

// The page's words ---------------------------------------------------------------------------

// Fills {name} (or {name:g}, a Python format spec: the page writes the plain number) from values.
function fill(text, values) {
  return text.replace(/\{(\w+)(?::[^}]*)?\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

// The text with this id in the member's language; the id itself if the table never came.
function t(id, values = {}) {
  const text = state.texts && typeof state.texts[id] === "string" ? state.texts[id] : id;
  return fill(text, values);
}

// A text whose words depend on `count`: its form for count's plural category in this language.
function tn(id, count, values = {}) {
  const forms = state.texts && state.texts[id];
  if (!forms || typeof forms !== "object") return id;
  const category = new Intl.PluralRules(state.lang).select(count);
  return fill(forms[category] || forms.other, { count, ...values });
}

async function loadTexts() {
  const { ok, data } = await api("/api/texts");
  if (!ok) {
    showError(data.error); // (a refusal, such as a missing token, comes in the member's language)
    return false;
  }
  state.texts = data.texts;
  state.lang = data.lang;
  document.documentElement.lang = data.lang;
  // The markup's English is the fallback; each marked element (and attribute) says it here.
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const [attr, key] of [["alt", "tAlt"], ["title", "tTitle"], ["placeholder", "tPlaceholder"], ["aria-label", "tAriaLabel"]]) {
    for (const el of document.querySelectorAll(`[data-t-${attr}]`)) el.setAttribute(attr, t(el.dataset[key]));
  }
  return true;
}

// Helpers ----------------------------------------------------------------------------------

function strengthLevel(s) {
  if (s < 0.35) return "subtle";
  if (s < 0.65) return "clear";
  return "heavy";
}

function strengthWord(s) {
  return t(`word_${strengthLevel(s)}`);
}

// What a strength does, as the strength help says it (under each picture of a sweep).
function strengthEffect(s) {
  return t(`effect_${strengthLevel(s)}`);
}

function seconds(s) {
  if (s == null) return "";
  if (s < 1.5) return t("a_moment");
  if (s < 90) return t("about", { duration: t("seconds", { seconds: Math.round(s) }) });
  return t("about", { duration: t("minutes", { minutes: Math.round(s / 60) }) });
}

function capitalised(word) {
  return word ? word[0].toUpperCase() + word.slice(1) : word;
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
    return { ok: false, data: { error: state.texts ? t("unreachable") : UNREACHABLE } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    const values = { status: response.status, reason: response.statusText };
    data = { error: state.texts ? t("bad_answer", values) : fill(BAD_ANSWER, values) };
  }
  return { ok: response.ok, status: response.status, data };
}

// Ready-made styles ------------------------------------------------------------------------

function showStyles(styles) {
  const select = $("style");
  for (const style of styles) {
    const option = document.createElement("option");
    option.value = style.name;
    option.textContent = t("style_option", { name: style.name, strength: style.strength, about: style.about });
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
  account.append(badge, t("used_today", { used: data.used_today, quota: data.daily_quota }));
  $("drop-hint").textContent = t("drop_hint_limit", { mb: data.max_upload_mb });
  $("engine-note").textContent = data.engine_ready ? "" : t("engine_loading");
  showSweepChoice(data);
  return data;
}

// The sweep box and button: greyed, with the reason, where the tier has no sweeps.
function showSweepChoice(session) {
  const strengths = session.sweep_strengths || [];
  const box = $("sweep");
  $("sweep-label").textContent = t("sweep_box", { count: strengths.length, strengths: strengths.join(" · ") });
  $("try-sweep").textContent = t("try_sweep", { count: strengths.length });
  $("try-sweep").title = session.sweep
    ? t("try_sweep_title", { strengths: strengths.join(" · ") })
    : t("sweep_not_in_tier", { tier: session.tier }); // greyed: the reason on hover
  box.disabled = !session.sweep;
  if (!session.sweep) box.checked = false;
  $("sweep-help").textContent = session.sweep ? t("sweep_help") : t("sweep_not_in_tier", { tier: session.tier });
  $("try-sweep").disabled = !session.sweep || state.busy;
  showStrength();
}

// Strength slider --------------------------------------------------------------------------

function showStrength() {
  const value = parseFloat($("strength").value);
  const word = strengthWord(value);
  // A sweep tries its own strengths: the slider is not one of them.
  const sweeping = $("sweep").checked && !$("sweep").disabled;
  $("strength").disabled = sweeping;
  for (const tick of document.querySelectorAll(".tick")) tick.disabled = sweeping;
  if (sweeping) {
    $("strength-out").textContent = (state.session ? state.session.sweep_strengths : []).join(" · ");
    return;
  }
  $("strength-out").textContent = `${value.toFixed(2)} · ${word}`;
  $("strength").setAttribute("aria-valuetext", `${value.toFixed(2)}, ${word}`);
  for (const tick of document.querySelectorAll(".tick")) {
    tick.classList.toggle("on", tick.dataset.word === strengthLevel(value));
  }
}

// Picking a picture ------------------------------------------------------------------------

function pick(file) {
  if (!file) return;
  showError("");
  const limit = state.session ? state.session.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(t("too_big", { size: megabytes(file.size), mb: state.session.max_upload_mb }));
    return;
  }
  stopWatching();
  state.job = null;
  state.sweep = null;
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
  $("sweep-view").hidden = true;
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
  $("try-sweep").disabled = busy || !(state.session && state.session.sweep);
  for (const b of document.querySelectorAll("[data-keep]")) b.disabled = busy;
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
    showError(t("no_picture"));
    return;
  }
  const form = new FormData();
  form.append("picture", state.file, state.file.name || "picture");
  form.append("prompt", $("prompt").value);
  form.append("style", $("style").value);
  form.append("strength", $("strength").value);
  if ($("sweep").checked && !$("sweep").disabled) form.append("sweep", "1");
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
  if (data.sweep) watchSweep(data.sweep);
  else watch(data.job);
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

// "Try 3 strengths" under a result: its picture, prompt and seed at each of the sweep's strengths.
async function trySweep() {
  if (!state.job) return;
  showError("");
  setBusy(true);
  const { ok, data } = await api(`/api/jobs/${state.job.id}/sweep`, { method: "POST" });
  setBusy(false);
  if (!ok) {
    showError(data.error);
    return;
  }
  showPreview(data.sweep.original_url);
  watchSweep(data.sweep);
  loadSession();
}

// "Keep 0.5" under a sweep: that result becomes the page's result, with its own buttons.
async function keep(jobId) {
  showError("");
  setBusy(true);
  const { ok, data } = await api(`/api/jobs/${jobId}/keep`, { method: "POST" });
  setBusy(false);
  if (!ok) {
    showError(data.error);
    return;
  }
  stopWatching();
  state.sweep = null;
  state.job = null;
  render(data.job);
}

async function cancel() {
  // Cancelling any job of a sweep cancels the whole sweep; its lead stands for it.
  const id = state.sweep ? state.sweep.id : state.job && state.job.id;
  if (!id) return;
  const { ok, data } = await api(`/api/jobs/${id}/cancel`, { method: "POST" });
  if (!ok) showError(data.error);
  else if (data.sweep) renderSweep(data.sweep);
  else if (data.job) render(data.job);
}

// Watching a job ---------------------------------------------------------------------------

function stopWatching() {
  if (state.source) state.source.close();
  state.source = null;
  state.watching = null;
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

// Follows a job's or a sweep's state at `path` (its live stream at path/events) until it ends.
function follow(path, id, show) {
  state.watching = id;
  const source = new EventSource(`${path}/events`);
  state.source = source;
  source.onmessage = (event) => {
    if (state.source !== source) return;
    const update = JSON.parse(event.data);
    show(update);
    if (TERMINAL.includes(update.status)) stopWatching();
  };
  source.onerror = () => {
    // The stream broke (a proxy, a restart): fall back to asking every second.
    if (state.source !== source) return;
    stopWatching();
    state.watching = id;
    poll(path, id, show);
  };
}

async function poll(path, id, show) {
  if (state.watching !== id) return;
  const { ok, data } = await api(path);
  if (state.watching !== id) return;
  if (ok) show(data);
  if (!ok || !TERMINAL.includes(data.status)) {
    state.pollTimer = setTimeout(() => poll(path, id, show), 1000);
  }
}

function watch(job) {
  stopWatching();
  state.sweep = null;
  render(job);
  if (!TERMINAL.includes(job.status)) follow(`/api/jobs/${job.id}`, job.id, render);
}

function watchSweep(sweep) {
  stopWatching();
  state.job = null;
  renderSweep(sweep);
  if (!TERMINAL.includes(sweep.status)) follow(`/api/sweeps/${sweep.id}`, sweep.id, renderSweep);
}

function statusLine(job) {
  switch (job.status) {
    case "queued":
      if (!job.position) return t("next_in_line", { eta: seconds(job.eta_s) });
      return t("waiting", { ahead: job.position, eta: seconds(job.eta_s) });
    case "running":
      return job.progress ? t("restyling_percent", { percent: Math.round(job.progress * 100) }) : t("restyling");
    case "finishing":
      return t("held_back", { tier: capitalised(job.tier), eta: seconds(job.eta_s) });
    default:
      return "";
  }
}

function sweepLine(sweep) {
  const what = t("trying", { count: sweep.size });
  switch (sweep.status) {
    case "queued":
      if (!sweep.position) return t("sweep_next_in_line", { what, eta: seconds(sweep.eta_s) });
      return t("sweep_waiting", { what, ahead: sweep.position, eta: seconds(sweep.eta_s) });
    case "running": {
      const done = what + t("trying_done", { ended: sweep.ended, count: sweep.size });
      if (sweep.running_strength == null) return done;
      return t("sweep_restyling", { what: done, strength: sweep.running_strength });
    }
    case "finishing":
      return t("sweep_held_back", { count: sweep.size, tier: capitalised(sweep.tier), eta: seconds(sweep.eta_s) });
    default:
      return "";
  }
}

// The overlay on the picture while a job or a sweep waits or runs.
function showStatus(text, status, progress) {
  $("status").hidden = false;
  $("status-text").textContent = text;
  const bar = $("bar");
  const fill = $("bar-fill");
  let percent = 0;
  if (status === "running" && progress != null) percent = Math.round(progress * 100);
  if (status === "finishing") percent = 100;
  bar.classList.toggle("indeterminate", status === "queued" || (status === "running" && !progress));
  fill.style.width = bar.classList.contains("indeterminate") ? "" : `${percent}%`;
  bar.setAttribute("aria-valuenow", String(percent));
  $("cancel").hidden = !(status === "queued" || status === "running");
}

function renderSweep(sweep) {
  const previous = state.sweep;
  state.sweep = sweep;
  state.job = null;
  $("actions").hidden = true;
  if (sweep.status === "ready") {
    $("status").hidden = true;
    if (!previous || previous.id !== sweep.id || previous.status !== "ready" || $("sweep-view").hidden) {
      showSweep(sweep);
    }
    loadSession();
    return;
  }
  if (sweep.status === "failed" || sweep.status === "cancelled") {
    $("status").hidden = true;
    if (sweep.status === "failed") showError(sweep.error || t("sweep_failed"));
    loadSession();
    return;
  }
  showStatus(sweepLine(sweep), sweep.status, sweep.progress);
}

// A ready sweep: its pictures side by side, each with its strength, what it does and Keep.
function showSweep(sweep) {
  const grid = $("sweep-grid");
  grid.replaceChildren();
  if (sweep.width && sweep.height) grid.style.setProperty("--ratio", `${sweep.width} / ${sweep.height}`);
  for (const job of sweep.jobs) {
    const item = document.createElement("figure");
    item.className = "sweep-item";
    item.dataset.strength = String(job.strength);
    item.dataset.status = job.status;
    const pic = document.createElement("div");
    pic.className = "sweep-pic";
    if (job.status === "ready") {
      const img = document.createElement("img");
      img.src = job.result_url;
      img.alt = t("sweep_alt", { strength: job.strength });
      pic.append(img);
    } else {
      pic.classList.add("missing");
      const why = document.createElement("p");
      if (job.status === "cancelled") why.textContent = t("sweep_cancelled");
      else why.textContent = job.error ? t("sweep_failed_why", { error: job.error }) : t("sweep_failed_one");
      pic.append(why);
    }
    const caption = document.createElement("figcaption");
    const number = document.createElement("span");
    number.className = "sweep-strength";
    number.textContent = String(job.strength);
    const effect = document.createElement("span");
    effect.className = "sweep-effect";
    effect.textContent = strengthEffect(job.strength);
    caption.append(number, effect);
    item.append(pic, caption);
    if (job.status === "ready") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "keep";
      button.dataset.keep = job.id;
      button.textContent = t("keep", { strength: job.strength });
      button.addEventListener("click", () => keep(job.id));
      item.append(button);
    }
    grid.append(item);
  }
  const zip = $("sweep-zip");
  zip.hidden = !sweep.files_url;
  if (sweep.files_url) zip.href = sweep.files_url; // the address the API gives, never built here
  $("sweep-title").textContent = t("sweep_title", { count: sweep.size });
  $("sweep-info").textContent = `${t("sweep_seed", { seed: sweep.seed })} · ${t("sweep_advice")}`;
  $("preview").hidden = true;
  $("drop").hidden = true;
  $("compare-wrap").hidden = true;
  $("sweep-view").hidden = false;
  $("change-picture").hidden = false;
}

function render(job) {
  const previous = state.job;
  state.job = job;
  state.sweep = null;
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
    if (job.status === "failed") showError(job.error || t("job_failed"));
    loadSession();
    return;
  }
  showStatus(statusLine(job), job.status, job.progress);
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
  $("sweep-view").hidden = true;
  $("compare-wrap").hidden = false;
  $("change-picture").hidden = false;

  const bits = [tn("result_facts", job.steps, { strength: job.strength, word: strengthWord(job.strength), seed: job.seed })];
  if (job.seconds) bits.push(t("seconds", { seconds: job.seconds < 10 ? job.seconds.toFixed(1) : Math.round(job.seconds) }));
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
  range.setAttribute("aria-valuetext", t("compare_value", { percent: 100 - value }));
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

async function init() {
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
  $("try-sweep").addEventListener("click", trySweep);
  $("sweep").addEventListener("change", showStrength);
  wireDrop();
  // The page's words first: what follows builds its sentences from them.
  if (!(await loadTexts())) return;
  showStrength();

  loadSession().then(async (session) => {
    if (!session) return;
    $("strength").value = String(session.default_strength);
    showStrength();
    showStyles(session.styles || []);
    // A reload while a job waits picks it up again.
    const last = session.active_jobs[session.active_jobs.length - 1];
    if (last && !state.job && !state.sweep) {
      const { ok, data } = await api(`/api/jobs/${last}`);
      if (!ok || state.job || state.sweep) return;
      if (data.sweep_id) {
        // One of a sweep's jobs: follow the whole sweep, as before the reload.
        const answer = await api(`/api/sweeps/${data.sweep_id}`);
        if (!answer.ok || state.job || state.sweep) return;
        showPreview(answer.data.original_url);
        watchSweep(answer.data);
      } else {
        showPreview(data.original_url);
        watch(data);
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", init);
