"""Snapshot loading for every pipeline (``build_modules``), and the "generate" pipeline: ``LoadedGenerator``, a
callable generator with seeds, labels, truncation and latent walks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.core.device import resolve_device
from ganforge.core.files import CheckpointError
from ganforge.core.latent import slerp, z_from_seeds
from ganforge.core.snapshot import load_snapshot
from ganforge.nets import NETS, build_net


class LoadedGenerator:
    """A trained generator plus what it was trained on. ``G(z, labels)`` returns [N, C, H, W] in [-1, 1]."""

    def __init__(self, net: torch.nn.Module, meta: dict[str, Any], device: torch.device):
        self.net, self.meta, self.device = net, meta, device  # net is the snapshot's module "G"
        self.z_dim: int = net.config["z_dim"]
        self.num_classes: int = net.config.get("num_classes", 0)
        self.class_names: list[str] = meta.get("class_names", [])

    @classmethod
    def from_snapshot(cls, tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                      device: torch.device) -> LoadedGenerator:
        return cls(build_modules(tensors, meta, snapshot, device)["G"], meta, device)

    def __repr__(self) -> str:
        d = self.meta.get("dataset", {})
        return (f"LoadedGenerator({self.meta['arch']}, {d.get('resolution')}px, {d.get('channels')} ch, "
                f"{self.num_classes} classes, {self.meta.get('kimg')} kimg)")

    def check_labels(self, labels: Tensor | Sequence[int] | int | None, n: int) -> Tensor | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this snapshot is unconditional; do not pass a class")
            return None
        if labels is None:
            raise ValueError(f"this snapshot is class-conditional: pass a class in 0..{self.num_classes - 1} "
                             f"({', '.join(self.class_names)})")
        c = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if c.numel() == 1:
            c = c.expand(n)
        bad = c[(c < 0) | (c >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"class {int(bad[0])} out of range: valid classes are 0..{self.num_classes - 1}")
        if c.numel() != n:
            raise ValueError(f"got {c.numel()} labels for {n} latents")
        return c.to(self.device)

    @property
    def is_style(self) -> bool:
        """StyleGAN-family generator (has a mapping network: truncation, style mixing, projection)."""
        return hasattr(self.net, "mapping")

    @torch.no_grad()
    def __call__(self, z: Tensor, labels: Tensor | Sequence[int] | int | None = None,
                 batch: int = 64, psi: float = 1.0) -> Tensor:
        """``psi < 1``: truncation toward the tracked mean w (StyleGAN2 snapshots only)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        if psi != 1.0 and not self.is_style:
            raise ValueError(f"truncation (psi={psi}) needs a StyleGAN2 snapshot; this one is {self.meta.get('arch')}")
        c = self.check_labels(labels, z.shape[0])
        z = z.to(self.device)
        kw = {"psi": psi} if self.is_style else {}
        outs = [self.net(z[i:i + batch], None if c is None else c[i:i + batch], **kw) for i in range(0, len(z), batch)]
        return torch.cat(outs).float().cpu()

    def generate(self, seeds: Sequence[int], labels: Tensor | Sequence[int] | int | None = None,
                 psi: float = 1.0) -> Tensor:
        """One image per seed; the same seed always gives the same image."""
        return self(z_from_seeds(list(seeds), self.z_dim), labels, psi=psi)

    def interpolate(self, seed_a: int, seed_b: int, frames: int,
                    labels: Tensor | Sequence[int] | int | None = None, psi: float = 1.0) -> Tensor:
        """Spherical interpolation between the latents of two seeds (White 2016), ``frames`` images."""
        za, zb = z_from_seeds([seed_a, seed_b], self.z_dim)
        t = torch.linspace(0, 1, frames)[:, None]
        return self(slerp(za, zb, t), labels, psi=psi)


def build_modules(tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                  device: str | torch.device) -> dict[str, torch.nn.Module]:
    """Rebuild every module of a (v2-layout) snapshot from the network registry, load its weights, and put it
    in eval mode on ``device``. Raises CheckpointError naming the snapshot and the module."""
    out = {}
    for name, spec in meta.get("modules", {}).items():
        if spec.get("net") not in NETS:
            raise CheckpointError(f"snapshot {snapshot}: module {name} is an unknown network {spec.get('net')!r}; "
                                  f"this ganforge knows {', '.join(NETS)}")
        net = build_net(spec["net"], **spec.get("config", {}))
        try:
            net.load_state_dict(tensors[name])
        except RuntimeError as exc:
            raise CheckpointError(f"snapshot {snapshot}: module {name}'s weights do not match its architecture "
                                  f"config: {exc}") from exc
        out[name] = net.to(device).eval().requires_grad_(False)
    return out


def load_generator(snapshot: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """The generate pipeline of a GAN snapshot (v1 or v2). ``device``: auto | cpu | cuda | cuda:N (a bad or
    missing device raises ValueError before the snapshot is read)."""
    dev = resolve_device(device)
    tensors, meta = load_snapshot(snapshot)
    if meta.get("pipeline") != "generate":
        raise CheckpointError(f"snapshot {snapshot} is a {meta.get('task')!r} model (pipeline "
                              f"{meta.get('pipeline')!r}), not a generator: apply it with `ganforge apply`")
    return LoadedGenerator.from_snapshot(tensors, meta, snapshot, dev)
