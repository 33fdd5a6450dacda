"""``ganforge eval``: metrics that state their protocol, for two image sets, a snapshot against a dataset, or
paired outputs against references. Every result is an :class:`EvalRecord` (metric values plus the protocol:
extractor and its SHA-256, resize, sample counts, reference split, seed); for a snapshot inside a run folder it
is also appended to the run's ``metrics.jsonl``. ``protocol.warnings`` lists what the numbers should be read
with: unreadable files skipped, and a reference set outside the judge's domain (``metrics.domain``).

Distribution metrics (features from a pluggable extractor, cached per dataset and protocol):
  fid  Frechet distance (Heusel et al. 2017)          kid  unbiased KID, 100 subsets (Binkowski et al. 2018)
  pr   improved precision/recall, k=3 (Kynkaanniemi et al. 2019)
  dc   density/coverage, k=5 (Naeem et al. 2020)     is   Inception Score from the extractor's logits
  ppl  perceptual path length (StyleGAN2 snapshots; judge-feature distance, not LPIPS)
Paired metrics (restoration / translation outputs vs references, files matched by name):
  psnr, ssim (BasicSR conventions: optional Y channel and border crop), ms-ssim, perceptual (judge features)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.core.device import resolve_device
from ganforge.core.version import __version__
from ganforge.data import parse_builtin
from ganforge.metrics.distribution import (
    density_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from ganforge.metrics.domain import check_reference
from ganforge.metrics.extractors import Extractor, get_extractor
from ganforge.metrics.features import SKIPPED_LISTED, FeatureSet, compute_features, dataset_features, skipped_line
from ganforge.metrics.progress import Progress

DISTRIBUTION_METRICS = ("fid", "kid", "pr", "dc", "is")
SNAPSHOT_METRICS = (*DISTRIBUTION_METRICS, "ppl")
PAIRED_METRICS = ("psnr", "ssim", "ms-ssim", "perceptual")
KID_SUBSETS, KID_SUBSET_SIZE, PR_K, DC_K, IS_SPLITS = 100, 1000, 3, 5, 10


@dataclass
class EvalRecord:
    kind: str                      # "sets" | "snapshot" | "pairs"
    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": self.kind, "metrics": self.metrics,
                "protocol": self.protocol, "ganforge_version": __version__}


def parse_metrics(text: str | Sequence[str], allowed: Sequence[str]) -> list[str]:
    """``"fid,kid"`` -> ``["fid", "kid"]``; an unknown name raises ValueError listing the valid ones."""
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise ValueError(f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(allowed)}")
    return names


def distribution_metrics(real: FeatureSet, fake: FeatureSet, metrics: Sequence[str],
                         seed: int = 0) -> tuple[dict[str, float], dict[str, Any]]:
    """Metric values and the settings they used, from two feature sets ``[N, D]``."""
    values: dict[str, float] = {}
    settings: dict[str, Any] = {}
    r, f = real.features, fake.features
    if "fid" in metrics:
        values["fid"] = frechet_distance(r, f)
    if "kid" in metrics:
        values["kid"], values["kid_std"] = kernel_inception_distance(r, f, KID_SUBSETS, KID_SUBSET_SIZE, seed)
        settings["kid"] = {"subsets": KID_SUBSETS, "subset_size": min(len(r), len(f), KID_SUBSET_SIZE),
                           "kernel": "(x.y / d + 1)^3", "estimator": "unbiased MMD^2", "seed": seed}
    if "pr" in metrics:
        values["precision"], values["recall"] = precision_recall(r, f, k=PR_K)
        settings["pr"] = {"k": PR_K}
    if "dc" in metrics:
        values["density"], values["coverage"] = density_coverage(r, f, k=DC_K)
        settings["dc"] = {"k": DC_K}
    if "is" in metrics:
        if fake.logits is None:
            raise ValueError("is (Inception Score) needs an extractor with class logits: judge or inception")
        splits = min(IS_SPLITS, len(f))
        values["is"], values["is_std"] = inception_score(fake.logits, splits=splits)
        settings["is"] = {"splits": splits}
    return values, settings


def _default_split(source: str | Path) -> str:
    # Built-ins are compared with their held-out test split; a folder is used whole (its "train" split).
    return "test" if parse_builtin(source) else "train"


def _set_record(fs: FeatureSet) -> dict[str, Any]:
    # What a record says about one image set: identity, count and split, plus source, resolution, channels,
    # colour spread and the unreadable files skipped (the feature set's unkeyed info).
    return {**fs.protocol["data"], **fs.protocol.get("info", {})}


def _skip_warnings(label: str, fs: FeatureSet) -> list[str]:
    skipped = fs.protocol.get("info", {}).get("skipped") or {}
    if not skipped.get("count"):
        return []
    return [f"{label} {fs.protocol['info'].get('source')}: {skipped_line(skipped['count'], skipped['first'])}"]


def _domain(ex: Extractor, reference: FeatureSet, label: str,
            log: Callable[[str], None]) -> tuple[list[str], dict[str, Any]]:
    """The reference set's domain check (metrics/domain.py); each warning is logged as soon as it is known."""
    info = reference.protocol.get("info", {})
    warnings, check = check_reference(ex, reference.features, info, f"{label} ({info.get('source')})")
    for w in warnings:
        log(f"warning: {w}")
    return warnings, check


def _check_extractor_for(metrics: Sequence[str], ex: Extractor) -> None:
    if "is" in metrics and not ex.num_classes:
        raise ValueError("is (Inception Score) needs an extractor with class logits: judge or inception")


def evaluate_sets(real: str | Path, fake: str | Path, metrics: Sequence[str] = ("fid", "kid"),
                  extractor: str = "judge", resolution: int | None = None, resize: str = "crop",
                  num: int | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                  device: str = "cpu", log: Callable[[str], None] = print) -> EvalRecord:
    """Distribution metrics between two image sets (folders, zips or built-in names; ``fake`` is compared with
    ``real``). Folders are loaded at ``resolution`` (default: the extractor's input size) with ``resize``.

    ``protocol.warnings`` lists what the user should know about the numbers: unreadable files skipped, and a
    reference set outside the judge's domain (``metrics.domain``); each is also sent to ``log`` when found."""
    metrics = parse_metrics(metrics, DISTRIBUTION_METRICS)
    device = str(resolve_device(device))
    ex = get_extractor(extractor, device)
    _check_extractor_for(metrics, ex)
    if resolution is None and not all(parse_builtin(s) for s in (real, fake)):
        resolution = ex.protocol()["input_resolution"]
    ref = dataset_features(ex, real, _default_split(real), num, resolution, seed, cache_dir, resize=resize, log=log)
    warnings, check = _domain(ex, ref, "REAL", log)
    other = dataset_features(ex, fake, _default_split(fake), num, resolution, seed, cache_dir, resize=resize,
                             log=log)
    warnings = _skip_warnings("REAL", ref) + _skip_warnings("FAKE", other) + warnings
    values, settings = distribution_metrics(ref, other, metrics, seed)
    return EvalRecord("sets", values, {"extractor": ex.protocol(), "real": _set_record(ref),
                                       "fake": _set_record(other), "settings": settings, "seed": seed,
                                       "domain_check": check, "warnings": warnings})


def generated_images(G, num: int, trunc: float = 1.0, batch: int = 500,
                     log: Callable[[str], None] | None = None) -> tuple[np.ndarray, str]:
    """uint8 ``[num, C, H, W]`` from seeds 0..num-1 (class ``i % K`` for a conditional snapshot) and a
    description of that rule for the protocol. ``log`` gets progress lines when this takes more than a few
    seconds."""
    from ganforge.core.grid import to_uint8

    out = []
    progress = Progress(log or (lambda m: None), "generating samples", num)
    for i in range(0, num, batch):
        seeds = list(range(i, min(num, i + batch)))
        labels = [s % G.num_classes for s in seeds] if G.num_classes else None
        kw = {"psi": trunc} if G.is_style else {}
        out.append(to_uint8(G.generate(seeds, labels, **kw)))
        progress.update(seeds[-1] + 1)
    progress.close()
    rule = f"seeds 0..{num - 1}" + (f", class = seed % {G.num_classes}" if G.num_classes else "")
    return np.concatenate(out), rule


def evaluate_snapshot(snapshot: str | Path, data: str, metrics: Sequence[str] = ("fid", "kid"),
                      extractor: str = "judge", num: int = 10_000, split: str | None = None, trunc: float = 1.0,
                      seed: int = 0, ppl_samples: int | None = None, cache_dir: str | Path | None = None,
                      device: str = "cpu", write: bool = True, log: Callable[[str], None] = print) -> EvalRecord:
    """A snapshot's samples against a dataset (all of ``split``; default: test for built-ins). With ``write``
    and a snapshot inside a run folder, the record is appended to ``<run>/metrics.jsonl``.

    Everything the metric list needs (a StyleGAN2 snapshot and a judge for ``ppl``, logits for ``is``, the
    device) is checked before any work. ``ppl_samples``: path pairs for PPL (None: ``num``). ``protocol.warnings``
    as in :func:`evaluate_sets` (the reference is ``data``)."""
    from ganforge.core.snapshot import resolve_snapshot, snapshot_hash
    from ganforge.infer.snapshot import load_generator
    from ganforge.training.rundir import RunLog

    metrics = parse_metrics(metrics, SNAPSHOT_METRICS)
    device = str(resolve_device(device))
    ppl_samples = num if ppl_samples is None else ppl_samples
    if ppl_samples < 1:
        raise ValueError(f"ppl samples must be >= 1, got {ppl_samples}")
    G = load_generator(snapshot, device=device)
    if trunc != 1.0 and not G.is_style:
        raise ValueError(f"truncation needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
    if "ppl" in metrics and not G.is_style:
        rest = ",".join(m for m in metrics if m != "ppl") or "fid,kid"
        raise ValueError(f"ppl (perceptual path length) needs a StyleGAN2 snapshot (a mapping network from z to w); "
                         f"{snapshot} is {G.meta.get('arch')}: leave ppl out, e.g. --metrics {rest}")
    ex = get_extractor(extractor, device)
    _check_extractor_for(metrics, ex)
    if "ppl" in metrics and ex.name != "judge":
        raise ValueError("ppl measures with a judge's features (not LPIPS): use --extractor judge[:PATH]")
    digest = snapshot_hash(snapshot)
    split = split or _default_split(data)
    resolution = None if parse_builtin(data) else G.net.resolution
    real = dataset_features(ex, data, split, None, resolution, seed, cache_dir, log=log)
    warnings, check = _domain(ex, real, "--data", log)
    warnings = _skip_warnings("--data", real) + warnings
    images, rule = generated_images(G, num, trunc, log=log)
    fake = compute_features(ex, images, cache_dir, key=f"snapshot-{digest}-n{num}-psi{trunc}", log=log,
                            info={"snapshot": str(snapshot), "samples": rule, "trunc": trunc})
    values, settings = distribution_metrics(real, fake, [m for m in metrics if m != "ppl"], seed)
    if "ppl" in metrics:
        from ganforge.metrics.perceptual import PerceptualDistance
        from ganforge.metrics.ppl import perceptual_path_length

        ppl = perceptual_path_length(G, PerceptualDistance(ex.weights.with_suffix(""), device), ppl_samples,
                                     seed=seed, log=log)
        values["ppl"], values["ppl_std"] = ppl["ppl"], ppl["std"]
        settings["ppl"] = ppl["protocol"]
    record = EvalRecord("snapshot", values, {
        "extractor": ex.protocol(), "real": _set_record(real), "fake": _set_record(fake),
        "snapshot": str(snapshot), "snapshot_sha256": digest, "kimg": G.meta.get("kimg"), "samples": rule,
        "trunc": trunc, "settings": settings, "seed": seed, "domain_check": check, "warnings": warnings})
    weights, _ = resolve_snapshot(snapshot)
    if write and weights.parent.name == "snapshots" and (weights.parent.parent / "config.json").exists():
        RunLog(weights.parent.parent).metric(record.to_dict())
        record.protocol["written_to"] = str(weights.parent.parent / "metrics.jsonl")
    return record


def evaluate_pairs(outputs: str | Path, references: str | Path, metrics: Sequence[str] = ("psnr", "ssim"),
                   crop_border: int = 0, y_channel: bool = False, judge: str | None = None,
                   device: str = "cpu", log: Callable[[str], None] = print) -> EvalRecord:
    """Full-reference metrics of each output image against the reference with the same file name (stem),
    averaged over the pairs. ``judge`` (a judge snapshot) is needed for ``perceptual``. Unreadable files are
    skipped, counted and named (``protocol.skipped``, ``protocol.warnings``, and a ``log`` line)."""
    from PIL import Image

    from ganforge.metrics import image as im
    from ganforge.metrics.perceptual import PerceptualDistance, image_distance

    metrics = parse_metrics(metrics, PAIRED_METRICS)
    device = str(resolve_device(device))
    exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    outs, refs = ({p.stem: p for p in sorted(Path(d).expanduser().rglob("*")) if p.suffix.lower() in exts}
                  for d in (outputs, references))
    pairs = sorted(outs.keys() & refs.keys())
    if not pairs:
        raise ValueError(f"no file names in common between {outputs} ({len(outs)} images) and {references} "
                         f"({len(refs)} images); outputs are matched to references by file name")
    distance = None
    if "perceptual" in metrics:
        if not judge:
            raise ValueError("perceptual needs a judge snapshot: --extractor judge:PATH")
        distance = PerceptualDistance(judge, device)
    fns = {"psnr": im.psnr, "ssim": im.ssim, "ms-ssim": im.ms_ssim}
    per: dict[str, list[float]] = {m: [] for m in metrics}
    skipped: list[str] = []
    for name in pairs:
        try:
            a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (outs[name], refs[name]))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # unreadable: listed, not fatal
            skipped.append(f"{name} ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        if a.shape != b.shape:
            raise ValueError(f"{outs[name]} is {a.shape[1]}x{a.shape[0]} but its reference {refs[name]} is "
                             f"{b.shape[1]}x{b.shape[0]}; paired metrics need equal sizes")
        for m in metrics:
            if m == "perceptual":
                c = crop_border
                ac, bc = (a[c:-c, c:-c], b[c:-c, c:-c]) if c else (a, b)
                per[m].append(float(image_distance(ac, bc, distance)[0]))
            else:
                per[m].append(float(fns[m](a, b, crop_border=crop_border, y_channel=y_channel)[0]))
    if len(skipped) == len(pairs):
        raise ValueError(f"none of the {len(pairs)} pairs could be read: {skipped_line(len(skipped), skipped)}")
    values = {m: float(np.mean(v)) for m, v in per.items()}
    warnings = [f"pairs: {skipped_line(len(skipped), skipped)}"] if skipped else []
    for w in warnings:
        log(f"warning: {w}")
    return EvalRecord("pairs", values, {
        "outputs": str(outputs), "references": str(references), "pairs": len(pairs) - len(skipped),
        "skipped": {"count": len(skipped), "first": skipped[:SKIPPED_LISTED]}, "warnings": warnings,
        "unmatched_outputs": len(outs) - len(pairs), "crop_border": crop_border,
        "channel": "Y (BT.601)" if y_channel else "RGB", "data_range": 255,
        "ssim_window": "11x11 Gaussian, sigma 1.5, valid", **({"perceptual": distance.protocol} if distance else {})})

