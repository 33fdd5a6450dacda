"""Training data as the loop sees it: an indexed set that turns a list of indices into a batch of tensors.

The loop draws indices (a pure function of seed, rank and step, see training/loop.py ``EpochSampler``) and calls
``fetch(idx, gen, device)``; every random choice a batch needs (flips, crops, the partner of an unpaired image,
a degradation) comes from ``gen``, the step's generator, so resume and multi-process runs stay exact. What a
batch holds is the task's business: ``{"image", "label"}`` for a GAN, ``{"input", "target"}`` for restoration,
``{"A", "B"}`` for unpaired translation, ``{"image", "mask"}`` for inpainting. Each task picks its data class
in its ``load_data``; all of them implement ``TrainData``.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ganforge.data.dataset import ImageDataset, IntakeReport

GPU_CACHE_MAX_BYTES = 2 * 2**30  # uint8 datasets up to this size live on the GPU during CUDA training


class TrainData(Protocol):
    name: str              # short [a-z0-9-] name for the run folder
    channels: int          # channels of the training target images
    num_classes: int       # 0 when unlabeled
    class_names: list[str]
    report: IntakeReport   # skipped files etc., logged at the start of a run

    def __len__(self) -> int: ...

    def fingerprint(self) -> str:
        """Identity of the data, checked on resume."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary stored in snapshots."""
        ...

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """A batch for the indices ``idx``: float tensors [N, C, H, W] in [-1, 1] (labels int64 [N])."""
        ...

    def preview(self, idx: np.ndarray) -> np.ndarray:
        """uint8 [N, C, H, W]: the training targets at ``idx`` (deterministic), for samples/reals.png."""
        ...


def to_float(x: Tensor) -> Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


class ImageBatches:
    """Single images (with class labels when the data has them), for generative tasks.

    The whole uint8 cache is indexed directly (no worker processes); on CUDA a cache that fits moves to the
    GPU once, so batches are gathered there with no per-step host-to-device copy (about a tenth of a small
    model's step time otherwise). ``xflip`` mirrors each image with probability 1/2.
    """

    def __init__(self, data: ImageDataset, xflip: bool, device: torch.device):
        self.data, self.xflip = data, xflip
        self.name, self.channels, self.report = data.name, data.channels, data.report
        self.num_classes, self.class_names = data.num_classes, list(data.class_names)
        self.images: Tensor | None = None  # None: a disk-backed memmap, indexed through numpy
        if not isinstance(data.images, np.memmap):
            with warnings.catch_warnings():  # the cache is read-only on purpose; we only ever index it
                warnings.simplefilter("ignore", UserWarning)
                self.images = torch.from_numpy(data.images)
            if device.type == "cuda" and data.images.nbytes <= GPU_CACHE_MAX_BYTES:
                self.images = self.images.to(device)
        self.labels = torch.from_numpy(data.labels) if data.labels is not None else None

    def __len__(self) -> int:
        return len(self.data)

    def fingerprint(self) -> str:
        return self.data.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.data.describe()

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        x = self.images[torch.from_numpy(idx).to(self.images.device)] if self.images is not None \
            else torch.from_numpy(self.data.images[idx])
        x = to_float(x.to(device, non_blocking=True))                                   # [N, C, H, W]
        if self.xflip:
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        batch = {"image": x}
        if self.labels is not None:
            batch["label"] = self.labels[torch.from_numpy(idx)].to(device)               # [N]
        return batch

    def preview(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.data.images[idx])
