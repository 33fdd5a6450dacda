"""The judge: a small classifier trained on a labelled dataset, whose features give domain FID/KID and whose
predictions score how recognisable each class of a conditional generator is. Saved as a snapshot
(safetensors + JSON, task "judge")."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ganforge import __version__
from ganforge.nets.classifier import Classifier
from ganforge.train.checkpoint import CheckpointError, load_snapshot_files, save_snapshot


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.array(images))  # a copy: memmapped caches are read-only
    return images.float().div(127.5).sub(1.0)


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int = 5,
                     batch: int = 128, lr: float = 2e-3, width: int = 32, seed: int = 0,
                     log: Callable[[str], None] = print) -> Classifier:
    """Adam with a cosine schedule; random translation by up to 2 px as augmentation."""
    torch.manual_seed(seed)
    n, c, h, _ = images.shape
    net = Classifier(resolution=h, channels=c, num_classes=num_classes, width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x_all, y_all = torch.as_tensor(np.array(images)), torch.as_tensor(np.array(labels))  # writable copies
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(n // batch):
            idx = perm[i * batch:(i + 1) * batch]
            x = to_float(x_all[idx])
            dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
            x = torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (dy, dx), (2, 3))[:, :, 2:-2, 2:-2]
            loss = F.cross_entropy(net(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"judge epoch {epoch + 1}/{epochs}: loss {total / max(1, n // batch):.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    return net.eval()


@torch.no_grad()
def accuracy(net: Classifier, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    x = images if isinstance(images, torch.Tensor) and images.is_floating_point() else to_float(images)
    _, logits = net.predict(x)
    return float((logits.argmax(1) == torch.as_tensor(np.asarray(labels))).float().mean())


def save_judge(net: Classifier, folder: Path, name: str, meta: dict[str, Any]) -> Path:
    return save_snapshot(folder, name, net.state_dict(), {"task": "judge", "arch": "classifier",
                                                          "net_config": net.config,
                                                          "ganforge_version": __version__, **meta})


def load_judge(path: str | Path) -> Classifier:
    tensors, meta = load_snapshot_files(path)
    if meta.get("task") != "judge":
        raise CheckpointError(f"{path} is a {meta.get('task')!r} snapshot, not a judge")
    net = Classifier(**meta["net_config"])
    net.load_state_dict(tensors)
    return net.eval().requires_grad_(False)
