// Train: task + preset + dataset + overrides -> the resolved config from the API (live), then start.
import { api, busy, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
let tasks = [], presets = [], datasets = [], timer = null;
const PRESET_DEFAULT = "";  // the select value that leaves the preset's own data option

export function init() {
  for (const id of ["train-task", "train-preset", "train-dataset", "train-kimg", "train-batch", "train-resolution",
                    "train-overrides", "train-masks", "train-pairs"]) {
    $(id).addEventListener("input", () => { if (id === "train-task") fillPresets(); schedule(); });
  }
  $("train-form").addEventListener("submit", onStart);
}

export async function show() {
  [tasks, presets] = await Promise.all([api("/api/tasks"), api("/api/presets")]);
  datasets = await api("/api/datasets");
  const keep = (sel, values, fallback) => {
    const old = sel.value || fallback;
    sel.replaceChildren(...values.map(([v, label]) => new Option(label, v)));
    if (values.some(([v]) => v === old)) sel.value = old;
  };
  keep($("train-task"), tasks.map((t) => [t.task, t.task]), "gan");
  keep($("train-dataset"), datasets.map((d) => [d.name, d.builtin ? `${d.name} (built-in)` : d.name]));
  fillPresets();
  await preview();
}

/** The task's data options as fields (GET /api/tasks data_options): inpaint's holes (a generated kind, or an
 *  uploaded dataset of mask images) and pix2pix's derived pairs. Hidden for other tasks. */
function fillDataOptions() {
  const opts = tasks.find((t) => t.task === $("train-task").value)?.data_options || {};
  const refill = (sel, options) => {
    const old = sel.value;
    sel.replaceChildren(new Option("preset's", PRESET_DEFAULT), ...options.map(([v, label]) => new Option(label, v)));
    if (options.some(([v]) => v === old)) sel.value = old;
  };
  $("train-masks-field").hidden = !opts.masks;
  if (opts.masks) {
    refill($("train-masks"), [...opts.masks.map((m) => [m, m]),
      ...datasets.filter((d) => !d.builtin).map((d) => [d.name, `mask images from dataset ${d.name}`])]);
  }
  $("train-pairs-field").hidden = !opts.pairs;
  if (opts.pairs) {
    refill($("train-pairs"), [["none", "the dataset holds pairs (A/ + B/, or A|B files)"],
      ...Object.entries(opts.pairs).map(([name, chain]) => [name, `derived: ${name} (${chain})`])]);
  }
}

function fillPresets() {
  const sel = $("train-preset"), old = sel.value, task = $("train-task").value;
  const mine = presets.filter((p) => p.task === task);
  fillDataOptions();
  sel.replaceChildren(...mine.map((p) => new Option(`${p.name} — ${p.arch}, ${p.resolution}px`, p.name)));
  if (mine.some((p) => p.name === old)) sel.value = old;
}

function request() {
  let overrides;
  try { overrides = JSON.parse($("train-overrides").value || "{}"); } catch (err) {
    throw Object.assign(new Error(`Other overrides: not valid JSON (${err.message})`), { fields: ["overrides"] });
  }
  const set = (section, field, value) => {
    if (value === "") return;
    overrides[section] = { ...(overrides[section] || {}), [field]: Number(value) };
  };
  set("run", "kimg", $("train-kimg").value);
  set("optim", "batch", $("train-batch").value);
  set("data", "resolution", $("train-resolution").value);
  const data = (field, value) => { overrides.data = { ...(overrides.data || {}), [field]: value }; };
  if (!$("train-masks-field").hidden && $("train-masks").value !== PRESET_DEFAULT) data("masks", $("train-masks").value);
  if (!$("train-pairs-field").hidden && $("train-pairs").value !== PRESET_DEFAULT) {
    data("derive", $("train-pairs").value === "none" ? "" : $("train-pairs").value);
  }
  return { task: $("train-task").value, preset: $("train-preset").value, dataset: $("train-dataset").value,
           overrides };
}

const FIELD_INPUTS = { "run.kimg": "train-kimg", "optim.batch": "train-batch", "data.resolution": "train-resolution",
                       preset: "train-preset", dataset: "train-dataset", task: "train-task",
                       "data.masks": "train-masks", "data.derive": "train-pairs" };

function markFields(fields) {
  for (const id of Object.values(FIELD_INPUTS).concat("train-overrides")) $(id).classList.remove("invalid");
  for (const f of fields || []) $(FIELD_INPUTS[f] || "train-overrides").classList.add("invalid");
}

function schedule() { clearTimeout(timer); timer = setTimeout(() => preview().catch(showError), 300); }

async function preview() {
  const out = $("train-config");
  try {
    const cfg = await api("/api/config/resolve", { method: "POST", body: request() });
    markFields([]);
    out.textContent = JSON.stringify(cfg, null, 2);
    $("train-status").textContent = `${cfg.task} · ${cfg.model.arch} · ${cfg.data.resolution}px · batch ` +
      `${cfg.optim.batch} · ${cfg.run.kimg} kimg`;
    $("train-start").disabled = false;
  } catch (err) {
    markFields(err.fields);
    out.textContent = err.message;
    $("train-status").textContent = "fix the highlighted field";
    $("train-start").disabled = true;
  }
}

async function onStart(e) {
  e.preventDefault();
  await busy($("train-start"), async () => {
    const body = { ...request(), name: $("train-name").value || null };
    const job = await api("/api/jobs", { method: "POST", body });
    location.hash = `#jobs/${job.id}`;
  });
}
