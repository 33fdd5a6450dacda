// Translate / colorize playground: a shipped translation model (A -> B) or colorizer, or a pix2pix or CycleGAN
// job's snapshot (A -> B, and B -> A where the model has both generators; colorize jobs too); upload -> result
// beside the input.
import { apiImage, busy, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
const kimg = (s) => (typeof s.kimg === "number" ? ` (${Number(s.kimg.toPrecision(3))} kimg)` : "");
let choices = new Map();  // option value -> {kind: "job" | "shipped", colorizer, directions}

export function init() {
  $("translate-model").addEventListener("change", fit);
  $("translate-form").addEventListener("submit", run);
}

/** Fill the model list from GET /api/models: the installed shipped colorizers and translators first, then every
 *  translate snapshot. */
export function setModels(models, pick) {
  choices = new Map();
  const sel = $("translate-model");
  const groups = [];
  const shipped = models.shipped.filter((s) => (s.command === "colorize" || s.command === "translate") && s.installed);
  if (shipped.length) {
    const g = document.createElement("optgroup");
    g.label = "shipped";
    for (const s of shipped) {
      g.append(new Option(`${s.name} (${s.command})`, `shipped:${s.name}`));
      choices.set(`shipped:${s.name}`, { kind: "shipped", colorizer: s.command === "colorize", directions: ["AtoB"] });
    }
    groups.push(g);
  }
  for (const j of models.jobs.filter((x) => x.latest.pipeline === "translate")) {
    const g = document.createElement("optgroup");
    g.label = `#${j.job_id} ${j.job_name} (${j.latest.task})`;
    for (const s of j.snapshots) {
      const value = `${j.job_id}:${s.name}`;
      g.append(new Option(`#${j.job_id} ${j.job_name} · ${s.name}${s.colorizer ? " · colorize" : ""} ` +
                          `${kimg(s)}`, value));
      choices.set(value, { kind: "job", colorizer: s.colorizer, directions: s.directions || ["AtoB"] });
    }
    groups.push(g);
  }
  sel.replaceChildren(...groups);
  if (!choices.size) sel.append(new Option("no translation model yet: train a pix2pix, colorize or cyclegan job", ""));
  $("translate-note").textContent = shipped.some((s) => s.command === "colorize") ? "" :
    "No shipped colorization model is installed: train one on the Train page (task pix2pix, preset colorize-64, on a " +
    "folder of colour photos: the gray inputs are derived) or a translation (pix2pix-64 with derived pairs, " +
    "cyclegan-64 on A/ + B/ folders).";
  if (pick && choices.has(`${pick}:latest`)) sel.value = `${pick}:latest`;
  fit();
}

/** Direction only where the model has both generators; the button says what the model does. */
function fit() {
  const c = choices.get($("translate-model").value);
  const both = (c?.directions || []).includes("BtoA");
  $("translate-direction").disabled = !both;
  if (!both) $("translate-direction").value = "AtoB";
  $("translate-run").textContent = c?.colorizer ? "Colorize" : "Translate";
}

async function run(e) {
  e.preventDefault();
  const value = $("translate-model").value, c = choices.get(value), f = $("translate-image").files[0];
  if (!c) { showError("no translation model: train a pix2pix, colorize or cyclegan job first (Train page)"); return; }
  if (!f) { showError("choose an image to translate"); return; }
  const form = new FormData();
  form.append("image", f, f.name);
  const [kind, name] = value.split(":");
  if (kind === "shipped") form.append("model", name);
  else { form.append("job_id", kind); form.append("snapshot", name); }
  if (!c.colorizer) form.append("direction", $("translate-direction").value);
  $("translate-busy").textContent = c.colorizer ? "colorizing…" : "translating…";
  await busy(e.submitter, async () => {
    try {
      const { url } = await apiImage(c.colorizer ? "/api/infer/colorize" : "/api/infer/translate", { form });
      $("translate-input").src = URL.createObjectURL(f);
      $("translate-result").src = url;
      $("translate-caption").textContent = c.colorizer ? "colorized" :
        ($("translate-direction").value === "AtoB" ? "A → B" : "B → A");
      $("translate-pair").hidden = false;
    } finally { $("translate-busy").textContent = ""; }
  });
}
