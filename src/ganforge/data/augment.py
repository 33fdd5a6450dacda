"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to both real and fake images for D.

Follows the official implementation (mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py), with one
change: every random number is drawn from an explicit ``torch.Generator`` on that generator's device (CPU
normally) and then moved to the images' device, so a given seed gives the same augmentation on any device
and after a resume. Images are ``[N, C, H, W]`` in [-1, 1]; for C = 2 or 4 the last channel is alpha, which
the color ops leave alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

TRANSLATION_RATIO = 1 / 8  # max shift, as a fraction of the image side
CUTOUT_RATIO = 1 / 2  # side of the cut-out square, as a fraction of the image side


def _rand(n: int, generator: torch.Generator | None, x: Tensor) -> Tensor:
    """Uniform [0, 1) per sample -> [N, 1, 1, 1] on x's device and dtype."""
    device = generator.device if generator is not None else torch.device("cpu")
    r = torch.rand(n, 1, 1, 1, generator=generator, device=device)
    return r.to(device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, n: int, generator: torch.Generator | None, x: Tensor) -> Tensor:
    """Integers in [low, high) per sample -> [N] int64 on x's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(low, high, (n,), generator=generator, device=device).to(x.device)


# Zhao et al. 2020, sec. 3 / official rand_brightness, rand_saturation, rand_contrast.
def color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random brightness (+U[-0.5, 0.5]), saturation (x U[0, 2]) and contrast (x U[0.5, 1.5]) per sample."""
    n, c = x.shape[:2]
    k = c - 1 if c in (2, 4) else c  # color channels; the alpha channel (if any) is kept as is
    rgb, alpha = x[:, :k], x[:, k:]
    rgb = rgb + (_rand(n, generator, x) - 0.5)
    mean = rgb.mean(dim=1, keepdim=True)  # [N, 1, H, W]; saturation is the identity for one channel
    rgb = (rgb - mean) * (_rand(n, generator, x) * 2) + mean
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
    rgb = (rgb - mean) * (_rand(n, generator, x) + 0.5) + mean
    return torch.cat([rgb, alpha], dim=1) if k < c else rgb


# Zhao et al. 2020, sec. 3 / official rand_translation: integer shift up to 1/8 of the side, zero padding.
def translation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to 1/8 of its side in y and x, filling with zeros. Differentiable in x."""
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    ty = _randint(-sh, sh + 1, n, generator, x)[:, None, None]  # [N, 1, 1]
    tx = _randint(-sw, sw + 1, n, generator, x)[:, None, None]
    b, gy, gx = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )  # [N, H, W] each
    # Index into a 1-pixel zero border: every out-of-range source pixel is clamped onto that border.
    gy = (gy + ty + 1).clamp(0, h + 1)
    gx = (gx + tx + 1).clamp(0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])  # [N, C, H + 2, W + 2]
    return x_pad.permute(0, 2, 3, 1)[b, gy, gx].permute(0, 3, 1, 2)  # [N, C, H, W]


# Zhao et al. 2020, sec. 3 / official rand_cutout: zero a square of half the side, centre uniform in image.
def cutout(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero one (H/2 x W/2) square per image, clipped at the borders (so on average ~19% of the pixels)."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = _randint(0, h + (1 - ch % 2), n, generator, x)[:, None]  # [N, 1] centres
    cx = _randint(0, w + (1 - cw % 2), n, generator, x)[:, None]
    ys = torch.arange(h, device=x.device)[None, :] - (cy - ch // 2)  # [N, H], in-square when 0 <= ys < ch
    xs = torch.arange(w, device=x.device)[None, :] - (cx - cw // 2)  # [N, W]
    inside = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]  # [N, H, W]
    return x * (~inside).to(x.dtype)[:, None]


DIFFAUGMENT_OPS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(s: str) -> tuple[str, ...]:
    """Parse ``"color,translation,cutout"`` into op names (``""`` -> ``()``); ValueError on unknown names."""
    policy = tuple(name.strip() for name in s.split(",") if name.strip())
    _check_policy(policy)
    return policy


def _check_policy(policy: Sequence[str]) -> None:
    unknown = [name for name in policy if name not in DIFFAUGMENT_OPS]
    if unknown:
        raise ValueError(f"unknown DiffAugment op(s) {unknown}; valid: {', '.join(DIFFAUGMENT_OPS)}")


def diff_augment(x: Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """Apply the DiffAugment ops named in ``policy`` in order: ``x [N, C, H, W] -> [N, C, H, W]``.

    All randomness comes from ``generator`` (the global CPU generator when None). Gradients flow to ``x``.
    """
    assert x.ndim == 4, f"expected x [N, C, H, W], got {list(x.shape)}"
    if isinstance(policy, str):
        raise TypeError("policy must be a sequence of op names; parse_policy() splits a comma-separated one")
    _check_policy(policy)
    for name in policy:
        x = DIFFAUGMENT_OPS[name](x, generator)
    return x
