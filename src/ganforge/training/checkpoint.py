"""Full-state checkpoints for exact resume, and transfer learning from them.

A checkpoint is a ``torch.save`` of plain tensors, numbers and strings, loaded back with
``torch.load(weights_only=True)``: nothing is ever unpickled. Files are written atomically (core.files).
"""

from __future__ import annotations

import io
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganforge.core.files import CheckpointError, atomic_write_bytes
from ganforge.core.snapshot import load_snapshot

CHECKPOINT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")


# ---------------------------------------------------------------------------------------------------------
# Checkpoints (full training state, for exact resume)
# ---------------------------------------------------------------------------------------------------------

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
    """Write ``state`` atomically as ``ckpt-<step>.pt`` and delete all but the newest ``keep`` up to ``step``.
    Files of later steps are left from before a resume that fell back past them (they were unreadable) and are
    deleted too: counting them as "newest" would prune the good ones."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = checkpoint_path(folder, step)
    atomic_write_bytes(path, buf.getvalue())
    existing = list_checkpoints(folder)
    obsolete = [p for s, p in existing if s > step] + [p for s, p in existing if s <= step][:-keep]
    for old in obsolete:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's weights-only unpickler refused an object
        raise CheckpointError(
            f"cannot read checkpoint {path}: it holds Python objects that would have to be unpickled, and ganforge "
            "never unpickles (unpickling a file can run any code in it). ganforge's checkpoints hold only tensors, "
            "numbers and strings, so this file was not written by ganforge, or it is damaged.") from None
    except Exception as exc:  # truncated or corrupt
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: it is not a ganforge checkpoint (no training state)")
    return state


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


def checkpoint_modules(state: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """Module state dicts by name. Checkpoints written before the task protocol kept G, D and G_ema at the top."""
    missing = [k for k in ("step", "elapsed_s", "dataset_fingerprint") if k not in state]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {', '.join(missing)}: it is not a complete ganforge training "
                              "state (written by another program, or damaged)")
    if "modules" in state:
        return state["modules"]
    return {name: state[name] for name in ("G", "D", "G_ema") if name in state}


def load_modules(modules: dict[str, torch.nn.Module], states: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Load each module's weights from a checkpoint; a missing module or mismatched shapes (the run's config.json
    was edited, or the checkpoint belongs to another run) is a CheckpointError naming the file."""
    missing = [name for name in modules if name not in states]
    if missing:
        raise CheckpointError(f"checkpoint {path} has no weights for {', '.join(missing)} (it holds "
                              f"{', '.join(states) or 'none'}): it was written by another kind of run, or damaged")
    for name, module in modules.items():
        try:
            module.load_state_dict(states[name])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()[:300]
            raise CheckpointError(f"checkpoint {path} does not fit this run's {name} ({first}); was the run's "
                                  "config.json edited? Restore it, or start a new run (--init-from to reuse "
                                  "the weights).") from None


def checkpoint_optimizers(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optimizer and grad-scaler states by name (old checkpoints: opt_G, scaler_G, ... at the top)."""
    if "optimizers" in state:
        return state["optimizers"], state["scalers"]
    names = [k[4:] for k in state if k.startswith("opt_")]
    return {n: state[f"opt_{n}"] for n in names}, {n: state[f"scaler_{n}"] for n in names}


def init_weights(source: str | Path, arch: str, modules: dict[str, torch.nn.Module],
                 snapshot_modules: dict[str, str], ema: dict[str, str]) -> str:
    """Transfer learning: copy weights into ``modules`` from a run folder or checkpoint (every module by name)
    or from a snapshot (each snapshot module into the module it was taken from, see ``Task.snapshot_modules``,
    and into that module's EMA source: a GAN snapshot's G fills G_ema and G; D keeps its fresh weights).
    Tensors are copied where name and shape match (a new class count or label embedding may differ); raises
    CheckpointError when the source is another architecture or when fewer than half of a snapshotted module's
    tensors fit. Returns a one-line summary for the log."""
    p = Path(source).expanduser()
    if p.is_file() and p.suffix == ".pt":
        state = load_checkpoint(p)
    elif p.is_dir() and (p / "checkpoints").is_dir():
        p, state = load_latest_checkpoint(p / "checkpoints")
    else:
        state = None
    if state is not None:
        src_arch = json.loads(state.get("config_json", "{}")).get("model", {}).get("arch")
        sources = dict(checkpoint_modules(state))
        for copy_name, source_name in ema.items():  # a source run without an EMA copy: start the copy from it
            if copy_name not in sources and source_name in sources:
                sources[copy_name] = sources[source_name]
    else:
        tensors, meta = load_snapshot(p)
        src_arch = meta.get("arch")
        sources = {}
        for s_name, target in snapshot_modules.items():
            if s_name in tensors:
                sources[target] = tensors[s_name]
                if target in ema:
                    sources[ema[target]] = tensors[s_name]
    if src_arch != arch:
        raise CheckpointError(f"init_from {source}: it holds a {src_arch} model; this run trains {arch}")
    for name, sd in sources.items():
        bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(f"init_from {p}: {name} {bad[0]} holds NaN/inf values; choose an earlier "
                                  "checkpoint or snapshot of that run")
    required = set(snapshot_modules.values()) | {ema[t] for t in snapshot_modules.values() if t in ema}
    notes = []
    for name, module in modules.items():
        if name not in sources:
            notes.append(f"{name} fresh")
            continue
        own = module.state_dict()
        fit = {k: v for k, v in sources[name].items() if k in own and own[k].shape == v.shape}
        if name in required and len(fit) < len(own) / 2:
            raise CheckpointError(
                f"init_from {source}: only {len(fit)} of {len(own)} {name} tensors match this run's shapes; "
                "use the same resolution, widths, z_dim/w_dim and mapping layers as the source run")
        module.load_state_dict(fit, strict=False)
        notes.append(f"{name} {len(fit)}/{len(own)} tensors")
    return f"initialised from {p} ({', '.join(notes)})"
