// Playground: generate (seeds, truncation, class, interpolation, style mixing), restore (upscale against bicubic,
// denoise against the input) with a before/after slider, inpaint (inpaint.js) and translate / colorize
// (translate.js). Only the landed pipelines have a tab.
import { api, apiImage, busy, el, showError } from "./api.js";
import * as inpaint from "./inpaint.js";
import * as translate from "./translate.js";

const $ = (id) => document.getElementById(id);
const TABS = ["generate", "restore", "inpaint", "translate"];
const RESTORE_COMMANDS = ["upscale", "denoise", "derain"];  // the shipped models the restore tab lists
let models = { jobs: [], shipped: [] };
let currentTab = "generate";

export function init() {
  for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  $("tab-generate").parentElement.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = TABS[(TABS.indexOf(currentTab) + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
      selectTab(next); $(`tab-${next}`).focus();
    }
  });
  inpaint.init(() => !$("page-play").hidden && currentTab === "inpaint");
  translate.init();
  $("inpaint-form").addEventListener("submit", (e) => e.preventDefault());
  $("gen-psi").addEventListener("input", () => { $("gen-psi-out").textContent = Number($("gen-psi").value).toFixed(2); });
  $("gen-model").addEventListener("change", fitGenerator);
  $("gen-form").addEventListener("submit", (e) => { e.preventDefault(); generate(e.submitter, {}); });
  $("interp-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate(e.submitter, { interpolate: { seed_a: Number($("interp-a").value), seed_b: Number($("interp-b").value),
                                           frames: Number($("interp-frames").value) } });
  });
  $("mix-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const seeds = (id) => $(id).value.split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n));
    generate(e.submitter, { mix: { rows: seeds("mix-rows"), cols: seeds("mix-cols"), styles: $("mix-styles").value } });
  });
  $("restore-form").addEventListener("submit", restore);
  $("compare-before").addEventListener("load", fitCompare);
  window.addEventListener("resize", fitCompare);
  $("compare-slider").addEventListener("input", () => {
    const split = `${$("compare-slider").value}%`;
    $("compare-top").style.clipPath = `inset(0 0 0 ${split})`;
    $("compare-top").style.setProperty("--split", split);
  });
}

function selectTab(tab) {
  currentTab = tab;
  for (const t of TABS) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === tab));
    $(`tab-${t}`).tabIndex = t === tab ? 0 : -1;
    $(`play-${t}`).hidden = t !== tab;
  }
}

export async function show(arg) {
  models = await api("/api/models");
  const gens = models.jobs.filter((j) => j.latest.pipeline === "generate");
  const rests = models.jobs.filter((j) => j.latest.pipeline === "restore");
  const options = (jobs) => jobs.map((j) => el("optgroup", { label: `#${j.job_id} ${j.job_name}` },
    j.snapshots.map((s) => new Option(`#${j.job_id} ${j.job_name} · ${s.name} (${Number(s.kimg.toPrecision(3))} kimg)`,
                                      `${j.job_id}:${s.name}`))));
  $("gen-model").replaceChildren(...(gens.length ? options(gens) : [new Option("no generator yet: train a GAN job", "")]));
  const shipped = models.shipped.filter((s) => s.installed && RESTORE_COMMANDS.includes(s.command));
  $("restore-model").replaceChildren(
    ...(shipped.length ? [el("optgroup", { label: "shipped" }, shipped.map((s) =>
      new Option(`${s.name} (${s.command}, ×${s.scale})`, `shipped:${s.name}`)))] : []),
    ...options(rests));
  if (!$("restore-model").options.length) $("restore-model").append(new Option("no restoration model installed or trained", ""));
  const [tab, job] = (arg || "").split(":");
  if (TABS.includes(tab)) selectTab(tab);
  inpaint.setModels(models, tab === "inpaint" ? job : null);
  await inpaint.setDatasets();
  translate.setModels(models, tab === "translate" ? job : null);
  if (job && (tab === "restore" || tab === "generate" || !tab)) {
    const sel = tab === "restore" ? $("restore-model") : $("gen-model");
    sel.value = `${job}:latest`;
  }
  fitGenerator();
}

function chosenSnapshot() {
  const [jobId, name] = $("gen-model").value.split(":");
  const job = models.jobs.find((j) => String(j.job_id) === jobId);
  return { job, snap: job?.snapshots.find((s) => s.name === name) };
}

function fitGenerator() {
  const { snap } = chosenSnapshot();
  const style = snap?.arch === "stylegan2";
  $("gen-psi").disabled = !style;
  if (!style) { $("gen-psi").value = 1; $("gen-psi-out").textContent = "1.00"; }
  $("mix-form").querySelector("button").disabled = !style;
  const names = snap?.class_names || [];
  $("gen-class").replaceChildren(...(names.length ? names.map((n, i) => new Option(`${i}: ${n}`, i))
                                                  : [new Option("— (unconditional)", "")]));
}

async function generate(button, extra) {
  const [jobId, snapshot] = $("gen-model").value.split(":");
  if (!jobId) { showError("no generator to use: train a GAN job first (Train page)"); return; }
  $("gen-busy").textContent = "generating…";
  await busy(button, async () => {
    try {
      const cls = $("gen-class").value;
      const { url } = await apiImage("/api/infer/generate", { body: {
        job_id: Number(jobId), snapshot, seeds: $("gen-seeds").value, truncation: Number($("gen-psi").value),
        class_index: cls === "" ? null : Number(cls), ...extra } });
      const img = $("gen-result");
      img.src = url; img.hidden = false;
    } finally { $("gen-busy").textContent = ""; }
  });
}

/** Show the comparison as large as the panel and 70 % of the window allow (small results are scaled up). */
function fitCompare() {
  const img = $("compare-before");
  if (!img.naturalWidth) return;
  const maxW = Math.min($("play-restore").clientWidth - 32, 1024), maxH = window.innerHeight * 0.7;
  const s = Math.min(maxW / img.naturalWidth, maxH / img.naturalHeight);
  img.style.width = `${Math.round(img.naturalWidth * s)}px`;
  $("compare").style.width = img.style.width;  // the slider spans the image
}

async function restore(e) {
  e.preventDefault();
  const file = $("restore-image").files[0];
  const choice = $("restore-model").value;
  if (!choice) { showError("no restoration model: train a restore job or install the shipped models"); return; }
  const form = () => {
    const f = new FormData();
    f.append("image", file, file.name);
    const [kind, name] = choice.split(":");  // "shipped:<model>" or "<job id>:<snapshot>"
    if (kind === "shipped") f.append("model", name);
    else { f.append("job_id", kind); f.append("snapshot", name); }
    if ($("restore-sigma").value !== "") f.append("sigma", $("restore-sigma").value);
    return f;
  };
  $("restore-busy").textContent = "restoring (large images take a while: they are processed in tiles)…";
  await busy(e.submitter, async () => {
    try {
      const after = await apiImage("/api/infer/restore", { form: form() });
      const scale = Number(after.headers.get("X-Scale") || 1);
      let before;
      if (scale > 1) {
        const f = form(); f.append("method", "bicubic");
        before = (await apiImage("/api/infer/restore", { form: f })).url;
        $("compare-left").textContent = `← bicubic ×${scale}`;
      } else {
        before = URL.createObjectURL(file);
        $("compare-left").textContent = "← input";
      }
      $("compare-before").src = before;
      $("compare-after").src = after.url;
      $("compare").hidden = false;
    } finally { $("restore-busy").textContent = ""; }
  });
}
