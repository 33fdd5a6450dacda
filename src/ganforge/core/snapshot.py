"""Snapshots (for inference): ``<name>.safetensors`` plus ``<name>.json`` saying how to rebuild the modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ganforge.core.files import CheckpointError, atomic_write_bytes, atomic_write_text, file_sha256

SNAPSHOT_FORMAT = "ganforge-snapshot/2"
SNAPSHOT_V1 = "ganforge-snapshot/1"  # one module (a GAN's G_ema or a judge), unprefixed keys; still loads
EMBEDDED_KEY = "ganforge_meta"  # the safetensors header entry holding the same JSON as <name>.json


def save_snapshot(folder: Path, name: str, modules: dict[str, dict[str, torch.Tensor]],
                  meta: dict[str, Any]) -> Path:
    """Write ``<name>.safetensors`` (every module's tensors under ``<module>.<key>``) and ``<name>.json``.

    ``meta["modules"]`` must describe each module: ``{"G": {"net": "sngan.G", "config": {...}}}`` with the
    registry name (nets.NETS) and the constructor arguments; ``meta["task"]`` and ``meta["pipeline"]`` say what
    made it and what applies it.
    """
    from safetensors.torch import save as st_save

    missing = [k for k in ("task", "pipeline", "modules") if k not in meta]
    if missing or set(meta["modules"]) != set(modules):
        raise ValueError(f"snapshot {name}: meta needs task, pipeline and one modules entry per module "
                         f"(missing {missing}, modules {sorted(modules)} vs {sorted(meta.get('modules', {}))})")
    flat = {f"{m}.{k}": v.detach().to("cpu").contiguous().clone() for m, sd in modules.items() for k, v in sd.items()}
    meta = {"format": SNAPSHOT_FORMAT, **meta}
    folder = Path(folder)
    # The metadata also rides in the safetensors header, so the weights file alone is complete and atomic: a kill
    # between the two renames below leaves new weights beside old JSON, and loading reads the header's copy.
    # Weights first, then JSON: a new snapshot appears once its JSON exists.
    atomic_write_bytes(folder / f"{name}.safetensors", st_save(flat, metadata={EMBEDDED_KEY: json.dumps(meta)}))
    atomic_write_text(folder / f"{name}.json", json.dumps(meta, indent=2))
    return folder / f"{name}.safetensors"


def _v1_to_v2(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A v1 snapshot held one module with unprefixed keys: a GAN's G_ema ("gan") or a judge ("judge")."""
    task, arch = meta.get("task"), meta.get("arch")
    if task == "gan":
        module, net, pipeline = "G", f"{arch}.G", "generate"
    else:
        module, net, pipeline = "net", arch, task
    meta = {**meta, "format": SNAPSHOT_FORMAT, "pipeline": pipeline,
            "modules": {module: {"net": net, "config": meta.get("net_config", {})}}}
    meta.pop("net_config", None)
    return meta, {module: tensors}


def load_snapshot(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Tensors by module and the metadata (v1 snapshots are converted to the v2 layout on load).
    Raises CheckpointError naming the file for a missing, unreadable, malformed or unknown-format snapshot."""
    from safetensors import safe_open

    weights, meta_path = resolve_snapshot(path)
    meta = read_snapshot_meta(meta_path)
    try:
        with safe_open(str(weights), framework="pt") as f:
            embedded = (f.metadata() or {}).get(EMBEDDED_KEY)
            flat = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as exc:  # a pickle, a truncated download, HTML saved as .safetensors: never unpickled
        raise CheckpointError(f"snapshot weights {weights} are unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
                              "it is not a safetensors file written by ganforge, or it is damaged: copy it again "
                              "from the run's snapshots/ folder") from exc
    if embedded is not None:
        # The JSON is what a user reads and may edit (class names, notes), so it is honoured, unless it belongs to
        # another write than the weights (a kill between the two renames): then the weights' own copy is used.
        inner = check_snapshot_meta(_parse(embedded, weights), weights)
        if any(inner.get(k) != meta.get(k) for k in ("step", "modules", "task", "pipeline")):
            meta = inner
    if meta["format"] == SNAPSHOT_V1:
        return _v1_to_v2(meta, flat)[::-1]
    modules: dict[str, dict[str, torch.Tensor]] = {m: {} for m in meta["modules"]}
    for key, v in flat.items():
        m, _, rest = key.partition(".")
        if m not in modules:
            raise CheckpointError(f"snapshot weights {weights}: tensor {key!r} belongs to no module listed in "
                                  f"{meta_path.name} ({', '.join(modules)})")
        modules[m][rest] = v
    if meta.get("tensor_dtype") == "int8":
        modules = {m: dequantize_int8(t) for m, t in modules.items()}
    return modules, meta


INT8_SCALE = ".int8_scale"  # suffix of the per-output-channel scale stored beside an int8 weight


def quantize_int8(tensors: dict[str, torch.Tensor], min_numel: int = 4096) -> dict[str, torch.Tensor]:
    """Shrink a module's tensors for shipping: float weights with 2+ dims and at least ``min_numel`` elements become
    int8 with a float16 scale per output channel (symmetric, ``w ~ q * scale``, |error| <= scale / 2), stored as
    ``<key>`` + ``<key>.int8_scale``; other float tensors become float16. A snapshot holding them says
    ``"tensor_dtype": "int8"`` in its metadata, and ``load_snapshot`` returns float32 tensors again."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if not v.is_floating_point():
            out[k] = v
        elif v.ndim >= 2 and v.numel() >= min_numel:
            w = v.float()
            scale = (w.abs().amax(dim=tuple(range(1, w.ndim))) / 127.0).clamp_min(1e-12).half()
            shape = (-1, *[1] * (w.ndim - 1))
            out[k] = torch.round(w / scale.float().reshape(shape)).clamp(-127, 127).to(torch.int8)
            out[k + INT8_SCALE] = scale
        else:
            out[k] = v.half()
    return out


def dequantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``quantize_int8``: int8 weights with a scale become float32 ``q * scale``."""
    out = {k: v for k, v in tensors.items() if not k.endswith(INT8_SCALE)}
    for k, scale in tensors.items():
        if k.endswith(INT8_SCALE):
            q = out[k[:-len(INT8_SCALE)]]
            out[k[:-len(INT8_SCALE)]] = q.float() * scale.float().reshape(-1, *[1] * (q.ndim - 1))
    return out


def read_snapshot_meta(meta_path: Path) -> dict[str, Any]:
    """The JSON half of a snapshot, checked for the fields loading needs: a v2 snapshot names its task, pipeline
    and each module's network and constructor config; a v1 snapshot its arch and net_config. Raises
    CheckpointError naming the file and the first problem."""
    try:
        text = meta_path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"snapshot metadata {meta_path} is unreadable ({exc}); it was damaged or edited: "
                              "copy it again from the run's snapshots/ folder") from exc
    return check_snapshot_meta(_parse(text, meta_path), meta_path)


def _parse(text: str, where: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"snapshot metadata in {where} is unreadable ({exc}); it was damaged or edited: "
                              "copy it again from the run's snapshots/ folder") from exc


def check_snapshot_meta(meta: Any, meta_path: Path) -> dict[str, Any]:
    """Check a snapshot's metadata (from ``meta_path``, named in errors) for the fields loading needs."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"snapshot metadata {meta_path}: {problem}; this is not a ganforge snapshot or it "
                               "was edited: copy it again from the run's snapshots/ folder")

    if not isinstance(meta, dict):
        raise bad(f"holds a JSON {type(meta).__name__}, expected an object")
    fmt = meta.get("format")
    if fmt not in (SNAPSHOT_FORMAT, SNAPSHOT_V1):
        raise CheckpointError(f"{meta_path}: unknown snapshot format {fmt!r}, expected {SNAPSHOT_FORMAT!r}; "
                              "a newer ganforge may have written it")
    if fmt == SNAPSHOT_V1:
        if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("net_config"), dict):
            raise bad("a v1 snapshot needs 'arch' (a string) and 'net_config' (an object)")
        return meta
    modules = meta.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise bad("'modules' is missing or not an object of {module: {net, config}}")
    for name, spec in modules.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("net"), str) \
                or not isinstance(spec.get("config"), dict):
            raise bad(f"module {name!r} needs 'net' (a network name) and 'config' (an object)")
    for key in ("task", "pipeline"):
        if not isinstance(meta.get(key), str):
            raise bad(f"{key!r} is missing or not a string")
    return meta


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


def snapshot_hash(snapshot: str | Path) -> str:
    """SHA-256 of the snapshot's weights file: names exactly which model made an image."""
    return file_sha256(resolve_snapshot(snapshot)[0])
