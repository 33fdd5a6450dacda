"""The one inference path: the pipeline table, keyed by the name a snapshot records (``meta["pipeline"]``).

Every task names its pipeline (``Task.pipeline``); the CLI, the studio and ``ganforge.load`` call
``load_pipeline`` and never build modules themselves. Each pipeline has one ``__call__``.

    generate   LoadedGenerator (infer/snapshot.py): latents (+ labels) -> images
    restore    RestorePipeline (infer/restore.py): degraded pixels -> restored pixels, tiled
    inpaint    InpaintPipeline (infer/inpaint.py): pixels + hole mask -> pixels filled inside the hole
    translate  TranslatePipeline (infer/translate.py): pixels of domain A -> B (or B -> A for CycleGAN)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganforge.core.device import resolve_device
from ganforge.core.files import CheckpointError
from ganforge.core.snapshot import load_snapshot
from ganforge.infer.inpaint import InpaintPipeline
from ganforge.infer.restore import RestorePipeline
from ganforge.infer.snapshot import LoadedGenerator
from ganforge.infer.translate import TranslatePipeline

PIPELINES: dict[str, Any] = {
    "generate": LoadedGenerator,
    "restore": RestorePipeline,
    "inpaint": InpaintPipeline,
    "translate": TranslatePipeline,
}


def load_pipeline(snapshot: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a snapshot (v1 or v2; a path with or without .safetensors, or a run folder) as its task's pipeline.
    ``device``: auto | cpu | cuda | cuda:N (a bad or missing device raises ValueError before anything is read)."""
    dev = resolve_device(device)
    tensors, meta = load_snapshot(snapshot)
    name = meta.get("pipeline")
    if name not in PIPELINES:
        raise CheckpointError(f"snapshot {snapshot}: pipeline {name!r} (task {meta.get('task')!r}) is not one this "
                              f"ganforge can run; known: {', '.join(PIPELINES)}")
    return PIPELINES[name].from_snapshot(tensors, meta, snapshot, dev)
