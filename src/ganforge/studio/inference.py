"""The playground's inference: load a snapshot's pipeline once (small LRU cache) and turn requests into PNGs.

Only the library's pipelines are used (``infer.pipelines.load_pipeline``), so the studio applies a model exactly as
``ganforge generate`` / ``ganforge apply`` and ``ganforge.load`` do. Snapshots are safetensors + JSON; nothing is
unpickled. Uploaded images are decoded with the studio's pixel limit, checked from the header first.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MAX_GENERATE = 64  # images per generate request
MAX_FRAMES = 32  # interpolation frames


class InferenceError(ValueError):
    """A request the model cannot serve (bad class, wrong model kind, image too large); the message says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def png_bytes(hwc: np.ndarray) -> bytes:
    """[H, W, C] uint8/uint16, C in 1, 3 -> PNG bytes (16-bit images are reduced to 8 for the browser)."""
    if hwc.dtype == np.uint16:
        hwc = (hwc.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if hwc.ndim == 3 and hwc.shape[2] == 1:
        hwc = hwc[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="PNG")
    return buf.getvalue()


def check_seed_count(text: str) -> None:
    """Refuse a seed list of more than MAX_GENERATE seeds from its text, before it is expanded ("0-999999999")."""
    count = 0
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        if sep and a.strip().isdigit() and b.strip().isdigit():
            count += max(0, int(b) - int(a) + 1)
        elif part.strip():
            count += 1
    if count > MAX_GENERATE:
        raise InferenceError(f"give 1..{MAX_GENERATE} seeds (got {count})")


class PipelineCache:
    """``get(path)`` returns the snapshot's pipeline, reloading when the file changed (a running job rewrites
    ``latest``); at most ``size`` pipelines stay loaded."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[tuple[str, float], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, snapshot: Path) -> Any:
        from ganforge.core.snapshot import resolve_snapshot
        from ganforge.infer.pipelines import load_pipeline

        weights, _meta = resolve_snapshot(snapshot)
        key = (str(weights), weights.stat().st_mtime)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        pipe = load_pipeline(snapshot, device="cpu")
        with self._lock:
            self._items[key] = pipe
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return pipe


def generate(pipe: Any, seeds: list[int], truncation: float, class_index: int | None,
             interpolate: tuple[int, int, int] | None, mix: tuple[list[int], list[int], str] | None) -> bytes:
    """A PNG grid: one image per seed; or ``frames`` images walking from seed a to seed b; or a style-mixing grid
    (rows x columns, StyleGAN2 only)."""
    import torch

    from ganforge.core.grid import make_grid, to_uint8
    from ganforge.infer.snapshot import LoadedGenerator

    if not isinstance(pipe, LoadedGenerator):
        raise InferenceError("this snapshot is not a generator (its pipeline is "
                             f"{getattr(pipe, 'meta', {}).get('pipeline')!r}); use the restore playground")
    try:
        if mix is not None:
            from ganforge.infer.style import style_mix

            rows, cols, styles = mix
            if len(rows) * len(cols) > MAX_GENERATE:
                raise InferenceError(f"style mixing: at most {MAX_GENERATE} cells (got {len(rows)}x{len(cols)})")
            return png_bytes(style_mix(pipe, rows, cols, styles, labels=class_index, psi=truncation))
        if interpolate is not None:
            a, b, frames = interpolate
            if not 2 <= frames <= MAX_FRAMES:
                raise InferenceError(f"interpolation frames must be 2..{MAX_FRAMES} (got {frames})")
            x = pipe.interpolate(a, b, frames, labels=class_index, psi=truncation)
            return png_bytes(make_grid(to_uint8(x), cols=frames))
        if not 1 <= len(seeds) <= MAX_GENERATE:
            raise InferenceError(f"give 1..{MAX_GENERATE} seeds (got {len(seeds)})")
        with torch.no_grad():
            x = pipe.generate(seeds, labels=class_index, psi=truncation)
        return png_bytes(make_grid(to_uint8(x)))
    except InferenceError:
        raise
    except ValueError as exc:  # the pipeline's own checks: class out of range, truncation on a non-StyleGAN
        raise InferenceError(str(exc)) from None


def read_upload(path: Path, max_pixels: int) -> Any:
    """Decode an uploaded image (8/16 bit, gray/RGB, alpha kept aside) with the pixel limit."""
    from ganforge.core.imageio import ImageIOError, read_image

    try:
        return read_image(path, max_pixels=max_pixels)
    except ImageIOError as exc:
        msg = str(exc).replace(str(path), "the uploaded image")
        raise InferenceError(msg, 413 if "over the limit" in msg or "too large" in msg else 422) from None


def restore(pipe: Any, image: Any, sigma: float | None = None) -> bytes:
    """Restore with the pipeline (tiled); ``sigma`` (0-255 scale) is the noise level for a non-blind denoiser."""
    from ganforge.infer.restore import RestorePipeline

    if not isinstance(pipe, RestorePipeline):
        raise InferenceError(f"this snapshot's pipeline is {getattr(pipe, 'meta', {}).get('pipeline')!r}, not a "
                             "restoration model (pipeline 'restore')")
    try:
        out = pipe(image.pixels) if sigma is None else pipe(image.pixels, sigma=sigma)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None
    return png_bytes(out)


def bicubic(image: Any, scale: int) -> bytes:
    """The baseline an upscaler is compared against: PIL bicubic at ``scale``."""
    pixels = image.pixels
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    pil = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


# ---- inpainting ------------------------------------------------------------------------------------------------------
MASK_THRESHOLD = 127  # a mask pixel is hole when its level (0-255) is above this: more than half painted


def read_mask_upload(path: Path, max_pixels: int) -> np.ndarray:
    """An uploaded mask as bool [H, W], True = hole. A browser's canvas strokes arrive anti-aliased, so the mask is
    thresholded here, at half: with transparency, alpha above 127 of 255 (the painted pixels of a transparent
    canvas); otherwise the level (mean of the channels) above 127 of 255, white = hole. 16-bit masks are scaled to
    8 bits first."""
    loaded = read_upload(path, max_pixels)
    plane = loaded.alpha if loaded.alpha is not None and loaded.alpha.min() < np.iinfo(loaded.alpha.dtype).max \
        else loaded.pixels
    level = plane.astype(np.float64)
    if plane.dtype == np.uint16:
        level = level * 255 / 65535
    if level.ndim == 3:
        level = level.mean(2)
    return level > MASK_THRESHOLD


def inpaint(pipe: Any, image: Any, hole: np.ndarray) -> bytes:
    """Fill ``hole`` (bool [H, W], same size as the image) with an inpainting pipeline; refuses an empty mask
    rather than returning the input unchanged (the Gradio brush that silently sent empty masks, issue 16)."""
    from ganforge.infer.inpaint import InpaintPipeline

    if not isinstance(pipe, InpaintPipeline):
        raise InferenceError(f"this snapshot's pipeline is {getattr(pipe, 'meta', {}).get('pipeline')!r}, not an "
                             "inpainting model (pipeline 'inpaint'); pick an inpaint job's snapshot")
    h, w = image.pixels.shape[:2]
    if hole.shape != (h, w):
        raise InferenceError(f"the mask is {hole.shape[1]}x{hole.shape[0]} but the image is {w}x{h}; paint the mask "
                             "on the image itself so that both have the same size")
    if not hole.any():
        raise InferenceError(f"the mask is empty: no pixel is painted above the threshold ({MASK_THRESHOLD} of 255, "
                             "white or opaque = hole); paint over the part of the image to fill, then Fill")
    try:
        out = pipe(image.pixels, hole)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None
    return png_bytes(out)


# ---- translation and colorization ------------------------------------------------------------------------------------
def translate(pipe: Any, image: Any, direction: str, colorize: bool = False) -> bytes:
    """Translate with a pix2pix / CycleGAN pipeline in ``direction``; ``colorize``: the model must be a colorizer
    (trained on derived gray or Lab pairs), which keeps the photo's lightness and adds colour."""
    from ganforge.infer.translate import TranslatePipeline

    if not isinstance(pipe, TranslatePipeline):
        raise InferenceError(f"this snapshot's pipeline is {getattr(pipe, 'meta', {}).get('pipeline')!r}, not a "
                             "translation model (pipeline 'translate'); pick a pix2pix or CycleGAN job's snapshot")
    if colorize and not pipe.is_colorizer:
        raise InferenceError(f"this {pipe.meta.get('task')} model was trained on data.derive="
                             f"{pipe.derive or ''!r}, not to colour gray photos; pick a colorize-64 job's snapshot "
                             "(derived pairs lab or gray), or use the translate endpoint")
    try:
        out = pipe(image.pixels, direction)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None
    return png_bytes(out)
