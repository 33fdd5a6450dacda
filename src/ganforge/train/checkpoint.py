"""Atomic file writes, full-state checkpoints (resume) and snapshots (inference).

* A checkpoint is a ``torch.save`` of plain tensors, numbers and strings, loaded back with
  ``torch.load(weights_only=True)``: nothing is ever unpickled.
* A snapshot is ``<name>.safetensors`` (G_ema weights) plus ``<name>.json`` (how to rebuild it).
* Every write goes to a temporary file in the same folder, is fsynced, then renamed over the target,
  and the folder is fsynced. A kill at any moment leaves either the old or the new file, never half.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint or snapshot could not be written or read; the message says which file and what to do."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on some platforms (Windows); the rename is still atomic there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file so that readers only ever see the old or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(
                f"disk full while writing {path}; the previous files in {path.parent} are intact. "
                "Free some space, then continue with --resume."
            ) from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------
# Checkpoints (full training state, for exact resume)
# ---------------------------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (temporary files are ignored), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` atomically as ``ckpt-<step>.pt`` and delete all but the newest ``keep``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = checkpoint_path(folder, step)
    atomic_write_bytes(path, buf.getvalue())
    for _, old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or a pickle with arbitrary objects (refused)
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def load_latest_checkpoint(folder: Path, warn: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """Newest checkpoint that loads. A damaged newest file (e.g. a disk error) falls back to the previous."""
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {folder}; the run stopped before its first checkpoint. "
                              "Start it again without --resume.")
    errors = []
    for _, path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            warn(f"skipping unreadable checkpoint {path.name}; trying an older one")
    raise CheckpointError("no readable checkpoint:\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------------------------------------------------
# Snapshots (G_ema weights + metadata, for inference)
# ---------------------------------------------------------------------------------------------------------

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


def init_weights(source: str | Path, arch: str, modules: dict[str, torch.nn.Module]) -> str:
    """Transfer learning: copy weights from a run folder / checkpoint (G, D, G_ema) or a snapshot (its G_ema
    into G and G_ema; D keeps its fresh weights) into ``modules``. Tensors are copied where name and shape
    match (a new class count or label embedding may differ); raises CheckpointError when the source is another
    architecture or when fewer than half of G's tensors fit. Returns a one-line summary for the log."""
    p = Path(source).expanduser()
    if p.is_file() and p.suffix == ".pt":
        state = load_checkpoint(p)
    elif p.is_dir() and (p / "checkpoints").is_dir():
        p, state = load_latest_checkpoint(p / "checkpoints")
    else:
        state = None
    if state is not None:
        src_arch = json.loads(state.get("config_json", "{}")).get("model", {}).get("arch")
        sources = {name: state[name] for name in ("G", "D", "G_ema")}
    else:
        tensors, meta = load_snapshot_files(p)
        src_arch = meta.get("arch")
        sources = {"G": tensors, "G_ema": tensors}
    if src_arch != arch:
        raise CheckpointError(f"init_from {source}: it holds a {src_arch} model; this run trains {arch}")
    notes = []
    for name, module in modules.items():
        if name not in sources:
            notes.append(f"{name} fresh")
            continue
        own = module.state_dict()
        fit = {k: v for k, v in sources[name].items() if k in own and own[k].shape == v.shape}
        if name == "G" and len(fit) < len(own) / 2:
            raise CheckpointError(
                f"init_from {source}: only {len(fit)} of {len(own)} G tensors match this run's shapes; "
                "use the same resolution, widths, z_dim/w_dim and mapping layers as the source run")
        module.load_state_dict(fit, strict=False)
        notes.append(f"{name} {len(fit)}/{len(own)} tensors")
    return f"initialised from {p} ({', '.join(notes)})"
