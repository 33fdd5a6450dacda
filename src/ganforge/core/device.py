"""One place that turns a user's device string into a torch.device, with a clear error for every bad case."""

from __future__ import annotations

import re

import torch

DEVICE_HELP = "auto | cpu | cuda | cuda:N"


def resolve_device(spec: str | torch.device | None, what: str = "--device") -> torch.device:
    """``auto`` (or None) picks CUDA when available, else the CPU; ``cpu``; ``cuda`` / ``cuda:N`` must exist.
    Raises ValueError naming the option, the value and what this machine has."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise ValueError(f"{what} {spec!r} is not a device; use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        build = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        raise ValueError(f"{what} {spec}: {build}; use --device cpu (or install a CUDA build of torch on a machine "
                         "with an NVIDIA GPU)")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"{what} {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)
