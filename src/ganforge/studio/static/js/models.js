// Models: every job's snapshots with their metadata, metrics and config; the shipped models.
import { api, el, fmt } from "./api.js";

const $ = (id) => document.getElementById(id);

function snapshotTable(snaps) {
  const head = ["Snapshot", "Step", "kimg", "Metrics", "Size", "Download"].map((h) => el("th", {}, h));
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, snaps.map((s) => el("tr", {},
      el("td", {}, s.name), el("td", {}, s.step), el("td", {}, fmt(s.kimg)),
      el("td", {}, Object.entries(s.metrics || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "—"),
      el("td", {}, `${(s.bytes / 2 ** 20).toFixed(2)} MB`),
      el("td", {}, el("a", { href: s.download.safetensors }, ".safetensors"), " ",
         el("a", { href: s.download.json }, ".json"), " ",
         el("a", { href: s.download.onnx, title: "exported on first click (takes a few seconds)" }, ".onnx")))))));
}

function jobCard(j) {
  const others = j.snapshots.filter((s) => s.name !== "latest");
  const tab = ["generate", "restore", "inpaint", "translate"].includes(j.latest.pipeline) ? j.latest.pipeline : null;
  return el("article", { class: "card model-card" },
    el("h4", {}, `#${j.job_id} ${j.job_name} `, el("span", { class: `badge ${j.status}` }, j.status)),
    el("p", { class: "muted" }, `${j.latest.task} · ${j.latest.arch} · ${j.latest.resolution ?? "?"}px · ` +
       `${fmt(j.latest.kimg)} kimg · preset ${j.preset} · dataset ${j.dataset}`),
    snapshotTable([j.latest]),
    others.length ? el("details", {}, el("summary", {}, `${others.length} earlier snapshot(s)`), snapshotTable(others)) : "",
    j.metrics.length ? el("details", {}, el("summary", {}, `${j.metrics.length} metric record(s)`),
      el("pre", { class: "code" }, j.metrics.map((r) => JSON.stringify(r)).join("\n"))) : "",
    el("details", {}, el("summary", {}, "Config"), el("pre", { class: "code" }, JSON.stringify(j.config, null, 2))),
    tab ? el("p", {}, el("a", { href: `#play/${tab}:${j.job_id}` }, "Try it in the playground →")) : "");
}

export async function show() {
  const m = await api("/api/models");
  $("models-jobs").replaceChildren(...(m.jobs.length ? m.jobs.map(jobCard) :
    [el("p", { class: "muted" }, "No snapshots yet: a job writes one at every snapshot interval and when it stops.")]));
  $("models-shipped").tBodies[0].replaceChildren(...m.shipped.map((s) => el("tr", {},
    el("td", {}, s.name), el("td", {}, s.command), el("td", {}, `×${s.scale}`),
    el("td", {}, s.installed ? "yes" : "not in this copy (docs/pretrained.md says how to train it)"),
    el("td", {}, s.description))));
}
