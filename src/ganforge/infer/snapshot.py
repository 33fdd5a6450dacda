"""Load a snapshot (safetensors + JSON) into a callable generator; latent walks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganforge.core.files import CheckpointError
from ganforge.core.grid import z_from_seeds
from ganforge.core.snapshot import load_snapshot_files
from ganforge.nets import GENERATORS, build_generator


class LoadedGenerator:
    """A trained generator plus what it was trained on. ``G(z, labels)`` returns [N, C, H, W] in [-1, 1]."""

    def __init__(self, net: torch.nn.Module, meta: dict[str, Any], device: torch.device):
        self.net, self.meta, self.device = net, meta, device
        self.z_dim: int = net.config["z_dim"]
        self.num_classes: int = net.config.get("num_classes", 0)
        self.class_names: list[str] = meta.get("class_names", [])

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


# Spherical linear interpolation (Shoemake 1985), appropriate for Gaussian latents (White 2016).
def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.acos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def load_generator(snapshot: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    tensors, meta = load_snapshot_files(snapshot)
    arch = meta.get("arch")
    if arch not in GENERATORS:
        raise CheckpointError(f"snapshot {snapshot}: unknown architecture {arch!r}; this ganforge knows "
                              f"{', '.join(GENERATORS)}")
    net = build_generator(arch, **meta["net_config"])
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"snapshot {snapshot}: weights do not match its architecture config: {exc}") from exc
    dev = torch.device(device)
    return LoadedGenerator(net.to(dev).eval().requires_grad_(False), meta, dev)
