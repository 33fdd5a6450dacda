"""Is a reference set in the domain its judge was trained on? Two checks, each turned into a warning in the
metric record (``protocol.warnings``) and on stderr, because a judge scores images it never learned to see
without complaint: the shipped Fashion-MNIST judge gave noise against real photos FID 80.8, precision 1.0.

1. **Colour.** A judge trained on gray images (1 channel) sees colour images through ITU-R 601 luma, so colour
   differences are invisible to it. The reference set is "colour" when it was loaded with 3 or 4 channels and
   its mean channel spread (max - min of R, G, B per pixel, averaged over up to 2,000 images) exceeds
   ``COLOUR_SPREAD`` = 8 of 255 (gray images stored as RGB give 0; JPEG noise on them 1-2; photos 20-60).
2. **Feature statistics** (judges saved with domain statistics: the shipped one, and every judge made by
   ``ganforge judge train``). The judge's features of its own training images are modelled by class-conditional
   Gaussians with one shared covariance (Lee et al. 2018, "A Simple Unified Framework for Detecting
   Out-of-Distribution Samples and Adversarial Attacks", eq. 1-2); an image's score is the Mahalanobis distance of
   its features to the nearest class mean, ``min_k sqrt((f - mu_k)^T Sigma^-1 (f - mu_k))``. The threshold is the
   99th percentile of the score on the judge's held-out images. The reference set is out of domain when more
   than ``OUT_FRACTION`` = 25 % of its images score above the threshold. Measured with the shipped judge: its
   held-out test images 1 %, a single Fashion-MNIST class 1-2 %, the same images shifted by 4 px 4 %; photo
   crops (RGB or gray, 28 or 32 px) 94-98 %, scikit-learn digits 77-84 %, inverted Fashion-MNIST 95 %, uniform
   noise and procedural shapes 100 %. (The judge's confidence does not separate these: it is above 0.9 on
   photos and noise too. Image size is not checked: images are resized to the judge's input anyway.)

Only the reference set (REAL of ``eval sets``, ``--data`` of ``eval snapshot``) is checked: generated images far
from the domain are exactly what the metrics should report. The statistics live beside the judge in
``<judge>.domain.safetensors`` (float64 ``class_means [K, D]`` and ``precision [D, D]``; the threshold, the
quantile, the data they were measured on and the judge's SHA-256 in the header metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

DOMAIN_FORMAT = "ganforge-judge-domain/1"
QUANTILE = 0.99          # threshold: this quantile of the held-out images' scores
OUT_FRACTION = 0.25      # warn when more of the reference set than this lies beyond the threshold
COLOUR_SPREAD = 8.0      # mean max-min over R, G, B (of 255) above which a set counts as colour
_COLOUR_SAMPLE = 2000    # images inspected for the colour check
_RIDGE = 1e-6            # relative ridge on the covariance: a judge with dead ReLUs has a singular one
ADVICE = ("for meaningful numbers use an extractor that knows your images: train a judge on your labelled data "
          "(`ganforge judge train --data <your labelled data>`, then `--extractor judge:judges/judge-<name>`) or "
          "use `--extractor inception` with its weights file (docs/evaluation.md)")


@dataclass(frozen=True)
class DomainStats:
    """Class-conditional Gaussians with a shared covariance over a judge's features (see the module docstring)."""

    class_means: Tensor  # float64 [K, D]
    precision: Tensor    # float64 [D, D], the inverse of the shared covariance
    threshold: float     # QUANTILE of the held-out scores
    quantile: float
    fit_on: str          # what the Gaussians were fitted on, in words
    threshold_on: str    # what the threshold was measured on
    judge_sha256: str | None = None

    def scores(self, features: Tensor, chunk: int = 1024) -> Tensor:
        """Mahalanobis distance to the nearest class mean, float64 ``[N]``, for features ``[N, D]``."""
        out = []
        for i in range(0, len(features), chunk):
            d = features[i:i + chunk].double()[:, None, :] - self.class_means[None]  # [n, K, D]
            out.append(torch.einsum("nkd,de,nke->nk", d, self.precision, d).clamp_min(0).min(1).values.sqrt())
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: what a record or a judge's JSON says about these statistics."""
        return {"method": "Mahalanobis distance to the nearest class mean, shared covariance (Lee et al. 2018)",
                "threshold": self.threshold, "quantile": self.quantile, "fit_on": self.fit_on,
                "threshold_on": self.threshold_on, "classes": int(self.class_means.shape[0]),
                "feature_dim": int(self.class_means.shape[1])}


def fit_domain(features: Tensor, labels: Tensor | np.ndarray, held_out: Tensor, fit_on: str, threshold_on: str,
               quantile: float = QUANTILE) -> DomainStats:
    """Fit the Gaussians on training features ``[N, D]`` with integer ``labels [N]``; the threshold is
    ``quantile`` of the scores of ``held_out [M, D]`` (features of images the judge was not trained on)."""
    f = features.double()
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    classes = sorted(int(k) for k in torch.unique(y))
    means = torch.stack([f[y == k].mean(0) for k in classes])  # [K, D]
    centred = f - means[torch.searchsorted(torch.tensor(classes), y)]
    cov = centred.T @ centred / max(1, len(f))  # [D, D]
    ridge = _RIDGE * float(cov.diagonal().mean().clamp_min(1e-12))
    precision = torch.linalg.inv(cov + ridge * torch.eye(len(cov), dtype=torch.float64))
    stats = DomainStats(means, precision, 0.0, quantile, fit_on, threshold_on)
    held = stats.scores(held_out)
    return replace(stats, threshold=float(torch.quantile(held, quantile)) if len(held) else float("inf"))


def domain_path(weights: str | Path) -> Path:
    """``x/judge.safetensors`` (or ``x/judge``) -> ``x/judge.domain.safetensors``."""
    p = Path(weights)
    return p.with_name(p.name.removesuffix(".safetensors") + ".domain.safetensors")


def save_domain(stats: DomainStats, weights: str | Path) -> Path:
    """Write the statistics beside a judge's weights (atomically); returns the path."""
    from safetensors.torch import save as st_save

    from ganforge.core.files import atomic_write_bytes

    meta = {"format": DOMAIN_FORMAT, "threshold": repr(stats.threshold), "quantile": repr(stats.quantile),
            "fit_on": stats.fit_on, "threshold_on": stats.threshold_on, "judge_sha256": stats.judge_sha256 or ""}
    path = domain_path(weights)
    atomic_write_bytes(path, st_save({"class_means": stats.class_means.contiguous(),
                                      "precision": stats.precision.contiguous()}, metadata=meta))
    return path


def load_domain(weights: str | Path, judge_sha256: str) -> tuple[DomainStats | None, str]:
    """The statistics saved beside a judge, or None and the reason (missing, unreadable, another judge's)."""
    from safetensors import safe_open

    path = domain_path(weights)
    if not path.is_file():
        return None, f"no domain statistics ({path.name}) beside this judge"
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            means, precision = fh.get_tensor("class_means"), fh.get_tensor("precision")
        if meta.get("format") != DOMAIN_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {DOMAIN_FORMAT}")
        k, d = means.shape
        if precision.shape != (d, d):
            raise ValueError(f"precision {list(precision.shape)} does not match class_means {[k, d]}")
        stats = DomainStats(means.double(), precision.double(), float(meta["threshold"]), float(meta["quantile"]),
                            meta.get("fit_on", "?"), meta.get("threshold_on", "?"), meta.get("judge_sha256") or None)
    except Exception as exc:  # a damaged file costs the check, never the evaluation
        return None, f"{path.name} is unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    if stats.judge_sha256 and stats.judge_sha256 != judge_sha256:
        return None, f"{path.name} belongs to another judge (SHA-256 differs)"
    return stats, f"{path.name}"


def colour_spread(images: np.ndarray) -> float | None:
    """Mean over pixels of max - min across R, G, B (0..255) of uint8 ``[N, C, H, W]`` images (up to 2,000,
    evenly spaced); None for gray (C = 1 or 2)."""
    if images.shape[1] < 3 or len(images) == 0:
        return None
    idx = np.linspace(0, len(images) - 1, min(len(images), _COLOUR_SAMPLE)).round().astype(int)
    rgb = np.asarray(images[np.unique(idx)])[:, :3]
    return float((rgb.max(axis=1).astype(np.int16) - rgb.min(axis=1)).mean())


def check_reference(extractor: Any, features: Tensor, info: dict[str, Any], name: str) -> tuple[list[str],
                                                                                                 dict[str, Any]]:
    """Warnings (sentences for the user) and the check's record for a reference set's ``features [N, D]``
    (``info``: the feature set's protocol info, holding ``colour_spread``); ``name`` says which set it is
    (e.g. "REAL /data/photos"). Only judges are checked."""
    if getattr(extractor, "name", None) != "judge":
        return [], {"checked": False, "why": f"only judge extractors are checked, this is {extractor.name}"}
    trained_on = getattr(extractor, "trained_on", None) or "its training data"
    warnings: list[str] = []
    record: dict[str, Any] = {"checked": True, "reference": name, "rules": {
        "colour": f"judge with 1 channel and reference mean channel spread > {COLOUR_SPREAD:g} of 255",
        "features": f"more than {OUT_FRACTION:.0%} of the reference images beyond the judge's threshold"}}
    spread = info.get("colour_spread")
    record["colour_spread"] = spread
    if extractor.net.channels == 1 and spread is not None and spread > COLOUR_SPREAD:
        warnings.append(f"the reference set {name} is in colour (mean channel spread {spread:.0f} of 255) but the "
                        f"judge ({trained_on}) sees only gray (ITU-R 601 luma): colour differences are invisible "
                        "to it")
    stats, note = load_domain(extractor.weights, extractor.sha256)
    record["statistics"] = note
    if stats is None:
        record["out_of_domain_fraction"] = None
        return _advise(warnings), record
    out = float((stats.scores(features) > stats.threshold).double().mean()) if len(features) else 0.0
    record.update(out_of_domain_fraction=out, **{k: v for k, v in stats.summary().items() if k != "feature_dim"})
    if out > OUT_FRACTION:
        warnings.append(f"the reference set {name} does not look like the judge's training data ({trained_on}): "
                        f"{out:.0%} of its images lie outside the judge's domain (feature distance above the "
                        f"{stats.quantile:.0%} quantile of its held-out images, where in-domain data gives about "
                        f"{1 - stats.quantile:.0%}), so these numbers say little about your images")
    return _advise(warnings), record


def _advise(warnings: list[str]) -> list[str]:
    # The way out, said once, after the last reason.
    return [*warnings[:-1], f"{warnings[-1]}; {ADVICE}"] if warnings else warnings
