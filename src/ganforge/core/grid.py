"""Sample grids, GIFs and 8-bit image saving, shared by training (sample grids) and inference."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganforge.core.files import atomic_write_bytes


def to_uint8(x: Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, C, H, W] uint8."""
    assert x.ndim == 4, f"expected [N, C, H, W], got {tuple(x.shape)}"
    return ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """[N, C, H, W] uint8 -> [rows*H, cols*W, C] uint8 tiled with a black gutter."""
    n, c, h, w = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = images[i].transpose(1, 2, 0)
    return grid


def to_pil(hwc: np.ndarray) -> Image.Image:
    c = hwc.shape[2]
    if c == 1:
        return Image.fromarray(hwc[:, :, 0], "L")
    return Image.fromarray(hwc, "RGB" if c == 3 else "RGBA")


def save_image(hwc: np.ndarray, path: Path) -> None:
    """Save [H, W, C] uint8 atomically; the format follows the suffix (png, jpg, webp, ...)."""
    path = Path(path)
    buf = io.BytesIO()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}; use .png, .jpg or .webp")
    to_pil(hwc).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def save_grid(images: np.ndarray, path: Path, cols: int | None = None) -> None:
    save_image(make_grid(images, cols), path)


ANIMATION_SUFFIXES = (".gif", ".webp")


def check_animation_path(path: Path) -> None:
    """Raise ValueError unless ``path`` ends in .gif or .webp (GIF data in a .mp4 would play nowhere)."""
    if Path(path).suffix.lower() not in ANIMATION_SUFFIXES:
        raise ValueError(f"{path}: an animation is written as GIF or WebP; end the file name in .gif or .webp "
                         f"(not {Path(path).suffix or 'no suffix'!r}), and convert it to video with e.g. ffmpeg")


def save_gif(frames: Sequence[np.ndarray], path: Path, fps: float = 20.0) -> None:
    """Frames are [H, W, C] uint8. Written as an animated GIF, or WebP for a .webp suffix; any other suffix
    raises ValueError."""
    path = Path(path)
    check_animation_path(path)
    pils = [to_pil(f).convert("RGB") if f.shape[2] != 1 else to_pil(f) for f in frames]
    buf = io.BytesIO()
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "GIF"
    pils[0].save(buf, format=fmt, save_all=True, append_images=pils[1:], duration=int(1000 / fps), loop=0)
    atomic_write_bytes(path, buf.getvalue())
