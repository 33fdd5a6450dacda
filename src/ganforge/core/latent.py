"""Seeded latents and spherical interpolation, shared by generation, editing and metrics (PPL)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> Tensor:
    """One latent per seed, independent of batch composition: seed s always gives the same z. [N, z_dim]"""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


# Spherical linear interpolation (Shoemake 1985), suited to Gaussian latents (White 2016).
def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """``a, b [..., D]``, ``t`` broadcastable to ``[..., 1]`` -> ``[..., D]`` on the arc from a (t = 0) to b (t = 1);
    t outside [0, 1] continues along the great circle. The angle is taken between the directions, the weights
    sin((1 - t) omega) / sin(omega) and sin(t omega) / sin(omega) apply to a and b themselves."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(dim=-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
