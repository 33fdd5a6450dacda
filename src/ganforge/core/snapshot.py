"""Snapshots (for inference): ``<name>.safetensors`` plus ``<name>.json`` saying how to rebuild the modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ganforge.core.files import CheckpointError, atomic_write_bytes, atomic_write_text, file_sha256

SNAPSHOT_FORMAT = "ganforge-snapshot/1"


def save_snapshot(folder: Path, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"format": SNAPSHOT_FORMAT, **meta}
    folder = Path(folder)
    # Weights first, then JSON: a snapshot is complete once its JSON exists.
    atomic_write_bytes(folder / f"{name}.safetensors", st_save(tensors))
    atomic_write_text(folder / f"{name}.json", json.dumps(meta, indent=2))
    return folder / f"{name}.safetensors"


def resolve_snapshot(path: str | Path) -> tuple[Path, Path]:
    """Accept ``snapshots/latest``, ``snapshots/latest.safetensors``, ``.json``, or a run folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "snapshots").is_dir():
            p = p / "snapshots" / "latest"
        elif (p / "latest.json").exists():
            p = p / "latest"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    weights, meta = p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")
    missing = [str(f) for f in (weights, meta) if not f.exists()]
    if missing:
        raise CheckpointError(f"snapshot {path}: missing {' and '.join(missing)}. A snapshot is a "
                              "<name>.safetensors + <name>.json pair, e.g. runs/00001-shapes-dcgan-32/snapshots/latest")
    return weights, meta


def load_snapshot_files(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    weights, meta_path = resolve_snapshot(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"snapshot metadata {meta_path} is unreadable: {exc}") from exc
    if meta.get("format") != SNAPSHOT_FORMAT:
        raise CheckpointError(f"{meta_path}: unknown snapshot format {meta.get('format')!r}, "
                              f"expected {SNAPSHOT_FORMAT!r}")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"snapshot weights {weights} are unreadable: {exc}") from exc
    return tensors, meta


def snapshot_hash(snapshot: str | Path) -> str:
    """SHA-256 of the snapshot's weights file: names exactly which model made an image."""
    return file_sha256(resolve_snapshot(snapshot)[0])
