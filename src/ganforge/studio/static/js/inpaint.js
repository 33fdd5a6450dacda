// Inpaint playground: paint the hole on a <canvas> over the image (brush, eraser, size, undo; pointer events, so
// mouse, pen and touch alike), then Fill: the image and the mask (a PNG, white = hole on black, its anti-aliased
// edges gray) go to POST /api/infer/inpaint, which thresholds the mask at half and refuses an empty one.
import { api, apiBlob, apiImage, busy, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
const kimg = (s) => (typeof s.kimg === "number" ? ` (${Number(s.kimg.toPrecision(3))} kimg)` : "");
const STROKE = "rgb(255, 40, 90)";  // how the mask looks on screen (the canvas is shown at 60 % opacity)
const THRESHOLD = 127;              // the server's: a mask level above this (of 255) is hole
const UNDO_DEPTH = 30;
let tool = "brush", file = null, undo = [], last = null, painting = false, active = () => false;

/** Wire the tools; ``isActive()`` says whether the inpaint tab is showing (for the keyboard shortcuts). */
export function init(isActive) {
  active = isActive;
  $("inpaint-brush").addEventListener("click", () => setTool("brush"));
  $("inpaint-eraser").addEventListener("click", () => setTool("eraser"));
  $("inpaint-size").addEventListener("input", showSize);
  $("inpaint-undo").addEventListener("click", undoStroke);
  $("inpaint-clear").addEventListener("click", clearMask);
  $("inpaint-fill").addEventListener("click", (e) => fill(e.currentTarget));
  $("inpaint-image").addEventListener("change", () => { if ($("inpaint-image").files[0]) load($("inpaint-image").files[0]); });
  $("inpaint-pick").addEventListener("click", (e) => busy(e.currentTarget, pickDatasetImage));
  const mask = $("paint-mask");
  mask.addEventListener("pointerdown", down);
  mask.addEventListener("pointermove", move);
  for (const ev of ["pointerup", "pointercancel", "lostpointercapture"]) mask.addEventListener(ev, up);
  document.addEventListener("keydown", onKey);
}

function onKey(e) {
  if (!active() || e.target.matches?.("input:not([type=range]), textarea, select") || e.altKey || e.metaKey) return;
  if ((e.ctrlKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undoStroke(); return; }
  if (e.ctrlKey) return;
  if (e.key === "b") setTool("brush");
  else if (e.key === "e") setTool("eraser");
  else if (e.key === "[" || e.key === "]") {
    const s = $("inpaint-size"), v = Number(s.value);
    s.value = String(e.key === "[" ? Math.max(1, Math.round(v / 1.25)) : Math.min(Number(s.max), Math.round(v * 1.25) + 1));
    showSize();
  } else return;
  e.preventDefault();
}

function setTool(t) {
  tool = t;
  $("inpaint-brush").setAttribute("aria-pressed", String(t === "brush"));
  $("inpaint-eraser").setAttribute("aria-pressed", String(t === "eraser"));
}

function showSize() { $("inpaint-size-out").textContent = $("inpaint-size").value; }

/** Draw the chosen image on the image canvas at its own pixel size; the mask canvas gets the same size. */
async function load(f) {
  let bitmap;
  try { bitmap = await createImageBitmap(f); } catch {
    showError(`${f.name}: the browser cannot show this image (use png, jpg or webp here)`); return;
  }
  file = f;
  for (const id of ["paint-image", "paint-mask"]) { $(id).width = bitmap.width; $(id).height = bitmap.height; }
  $("paint-image").getContext("2d").drawImage(bitmap, 0, 0);
  undo = [];
  clearMask(false);
  // Brush sizes are in image pixels: start at about a twentieth of the image.
  $("inpaint-size").max = String(Math.max(8, Math.round(Math.max(bitmap.width, bitmap.height) / 4)));
  $("inpaint-size").value = String(Math.max(2, Math.round(Math.max(bitmap.width, bitmap.height) / 20)));
  showSize();
  $("paint-stage").hidden = false;
  $("paint-caption").textContent = `${f.name}: ${bitmap.width}×${bitmap.height}; paint the part to fill`;
  $("inpaint-result").hidden = true;
  $("inpaint-result-caption").textContent = "";
}

/** A dataset's image (GET /api/datasets/{name}/images/{i}.png, at most 1024 px) as the image to paint on. */
async function pickDatasetImage() {
  const name = $("inpaint-dataset").value, index = Number($("inpaint-index").value);
  if (!name) throw new Error("no dataset: upload one on the Datasets page, or choose an image file");
  const blob = await apiBlob(`/api/datasets/${encodeURIComponent(name)}/images/${index}.png`);
  await load(new File([blob], `${name}-${index}.png`, { type: "image/png" }));
}

/** The datasets to pick an image from (GET /api/datasets). */
export async function setDatasets() {
  const list = await api("/api/datasets");
  const sel = $("inpaint-dataset"), old = sel.value;
  sel.replaceChildren(...list.map((d) => new Option(d.builtin ? `${d.name} (built-in)` : d.name, d.name)));
  if (list.some((d) => d.name === old)) sel.value = old;
}

function clearMask(record = true) {
  const c = $("paint-mask");
  if (record && c.width) pushUndo();
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function pushUndo() {
  const c = $("paint-mask");
  undo.push(c.getContext("2d").getImageData(0, 0, c.width, c.height));
  if (undo.length > UNDO_DEPTH) undo.shift();
}

function undoStroke() {
  const data = undo.pop();
  if (data) $("paint-mask").getContext("2d").putImageData(data, 0, 0);
}

/** Pointer position in canvas (image) pixels. */
function point(e) {
  const c = $("paint-mask"), r = c.getBoundingClientRect();
  return { x: (e.clientX - r.left) * c.width / r.width, y: (e.clientY - r.top) * c.height / r.height };
}

function stroke(a, b) {
  const ctx = $("paint-mask").getContext("2d");
  ctx.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = STROKE;
  ctx.lineWidth = Number($("inpaint-size").value);
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x + 0.01, b.y);  // a zero-length segment draws nothing: a click still leaves a dot
  ctx.stroke();
}

function down(e) {
  if (!file || e.button > 0) return;
  e.preventDefault();
  $("paint-mask").setPointerCapture(e.pointerId);
  pushUndo();
  painting = true;
  last = point(e);
  stroke(last, last);
}

function move(e) {
  if (!painting) return;
  for (const ev of e.getCoalescedEvents?.() || [e]) {  // every sample of a fast stroke, not one per frame
    const p = point(ev);
    stroke(last, p);
    last = p;
  }
}

function up() { painting = false; last = null; }

/** The mask as the server reads it: an opaque PNG, white = hole on black (anti-aliased edges gray), and whether
 *  any pixel is above the server's threshold (so an empty mask never leaves the page). */
async function maskPng() {
  const src = $("paint-mask"), c = document.createElement("canvas");
  c.width = src.width; c.height = src.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(src, 0, 0);
  ctx.globalCompositeOperation = "source-in";   // painted pixels become white, keeping their coverage as alpha
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
  ctx.globalCompositeOperation = "destination-over";  // then black behind: opaque gray levels = coverage
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  let hole = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > THRESHOLD) hole++;
  const blob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
  return { blob, hole };
}

async function fill(button) {
  const choice = $("inpaint-model").value;
  if (!choice) { showError("no inpainting model: train an inpaint job first (Train page, task inpaint)"); return; }
  if (!file) { showError("choose an image first, then paint the hole on it"); return; }
  await busy(button, async () => {
    const { blob, hole } = await maskPng();
    if (!hole) throw new Error("the mask is empty: paint over the part of the image to fill (brush: b), then Fill");
    const [kind, name] = choice.split(":");  // "shipped:<model>" or "<job id>:<snapshot>"
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("mask", blob, "mask.png");
    if (kind === "shipped") form.append("model", name);
    else { form.append("job_id", kind); form.append("snapshot", name); }
    $("inpaint-busy").textContent = "filling…";
    try {
      const { url, headers } = await apiImage("/api/infer/inpaint", { form });
      const img = $("inpaint-result");
      img.src = url; img.hidden = false;
      $("inpaint-result-caption").textContent = `filled ${headers.get("X-Hole-Pixels")} hole pixels`;
    } finally { $("inpaint-busy").textContent = ""; }
  });
}

/** Fill the model list from GET /api/models: the installed shipped inpainting models first, then the inpaint
 *  snapshots of jobs; the note about training one shows only when no shipped model is installed. */
export function setModels(models, pick) {
  const shipped = models.shipped.filter((s) => s.command === "inpaint" && s.installed);
  const jobs = models.jobs.filter((j) => j.latest.pipeline === "inpaint");
  const sel = $("inpaint-model");
  const groups = [];
  if (shipped.length) {
    const group = document.createElement("optgroup");
    group.label = "shipped";
    group.append(...shipped.map((s) => new Option(`${s.name} (inpaint)`, `shipped:${s.name}`)));
    groups.push(group);
  }
  for (const j of jobs) {
    const group = document.createElement("optgroup");
    group.label = `#${j.job_id} ${j.job_name}`;
    group.append(...j.snapshots.map((s) => new Option(`#${j.job_id} ${j.job_name} · ${s.name} ${kimg(s)}`,
                                                       `${j.job_id}:${s.name}`)));
    groups.push(group);
  }
  sel.replaceChildren(...groups);
  if (!groups.length) sel.append(new Option("no inpainting model yet: train an inpaint job", ""));
  $("inpaint-note").hidden = shipped.length > 0;
  if (pick) sel.value = `${pick}:latest`;
}
