"""Derived pairs: the input a restoration or translation model learns from, made on the fly from a clean
target, so any image folder becomes paired data (noisy -> clean, gray -> color, edges -> photo, small -> large).

A spec is a comma-separated chain of ops, applied left to right to the clean crop; each op is a name and
colon-separated parameters. LO-HI is a closed range sampled uniformly per image; a single number is fixed.

    noise:gaussian:SIGMA|LO-HI    additive white Gaussian noise, sigma in 0..255 units (0-55: blind, DnCNN-B)
    noise:poisson:PEAK|LO-HI      photon-count noise, x ~ Poisson(PEAK * clean) / PEAK, clean in [0, 1]; low PEAK
                                  (e.g. 10-100) is low-dose style (CT); PEAK in 0.1..100000
    noise:saltpepper:AMOUNT|LO-HI this fraction (0..1) of pixels set to black or white, half each on average
    blur:SIGMA|LO-HI              isotropic Gaussian blur, sigma in pixels (0..10)
    jpeg:Q|LO-HI                  real JPEG encode/decode (Pillow) at an integer quality Q in 1..100
    rain:DENSITY|LO-HI            synthetic rain streaks covering about DENSITY (0..0.5) of the pixels
    gray, gray:1                  ITU-R BT.601 luma, replicated to the target's channels / as one channel
    edges, edges:1                soft Sobel edge map in [-1, 1], dark lines on white / as one channel
    lab                           CIE L* lightness as one channel (colorization in Lab; data/color.py)
    downscale:S[:MODE]            S in {2, 3, 4}, MODE bicubic (default, antialiased), bilinear (antialiased) or
                                  area; the input is S times smaller. Factors multiply along a chain; the product
                                  must be 2, 3 or 4
    second-order:S                preset: a Real-ESRGAN-style chain, written out in PRESETS

For example ``blur:0.5-2,downscale:4,noise:gaussian:5-50,jpeg:30-95`` (blind x4 super-resolution).

Every op takes the batch `x` (float [N, C, H, W] in [-1, 1]) and the step's `torch.Generator`, and returns the
derived batch in [-1, 1]. Randomness comes only from the generator, so a batch is a function of (indices,
generator state). Draw order: the ops in chain order; within an op, as its docstring says (per-image
parameters first, as `rand(N)`, then the noise field or per-image draws in image order).

Side channel: `derive(x, gen, info={})` also returns, in `info`, what a model may be told at inference time:
``info["sigma"]`` [N], the per-image Gaussian noise level (a non-blind denoiser's noise map). It draws nothing,
so batches (and the golden runs) are identical with or without it; `RecordingDerive` keeps the latest call's
`info` for callers, such as `data.pairs`, that only return the derived input.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ganforge.data.color import lightness

__all__ = ["DERIVES", "PRESETS", "REPORTS", "Derive", "RecordingDerive", "Step", "blur", "downscale",
           "gaussian_noise", "grayscale", "jpeg", "parse_derive", "poisson_noise", "rain", "salt_pepper", "sobel_edges"]

_LUMA_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B (PIL's "L" uses the same)
_EDGE_SOFTNESS = 2.0  # Sobel magnitude (in [-1, 1] units) that maps to tanh(1): a step of a quarter of the range
_SCALES = (2, 3, 4)
_DOWNSCALE_MODES = ("bicubic", "bilinear", "area")
_RAIN_ANGLE = 20.0  # degrees: streaks within this much of vertical
_RAIN_BRIGHTNESS = (0.6, 1.0)  # added streak intensity in [0, 1] image units, per streak
_RAIN_LENGTH = (1 / 8, 1 / 3)  # streak length as a fraction of the image height, per streak


def _draw(shape: tuple[int, ...], gen: torch.Generator, x: Tensor, normal: bool) -> Tensor:
    # Drawn on the generator's device (the loop's generator is a CPU one), then moved to x's device.
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=gen, device=gen.device).to(x.device, x.dtype)


def _per_image(bounds: tuple[float, float], gen: torch.Generator, x: Tensor) -> Tensor:
    # One value per image, uniform in the closed range `bounds` (one draw rand(N) even when lo == hi). [N]
    lo, hi = bounds
    return lo + (hi - lo) * _draw((x.shape[0],), gen, x, normal=False)


def _to_unit(x: Tensor) -> Tensor:
    return (x + 1.0) * 0.5  # [-1, 1] -> [0, 1]


def _from_unit(u: Tensor) -> Tensor:
    return (u * 2.0 - 1.0).clamp(-1.0, 1.0)


# Additive white Gaussian noise, y = x + n with n ~ N(0, sigma^2) (DnCNN, Zhang et al. 2017, Sec. 4.1).
def gaussian_noise(x: Tensor, gen: torch.Generator, sigma: tuple[float, float],
                   info: dict[str, Tensor] | None = None) -> Tensor:
    """`x` plus Gaussian noise of standard deviation sigma (0..255 units) drawn per image from the closed range
    `sigma` (lo == hi for a fixed level); clipped to [-1, 1] like a saved 8-bit photo, not quantized.
    Draws sigma `rand(N)`, then the noise `randn(N, C, H, W)`. With `info`, records the drawn levels there as
    ``info["sigma"]`` [N] (float32, CPU, 0..255 units), combined with any level an earlier op of the chain
    recorded as sqrt(a^2 + b^2), the standard deviation of the sum of independent noises (a non-blind
    denoiser's noise map, FFDNet)."""
    s = _per_image(sigma, gen, x)  # [N], 0..255 units
    n = _draw(tuple(x.shape), gen, x, normal=True)  # [N, C, H, W]
    if info is not None:
        level = s.detach().float().cpu()
        info["sigma"] = level if "sigma" not in info else torch.hypot(info["sigma"], level)
    return (x + (s / 127.5)[:, None, None, None] * n).clamp(-1.0, 1.0)


# Photon-count (shot) noise, y = Poisson(peak * x) / peak: the low-dose CT / low-light model (e.g. Yang et al.
# 2018, WGAN-VGG low-dose CT denoising); variance = mean / peak.
def poisson_noise(x: Tensor, gen: torch.Generator, peak: tuple[float, float]) -> Tensor:
    """Poisson noise at a peak photon count (counts at white) drawn per image from `peak`; fewer photons, more
    noise. Draws the peak `rand(N)`, then `poisson` of the [N, C, H, W] rates on the generator's device."""
    p = _per_image(peak, gen, x)[:, None, None, None]  # [N, 1, 1, 1]
    rate = (p * _to_unit(x).clamp(0.0, 1.0)).to(gen.device, torch.float32)
    counts = torch.poisson(rate, generator=gen).to(x.device, x.dtype)
    return _from_unit(counts / p)


# Impulse (salt-and-pepper) noise: a fraction of pixels replaced by black or white (Gonzalez & Woods, Sec. 5.2).
def salt_pepper(x: Tensor, gen: torch.Generator, amount: tuple[float, float]) -> Tensor:
    """Each pixel (all channels together) is hit with probability `amount` (per image); a hit is white or black
    with equal odds. Draws the amount `rand(N)`, the hits `rand(N, 1, H, W)`, then salt-or-pepper, the same."""
    n, _, h, w = x.shape
    a = _per_image(amount, gen, x)[:, None, None, None]  # [N, 1, 1, 1]
    hit = _draw((n, 1, h, w), gen, x, normal=False) < a
    salt = _draw((n, 1, h, w), gen, x, normal=False) < 0.5
    value = torch.where(salt, 1.0, -1.0).to(x.dtype)  # [N, 1, H, W]
    return torch.where(hit, value, x)


def _separable(x: Tensor, k: Tensor, vertical: bool) -> Tensor:
    # Per-image 1-D kernels k [N, K] along one axis, as one grouped conv; reflect padding (replicate when the
    # image is smaller than the kernel's radius, where reflect is undefined).
    n, c, h, w = x.shape
    r = k.shape[1] // 2
    pad = (0, 0, r, r) if vertical else (r, r, 0, 0)
    mode = "reflect" if r < (h if vertical else w) else "replicate"
    y = F.pad(x, pad, mode=mode).reshape(1, n * c, h + 2 * r if vertical else h, w if vertical else w + 2 * r)
    weight = k.repeat_interleave(c, dim=0)  # [N*C, K]
    weight = weight[:, None, :, None] if vertical else weight[:, None, None, :]
    return F.conv2d(y, weight, groups=n * c).reshape(n, c, h, w)


# Isotropic Gaussian blur, the first step of the classical degradation y = (x * k) downarrow_s + n
# (Real-ESRGAN, Wang et al. 2021, Eq. 1), as two 1-D passes of G(t) = exp(-t^2 / 2 sigma^2).
def blur(x: Tensor, gen: torch.Generator, sigma: tuple[float, float]) -> Tensor:
    """Gaussian blur with sigma (pixels) drawn per image from `sigma`; kernel 2*ceil(3 * max sigma) + 1 taps,
    reflect padding, so a flat image is unchanged. Draws sigma `rand(N)`."""
    s = _per_image(sigma, gen, x).clamp(min=1e-3)  # [N], pixels; sigma 0 -> a delta kernel
    r = math.ceil(3 * sigma[1])
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)  # [K]
    k = torch.exp(-t.square()[None] / (2 * s.square()[:, None]))  # [N, K]
    k = k / k.sum(1, keepdim=True)
    return _separable(_separable(x, k, vertical=True), k, vertical=False).clamp(-1.0, 1.0)


# JPEG compression artifacts (ARCNN, Dong et al. 2015; Real-ESRGAN Sec. 3.1): the real codec, not a model of it.
def jpeg(x: Tensor, gen: torch.Generator, quality: tuple[int, int]) -> Tensor:
    """Each image quantized to 8 bits, JPEG-encoded with Pillow at an integer quality drawn per image from
    `quality` (inclusive), and decoded. Alpha (channel 4) is kept as quantized. Draws the quality `rand(N)`."""
    lo, hi = quality
    q = (lo + (hi - lo + 1) * _per_image((0.0, 1.0), gen, x).float()).floor().clamp(max=hi).int().tolist()
    u8 = (_to_unit(x.detach()).float() * 255).round().clamp(0, 255).to(torch.uint8).cpu()  # [N, C, H, W]
    out = []
    for image, qi in zip(u8.permute(0, 2, 3, 1).numpy(), q, strict=True):  # [H, W, C] each
        color = image[..., 0] if image.shape[2] == 1 else image[..., :3]
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(color)).save(buffer, format="JPEG", quality=int(qi))
        decoded = np.asarray(Image.open(buffer).convert("L" if image.shape[2] == 1 else "RGB"))
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        out.append(np.concatenate([decoded, image[..., 3:]], axis=2))
    y = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype)  # [N, C, H, W]
    return y / 127.5 - 1.0


# Synthetic rain: bright, thin, slanted streaks added to the clean image, a simple model in the spirit of the
# synthetic training data of ID-CGAN (Zhang, Sindagi & Patel 2017, Sec. 5); not a physical rain renderer.
def rain(x: Tensor, gen: torch.Generator, density: tuple[float, float]) -> Tensor:
    """Adds streaks covering about `density` of the pixels (drawn per image). Per image, one angle within
    20 degrees of vertical; per streak, a start, a length (1/8..1/3 of the height) and a brightness (0.6..1.0
    in [0, 1] units). Streaks are rasterized 1 px wide, smoothed along the columns (near the streak direction)
    with a [1, 2, 1] / 4 kernel, added to every channel, and clipped. Draws the density `rand(N)`, the angle
    `rand(N)`, then per image `rand(count, 4)` (row, column, length, brightness)."""
    n, c, h, w = x.shape
    d = _per_image(density, gen, x).float().cpu()
    theta = torch.deg2rad((_per_image((-1.0, 1.0), gen, x).float().cpu()) * _RAIN_ANGLE)  # [N], 0 = vertical
    lmin, lmax = max(2.0, _RAIN_LENGTH[0] * h), max(2.0, _RAIN_LENGTH[1] * h)  # pixels
    t = torch.arange(0.0, lmax, 0.5)  # [T]: sample positions along a streak, half a pixel apart
    layers = []
    for i in range(n):
        count = round(float(d[i]) * h * w / (0.5 * (lmin + lmax)))
        u = torch.rand((count, 4), generator=gen, device=gen.device).float().cpu()  # [S, 4]
        length = lmin + (lmax - lmin) * u[:, 2:3]  # [S, 1]
        bright = _RAIN_BRIGHTNESS[0] + (_RAIN_BRIGHTNESS[1] - _RAIN_BRIGHTNESS[0]) * u[:, 3:4]  # [S, 1]
        rows = (u[:, 0:1] * h + t[None] * torch.cos(theta[i])).round().long()  # [S, T]
        cols = (u[:, 1:2] * w + t[None] * torch.sin(theta[i])).round().long()
        keep = (t[None] <= length) & (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        layer = torch.zeros(h * w)
        index = (rows * w + cols)[keep]
        layer.scatter_reduce_(0, index, bright.expand_as(rows)[keep], reduce="amax")
        layers.append(layer.reshape(1, h, w))
    streaks = torch.stack(layers)  # [N, 1, H, W] in [0, 1]
    k = torch.tensor([[0.25, 0.5, 0.25]]).expand(n, 3)
    streaks = _separable(streaks, k, vertical=True).to(x.device, x.dtype)
    return (x + 2.0 * streaks).clamp(-1.0, 1.0)  # 2x: [0, 1] brightness in [-1, 1] units


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


# Downsampling: bicubic with an antialiasing (widened) kernel as MATLAB's imresize and PIL's BICUBIC do (the
# SRResNet/ESRGAN benchmark protocol), bilinear likewise, or area (box) averaging.
def downscale(x: Tensor, gen: torch.Generator, factor: int, mode: str = "bicubic") -> Tensor:
    """`x` [N, C, H, W] -> [N, C, H/factor, W/factor]; H and W must be multiples of `factor`. Draws nothing."""
    n, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downscale:{factor} needs a height and width divisible by {factor}, got {h}x{w}")
    size = (h // factor, w // factor)
    if mode == "area":
        y = F.interpolate(x, size=size, mode="area")
    else:
        y = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
    return y.clamp(-1.0, 1.0)  # bicubic overshoots at edges


# CIE L* of the photo, for colorization in Lab (data/color.py): the model sees the lightness and learns the
# colours; the translate pipeline keeps the input's L* under the model's colours.
def lab_lightness(x: Tensor, gen: torch.Generator, one_channel: bool = True) -> Tensor:
    """CIE 1976 L* of `x` as one channel `[N, 1, H, W]` in [-1, 1] (L* / 50 - 1). Draws nothing."""
    return lightness(x)


def _lab_params(token: str, params: list[str]) -> tuple[dict[str, Any], str]:
    if params:
        raise ValueError(f"derive spec {token!r}: write lab (the CIE L* lightness as one channel; colorization)")
    return {"one_channel": True}, "lab"


# ---------------------------------------------------------------------------------------------------------
# Spec strings

_NUMBER = r"\d+(?:\.\d+)?"


def _range(token: str, what: str, text: str, bounds: tuple[float, float], integer: bool = False,
           ) -> tuple[tuple[float, float], str]:
    # "A" or "LO-HI" -> ((lo, hi), canonical text); bounds are inclusive.
    number = r"\d+" if integer else _NUMBER
    match = re.fullmatch(rf"({number})(?:-({number}))?", text)
    allowed = f"{bounds[0]:g}..{bounds[1]:g}"
    if match is None:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"derive spec {token!r}: {what} must be {kind} or a range LO-HI in {allowed}, got {text!r}")
    lo = float(match.group(1))
    hi = float(match.group(2)) if match.group(2) is not None else lo
    if not bounds[0] <= lo <= hi <= bounds[1]:
        raise ValueError(f"derive spec {token!r}: {what} must be in {allowed}" + (" with LO <= HI" if lo != hi else "")
                         + f", got {text}")
    return (lo, hi), (f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}")


def _one_range(name: str, what: str, key: str, bounds: tuple[float, float], integer: bool = False):
    # A parser for NAME:VALUE or NAME:LO-HI.
    def parse(token: str, params: list[str]) -> tuple[dict[str, Any], str]:
        if len(params) != 1:
            raise ValueError(f"derive spec {token!r}: write {name}:{key.upper()} or {name}:LO-HI "
                             f"({what} in {bounds[0]:g}..{bounds[1]:g})")
        (lo, hi), text = _range(token, what, params[0], bounds, integer)
        value = (int(lo), int(hi)) if integer else (lo, hi)
        return {key: value}, f"{name}:{text}"
    return parse


def _channel_params(token: str, params: list[str]) -> tuple[dict[str, Any], str]:
    name = token.split(":", 1)[0]
    if params not in ([], ["1"]):
        raise ValueError(f"derive spec {token!r}: write {name} (replicated to the image's channels) or {name}:1 "
                         "(one channel)")
    return {"one_channel": params == ["1"]}, name + (":1" if params else "")


def _downscale_params(token: str, params: list[str]) -> tuple[dict[str, Any], str]:
    if not 1 <= len(params) <= 2 or params[0] not in [str(s) for s in _SCALES] or \
            (len(params) == 2 and params[1] not in _DOWNSCALE_MODES):
        raise ValueError(f"derive spec {token!r}: write downscale:S or downscale:S:MODE with S one of "
                         f"{', '.join(map(str, _SCALES))} and MODE one of {', '.join(_DOWNSCALE_MODES)}")
    mode = params[1] if len(params) == 2 else "bicubic"
    return {"factor": int(params[0]), "mode": mode}, f"downscale:{params[0]}" + (f":{mode}" * (mode != "bicubic"))


# name -> (op, parser of the token's parameters into (the op's keyword arguments, the canonical token))
DERIVES: dict[str, tuple[Callable[..., Tensor], Callable[[str, list[str]], tuple[dict[str, Any], str]]]] = {
    "noise:gaussian": (gaussian_noise, _one_range("noise:gaussian", "sigma", "sigma", (0, 255))),
    "noise:poisson": (poisson_noise, _one_range("noise:poisson", "poisson peak", "peak", (0.1, 100000))),
    "noise:saltpepper": (salt_pepper, _one_range("noise:saltpepper", "saltpepper amount", "amount", (0, 1))),
    "blur": (blur, _one_range("blur", "blur sigma", "sigma", (0, 10))),
    "jpeg": (jpeg, _one_range("jpeg", "jpeg quality", "quality", (1, 100), integer=True)),
    "rain": (rain, _one_range("rain", "rain density", "density", (0, 0.5))),
    "gray": (grayscale, _channel_params),
    "edges": (sobel_edges, _channel_params),
    "downscale": (downscale, _downscale_params),
    "lab": (lab_lightness, _lab_params),
}

# Ops that can report what they drew into a chain's `info` side channel, and the key each writes.
REPORTS: dict[Callable[..., Tensor], str] = {gaussian_noise: "sigma"}

# Named chains; {S} is the preset's one parameter, a scale in 2, 3, 4.
PRESETS: dict[str, str] = {
    # Real-ESRGAN's second-order degradation (Wang et al. 2021, Sec. 3.2, Fig. 2), without its sinc filter,
    # random resize and Poisson branch: blur, downscale, noise, JPEG, then a milder blur, noise and JPEG.
    "second-order": "blur:0.2-3,downscale:{S},noise:gaussian:1-30,jpeg:30-95,"
                    "blur:0.2-1.5,noise:gaussian:1-25,jpeg:30-95",
}
_SPEC_HELP = ("noise:gaussian:SIGMA, noise:poisson:PEAK, noise:saltpepper:AMOUNT, blur:SIGMA, jpeg:Q, "
              "rain:DENSITY (each also LO-HI), gray[:1], edges[:1], lab, downscale:S[:bicubic|bilinear|area], "
              "second-order:S; chain them with commas")


@dataclass(frozen=True)
class Step:
    """One op of a chain: `fn(x, gen, **kwargs)`; `token` is its canonical spec text."""

    token: str
    fn: Callable[..., Tensor]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Derive:
    """A parsed derive chain: call it as `derive(x, gen)` on a clean batch `[N, C, H, W]` in [-1, 1].

    `derive(x, gen, info={})` also fills `info` with what the chain drew that a model may be told at inference
    (the side channel): ``"sigma"`` [N], the Gaussian noise level per image in 0..255 units, when the chain
    adds Gaussian noise (see `gaussian_noise`; the ops in `REPORTS` write it). Recording draws nothing, so the
    derived batch is bit-identical with or without `info`."""

    spec: str
    steps: tuple[Step, ...]

    def __call__(self, x: Tensor, gen: torch.Generator, info: dict[str, Tensor] | None = None) -> Tensor:
        assert x.ndim == 4, f"expected [N, C, H, W], got {tuple(x.shape)}"
        for step in self.steps:
            if info is not None and step.fn in REPORTS:
                x = step.fn(x, gen, info=info, **step.kwargs)
            else:
                x = step.fn(x, gen, **step.kwargs)
        return x

    @property
    def reports(self) -> frozenset[str]:
        """The `info` keys this chain fills, e.g. {"sigma"} for a chain with Gaussian noise."""
        return frozenset(REPORTS[step.fn] for step in self.steps if step.fn in REPORTS)

    @property
    def scale(self) -> int:
        """Target side / input side: the product of the chain's downscale factors (1 without any)."""
        return math.prod(int(step.kwargs.get("factor", 1)) for step in self.steps)

    def input_channels(self, channels: int) -> int:
        """Channels of the derived input for a target with `channels` channels."""
        return 1 if any(step.kwargs.get("one_channel") for step in self.steps) else channels


@dataclass(frozen=True)
class RecordingDerive(Derive):
    """A `Derive` that keeps the `info` of its latest call in `last` (replaced on every call), for a caller
    that only sees the derived input: a data class calls ``derive(target, gen)`` and its owner reads
    ``derive.last["sigma"]`` right after ``fetch``. Same spec, steps and draws as the chain it was made from
    (`RecordingDerive.of`), so fingerprints and batches do not change."""

    last: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, derive: Derive) -> RecordingDerive:
        return cls(spec=derive.spec, steps=derive.steps)

    def __call__(self, x: Tensor, gen: torch.Generator, info: dict[str, Tensor] | None = None) -> Tensor:
        record: dict[str, Tensor] = {}
        y = super().__call__(x, gen, info=record)
        self.last.clear()
        self.last.update(record)
        if info is not None:
            info.update(record)
        return y


def _parse_token(token: str) -> Step:
    name, *params = token.split(":")
    if name == "noise" and params:
        name, params = f"noise:{params[0]}", params[1:]
    if name not in DERIVES:
        valid = ", ".join([*DERIVES, *PRESETS])
        raise ValueError(f"unknown derive {name!r} in spec {token!r}; valid: {valid} ({_SPEC_HELP})")
    fn, parse_params = DERIVES[name]
    kwargs, canonical = parse_params(token, params)
    return Step(token=canonical, fn=fn, kwargs=kwargs)


def _parse_chain_token(token: str) -> tuple[list[Step], str]:
    # One token of a chain -> its steps (a preset expands to several) and its canonical text.
    name, *params = token.split(":")
    if name not in PRESETS:
        step = _parse_token(token)
        return [step], step.token
    if params not in [[str(s)] for s in _SCALES]:
        raise ValueError(f"derive spec {token!r}: write {name}:S with S one of {', '.join(map(str, _SCALES))}")
    return [_parse_token(t) for t in PRESETS[name].format(S=params[0]).split(",")], token


def parse_derive(spec: str) -> Derive:
    """Parse a chain such as ``noise:gaussian:25``, ``downscale:4`` or ``blur:1,downscale:2,jpeg:30-95`` (see
    the module docstring).

    Raises ValueError naming the spec: for an unknown op (listing the valid ones), bad parameters (naming the op
    and the allowed range), or downscale factors whose product is not 2, 3 or 4.
    """
    tokens = [t.strip() for t in str(spec).split(",")]
    if not tokens or any(not t for t in tokens):
        raise ValueError(f"derive spec {spec!r}: empty op; write ops separated by single commas ({_SPEC_HELP})")
    steps: list[Step] = []
    canonical: list[str] = []
    for token in tokens:
        try:
            chain, text = _parse_chain_token(token)
        except ValueError as exc:
            raise ValueError(f"{exc} (in the chain {spec!r})" if len(tokens) > 1 else str(exc)) from None
        steps += chain
        canonical.append(text)
    derive = Derive(spec=",".join(canonical), steps=tuple(steps))
    factors = [step.kwargs["factor"] for step in steps if "factor" in step.kwargs]
    if len(factors) > 1 and derive.scale not in _SCALES:
        raise ValueError(f"derive spec {spec!r}: downscale factors {' x '.join(map(str, factors))} = "
                         f"{derive.scale}; the total must be one of {', '.join(map(str, _SCALES))}")
    return derive
