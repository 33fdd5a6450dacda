// Jobs: the list (polled), and one job live: loss chart from Server-Sent Events, sample grids with a step slider,
// stop / resume / delete, the log tail.
import { api, busy, el, fmt, showError } from "./api.js";
import { LineChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["queued", "running", "stopping"]);
let sampleTimer = null;
let chart = null, metricsChart = null, source = null, listTimer = null, logTimer = null, current = null, samples = [];

export function init() {
  chart = new LineChart($("job-chart"), $("job-legend"));
  metricsChart = new LineChart($("job-metrics-chart"), $("job-metrics-legend"), "no metric evaluations yet");
  $("job-stop").addEventListener("click", (e) => act(e.target, "stop"));
  $("job-resume").addEventListener("click", (e) => act(e.target, "resume"));
  $("job-delete").addEventListener("click", onDelete);
  $("job-sample-step").addEventListener("input", showSample);
}

export async function show(arg) {
  await refreshList();
  clearInterval(listTimer);
  listTimer = setInterval(() => refreshList().catch(() => {}), 3000);
  const id = Number(arg) || current;
  if (id) await open(id);
}

export function hide() {
  clearInterval(listTimer); clearInterval(logTimer);
  source?.close(); source = null;
}

async function refreshList() {
  const jobs = await api("/api/jobs");
  $("job-table").tBodies[0].replaceChildren(...jobs.slice().reverse().map((j) => {
    const row = el("tr", { tabindex: 0, "aria-selected": j.id === current ? "true" : "false" },
      el("td", {}, j.id), el("td", {}, j.name), el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)),
      el("td", {}, el("progress", { max: j.target_kimg, value: j.kimg || 0 }), ` ${fmt(j.kimg)} / ${j.target_kimg} kimg`),
      el("td", {}, j.preset), el("td", {}, j.dataset));
    const go = () => { location.hash = `#jobs/${j.id}`; };
    row.addEventListener("click", go);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    return row;
  }));
  if (current) {
    const job = jobs.find((j) => j.id === current);
    if (job) render(job);
  }
}

async function open(id) {
  if (id !== current) {
    source?.close(); source = null;
    chart.clear(); clearMetrics(); samples = [];
    current = id;
  }
  const job = await api(`/api/jobs/${id}`);
  $("job-detail").hidden = false;
  render(job);
  if (!source) listen(id);
  await refreshLog();
  clearInterval(logTimer);
  logTimer = setInterval(() => refreshLog().catch(() => {}), 3000);
}

function render(job) {
  $("job-title").textContent = `#${job.id} ${job.name}`;
  const badge = $("job-status");
  badge.textContent = job.status; badge.className = `badge ${job.status}`;
  $("job-stop").disabled = !ACTIVE.has(job.status) || job.status === "stopping";
  $("job-resume").disabled = !job.resumable;
  $("job-delete").disabled = ACTIVE.has(job.status);
  $("job-error").hidden = !job.error; $("job-error").textContent = job.error || "";
  const s = job.last_stats || {};
  $("job-progress").textContent = `${fmt(job.kimg)} / ${job.target_kimg} kimg, step ${job.step ?? "—"}` +
    (s["timing/img_per_s"] ? `, ${fmt(s["timing/img_per_s"])} img/s` : "") +
    (job.run_folder ? ` · run folder ${job.run_folder}` : "");
}

function clearMetrics() {
  metricsChart.clear();
  $("job-metrics-figure").hidden = true;
}

function listen(id) {
  // The stream replays everything from the start, then follows; it ends when the job is no longer active.
  source = new EventSource(`/api/jobs/${id}/events`);
  source.addEventListener("stats", (e) => { chart.add(JSON.parse(e.data)); chart.draw(); });
  source.addEventListener("reset", () => chart.clear());
  source.addEventListener("metric", (e) => {  // FID/KID/... records from `ganforge eval snapshot` on this run
    $("job-metrics-figure").hidden = false;
    metricsChart.addMetrics(JSON.parse(e.data)); metricsChart.draw();
  });
  source.addEventListener("sample", (e) => {
    samples.push(JSON.parse(e.data));
    const slider = $("job-sample-step");
    const atEnd = Number(slider.value) >= samples.length - 2;
    slider.max = samples.length - 1;
    if (atEnd) {  // debounced: a replay delivers many samples at once, and only the last one is shown
      slider.value = samples.length - 1;
      clearTimeout(sampleTimer); sampleTimer = setTimeout(showSample, 100);
    }
  });
  source.addEventListener("status", (e) => {
    const job = JSON.parse(e.data);
    if (job.id) { render(job); refreshList().catch(() => {}); }
  });
  source.addEventListener("end", () => { source.close(); });
  source.onerror = () => { /* EventSource reconnects by itself, with Last-Event-ID */ };
}

let sampleWaiting = false;

function showSample() {
  const s = samples[Number($("job-sample-step").value)];
  if (!s) return;
  const img = $("job-sample");
  $("job-sample-name").textContent = s.reals ? "real images" : `step ${s.step}`;
  if (img.getAttribute("src") === s.url) return;
  if (img.getAttribute("src") && !img.complete) {
    // A grid is still loading: show the newest one after it, rather than aborting it (samples can arrive faster
    // than a loaded machine serves them).
    if (!sampleWaiting) {
      sampleWaiting = true;
      const next = () => { sampleWaiting = false; showSample(); };
      img.addEventListener("load", next, { once: true });
      img.addEventListener("error", next, { once: true });
    }
    return;
  }
  img.src = s.url;
}

async function refreshLog() {
  if (!current) return;
  const log = await api(`/api/jobs/${current}/log?lines=80`);
  const pre = $("job-log");
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = [...log.log, "", "— worker output —", ...log.worker].join("\n");
  if (stick) pre.scrollTop = pre.scrollHeight;
}

async function act(button, what) {
  await busy(button, async () => {
    const body = what === "resume" && $("job-kimg").value ? { kimg: Number($("job-kimg").value) } : undefined;
    const job = await api(`/api/jobs/${current}/${what}`, { method: "POST", body });
    render(job);
    if (what === "resume") {
      source?.close(); source = null; chart.clear(); clearMetrics(); samples = []; listen(current);
    }
    await refreshList();
  });
}

async function onDelete() {
  if (!confirm(`Delete job ${current} with its run folder, snapshots and logs?`)) return;
  await busy($("job-delete"), async () => {
    await api(`/api/jobs/${current}`, { method: "DELETE" });
    source?.close(); source = null; current = null;
    $("job-detail").hidden = true;
    location.hash = "#jobs";
    await refreshList();
  });
}

export { showError };
