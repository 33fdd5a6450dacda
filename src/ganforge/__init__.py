"""ganforge: train GANs on your own images and put them to work.

Importing the package is cheap: torch and the heavy modules load on first use.

    import ganforge
    G = ganforge.load("runs/00001-shapes-dcgan-32/snapshots/latest")   # the snapshot's pipeline
    images = G.generate(seeds=range(16))            # [16, C, H, W] float in [-1, 1]
    clean = ganforge.load("runs/00002-photos-denoise-25")(noisy_pixels)  # [H, W, C] uint8/uint16 in and out
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from ganforge.core.version import __version__

if TYPE_CHECKING:
    from ganforge.config import TrainConfig
    from ganforge.infer.snapshot import LoadedGenerator

__all__ = ["__version__", "load", "train", "resolve_config"]

# On Linux, PyTorch's CPU allocator backs every tensor of 2 MB or more with transparent huge pages when
# THP_MEM_ALLOC_ENABLE=1, read once when torch loads: fewer page faults and TLB misses for the weights, gradients and
# Adam state a CPU training step streams (pix2pix-128 at batch 1: 0.43-0.45 instead of 0.44-0.50 s per step on one
# thread, docs/benchmarks.md). Set here, before torch loads (the CLI, the studio and its workers import ganforge
# first), unless the user chose: THP_MEM_ALLOC_ENABLE=0 opts out; importing torch first leaves torch's default.
if sys.platform.startswith("linux") and "torch" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def load(snapshot: str, device: str = "cpu") -> LoadedGenerator | Any:
    """Load a snapshot (path with or without ``.safetensors``, or a run folder) as its task's pipeline
    (``ganforge.infer.pipelines.PIPELINES``): a callable generator for GANs, a tiled restorer for restoration."""
    from ganforge.infer.pipelines import load_pipeline

    return load_pipeline(snapshot, device=device)


def train(config: TrainConfig, resume: str | None = None, progress: bool = True) -> Any:
    """Run the training loop for ``config`` (see ``resolve_config``); returns the run folder."""
    from ganforge.training.loop import train as _train

    return _train(config, resume=resume, progress=progress)


def resolve_config(preset: str | None = None, **sections: Any) -> TrainConfig:
    """``resolve_config("dcgan-32", data={"source": "~/photos"}, run={"kimg": 50})``"""
    from ganforge.config import resolve_config as _resolve

    return _resolve(preset, sections)
