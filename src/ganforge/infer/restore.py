"""The "restore" pipeline: apply a restoration snapshot (denoiser, upscaler, ...) to images of any size, tiled.

Pixels go in and come out at the file's own depth (8 or 16 bit), gray or RGB; alpha is passed through
untouched. A gray image through an RGB model is replicated to RGB and averaged back; an RGB image through a
gray model is restored channel by channel. Peak memory is set by the tile, not by the image (infer/tiles.py).

A non-blind denoiser (a rescnn snapshot with a noise map, FFDNet-style) takes ``sigma``, the noise level in 0..255
units of the full range (8 or 16 bit alike), and refuses to run without one; a blind model refuses one.
``outscale`` resizes the model's output to input size x outscale with a Lanczos filter (Real-ESRGAN's
``--outscale``: the model runs at its own factor, e.g. x4, and 3.5 is reached by resampling its output).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ganforge.core.imageio import LoadedImage, read_image, write_image
from ganforge.infer.snapshot import build_modules
from ganforge.infer.tiles import run_tiled


class RestorePipeline:
    """``pipe(pixels)`` restores [H, W, C] uint8/uint16 (C = 1 or 3) and returns [H*s, W*s, C] of the same dtype,
    s = the snapshot's scale (1 for denoisers, 2/3/4 for super-resolution)."""

    def __init__(self, net: nn.Module, meta: dict[str, Any], device: torch.device):
        self.net, self.meta, self.device = net, meta, device
        self.channels: int = net.config["channels"]
        self.scale: int = int(meta.get("scale", 1))
        # Tile borders within the receptive field's radius see padding instead of context: those pixels get weight
        # 0 (the runner's margin), and the overlap leaves as much again to feather over. Then tiling is exact.
        self.radius: int = int(meta.get("receptive_field", 33)) // 2
        # Non-blind (FFDNet-style noise map): every call needs sigma (0..255 units).
        self.noise_map: bool = bool(getattr(net, "config", {}).get("noise_map", False))

    @classmethod
    def from_snapshot(cls, tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                      device: torch.device) -> RestorePipeline:
        return cls(build_modules(tensors, meta, snapshot, device)["net"], meta, device)

    def __repr__(self) -> str:
        d = self.meta.get("dataset", {})
        return (f"RestorePipeline({self.meta.get('arch')}, {self.channels} ch, x{self.scale}, "
                f"{'non-blind, ' if self.noise_map else ''}trained on {d.get('name')})")

    def check_sigma(self, sigma: float | None) -> float | None:
        """``sigma`` as the network takes it: required (0..255) by a non-blind model, refused by a blind one.
        Raises ValueError saying what to pass instead."""
        if not self.noise_map:
            if sigma is not None:
                raise ValueError(f"this model ({self.meta.get('arch')}) is blind: it estimates the noise level "
                                 "itself and takes no sigma; drop --sigma, or use a non-blind model (ganforge "
                                 "denoise --sigma S uses the shipped denoise-nonblind)")
            return None
        if sigma is None:
            raise ValueError("this model is a non-blind denoiser: pass the noise level sigma (0..255 units of the "
                             "full range, e.g. --sigma 25 / sigma=25), the standard deviation of the noise to remove")
        sigma = float(sigma)
        if not 0.0 <= sigma <= 255.0 or np.isnan(sigma):
            raise ValueError(f"sigma must be a noise level in 0..255 (units of 1/255 of the full range), got {sigma}")
        return sigma

    @torch.no_grad()
    def _model(self, x: Tensor, sigma: float | None = None) -> Tensor:
        """[N, C, h, w] in [0, 1] -> [N, C, h*s, w*s] in [0, 1] (the network works in [-1, 1])."""
        x = x.to(self.device) * 2 - 1
        y = self.net(x) if sigma is None else self.net(x, sigma)
        return ((y + 1) / 2).clamp(0, 1).float().cpu()

    def _tile_fn(self, channels: int, sigma: float | None) -> Callable[[Tensor], Tensor]:
        """The function run_tiled applies to [N, channels, h, w] tiles: the model, with gray replicated to an RGB
        model and averaged back, or RGB restored channel by channel through a gray model."""
        if channels == 1 and self.channels == 3:
            return lambda t: self._model(t.expand(-1, 3, -1, -1), sigma).mean(1, keepdim=True)
        if channels == 3 and self.channels == 1:
            def per_channel(t: Tensor) -> Tensor:
                n = t.shape[0]
                y = self._model(t.reshape(n * 3, 1, *t.shape[2:]), sigma)
                return y.reshape(n, 3, *y.shape[2:])
            return per_channel
        return lambda t: self._model(t, sigma)

    def output_size(self, height: int, width: int, outscale: float | None = None) -> tuple[int, int]:
        """(height, width) of the result for an input of that size: x the model's scale, or x ``outscale``
        (truncated as Real-ESRGAN, at least 1 pixel)."""
        if outscale is None:
            return height * self.scale, width * self.scale
        if not 0 < outscale <= 16 or np.isnan(outscale):
            raise ValueError(f"outscale must be in (0, 16], got {outscale}")
        return max(1, int(height * outscale)), max(1, int(width * outscale))

    def default_tile(self) -> int:
        """The tile (input pixels) used when none is given: 512 for same-size and x2 models, 256 for x3/x4
        upscalers (their output tile is then 768-1024 px: a 4000x3000 x4 upscale peaks at 1.7 GiB with tile 256
        and 3.0 GiB with 512, docs/benchmarks.md), and never less than twice the overlap the model needs."""
        return max(512 if self.scale <= 2 else 256, 2 * 4 * self.radius)

    def __call__(self, pixels: np.ndarray, tile: int | None = None, overlap: int | None = None,
                 sigma: float | None = None, outscale: float | None = None) -> np.ndarray:
        """Restore ``pixels``; ``tile`` in input pixels (None: ``default_tile``); ``sigma`` for a non-blind model
        (see ``check_sigma``); ``outscale`` resizes the result to the input's size x outscale (Lanczos) instead of
        x the model's scale."""
        sigma = self.check_sigma(sigma)
        tile = tile or self.default_tile()
        pixels = np.asarray(pixels)
        squeeze = pixels.ndim == 2
        img = pixels[:, :, None] if squeeze else pixels
        if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected [H, W] or [H, W, C] uint8/uint16 pixels with C = 1 or 3, got {img.dtype} "
                             f"{list(pixels.shape)}")
        overlap = max(4 * self.radius, overlap or 0)
        if overlap >= tile:
            if max(img.shape[:2]) > tile:
                raise ValueError(f"--tile {tile} is too small for this model: tiles must overlap by {overlap} px "
                                 f"(4x its receptive-field radius); use --tile {2 * overlap} or more")
            overlap = tile - 1  # one tile covers the image: the overlap is never used
        size = self.output_size(*img.shape[:2], outscale)  # checked before the (long) tiled run
        fn = self._tile_fn(img.shape[2], sigma)
        h, w, c = img.shape
        out = np.empty((h * self.scale, w * self.scale, c), img.dtype)  # written strip by strip by the runner
        run_tiled(fn, img.transpose(2, 0, 1), tile=tile, overlap=overlap, scale=self.scale, margin=self.radius,
                  out=out.transpose(2, 0, 1))
        if size != out.shape[:2]:
            out = resize_pixels(out, size)
        return out[:, :, 0] if squeeze else out

    def process_file(self, src: str | Path, dst: str | Path, tile: int | None = None, overlap: int | None = None,
                     sigma: float | None = None, outscale: float | None = None) -> Path:
        """Read ``src`` (8/16 bit, gray/RGB/RGBA, EXIF orientation applied), restore it, write ``dst`` (format from
        its suffix) at the same depth with the alpha plane untouched (enlarged with the image: repeated for the
        model's scale, Lanczos-resized for ``outscale``)."""
        image: LoadedImage = read_image(src)
        out = self(image.pixels, tile=tile, overlap=overlap, sigma=sigma, outscale=outscale)
        alpha = image.alpha
        if alpha is not None and alpha.shape[:2] != out.shape[:2]:
            if outscale is None:
                alpha = alpha.repeat(self.scale, 0).repeat(self.scale, 1)
            else:
                alpha = resize_pixels(alpha, out.shape[:2])
        return write_image(dst, out, alpha=alpha)


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] or [H, W, C] uint8/uint16 -> (height, width) = ``size``, same dtype, Lanczos (PIL's, a 3-lobe
    windowed sinc as Real-ESRGAN's cv2 INTER_LANCZOS4 in spirit). 8-bit images resize as a whole; 16-bit ones
    channel by channel in float32 (PIL's 16-bit modes have no Lanczos), rounded and clipped back."""
    h, w = size
    if pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[2] in (1, 3)):
        plane = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        out = np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((w, h), Image.Resampling.LANCZOS))
        return out[:, :, None] if pixels.ndim == 3 and out.ndim == 2 else out
    peak = float(np.iinfo(pixels.dtype).max)
    planes = pixels[:, :, None] if pixels.ndim == 2 else pixels
    out = np.empty((h, w, planes.shape[2]), pixels.dtype)
    for c in range(planes.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[:, :, c], dtype=np.float32), mode="F")
        resized = np.asarray(plane.resize((w, h), Image.Resampling.LANCZOS))
        out[:, :, c] = np.rint(np.clip(resized, 0.0, peak))
    return out[:, :, 0] if pixels.ndim == 2 else out
