// Datasets: drag-and-drop upload (with progress), the list, and one dataset's report and thumbnails.
import { api, busy, el, showError, upload } from "./api.js";

const $ = (id) => document.getElementById(id);
let picked = [];
let selected = null;

export function init() {
  const zone = $("dropzone"), input = $("upload-files");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    pick([...e.dataTransfer.files]);
  });
  input.addEventListener("change", () => pick([...input.files]));
  $("upload-form").addEventListener("submit", onUpload);
}

function pick(files) {
  picked = files;
  const bytes = files.reduce((n, f) => n + f.size, 0);
  $("upload-picked").textContent = files.length ? `${files.length} file(s), ${(bytes / 2 ** 20).toFixed(1)} MB` : "no files chosen";
  if (files.length && !$("upload-name").value) {
    $("upload-name").value = files[0].name.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 64);
  }
}

async function onUpload(e) {
  e.preventDefault();
  if (!picked.length) { showError("choose images or a .zip first (drop them on the box)"); return; }
  const form = new FormData();
  form.append("name", $("upload-name").value);
  for (const f of picked) form.append("files", f, f.webkitRelativePath || f.name);
  const bar = $("upload-progress");
  bar.hidden = false; bar.removeAttribute("value");
  await busy(e.submitter, async () => {
    try {
      const report = await upload("/api/datasets", form, (p) => { bar.value = p; });
      picked = []; $("upload-files").value = ""; $("upload-name").value = ""; pick([]);
      await refresh();
      await select(report.name);
    } finally { bar.hidden = true; }
  });
}

export async function show() { await refresh(); if (selected) await select(selected).catch(() => {}); }

async function refresh() {
  const list = await api("/api/datasets");
  $("dataset-list").replaceChildren(...list.map((d) => el("li", {},
    el("button", { type: "button", "aria-current": d.name === selected ? "true" : "false",
                   onclick: () => select(d.name).catch(showError) },
       el("span", {}, d.name), el("span", { class: "muted" },
         d.builtin ? "built-in" : `${d.images} images${d.skipped ? `, ${d.skipped} bad` : ""}`)))));
}

async function select(name) {
  selected = name;
  for (const b of $("dataset-list").querySelectorAll("button")) {
    b.setAttribute("aria-current", b.firstChild.textContent === name ? "true" : "false");
  }
  const box = $("dataset-detail");
  box.replaceChildren(el("p", { class: "muted" }, `inspecting ${name}…`));
  const r = await api(`/api/datasets/${encodeURIComponent(name)}`);
  const classes = Object.entries(r.class_counts);
  const sizes = Object.entries(r.sizes).slice(0, 6).map(([s, n]) => `${s} ×${n}`).join(", ");
  const parts = [
    el("header", { class: "row" }, el("h3", {}, name), el("span", { class: "spacer" }),
       r.builtin ? el("span", { class: "badge" }, "built-in, read-only")
                 : el("button", { type: "button", class: "danger", onclick: () => remove(name) }, "Delete")),
    el("p", {}, `${r.files_loaded} of ${r.files_found} image files readable` +
       (r.other_files ? `; ${r.other_files} other files ignored` : "") + (sizes ? `. Sizes: ${sizes}` : "")),
    classes.length ? el("p", {}, `Classes: ${classes.map(([c, n]) => `${c} (${n})`).join(", ")}`)
                   : el("p", { class: "muted" }, "No classes (one folder level of subfolders makes classes)."),
    ...r.notes.map((n) => el("p", { class: "muted" }, `Note: ${n}`)),
  ];
  if (r.skipped.length) {
    parts.push(el("details", { open: true }, el("summary", {}, `${r.skipped.length} unreadable file(s)`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "File"), el("th", {}, "Why"))),
        el("tbody", {}, r.skipped.map((s) => el("tr", {}, el("td", {}, s.path), el("td", {}, s.reason)))))));
  }
  const n = Math.min(r.thumbnails, 60);
  parts.push(el("div", { class: "thumbs", "aria-label": "Thumbnails" }, Array.from({ length: n }, (_, i) =>
    el("img", { src: `/api/datasets/${encodeURIComponent(name)}/thumbnails/${i}.png`, alt: `image ${i}`,
                loading: "lazy" }))));
  box.replaceChildren(...parts);
}

async function remove(name) {
  if (!confirm(`Delete dataset ${name} and its files?`)) return;
  await busy(null, async () => {
    await api(`/api/datasets/${encodeURIComponent(name)}`, { method: "DELETE" });
    selected = null;
    $("dataset-detail").replaceChildren(el("p", { class: "muted" }, "Pick a dataset."));
    await refresh();
  });
}
