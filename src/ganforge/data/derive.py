"""Derived pairs: the input a restoration or translation model learns from, made on the fly from a clean
target, so any image folder becomes paired data (noisy -> clean, gray -> color, edges -> photo, small -> large).

A spec string names one transform and its parameters, separated by colons:

    noise:gaussian:25      additive white Gaussian noise, sigma 25 in 0..255 units
    noise:gaussian:5-50    sigma drawn uniformly from [5, 50] per image (blind denoising, DnCNN-B)
    gray                   ITU-R BT.601 luma, replicated to the target's channel count
    gray:1                 the same luma as one channel
    edges                  soft Sobel edge map in [-1, 1], dark lines on white, replicated to C channels
    edges:1                the same as one channel
    downscale:S            bicubic with antialiasing by S in {2, 3, 4}; the input is S times smaller

Every transform takes the clean batch `x` (float [N, C, H, W] in [-1, 1]) and the step's `torch.Generator`,
and returns the derived input in [-1, 1]. Randomness comes only from the generator, so a batch is a function
of (indices, generator state).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DERIVES", "Derive", "downscale", "gaussian_noise", "grayscale", "parse_derive", "sobel_edges"]

_LUMA_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B (PIL's "L" uses the same)
_EDGE_SOFTNESS = 2.0  # Sobel magnitude (in [-1, 1] units) that maps to tanh(1): a step of a quarter of the range
_SCALES = (2, 3, 4)


def _draw(shape: tuple[int, ...], gen: torch.Generator, x: Tensor, normal: bool) -> Tensor:
    # Drawn on the generator's device (the loop's generator is a CPU one), then moved to x's device.
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=gen, device=gen.device).to(x.device, x.dtype)


# Additive white Gaussian noise, y = x + n with n ~ N(0, sigma^2) (DnCNN, Zhang et al. 2017, Sec. 4.1).
def gaussian_noise(x: Tensor, gen: torch.Generator, sigma: tuple[float, float]) -> Tensor:
    """`x` plus Gaussian noise of standard deviation sigma (0..255 units) drawn per image from the closed range
    `sigma` (lo == hi for a fixed level); clipped to [-1, 1] like a saved 8-bit photo, not quantized."""
    lo, hi = sigma
    s = lo + (hi - lo) * _draw((x.shape[0],), gen, x, normal=False)  # [N], 0..255 units
    n = _draw(tuple(x.shape), gen, x, normal=True)  # [N, C, H, W]
    return (x + (s / 127.5)[:, None, None, None] * n).clamp(-1.0, 1.0)


def _luma(x: Tensor) -> Tensor:
    # [N, C, H, W] -> [N, 1, H, W]; gray input is its own luma, alpha (channel 4) is ignored.
    if x.shape[1] < 3:
        return x[:, :1]
    weights = torch.tensor(_LUMA_601, dtype=x.dtype, device=x.device)
    return torch.einsum("nchw,c->nhw", x[:, :3], weights)[:, None]


def _replicate(y: Tensor, x: Tensor, one_channel: bool) -> Tensor:
    # y [N, 1, H, W] -> 1 channel, or x's channel count with alpha (if any) kept from x.
    if one_channel or x.shape[1] == 1:
        return y
    if x.shape[1] == 4:
        return torch.cat([y.expand(-1, 3, -1, -1), x[:, 3:]], dim=1)
    return y.expand(-1, x.shape[1], -1, -1).contiguous()


# Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601); shifting [-1, 1] commutes with it since the weights sum to 1.
def grayscale(x: Tensor, gen: torch.Generator, one_channel: bool = False) -> Tensor:
    """BT.601 luma of `x`: `[N, 1, H, W]` with `one_channel`, else replicated to `x`'s channels (alpha kept)."""
    return _replicate(_luma(x), x, one_channel)


# Sobel gradients G_x, G_y of the luma; edge strength |G| = sqrt(G_x^2 + G_y^2), softened by tanh.
def sobel_edges(x: Tensor, gen: torch.Generator, one_channel: bool = False) -> Tensor:
    """A soft edge map in [-1, 1]: 1 (white) where the image is flat, towards -1 (black) on edges, as the
    line drawings of pix2pix's edges2shoes. `[N, 1, H, W]` with `one_channel`, else `x`'s channels."""
    y = F.pad(_luma(x), (1, 1, 1, 1), mode="replicate")  # [N, 1, H+2, W+2]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    kernels = torch.stack([kx, kx.t()])[:, None]  # [2, 1, 3, 3]: G_x, G_y
    g = F.conv2d(y, kernels)  # [N, 2, H, W]
    strength = torch.tanh(g.square().sum(1, keepdim=True).sqrt() / _EDGE_SOFTNESS)  # [N, 1, H, W] in [0, 1)
    return _replicate(1.0 - 2.0 * strength, x, one_channel)


# Bicubic downsampling with an antialiasing (widened) kernel, as MATLAB's imresize and PIL's BICUBIC do.
def downscale(x: Tensor, gen: torch.Generator, factor: int) -> Tensor:
    """`x` [N, C, H, W] -> [N, C, H/factor, W/factor]; H and W must be multiples of `factor`."""
    n, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downscale:{factor} needs a height and width divisible by {factor}, got {h}x{w}")
    y = F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(-1.0, 1.0)  # bicubic overshoots at edges


# ---------------------------------------------------------------------------------------------------------
# Spec strings


def _noise_params(spec: str, params: list[str]) -> dict[str, Any]:
    if len(params) != 2 or params[0] != "gaussian":
        raise ValueError(f"derive spec {spec!r}: write noise:gaussian:SIGMA or noise:gaussian:LO-HI "
                         "(sigma in 0..255 units, e.g. noise:gaussian:25); the only noise kind is gaussian")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?", params[1])
    if match is None:
        raise ValueError(f"derive spec {spec!r}: sigma must be a number or a range LO-HI in 0..255, "
                         f"got {params[1]!r}")
    lo = float(match.group(1))
    hi = float(match.group(2)) if match.group(2) is not None else lo
    if not 0 <= lo <= hi <= 255:
        raise ValueError(f"derive spec {spec!r}: sigma must satisfy 0 <= LO <= HI <= 255, got {lo:g}-{hi:g}")
    return {"sigma": (lo, hi)}


def _channel_params(spec: str, params: list[str]) -> dict[str, Any]:
    if params not in ([], ["1"]):
        name = spec.split(":", 1)[0]
        raise ValueError(f"derive spec {spec!r}: write {name} (replicated to the image's channels) or {name}:1 "
                         "(one channel)")
    return {"one_channel": params == ["1"]}


def _factor_params(spec: str, params: list[str]) -> dict[str, Any]:
    if len(params) != 1 or params[0] not in [str(s) for s in _SCALES]:
        raise ValueError(f"derive spec {spec!r}: write downscale:S with S one of {', '.join(map(str, _SCALES))}")
    return {"factor": int(params[0])}


# name -> (transform, parser of the spec's parameters into the transform's keyword arguments)
DERIVES: dict[str, tuple[Callable[..., Tensor], Callable[[str, list[str]], dict[str, Any]]]] = {
    "noise": (gaussian_noise, _noise_params),
    "gray": (grayscale, _channel_params),
    "edges": (sobel_edges, _channel_params),
    "downscale": (downscale, _factor_params),
}
_SPEC_HELP = "noise:gaussian:SIGMA, noise:gaussian:LO-HI, gray, gray:1, edges, edges:1, downscale:S"


@dataclass(frozen=True)
class Derive:
    """A parsed derive spec: call it as `derive(x, gen)` on a clean batch `[N, C, H, W]` in [-1, 1]."""

    spec: str
    fn: Callable[..., Tensor]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        assert x.ndim == 4, f"expected [N, C, H, W], got {tuple(x.shape)}"
        return self.fn(x, gen, **self.kwargs)

    @property
    def scale(self) -> int:
        """Target side / input side: S for downscale:S, else 1."""
        return int(self.kwargs.get("factor", 1))

    def input_channels(self, channels: int) -> int:
        """Channels of the derived input for a target with `channels` channels."""
        return 1 if self.kwargs.get("one_channel") else channels


def parse_derive(spec: str) -> Derive:
    """Parse a spec such as ``noise:gaussian:25`` or ``downscale:4`` (see the module docstring).

    Raises ValueError naming the spec: for an unknown name (listing the valid ones) or bad parameters.
    """
    name, *params = str(spec).strip().split(":")
    if name not in DERIVES:
        raise ValueError(f"unknown derive {name!r} in spec {spec!r}; valid: {', '.join(DERIVES)} ({_SPEC_HELP})")
    fn, parse_params = DERIVES[name]
    return Derive(spec=str(spec).strip(), fn=fn, kwargs=parse_params(str(spec), params))
