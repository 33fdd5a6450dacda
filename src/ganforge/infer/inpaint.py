"""The "inpaint" pipeline: fill the hole of an image with an inpainting snapshot (DeepFill v2, Context Encoder).

``pipe(pixels, mask)`` takes [H, W] or [H, W, C] uint8/uint16 pixels (C = 1 or 3) and a mask of the same height and
width (bool, or any integer/float image: values above half of the range are the hole, so anti-aliased canvas
strokes are thresholded) and returns pixels of the same shape and dtype. Only hole pixels change: every pixel
outside the hole is bit-identical to the input.

How an image of any size is filled:

1. The hole's bounding box is found, and a crop around it is taken with at least as much context again on each
   side, and as much as ``max_side`` allows without shrinking (a square of side max(resolution, max_side, 2 x the
   box's longer side), moved inside the image and cut to it): more context never costs detail, and a model with
   ``prefill`` pushpull or smooth interpolates from all of it (measured on the 10-20 % benchmark band: one
   photo's 232-px crop instead of the whole 256-px image lowered the six photos' mean hole PSNR by 0.7 dB).
2. A crop whose longer side is at most ``max_side`` runs at its own size (DeepFill is fully convolutional;
   ``max_side`` defaults to twice the training resolution, the largest size measured to fill better natively
   than shrunk, docs/inpainting.md; a Context Encoder always runs at its training resolution). A larger crop is
   shrunk so that its longer side is ``max_side``, a smaller one (an image smaller than the training resolution)
   enlarged to the training resolution; sides are rounded to the net's stride, shrinking is antialiased, and the
   mask is resized so that every pixel touching the hole stays a hole. A crop that already has its size runs as
   is (no resampling at all).
3. The result is resized back to the crop's size and pasted into the hole only. When the crop was resampled, a
   feather band of ``feather`` pixels just inside the hole edge corrects the fill's colour towards the known pixels
   around it (the local mean difference between the known pixels and the model's output there, fading to zero
   deeper inside): the seam softens and nothing outside the hole is touched.

Limits: one bounding box around all holes, so holes far apart make one large crop (fill them one at a time for
best detail); a hole larger than about half the training resolution is filled at reduced detail (the crop is
shrunk to the model's size and the fill enlarged back, so it is as sharp as the model's resolution allows); the
model's context is the crop, not the whole image.

Alpha is passed through untouched and 8/16-bit depth round-trips (``process_file``). A gray image through an RGB
model is replicated to RGB and averaged back; an RGB image through a gray model is filled channel by channel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.core.imageio import read_image, write_image
from ganforge.infer.snapshot import build_modules


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] hole map from a mask array: bool as is; integer or float images above half their range (uint8
    > 127, uint16 > 32767, float > 0.5); several channels are averaged first."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.astype(np.float64).mean(2) if m.dtype != bool else m.any(2)
    if m.ndim != 2:
        raise ValueError(f"a mask must be [H, W] or [H, W, C], got shape {list(np.asarray(mask).shape)}")
    if m.dtype == bool:
        return m
    if np.asarray(mask).dtype.kind in "ui":
        return m > np.iinfo(np.asarray(mask).dtype).max / 2
    return m > 0.5


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as bool [H, W], True = hole. With transparency (a canvas export), the painted, opaque pixels are
    the hole; otherwise white is the hole. Anti-aliased edges are thresholded at half."""
    img = read_image(path)
    if img.alpha is not None and img.alpha.min() < np.iinfo(img.alpha.dtype).max:
        return binarize_mask(img.alpha)
    return binarize_mask(img.pixels)


def _to_stride(x: float, stride: int) -> int:
    return max(stride, int(round(x / stride)) * stride)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, C, h, w] -> size; bicubic, antialiased when shrinking; identity when the size is already right."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


class InpaintPipeline:
    """``pipe(pixels, mask)`` fills the hole (see the module docstring); ``process_file(image, mask, out)``."""

    def __init__(self, net: nn.Module, meta: dict[str, Any], device: torch.device, max_side: int | None = None):
        self.net, self.meta, self.device = net, meta, device
        self.channels: int = net.config["channels"]
        self.resolution: int = int(meta.get("resolution", 256))
        self.stride: int = int(meta.get("stride", getattr(net, "stride", 8)))
        self.max_side = self.check_max_side(max_side)

    def check_max_side(self, max_side: int | None) -> int:
        """``max_side`` (see the module docstring, step 2): None = 2 x the training resolution for a fully
        convolutional net (DeepFill), the training resolution for a net with a fixed input size (Context Encoder's
        bottleneck)."""
        fixed = self.meta.get("arch") == "context_encoder"
        if max_side is None:
            return self.resolution if fixed else 2 * self.resolution
        if max_side < self.resolution:
            raise ValueError(f"max_side={max_side} is below the model's training resolution {self.resolution}; "
                             f"use at least {self.resolution}")
        if fixed and max_side != self.resolution:
            raise ValueError(f"a Context Encoder only runs at its training resolution {self.resolution}; leave "
                             "max_side unset")
        return int(max_side)

    @classmethod
    def from_snapshot(cls, tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                      device: torch.device) -> InpaintPipeline:
        return cls(build_modules(tensors, meta, snapshot, device)["G"], meta, device)

    def __repr__(self) -> str:
        d = self.meta.get("dataset", {})
        return (f"InpaintPipeline({self.meta.get('arch')}, {self.channels} ch, {self.resolution} px, "
                f"trained on {d.get('name')})")

    @torch.no_grad()
    def _model(self, x: Tensor, m: Tensor) -> Tensor:
        """x [1, c, h, w] in [0, 1], m [1, 1, h, w] in {0, 1} -> [1, c, h, w] in [0, 1], with gray/RGB adapted."""
        c = x.shape[1]
        x = x.to(self.device) * 2 - 1
        m = m.to(self.device)
        if c == 1 and self.channels == 3:
            y = self.net(x.expand(-1, 3, -1, -1), m).mean(1, keepdim=True)
        elif c == 3 and self.channels == 1:
            y = torch.cat([self.net(x[:, i:i + 1], m) for i in range(3)], 1)
        else:
            y = self.net(x, m)
        return ((y.float() + 1) / 2).clamp(0, 1).cpu()

    def crop_box(self, hole: np.ndarray) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop around the hole's bounding box (step 1 of the module docstring)."""
        h, w = hole.shape
        ys, xs = np.nonzero(hole.any(1))[0], np.nonzero(hole.any(0))[0]
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        side = max(self.resolution, self.max_side, 2 * max(y1 - y0, x1 - x0))
        ch, cw = min(side, h), min(side, w)
        top = min(max((y0 + y1 - ch) // 2, 0), h - ch)
        left = min(max((x0 + x1 - cw) // 2, 0), w - cw)
        return top, left, ch, cw

    def __call__(self, pixels: np.ndarray, mask: np.ndarray, feather: int | None = None) -> np.ndarray:
        """Fill the hole of ``pixels`` given by ``mask`` (see ``binarize_mask``). ``feather``: the width in pixels of
        the colour-correction band inside the hole edge (default: 2 model pixels when the crop is resampled, else
        0). Raises ValueError for bad shapes or dtypes, naming both sizes when image and mask differ."""
        pixels = np.asarray(pixels)
        squeeze = pixels.ndim == 2
        img = pixels[:, :, None] if squeeze else pixels
        if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected [H, W] or [H, W, C] uint8/uint16 pixels with C = 1 or 3, got {img.dtype} "
                             f"{list(pixels.shape)}")
        if self.channels not in (1, 3):
            raise ValueError(f"this model fills {self.channels}-channel images; the pipeline takes gray or RGB pixels "
                             "(alpha is passed through), so train on gray or RGB data (data.channels=1 or 3)")
        hole = binarize_mask(mask)
        if hole.shape != img.shape[:2]:
            raise ValueError(f"the mask is {hole.shape[1]}x{hole.shape[0]} but the image is "
                             f"{img.shape[1]}x{img.shape[0]}; they must have the same size")
        out = img.copy()
        if not hole.any():
            return out[:, :, 0] if squeeze else out
        peak = float(np.iinfo(img.dtype).max)
        top, left, ch, cw = self.crop_box(hole)
        crop = torch.from_numpy(img[top:top + ch, left:left + cw].astype(np.float32) / peak).permute(2, 0, 1)[None]
        m = torch.from_numpy(hole[top:top + ch, left:left + cw].astype(np.float32))[None, None]   # [1, 1, ch, cw]
        long = max(ch, cw)
        k = min(max(long, self.resolution), self.max_side) / long
        size = (_to_stride(ch * k, self.stride), _to_stride(cw * k, self.stride))
        resampled = size != (ch, cw)
        if resampled:
            x_in = _resize(crop, size).clamp(0, 1)
            m_in = (F.interpolate(m, size=size, mode="area") > 0).float()                # any touch of the hole
            y = _resize(self._model(x_in, m_in), (ch, cw)).clamp(0, 1)                   # [1, c, ch, cw]
        else:
            y = self._model(crop, m)
        band = (2 * math.ceil(long / round(long * k)) if resampled else 0) if feather is None else feather
        if band > 0:
            y = self._feather(y, crop, m, band)
        fill = np.rint(y[0].permute(1, 2, 0).numpy() * peak).clip(0, peak).astype(img.dtype)
        region = out[top:top + ch, left:left + cw]
        sel = hole[top:top + ch, left:left + cw]
        region[sel] = fill[sel]
        return out[:, :, 0] if squeeze else out

    @staticmethod
    def _feather(y: Tensor, x: Tensor, m: Tensor, band: int) -> Tensor:
        """Shift the fill ``y`` toward the known pixels of ``x`` near the hole edge: y + offset * (1 - d / band) for
        hole pixels within ``band`` px of a known one (d: their chessboard distance to it), where offset is the mean
        of (x - y) over the known pixels within ``band`` px. Pixels outside the hole are not changed by the caller."""
        known = 1 - m                                                                    # [1, 1, h, w]
        k = 2 * band + 1
        diff = (x - y) * known
        num = F.avg_pool2d(diff, k, 1, band, count_include_pad=False)
        den = F.avg_pool2d(known, k, 1, band, count_include_pad=False)
        offset = num / den.clamp_min(1e-6) * (den > 0)
        # Chessboard distance to the nearest known pixel, up to band: grow the known area one pixel at a time.
        dist = torch.full_like(m, float(band))
        grown = known.clone()
        for d in range(1, band + 1):
            grown = F.max_pool2d(grown, 3, 1, 1)
            dist = torch.where((grown > 0) & (dist == band) & (m > 0), torch.full_like(m, float(d - 1)), dist)
        ramp = (1 - dist / band).clamp(0, 1) * m
        return (y + offset * ramp).clamp(0, 1)

    def process_file(self, image: str | Path, mask: str | Path, dst: str | Path, feather: int | None = None) -> Path:
        """Read ``image`` (8/16 bit, gray/RGB/RGBA) and ``mask`` (see ``read_mask``), fill the hole, write ``dst``
        (format from its suffix) at the image's depth with its alpha plane untouched. A mask of another size is a
        ValueError naming both files and sizes."""
        img = read_image(image)
        hole = read_mask(mask)
        if hole.shape != img.pixels.shape[:2]:
            raise ValueError(f"{mask} is {hole.shape[1]}x{hole.shape[0]} but {image} is {img.pixels.shape[1]}x"
                             f"{img.pixels.shape[0]}; a mask must have its image's size")
        return write_image(dst, self(img.pixels, hole, feather=feather), alpha=img.alpha)
