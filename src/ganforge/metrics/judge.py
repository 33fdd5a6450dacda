"""The judge: a small classifier trained on a labelled dataset, whose features give domain FID/KID and whose
predictions score how recognisable each class of a conditional generator is. Saved as a snapshot
(safetensors + JSON, task "judge")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ganforge.core.files import CheckpointError, file_sha256
from ganforge.core.snapshot import load_snapshot, save_snapshot
from ganforge.core.version import __version__
from ganforge.metrics.domain import fit_domain, save_domain
from ganforge.nets.classifier import Classifier


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.array(images))  # a copy: memmapped caches are read-only
    return images.float().div(127.5).sub(1.0)


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as PIL's "L" conversion
JUDGE_FITS = ("resize", "pad")


def judge_input(x: Tensor, channels: int, resolution: int, fit: str = "resize") -> Tensor:
    """Bring images in [-1, 1] of any channel count and size to what a judge takes: ``[N, channels, resolution,
    resolution]``. Differentiable (projection uses it inside its loss).

    Channels: gray -> RGB by repetition, RGB -> gray by the ITU-R 601 luma weights, alpha (the last of 2 or 4
    channels) composited over black and dropped; an RGBA judge gets an opaque alpha. Size: ``fit="pad"`` centres
    images no larger than the judge's resolution on black, as ``load_dataset(resize="pad")`` does for built-ins
    (Fashion-MNIST 28 -> 32); anything else is resized with bilinear interpolation (antialiased when shrinking).
    """
    if fit not in JUDGE_FITS:
        raise ValueError(f"judge fit must be one of {', '.join(JUDGE_FITS)}, got {fit!r}")
    assert x.ndim == 4 and x.shape[1] in (1, 2, 3, 4), f"expected [N, 1..4, H, W], got {list(x.shape)}"
    c = x.shape[1]
    if c in (2, 4):  # composite over black, then drop alpha: black is -1 in [-1, 1]
        alpha = (x[:, -1:] + 1) / 2
        x = (x[:, :-1] + 1) * alpha - 1
        c -= 1
    if c == 1 and channels >= 3:
        x = x.repeat(1, 3, 1, 1)
    elif c == 3 and channels == 1:
        x = (x * x.new_tensor(_LUMA)[None, :, None, None]).sum(1, keepdim=True)
    if channels == 4:  # an RGBA judge: opaque
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    h, w = x.shape[-2:]
    if fit == "pad" and h <= resolution and w <= resolution and (h, w) != (resolution, resolution):
        top, left = (resolution - h) // 2, (resolution - w) // 2  # the split load_dataset's padding uses
        x = F.pad(x, (left, resolution - w - left, top, resolution - h - top), value=-1.0)
    elif h != resolution or w != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=w > resolution)
    return x  # [N, channels, resolution, resolution]


# A training-time augmentation: float [N, C, H, W] in [-1, 1] and the loop's CPU generator -> same shape.
Augment = Callable[[Tensor, torch.Generator], Tensor]


def translate(x: Tensor, g: torch.Generator) -> Tensor:
    """The judge's augmentation: the whole batch shifted by up to 2 px, filling with black."""
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    return torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (dy, dx), (2, 3))[:, :, 2:-2, 2:-2]


def fit_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, steps: int, batch: int = 128,
                   lr: float = 2e-3, width: int = 32, seed: int = 0, augment: Augment | None = None,
                   device: str | torch.device = "cpu", progress_every: int = 0,
                   on_progress: Callable[[int, float], None] | None = None) -> Classifier:
    """Train a fresh ``Classifier`` for exactly ``steps`` Adam steps (one-cycle schedule) on uint8 images.

    Batches walk through random permutations of the set (the last partial batch of each pass is dropped);
    a set smaller than ``batch`` fills each batch from several fresh permutations, so every step sees
    ``batch`` samples whatever the set size. The same ``seed`` gives the same initial weights for any data.
    ``on_progress(step, mean loss since the last call)`` runs every ``progress_every`` steps.
    """
    if steps < 1:
        raise ValueError(f"need at least one training step, got {steps} (check epochs, batch and set size)")
    n, c, h, _ = images.shape
    if n == 0:
        raise ValueError("cannot train a classifier on an empty set")
    torch.manual_seed(seed)
    dev = torch.device(device)
    net = Classifier(resolution=h, channels=c, num_classes=num_classes, width=width).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x_all, y_all = torch.as_tensor(np.array(images)), torch.as_tensor(np.array(labels))  # writable copies
    g = torch.Generator().manual_seed(seed)
    order, pos = torch.empty(0, dtype=torch.long), 0
    total = torch.zeros((), device=dev)
    net.train()
    for step in range(1, steps + 1):
        if pos + batch > len(order):
            order, pos = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-batch // n))]), 0
        idx = order[pos:pos + batch]
        pos += batch
        x = to_float(x_all[idx]).to(dev)
        if augment is not None:
            x = augment(x, g)
        loss = F.cross_entropy(net(x), y_all[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach()  # summed on the device: no host sync per step
        if on_progress is not None and progress_every and step % progress_every == 0:
            on_progress(step, float(total) / progress_every)
            total.zero_()
    return net.eval()


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 5,
                     batch: int = 128, lr: float = 2e-3, width: int = 32, seed: int = 0,
                     log: Callable[[str], None] = print) -> Classifier:
    """Adam with a cosine schedule; random translation by up to 2 px as augmentation."""
    per_epoch = len(images) // batch
    t0 = time.perf_counter()

    def report(step: int, loss: float) -> None:
        log(f"judge epoch {step // per_epoch}/{epochs}: loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")

    return fit_classifier(images, labels, num_classes, steps=epochs * per_epoch, batch=batch, lr=lr,
                          width=width, seed=seed, augment=translate, progress_every=per_epoch, on_progress=report)


@torch.no_grad()
def accuracy(net: Classifier, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
             batch: int = 500) -> float:
    """Top-1 accuracy, in batches on the net's device (uint8 images are converted a batch at a time)."""
    net.eval()
    device = next(net.parameters()).device
    y = torch.as_tensor(np.asarray(labels))
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        x = x if isinstance(x, torch.Tensor) and x.is_floating_point() else to_float(x)
        correct += int((net(x.to(device)).argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / max(1, len(images))


def save_judge(net: Classifier, folder: Path, name: str, meta: dict[str, Any]) -> Path:
    """Write the judge snapshot ``<folder>/<name>.safetensors`` + ``.json``. A ``meta["domain_stats"]``
    (``metrics.domain.DomainStats``, as ``train_judge`` returns) is written beside it as
    ``<name>.domain.safetensors`` and summarised in the JSON as ``domain_check``."""
    meta = dict(meta)
    domain = meta.pop("domain_stats", None)
    if domain is not None:
        meta["domain_check"] = domain.summary()
    path = save_snapshot(folder, name, {"net": net.state_dict()},
                         {"task": "judge", "pipeline": "judge", "arch": "classifier",
                          "modules": {"net": {"net": "classifier", "config": net.config}},
                          "ganforge_version": __version__, **meta})
    if domain is not None:
        save_domain(replace(domain, judge_sha256=file_sha256(path)), path)
    return path


def load_judge(path: str | Path) -> Classifier:
    tensors, meta = load_snapshot(path)
    if meta.get("task") != "judge":
        raise CheckpointError(f"{path} is a {meta.get('task')!r} snapshot, not a judge")
    net = Classifier(**meta["modules"]["net"]["config"])
    net.load_state_dict(tensors["net"])
    return net.eval().requires_grad_(False)


@torch.no_grad()
def judge_features_of(net: Classifier, images: np.ndarray, batch: int = 500) -> Tensor:
    """Pooled penultimate features float32 ``[N, feature_dim]`` of uint8 images already at the judge's input
    size and channels (its training data), in batches on the net's device."""
    device = next(net.parameters()).device
    out = [torch.empty(0, net.feature_dim)]
    for i in range(0, len(images), batch):
        out.append(net.features(to_float(images[i:i + batch]).to(device)).float().cpu())
    return torch.cat(out)


def train_judge(source: str, resolution: int = 32, resize: str = "pad", epochs: int = 6, width: int = 32,
                seed: int = 0, log: Callable[[str], None] = print) -> tuple[Classifier, dict[str, Any]]:
    """Train a judge on a labelled dataset (built-in, or a folder with one subfolder per class) and measure it.

    Accuracy is measured on the dataset's test split when it has one (built-ins; folders with train/ and test/),
    otherwise on a fixed 10 % of the images held out from training (seeded by ``seed``). Returns the network
    and the metadata saved with it (dataset, accuracy and how it was measured, the recipe, and ``domain_stats``:
    the ``metrics.domain.DomainStats`` that ``save_judge`` writes beside the snapshot)."""
    from ganforge.data import DatasetError, load_dataset

    data = load_dataset(source, resolution, resize=resize, use_labels=True)
    try:
        test = load_dataset(source, resolution, resize=resize, use_labels=True, split="test")
        x, y, how = data.images, data.labels, f"test split ({len(test)} images)"
        x_test, y_test = test.images, test.labels
    except DatasetError:
        perm = np.random.default_rng(seed).permutation(len(data))
        hold = np.sort(perm[:max(1, len(data) // 10)])
        keep = np.sort(perm[max(1, len(data) // 10):])
        x, y, x_test, y_test = data.images[keep], data.labels[keep], data.images[hold], data.labels[hold]
        how = f"10 % held out from training ({len(hold)} images, seed {seed})"
    if len(x) < 128:
        raise ValueError(f"{source}: {len(x)} training images is too few to train a judge (need >= 128)")
    net = train_classifier(x, y, data.num_classes, epochs=epochs, width=width, seed=seed,
                           batch=min(128, max(16, len(x) // 8)), log=log)  # small sets: more steps
    acc = accuracy(net, x_test, y_test)
    # What the judge has seen, for the eval domain check (metrics/domain.py): Gaussians fitted on its training
    # features, the threshold from the held-out ones.
    domain = fit_domain(judge_features_of(net, x), y, judge_features_of(net, x_test),
                        fit_on=f"{source} training images ({len(x)})", threshold_on=how)
    meta = {"dataset": data.describe(), "class_names": list(data.class_names), "test_accuracy": acc,
            "accuracy_measured_on": how, "resize": resize, "domain_stats": domain,
            # How extractors bring other-sized images to this judge: pad (as Fashion-MNIST 28 -> 32) or resize.
            "input_fit": "pad" if resize == "pad" else "resize",
            "recipe": f"ganforge judge train --data {source} --resolution {resolution} --resize {resize} "
                      f"--epochs {epochs} --width {width} --seed {seed}"}
    return net, meta


# Projection (infer/project.py) takes any differentiable feature extractor; these make one from a judge.
def judge_features(path: str | Path, device: str | torch.device = "cpu") -> Callable[[Tensor], Tensor]:
    """A judge snapshot as a differentiable feature extractor for generator images (any channel count).

    Images are converted to the judge's channels (gray -> RGB by repetition, RGB -> gray by the ITU-R 601 luma
    weights, alpha composited over black and dropped) and resized to the judge's resolution with bilinear
    interpolation (antialiased when shrinking). Returns ``x [N, C, H, W] -> [N, feature_dim]`` (the judge's pooled
    penultimate features); the conversion is ``judge_input``. A small classifier trained on one
    domain: a crude perceptual signal, not LPIPS."""
    try:
        net = load_judge(path).to(device)
    except CheckpointError as exc:
        raise ValueError(f"--features judge:{path}: {exc}") from None

    def extract(x: Tensor) -> Tensor:
        return net.features(judge_input(x, net.channels, net.resolution))

    return extract


def parse_features(spec: str | None, device: str | torch.device = "cpu") -> Callable[[Tensor], Tensor] | None:
    """``none`` (or None) -> pixel loss only; ``judge:PATH`` -> :func:`judge_features`."""
    if spec is None or spec.strip().lower() == "none":
        return None
    kind, _, arg = spec.partition(":")
    if kind == "judge" and arg:
        return judge_features(arg, device)
    raise ValueError(f"--features must be 'none' or 'judge:PATH' (a judge snapshot), got {spec!r}")
