"""``ganforge eval``: metrics that state their protocol, for two image sets, a snapshot against a dataset, or
paired outputs against references. Every result is an :class:`EvalRecord` (metric values plus the protocol:
extractor and its SHA-256, resize, sample counts, reference split, seed); for a snapshot inside a run folder it
is also appended to the run's ``metrics.jsonl``.

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

from ganforge.core.version import __version__
from ganforge.data import parse_builtin
from ganforge.metrics.distribution import (
    density_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from ganforge.metrics.extractors import get_extractor
from ganforge.metrics.features import FeatureSet, compute_features, dataset_features

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


def evaluate_sets(real: str | Path, fake: str | Path, metrics: Sequence[str] = ("fid", "kid"),
                  extractor: str = "judge", resolution: int | None = None, resize: str = "crop",
                  num: int | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                  device: str = "cpu", log: Callable[[str], None] = print) -> EvalRecord:
    """Distribution metrics between two image sets (folders, zips or built-in names; ``fake`` is compared with
    ``real``). Folders are loaded at ``resolution`` (default: the extractor's input size) with ``resize``."""
    metrics = parse_metrics(metrics, DISTRIBUTION_METRICS)
    ex = get_extractor(extractor, device)
    if resolution is None and not all(parse_builtin(s) for s in (real, fake)):
        resolution = ex.protocol()["input_resolution"]
    sets = [dataset_features(ex, s, _default_split(s), num, resolution, seed, cache_dir, resize=resize, log=log)
            for s in (real, fake)]
    values, settings = distribution_metrics(sets[0], sets[1], metrics, seed)
    return EvalRecord("sets", values, {"extractor": ex.protocol(), "real": sets[0].protocol["data"],
                                       "fake": sets[1].protocol["data"], "settings": settings, "seed": seed})


def generated_images(G, num: int, trunc: float = 1.0, batch: int = 500) -> tuple[np.ndarray, str]:
    """uint8 ``[num, C, H, W]`` from seeds 0..num-1 (class ``i % K`` for a conditional snapshot) and a
    description of that rule for the protocol."""
    from ganforge.core.grid import to_uint8

    out = []
    for i in range(0, num, batch):
        seeds = list(range(i, min(num, i + batch)))
        labels = [s % G.num_classes for s in seeds] if G.num_classes else None
        kw = {"psi": trunc} if G.is_style else {}
        out.append(to_uint8(G.generate(seeds, labels, **kw)))
    rule = f"seeds 0..{num - 1}" + (f", class = seed % {G.num_classes}" if G.num_classes else "")
    return np.concatenate(out), rule


def evaluate_snapshot(snapshot: str | Path, data: str, metrics: Sequence[str] = ("fid", "kid"),
                      extractor: str = "judge", num: int = 10_000, split: str | None = None, trunc: float = 1.0,
                      seed: int = 0, ppl_samples: int = 10_000, cache_dir: str | Path | None = None,
                      device: str = "cpu", write: bool = True, log: Callable[[str], None] = print) -> EvalRecord:
    """A snapshot's samples against a dataset (all of ``split``; default: test for built-ins). With ``write``
    and a snapshot inside a run folder, the record is appended to ``<run>/metrics.jsonl``."""
    from ganforge.core.snapshot import resolve_snapshot, snapshot_hash
    from ganforge.infer.snapshot import load_generator
    from ganforge.train.rundir import RunLog

    metrics = parse_metrics(metrics, SNAPSHOT_METRICS)
    G = load_generator(snapshot, device=device)
    if trunc != 1.0 and not G.is_style:
        raise ValueError(f"truncation needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
    ex = get_extractor(extractor, device)
    digest = snapshot_hash(snapshot)
    split = split or _default_split(data)
    resolution = None if parse_builtin(data) else G.net.resolution
    real = dataset_features(ex, data, split, None, resolution, seed, cache_dir, log=log)
    images, rule = generated_images(G, num, trunc)
    fake = compute_features(ex, images, cache_dir, key=f"snapshot-{digest}-n{num}-psi{trunc}", log=log,
                            info={"snapshot": str(snapshot), "samples": rule, "trunc": trunc})
    values, settings = distribution_metrics(real, fake, [m for m in metrics if m != "ppl"], seed)
    if "ppl" in metrics:
        from ganforge.metrics.perceptual import PerceptualDistance
        from ganforge.metrics.ppl import perceptual_path_length

        if ex.name != "judge":
            raise ValueError("ppl measures with a judge's features (not LPIPS): use --extractor judge[:PATH]")
        ppl = perceptual_path_length(G, PerceptualDistance(ex.weights.with_suffix(""), device), ppl_samples,
                                     seed=seed)
        values["ppl"], values["ppl_std"] = ppl["ppl"], ppl["std"]
        settings["ppl"] = ppl["protocol"]
    record = EvalRecord("snapshot", values, {
        "extractor": ex.protocol(), "real": real.protocol["data"], "fake": fake.protocol["data"],
        "snapshot": str(snapshot), "snapshot_sha256": digest, "kimg": G.meta.get("kimg"), "samples": rule,
        "trunc": trunc, "settings": settings, "seed": seed})
    weights, _ = resolve_snapshot(snapshot)
    if write and weights.parent.name == "snapshots" and (weights.parent.parent / "config.json").exists():
        RunLog(weights.parent.parent).metric(record.to_dict())
        record.protocol["written_to"] = str(weights.parent.parent / "metrics.jsonl")
    return record


def evaluate_pairs(outputs: str | Path, references: str | Path, metrics: Sequence[str] = ("psnr", "ssim"),
                   crop_border: int = 0, y_channel: bool = False, judge: str | None = None,
                   device: str = "cpu") -> EvalRecord:
    """Full-reference metrics of each output image against the reference with the same file name (stem),
    averaged over the pairs. ``judge`` (a judge snapshot) is needed for ``perceptual``."""
    from PIL import Image

    from ganforge.metrics import image as im
    from ganforge.metrics.perceptual import PerceptualDistance, image_distance

    metrics = parse_metrics(metrics, PAIRED_METRICS)
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
    for name in pairs:
        a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (outs[name], refs[name]))
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
    values = {m: float(np.mean(v)) for m, v in per.items()}
    return EvalRecord("pairs", values, {
        "outputs": str(outputs), "references": str(references), "pairs": len(pairs),
        "unmatched_outputs": len(outs) - len(pairs), "crop_border": crop_border,
        "channel": "Y (BT.601)" if y_channel else "RGB", "data_range": 255,
        "ssim_window": "11x11 Gaussian, sigma 1.5, valid", **({"perceptual": distance.protocol} if distance else {})})

