"""Resuming a run: which config fields may change, and the config the resumed run continues with.

Used by ``ganforge train --resume`` and by the studio. torch-free, so a bad request fails before torch loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ganforge.config import (
    ConfigChange,
    ConfigError,
    TrainConfig,
    deep_merge,
    format_validation_error,
    resolve_config,
)

# The fields (SECTION.FIELD) a resumed run may change. Everything else would change the math of the steps
# already taken, so a resume refuses it; kimg extends the run. Add a field here to allow it.
RESUME_CHANGEABLE: tuple[str, ...] = (
    "run.kimg", "run.minutes", "run.threads", "run.device",
    # The tensors' memory layout: the same math in another summation order, like --threads (and needed to keep a
    # run started when "auto" meant NCHW on the CPU in NCHW).
    "run.channels_last",
    # Recovery from divergence (the NaN message suggests it): learning rates, loss weights, regularisation.
    "optim.g_lr", "optim.d_lr",
    "loss.r1_gamma", "loss.gp_weight", "loss.acgan_weight", "loss.pl_weight",
    # Reconstruction-type weights of the image-to-image tasks (none adds or removes a network).
    "loss.pixel_weight", "loss.l1_weight", "loss.cycle_weight", "loss.identity_weight",
    "loss.reconstruction_weight", "loss.coarse_weight",
)


def load_run_config(run: str | Path) -> TrainConfig:
    """The validated ``config.json`` of a run folder."""
    path = Path(run).expanduser() / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --resume takes a run folder such as runs/00003-shapes-dcgan-32")
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; a run folder's config.json is the config the run was started with: "
                          "restore it from a backup, or start a new run")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path} is not valid JSON ({exc}); was it edited? Restore it, or start a new run") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} holds a JSON {type(raw).__name__}, not a config object; restore it, or start a "
                          "new run")
    try:
        return TrainConfig.from_saved(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid config (was it edited?):\n"
                          f"{format_validation_error(exc).split(chr(10), 1)[1]}") from None


def resume_config(run_folder: str | Path, overrides: dict[str, Any], preset: str | None = None) -> TrainConfig:
    """The run's own config with ``overrides`` (nested ``{section: {field: value}}``, as for ``resolve_config``)
    merged over it, validated. Raises ``ConfigError`` naming every field outside ``RESUME_CHANGEABLE`` (and
    ``--preset`` when ``preset`` is given): a run continues with the config it started with."""
    base = load_run_config(run_folder)
    changed = [f for f in _leaves(overrides) if f not in RESUME_CHANGEABLE]
    if preset or changed:
        allowed = ", ".join(_flag(f) for f in RESUME_CHANGEABLE)
        raise ConfigError(f"--resume continues a run with its own config; cannot change "
                          f"{', '.join(changed) or '--preset'} (only {allowed}). Start a new run to change them.")
    return resolve_config(None, deep_merge(base.model_dump(mode="json"), overrides))


def config_changes(saved: TrainConfig, cfg: TrainConfig, step: int) -> list[ConfigChange]:
    """The fields in which ``cfg`` differs from ``saved`` (the config in a checkpoint), as changes taking effect at
    ``step``; the recorded history itself is not compared."""
    old = _leaves(saved.model_dump(mode="json"))
    new = _leaves(cfg.model_dump(mode="json"))
    return [ConfigChange(step=step, field=k, old=old.get(k), new=v) for k, v in new.items()
            if k not in ("changes", "preset") and old.get(k) != v]


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # {"optim": {"batch": 8}, "run": {"kimg": 1}} -> {"optim.batch": 8, "run.kimg": 1} (leaves only)
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def check_resume_changes(changes: list[ConfigChange], run_name: str) -> None:
    """The rule for a resume started from Python (``train(cfg, resume=...)``): fields outside RESUME_CHANGEABLE may
    not differ from the checkpoint's config, except the run section's bookkeeping (out, intervals, amp,
    tensorboard), which does not change the math; the seed does. Raises ConfigError naming the fields."""
    refused = sorted(c.field for c in changes if c.field not in RESUME_CHANGEABLE
                     and not (c.field.startswith("run.") and c.field != "run.seed"))
    if refused:
        raise ConfigError(f"--resume continues {run_name} with its own config; cannot change "
                          f"{', '.join(refused)} (changeable: {', '.join(RESUME_CHANGEABLE)})")


RUN_FLAGS = ("run.kimg", "run.minutes", "run.threads", "run.device")  # `ganforge train` flags of their own


def _flag(field: str) -> str:
    # How a user names a field: --kimg for the run fields with flags of their own; others take --set.
    return f"--{field.partition('.')[2].replace('_', '-')}" if field in RUN_FLAGS else field
