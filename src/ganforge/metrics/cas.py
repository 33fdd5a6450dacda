"""Classification Accuracy Score and augmentation uplift: how useful a conditional generator's samples are as
training data for a classifier that is then tested on real images.

For each real-set size N (images per class) and each training seed the same small classifier is trained on
four arms and tested on the full real test set:

    (a) real             N real images per class
    (b) real+synthetic   the same N real images plus M synthetic images per class
    (c) synthetic        M synthetic images per class only (the CAS proper; independent of N)
    (d) real+classical   the same N real images with classical augmentation (flip, crop, colour jitter)

(b) - (a) is the uplift from adding the generator's samples and (d) - (a) the uplift from classical
augmentation, the baseline a generator has to beat to be worth using for augmentation.
"""

# Classification Accuracy Score (Ravuri & Vinyals 2019, "Classification Accuracy Score for Conditional
# Generative Models").

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ganforge.core.version import __version__
from ganforge.data import load_dataset
from ganforge.infer.snapshot import load_generator
from ganforge.metrics.judge import accuracy, fit_classifier

ARMS = ("real", "real+synthetic", "synthetic", "real+classical")
REAL_ARMS = ("real", "real+synthetic", "real+classical")  # these are trained once per N
_ARM_LETTERS = {"real": "a", "real+synthetic": "b", "synthetic": "c", "real+classical": "d"}
CROP_PAD = 2  # px of reflect padding for the random crop
JITTER = 0.2  # brightness, contrast (and saturation for RGB) factors drawn from U[1 - JITTER, 1 + JITTER]
CLASSICAL_AUGMENTATION = (f"per image: horizontal flip p=0.5; random crop with {CROP_PAD} px reflect padding; "
                          f"brightness and contrast (and saturation for RGB) x U[{1 - JITTER:g}, {1 + JITTER:g}]")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL and torchvision use for grayscale


class ConditionalGenerator(Protocol):
    """What CAS needs from a generator; ``LoadedGenerator`` has it (``class_names`` and ``meta`` optional)."""

    num_classes: int

    def generate(self, seeds: Sequence[int], labels: Tensor | Sequence[int] | int | None = None,
                 psi: float = 1.0) -> Tensor: ...


# ---------------------------------------------------------------------------------------------------------
# Data


def per_class_subset(labels: np.ndarray, n_per_class: int, seed: int = 0, num_classes: int | None = None,
                     class_names: Sequence[str] | None = None) -> np.ndarray:
    """Sorted indices of ``n_per_class`` images of every class, chosen by ``seed``.

    Each class has its own random order seeded by (seed, class), and the subset is its first ``n_per_class``
    images: the choice for one class does not depend on the others, and a smaller subset is contained in a
    larger one with the same seed. Classes are ``0..num_classes-1`` (default: those present in ``labels``).
    """
    if n_per_class < 1:
        raise ValueError(f"images per class must be at least 1, got {n_per_class}")
    labels = np.asarray(labels)
    classes = range(num_classes) if num_classes is not None else np.unique(labels).tolist()
    picked = []
    for k in classes:
        idx = np.flatnonzero(labels == k)
        if len(idx) < n_per_class:
            name = f"class {k}" + (f" ({class_names[k]})" if class_names is not None and k < len(class_names) else "")
            raise ValueError(f"{name} has only {len(idx)} training images, fewer than the {n_per_class} per "
                             f"class asked for")
        picked.append(idx[np.random.default_rng([seed, int(k)]).permutation(len(idx))[:n_per_class]])
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def check_generator(generator: ConditionalGenerator, num_classes: int,
                    class_names: Sequence[str] | None = None) -> None:
    """Raise ValueError unless the generator is conditional on the same classes as the data."""
    k = int(getattr(generator, "num_classes", 0) or 0)
    if not k:
        raise ValueError("CAS needs a class-conditional generator; this snapshot is unconditional")
    if k != num_classes:
        raise ValueError(f"the generator has {k} classes but the dataset has {num_classes}; train and test on the "
                         f"data the generator was trained on")
    g_names = list(getattr(generator, "class_names", None) or [])
    if class_names is not None and g_names and g_names != list(class_names):
        raise ValueError(f"the generator's classes {g_names} are not the dataset's {list(class_names)} "
                         f"(same names in the same order needed: class k must mean the same thing to both)")


def _resize(x: Tensor, resolution: int, fit: str = "resize") -> Tensor:
    # Bilinear with antialias: a proper low-pass when shrinking (plain bilinear aliases), smooth when growing.
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    if fit == "pad" and x.shape[-1] <= resolution and x.shape[-2] <= resolution:
        # Centred on black (-1), as load_dataset(resize="pad") brings Fashion-MNIST 28 -> 32.
        top, left = (resolution - x.shape[-2]) // 2, (resolution - x.shape[-1]) // 2
        return F.pad(x, (left, resolution - x.shape[-1] - left, top, resolution - x.shape[-2] - top), value=-1.0)
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def synthesize_per_class(generator: ConditionalGenerator, per_class: int, first_seed: int = 0, trunc: float = 1.0,
                         batch: int = 256, *, resolution: int | None = None, channels: int | None = None,
                         num_classes: int | None = None, class_names: Sequence[str] | None = None,
                         fit: str = "resize") -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` samples of every class as (uint8 ``[K * per_class, C, H, W]``, int64 labels), class-major.

    Class k uses latent seeds ``first_seed + k * per_class ...``, the layout of ``ganforge synthesize``, so each
    image can be re-drawn. Images are brought to ``resolution`` if given (``fit``: "resize", or "pad" smaller
    images on black as the real data was); ``channels``, ``num_classes`` and
    ``class_names`` (the real data's) are checked against the generator when given.
    """
    if per_class < 1:
        raise ValueError(f"synthetic images per class must be at least 1, got {per_class}")
    k_classes = int(getattr(generator, "num_classes", 0) or 0)
    check_generator(generator, num_classes if num_classes is not None else k_classes, class_names)
    images, labels = [], []
    for k in range(k_classes):
        seeds = range(first_seed + k * per_class, first_seed + (k + 1) * per_class)
        for i in range(0, per_class, batch):
            part = list(seeds[i:i + batch])
            x = generator.generate(part, labels=k, psi=trunc).float().cpu()
            if channels is not None and x.shape[1] != channels:
                raise ValueError(f"the generator makes {x.shape[1]}-channel images but the dataset has {channels} "
                                 f"channels; load the data with channels={x.shape[1]}")
            if resolution is not None:
                x = _resize(x, resolution, fit)
            images.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
            labels.append(np.full(len(part), k, np.int64))
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------------------------------------------------
# Classical augmentation


def _rand(n: int, g: torch.Generator, x: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """U[low, high) per sample -> [N, 1, 1, 1], drawn on the CPU generator (same numbers on any device)."""
    return (torch.rand(n, 1, 1, 1, generator=g) * (high - low) + low).to(device=x.device, dtype=x.dtype)


def classical_augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random horizontal flip, random crop with 2 px reflect padding, and brightness / contrast (and saturation
    for RGB) jitter of +-20 %, drawn independently per image from ``g``. ``x`` is float [N, C, H, W] in [-1, 1];
    for C = 2 or 4 the last channel is alpha and only moves with the geometry."""
    # Applied on the fly inside the training loop rather than by materialising augmented copies: every step
    # sees fresh views, memory does not grow with the number of copies, and arm (d) trains on exactly the
    # same number of steps x batch images as the other arms, drawn from the same N real images per class.
    n, c, h, w = x.shape
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    p = CROP_PAD
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    oy, ox = (torch.randint(0, 2 * p + 1, (n,), generator=g).to(x.device) for _ in range(2))
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, W]
    batch_idx = torch.arange(n, device=x.device)[:, None, None, None]
    x = padded[batch_idx, torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    k = c - 1 if c in (2, 4) else c  # colour channels; alpha is left alone
    u, alpha = (x[:, :k] + 1) / 2, x[:, k:]  # jitter in [0, 1], as the usual definitions do
    luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)[:, None, None]

    def grey(v: Tensor) -> Tensor:
        return (v * luma).sum(1, keepdim=True) if k == 3 else v

    u = (u * _rand(n, g, x, 1 - JITTER, 1 + JITTER)).clamp(0, 1)  # brightness
    m = grey(u).mean(dim=(1, 2, 3), keepdim=True)
    u = ((u - m) * _rand(n, g, x, 1 - JITTER, 1 + JITTER) + m).clamp(0, 1)  # contrast, around the mean grey
    if k == 3:  # saturation, toward or away from each pixel's grey; none for grayscale data
        m = grey(u)
        u = ((u - m) * _rand(n, g, x, 1 - JITTER, 1 + JITTER) + m).clamp(0, 1)
    return torch.cat([u * 2 - 1, alpha], dim=1)


# ---------------------------------------------------------------------------------------------------------
# The protocol


@dataclass
class CasConfig:
    """The classifier and training recipe shared by every arm, plus where the samples come from."""

    steps: int = 2000  # optimizer steps per classifier, the same for every arm and N (not epochs)
    batch: int = 128
    lr: float = 2e-3
    width: int = 32  # ganforge.nets.classifier.Classifier width
    subset_seed: int = 0  # picks the real N-per-class subsets (fixed across training seeds)
    synthetic_first_seed: int = 0  # latent seed of the first synthetic image (fixed across training seeds)
    trunc: float = 1.0  # truncation psi for the synthetic images (StyleGAN2 only when != 1)
    gen_batch: int = 256
    arms: tuple[str, ...] = ARMS
    device: str = "cpu"
    fit: str = "resize"  # how synthetic images reach the real resolution: "resize", or "pad" (Fashion-MNIST 28 -> 32)


@dataclass
class ArmResult:
    """Test accuracies of one arm at one real-set size, one per training seed (in the order of ``seeds``)."""

    arm: str
    real_per_class: int | None  # None for the synthetic-only arm
    train_images: int
    accuracies: list[float]
    mean: float = field(init=False)
    std: float = field(init=False)  # sample std over seeds (ddof=1); 0 for a single seed

    def __post_init__(self) -> None:
        self.mean, self.std = mean_std(self.accuracies)


@dataclass
class CasReport:
    """Everything one ``run_cas`` measured, and the protocol needed to reproduce or compare it."""

    config: CasConfig
    real_per_class: list[int]
    synthetic_per_class: int
    seeds: list[int]
    data: dict[str, Any]  # resolution, channels, num_classes, class_names, train/test set sizes
    generator: dict[str, Any]  # snapshot path and sha256, arch, kimg, native resolution, resized or not
    results: list[ArmResult]
    seconds: float = 0.0

    def result(self, arm: str, real_per_class: int | None = None) -> ArmResult:
        """The result of ``arm`` at ``real_per_class`` (ignored for the synthetic arm)."""
        for r in self.results:
            if r.arm == arm and (arm == "synthetic" or r.real_per_class == real_per_class):
                return r
        raise KeyError(f"no result for arm {arm!r} at {real_per_class} real images per class")

    def uplift(self, arm: str, real_per_class: int) -> dict[str, Any]:
        """Accuracy of ``arm`` minus that of the real-only arm, paired by seed (same initial weights)."""
        base, other = self.result("real", real_per_class), self.result(arm, real_per_class)
        diffs = [b - a for a, b in zip(base.accuracies, other.accuracies, strict=True)]
        mean, std = mean_std(diffs)
        return {"arm": arm, "real_per_class": real_per_class, "mean": mean, "std": std, "per_seed": diffs}

    def uplifts(self) -> list[dict[str, Any]]:
        arms = [a for a in ("real+synthetic", "real+classical") if a in self.config.arms]
        if "real" not in self.config.arms:
            return []
        return [self.uplift(a, n) for n in self.real_per_class for a in arms]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "metric": "cas",
            "ganforge_version": __version__,
            "protocol": {**asdict(self.config), "arms": list(self.config.arms), "real_per_class": self.real_per_class,
                         "synthetic_per_class": self.synthetic_per_class, "seeds": self.seeds,
                         "classifier": {"arch": "classifier", "width": self.config.width},
                         "augmentation": {"real": "none", "real+synthetic": "none", "synthetic": "none",
                                          "real+classical": CLASSICAL_AUGMENTATION},
                         "real+synthetic_mixing": "batches drawn uniformly from the union of real and synthetic",
                         "test_set": "the full real test set"},
            "data": dict(self.data),
            "generator": dict(self.generator),
            "results": [asdict(r) for r in self.results],
            "uplift": self.uplifts(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CasReport:
        """Inverse of ``to_dict`` (derived fields are recomputed)."""
        p = d["protocol"]
        config = CasConfig(**{k: p[k] for k in CasConfig.__dataclass_fields__})
        config.arms = tuple(config.arms)
        results = [ArmResult(r["arm"], r["real_per_class"], r["train_images"], list(r["accuracies"]))
                   for r in d["results"]]
        return cls(config, list(p["real_per_class"]), p["synthetic_per_class"], list(p["seeds"]), dict(d["data"]),
                   dict(d["generator"]), results, d.get("seconds", 0.0))

    def table_rows(self) -> list[list[str]]:
        """Header plus one row per N: accuracy mean +- std of each arm, then the uplifts over (a)."""
        arms = [a for a in ARMS if a in self.config.arms]
        ups = [a for a in ("real+synthetic", "real+classical") if a in arms and "real" in arms]
        head = ["real/class"] + [f"({_ARM_LETTERS[a]}) {a}" for a in arms]
        head += [f"{_ARM_LETTERS[a]}-a" for a in ups]
        sizes: list[int | None] = list(self.real_per_class) or [None]
        rows = [head]
        for n in sizes:
            row = ["-" if n is None else str(n)]
            for a in arms:
                if a != "synthetic" and n is None:
                    row.append("-")
                    continue
                r = self.result(a, n)
                row.append(f"{r.mean:.4f} ± {r.std:.4f}")
            for a in ups:
                u = self.uplift(a, n) if n is not None else None
                row.append("-" if u is None else f"{u['mean']:+.4f} ± {u['std']:.4f}")
            rows.append(row)
        return rows

    def summary_lines(self) -> list[str]:
        """The table as aligned text, for the console."""
        rows = self.table_rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for fewer than two values)."""
    a = np.asarray(values, dtype=np.float64)
    if not len(a):
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _generator_info(generator: ConditionalGenerator | None, snapshot: str | Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {"snapshot": None if snapshot is None else str(snapshot), "sha256": None}
    if snapshot is not None:
        from ganforge.core.snapshot import snapshot_hash

        info["sha256"] = snapshot_hash(snapshot)
    meta = getattr(generator, "meta", None) or {}
    info.update(arch=meta.get("arch"), kimg=meta.get("kimg"), resolution=(meta.get("dataset") or {}).get("resolution"))
    return info


def run_cas(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
            generator: ConditionalGenerator | None, real_per_class: Sequence[int], synthetic_per_class: int,
            seeds: Sequence[int], config: CasConfig | None = None, *, class_names: Sequence[str] | None = None,
            num_classes: int | None = None, snapshot: str | Path | None = None,
            log: Callable[[str], None] = print) -> CasReport:
    """Train and test the four arms (see the module docstring) for every N in ``real_per_class`` and every
    training seed. Images are uint8 ``[N, C, H, W]`` (the classifier's resolution is the real data's, a
    multiple of 8); ``generator`` may be None when ``config.arms`` has no synthetic arm. ``snapshot`` (the
    generator's path) is recorded with its SHA-256. Everything is validated before any training starts."""
    # Fairness across arms: every classifier has the same architecture, optimizer, one-cycle schedule, batch
    # size and number of optimizer steps (small sets are revisited more often rather than trained for
    # fewer updates); a training seed gives the same initial weights and the same random stream in every arm,
    # so per-seed differences between arms are paired; (a), (b) and (d) use the very same real images; (b)
    # and (c) the very same synthetic images; only (d) is augmented; all are tested on the same full test set.
    cfg = config or CasConfig()
    t0 = time.perf_counter()
    unknown = [a for a in cfg.arms if a not in ARMS]
    if unknown or not cfg.arms:
        raise ValueError(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    if not seeds:
        raise ValueError("give at least one training seed")
    if cfg.steps < 1:
        raise ValueError(f"steps must be at least 1, got {cfg.steps}")
    train_images, test_images = np.asarray(train_images), np.asarray(test_images)
    train_labels, test_labels = np.asarray(train_labels, np.int64), np.asarray(test_labels, np.int64)
    for name, x, y in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != x.shape[3]:
            raise ValueError(f"{name} images must be uint8 [N, C, H, H], got {x.dtype} {list(x.shape)}")
        if y.shape != (len(x),):
            raise ValueError(f"{name} labels must be [{len(x)}], got {list(y.shape)}")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(f"train images are {list(train_images.shape[1:])} but test images "
                         f"{list(test_images.shape[1:])}")
    channels, resolution = train_images.shape[1], train_images.shape[2]
    if resolution % 8:
        raise ValueError(f"the classifier needs a resolution divisible by 8, got {resolution}")
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else int(max(train_labels.max(),
                                                                               test_labels.max())) + 1
    real_arms = [a for a in REAL_ARMS if a in cfg.arms]
    sizes = [int(n) for n in real_per_class] if real_arms else []
    if real_arms and not sizes:
        raise ValueError(f"arms {real_arms} need at least one real-set size (real_per_class)")
    needs_synth = "synthetic" in cfg.arms or "real+synthetic" in cfg.arms
    if needs_synth:
        if generator is None:
            raise ValueError("the synthetic arms need a generator")
        check_generator(generator, num_classes, class_names)
    subsets = {n: per_class_subset(train_labels, n, cfg.subset_seed, num_classes, class_names) for n in sizes}

    synth_x = synth_y = None
    if needs_synth:
        log(f"cas: drawing {synthetic_per_class} synthetic images per class ({num_classes} classes, "
            f"psi {cfg.trunc:g})")
        synth_x, synth_y = synthesize_per_class(generator, synthetic_per_class, cfg.synthetic_first_seed,
                                                cfg.trunc, cfg.gen_batch, resolution=resolution, channels=channels,
                                                num_classes=num_classes, class_names=class_names, fit=cfg.fit)

    def train_and_test(arm: str, n: int | None, x: np.ndarray, y: np.ndarray, seed: int) -> float:
        t = time.perf_counter()
        net = fit_classifier(x, y, num_classes, cfg.steps, batch=cfg.batch, lr=cfg.lr, width=cfg.width, seed=seed,
                             augment=classical_augment if arm == "real+classical" else None, device=cfg.device)
        acc = accuracy(net, test_images, test_labels)
        where = "" if n is None else f" N={n}/class"
        log(f"cas seed {seed}{where} ({_ARM_LETTERS[arm]}) {arm}: {len(x)} train images, test accuracy {acc:.4f} "
            f"({time.perf_counter() - t:.1f} s)")
        return acc

    accs: dict[tuple[str, int | None], list[float]] = {}
    sizes_of: dict[tuple[str, int | None], int] = {}
    for seed in seeds:
        if "synthetic" in cfg.arms:
            accs.setdefault(("synthetic", None), []).append(train_and_test("synthetic", None, synth_x, synth_y, seed))
            sizes_of[("synthetic", None)] = len(synth_x)
        for n in sizes:
            rx, ry = train_images[subsets[n]], train_labels[subsets[n]]
            for arm in real_arms:
                x, y = (np.concatenate([rx, synth_x]), np.concatenate([ry, synth_y])) if arm == "real+synthetic" \
                    else (rx, ry)
                accs.setdefault((arm, n), []).append(train_and_test(arm, n, x, y, seed))
                sizes_of[(arm, n)] = len(x)

    order = [("synthetic", None)] if "synthetic" in cfg.arms else []
    order += [(a, n) for n in sizes for a in real_arms]
    results = [ArmResult(a, n, sizes_of[(a, n)], accs[(a, n)]) for a, n in order]
    gen_info = _generator_info(generator, snapshot) if needs_synth else {"snapshot": None, "sha256": None}
    if needs_synth:  # None when the generator does not say its resolution
        native = gen_info.get("resolution")
        gen_info["resized"] = None if native is None else native != resolution
    data = {"resolution": resolution, "channels": channels, "num_classes": num_classes,
            "class_names": list(class_names) if class_names is not None else [],
            "train_images": len(train_images), "test_images": len(test_images)}
    report = CasReport(cfg, sizes, synthetic_per_class if needs_synth else 0, [int(s) for s in seeds], data,
                       gen_info, results, seconds=time.perf_counter() - t0)
    log(f"cas: {len(results)} results from {sum(len(r.accuracies) for r in results)} classifiers "
        f"in {report.seconds:.0f} s")
    return report


def run_cas_on_dataset(snapshot: str | Path, data: str | Path, real_per_class: Sequence[int],
                       synthetic_per_class: int, seeds: Sequence[int], config: CasConfig | None = None,
                       log: Callable[[str], None] = print) -> CasReport:
    """:func:`run_cas` for a conditional snapshot (path or run folder) against a labelled dataset: a built-in
    name or a folder of class subfolders with ``train/`` and ``test/`` splits. The generator is loaded on
    ``config.device``; both splits are loaded at its resolution rounded up to a multiple of 8, padded on black,
    and the synthetic images are padded the same way (``config.fit`` is set to "pad")."""
    cfg = replace(config or CasConfig(), fit="pad")
    G = load_generator(snapshot, device=cfg.device)
    # The fixed classifier needs a multiple of 8: smaller images are padded (Fashion-MNIST 28 -> 32), not resized.
    resolution = -(-G.net.resolution // 8) * 8
    train_set = load_dataset(data, resolution, resize="pad", use_labels=True)
    test_set = load_dataset(data, resolution, resize="pad", use_labels=True, split="test")
    return run_cas(train_set.images, train_set.labels, test_set.images, test_set.labels, G, real_per_class,
                   synthetic_per_class, seeds, cfg, class_names=train_set.class_names, snapshot=snapshot, log=log)
