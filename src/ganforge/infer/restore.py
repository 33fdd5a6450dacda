"""The "restore" pipeline: apply a restoration snapshot (denoiser, upscaler, ...) to images of any size, tiled.

Pixels go in and come out at the file's own depth (8 or 16 bit), gray or RGB; alpha is passed through
untouched. A gray image through an RGB model is replicated to RGB and averaged back; an RGB image through a
gray model is restored channel by channel. Peak memory is set by the tile, not by the image (infer/tiles.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
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

    @classmethod
    def from_snapshot(cls, tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                      device: torch.device) -> RestorePipeline:
        return cls(build_modules(tensors, meta, snapshot, device)["net"], meta, device)

    def __repr__(self) -> str:
        d = self.meta.get("dataset", {})
        return (f"RestorePipeline({self.meta.get('arch')}, {self.channels} ch, x{self.scale}, "
                f"trained on {d.get('name')})")

    @torch.no_grad()
    def _model(self, x: Tensor) -> Tensor:
        """[N, C, h, w] in [0, 1] -> [N, C, h*s, w*s] in [0, 1] (the network works in [-1, 1])."""
        y = self.net(x.to(self.device) * 2 - 1)
        return ((y + 1) / 2).clamp(0, 1).float().cpu()

    def __call__(self, pixels: np.ndarray, tile: int = 512, overlap: int | None = None) -> np.ndarray:
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
        fn: Callable[[Tensor], Tensor] = self._model
        if img.shape[2] == 1 and self.channels == 3:
            def fn(t: Tensor) -> Tensor:
                return self._model(t.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
        elif img.shape[2] == 3 and self.channels == 1:
            def fn(t: Tensor) -> Tensor:
                n = t.shape[0]
                y = self._model(t.reshape(n * 3, 1, *t.shape[2:]))
                return y.reshape(n, 3, *y.shape[2:])
        h, w, c = img.shape
        out = np.empty((h * self.scale, w * self.scale, c), img.dtype)  # written strip by strip by the runner
        run_tiled(fn, img.transpose(2, 0, 1), tile=tile, overlap=overlap, scale=self.scale, margin=self.radius,
                  out=out.transpose(2, 0, 1))
        return out[:, :, 0] if squeeze else out

    def process_file(self, src: str | Path, dst: str | Path, tile: int = 512, overlap: int | None = None) -> Path:
        """Read ``src`` (8/16 bit, gray/RGB/RGBA, EXIF orientation applied), restore it, write ``dst`` (format from
        its suffix) at the same depth with the alpha plane untouched."""
        image: LoadedImage = read_image(src)
        out = self(image.pixels, tile=tile, overlap=overlap)
        alpha = image.alpha
        if alpha is not None and self.scale != 1:
            alpha = alpha.repeat(self.scale, 0).repeat(self.scale, 1)
        return write_image(dst, out, alpha=alpha)
