"""Inpainting masks and the inpainting training data: image crops paired with generated or user-supplied holes.

A mask is float [N, 1, p, p] with 1 = hole (missing pixels) and 0 = known pixels. ``data.masks`` names the source:

    free-form       random brush strokes, DeepFill v2 (Yu et al. 2019, supplementary "free-form mask generation")
    box             one random axis-aligned rectangle per image, sides p/8..p/2 (DeepFill v1's random boxes)
    center          the central p/2 x p/2 square (Context Encoder, Pathak et al. 2016: the 64 px centre of 128 px)
    free-form+box   the union of a free-form mask and a box, drawn in that order
    FOLDER          a pool of user masks (any format, white = hole, binarised at gray > 127): each image of a batch
                    gets a random mask of the pool, randomly cropped to the patch and flipped

Randomness comes only from the step's ``torch.Generator`` (as data/derive.py), in a fixed, documented draw order
whose number of draws does not depend on the values drawn, so a batch is a function of (indices, generator
state). Free-form draw order, for N masks, K = 3 stroke slots and V = 12 vertex slots (slots beyond the drawn
counts are drawn too and ignored):

    1. rand(N)          strokes per mask, 1 + floor(3u): 1..3
    2. rand(N, K)       vertices per stroke, 4 + floor(9u): 4..12
    3. rand(N, K, 2)    angle_min = mean - u0 * range, angle_max = mean + u1 * range (mean 2pi/5, range 2pi/15)
    4. rand(N, K, V)    vertex angles: angle_min + u (angle_max - angle_min), taken as 2pi - a at even vertices
    5. rand(N, K, 2)    start point (x, y), uniform over the patch
    6. randn(N, K, V)   segment lengths r = clip(avg + z avg / 2, 0, 2 avg), avg = diagonal / 8
    7. rand(N, K)       brush width, uniform in [12, 40] x p / 256 (the paper's values at 256 px, scaled)
    8. rand(N, 2)       a left-right flip when u0 > 0.5, an up-down flip when u1 > 0.5

Each vertex is clipped to the patch as in the reference code. A stroke is rasterised with plain torch: a pixel is
in the hole when the distance from its centre to a segment of the stroke is at most width / 2, which also gives
the round joints and ends the reference draws as circles. Box draws ``rand(N, 4)`` (height, width, top, left);
the centre box draws nothing; a pool draws ``rand(N)`` (which mask), crop positions ``rand(N, 2)`` and flips
``rand(N, 2)``.

The training data (``InpaintBatches``) is a ``TrainData`` of image crops (``data/patches.py``: photos of any size,
cached once) with a mask each: ``{"image": [N, C, p, p] in [-1, 1], "mask": [N, 1, p, p] in {0, 1}}``. A source
laid out as images/ + masks/ (matching names) brings its own masks instead (``data/pairs.py`` ``MaskedBatches``);
``load_inpaint`` picks the one that fits.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.data.batches import to_float
from ganforge.data.builtin import DatasetError
from ganforge.data.dataset import MASK_THRESHOLD, mask_coverage_line, mask_coverage_stats, parse_builtin
from ganforge.data.layouts import detect_layout
from ganforge.data.pairs import MaskedBatches, load_masked
from ganforge.data.patches import PatchCache, Patches, crop, crop_positions, load_patches
from ganforge.data.sources import list_source

__all__ = ["GENERATED", "InpaintBatches", "MaskPool", "MaskSource", "box_masks", "center_masks", "coverage",
           "free_form_masks", "generated_coverage_note", "has_mask_folders", "load_inpaint", "mask_source",
           "masked_coverage_note"]

GENERATED = ("free-form", "box", "center", "free-form+box")  # the generated kinds data.masks accepts

# DeepFill v2's free-form parameters at 256 px (Yu et al. 2019, supplementary Algorithm 1; the reference code's
# brush_stroke_mask). Widths scale with the patch; the segment length is already relative (diagonal / 8).
FF_STROKES = (1, 3)
FF_VERTICES = (4, 12)
FF_MEAN_ANGLE = 2 * math.pi / 5
FF_ANGLE_RANGE = 2 * math.pi / 15
FF_WIDTH_256 = (12.0, 40.0)
BOX_SIDE = (1 / 8, 1 / 2)  # box height and width as fractions of the patch


# ---------------------------------------------------------------------------------------------------------
# Generated masks


def _rand(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float64).cpu()


def _segments_to_mask(a: Tensor, b: Tensor, radius: Tensor, valid: Tensor, size: int) -> Tensor:
    """Union of capsules: pixel centres within ``radius`` of segment a->b. a, b: [N, S, 2] (x, y) in pixels,
    radius [N, S], valid bool [N, S]. Returns bool [N, size, size]. One segment slot at a time, over the images
    where it is used, so memory is O(N * size^2) whatever the number of segments. float32: the coordinates are
    at most a few thousand pixels, far within its exact range for the comparison."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    px, py = centres[None, None, :], centres[None, :, None]                                   # [1, 1, W], [1, H, 1]
    a, b, radius = a.float(), b.float(), radius.float()
    out = torch.zeros(a.shape[0], size, size, dtype=torch.bool)
    for s in range(a.shape[1]):
        rows = valid[:, s].nonzero().flatten()
        if rows.numel() == 0:
            continue
        ax, ay = a[rows, s, 0, None, None], a[rows, s, 1, None, None]                         # [M, 1, 1]
        dx, dy = b[rows, s, 0, None, None] - ax, b[rows, s, 1, None, None] - ay
        qx, qy = px - ax, py - ay                                                             # [M, 1, W], [M, H, 1]
        t = ((qx * dx + qy * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp_(0, 1)         # [M, H, W]
        r = radius[rows, s, None, None]
        out[rows] |= (qx - t * dx).square_().add_((qy - t * dy).square_()) <= r * r
    return out


def free_form_masks(n: int, size: int, gen: torch.Generator) -> Tensor:
    """DeepFill v2 free-form brush-stroke masks: float [n, 1, size, size] in {0, 1}. Draw order: module docstring."""
    k_max, v_max = FF_STROKES[1], FF_VERTICES[1]
    n_strokes = FF_STROKES[0] + (_rand(gen, n) * (FF_STROKES[1] - FF_STROKES[0] + 1)).floor().long()     # [N]
    n_vertex = FF_VERTICES[0] + (_rand(gen, n, k_max) * (FF_VERTICES[1] - FF_VERTICES[0] + 1)).floor().long()
    spread = _rand(gen, n, k_max, 2) * FF_ANGLE_RANGE
    angle_min, angle_max = FF_MEAN_ANGLE - spread[..., 0], FF_MEAN_ANGLE + spread[..., 1]          # [N, K]
    angles = angle_min[..., None] + _rand(gen, n, k_max, v_max) * (angle_max - angle_min)[..., None]  # [N, K, V]
    even = torch.arange(v_max) % 2 == 0
    angles = torch.where(even, 2 * math.pi - angles, angles)
    start = (_rand(gen, n, k_max, 2) * size).floor()                                              # [N, K, 2]
    avg = math.hypot(size, size) / 8
    r = (avg + torch.randn((n, k_max, v_max), generator=gen, device=gen.device, dtype=torch.float64).cpu()
         * (avg / 2)).clamp(0, 2 * avg)                                                           # [N, K, V]
    w_lo, w_hi = (w * size / 256 for w in FF_WIDTH_256)
    width = w_lo + _rand(gen, n, k_max) * (w_hi - w_lo)                                          # [N, K]
    flips = _rand(gen, n, 2) > 0.5                                                                # [N, 2]

    # The walk: each vertex moves r along its angle from the previous one and is clipped to the patch.
    points = [start]
    for v in range(v_max):
        step = torch.stack([r[..., v] * torch.cos(angles[..., v]), r[..., v] * torch.sin(angles[..., v])], -1)
        points.append((points[-1] + step).clamp(0, size))
    pts = torch.stack(points, 2)                                                                  # [N, K, V+1, 2]
    seg_valid = (torch.arange(v_max)[None, None, :] < n_vertex[..., None]) \
        & (torch.arange(k_max)[None, :, None] < n_strokes[:, None, None])                         # [N, K, V]
    a = pts[:, :, :-1].reshape(n, k_max * v_max, 2)
    b = pts[:, :, 1:].reshape(n, k_max * v_max, 2)
    radius = (width / 2)[..., None].expand(n, k_max, v_max).reshape(n, -1)
    mask = _segments_to_mask(a, b, radius, seg_valid.reshape(n, -1), size)                        # [N, H, W]
    mask = torch.where(flips[:, 0, None, None], mask.flip(2), mask)
    mask = torch.where(flips[:, 1, None, None], mask.flip(1), mask)
    return mask[:, None].float()


def box_masks(n: int, size: int, gen: torch.Generator) -> Tensor:
    """One random rectangle per mask, height and width in [p/8, p/2]: float [n, 1, size, size]. Draws rand(n, 4)."""
    u = _rand(gen, n, 4)
    lo, hi = BOX_SIDE[0] * size, BOX_SIDE[1] * size
    h = (lo + u[:, 0] * (hi - lo)).round().clamp(1, size)
    w = (lo + u[:, 1] * (hi - lo)).round().clamp(1, size)
    top, left = (u[:, 2] * (size - h + 1)).floor(), (u[:, 3] * (size - w + 1)).floor()
    idx = torch.arange(size, dtype=torch.float64)
    rows = (idx[None, :] >= top[:, None]) & (idx[None, :] < (top + h)[:, None])                  # [N, H]
    cols = (idx[None, :] >= left[:, None]) & (idx[None, :] < (left + w)[:, None])                # [N, W]
    return (rows[:, :, None] & cols[:, None, :])[:, None].float()


def center_masks(n: int, size: int) -> Tensor:
    """The centre square of side size/2 (Context Encoder's setting): float [n, 1, size, size]. Draws nothing."""
    mask = torch.zeros(n, 1, size, size)
    q = size // 4
    mask[:, :, q:q + size // 2, q:q + size // 2] = 1.0
    return mask


class MaskPool:
    """User masks from a folder (any image format; gray > 127 = hole), each at least the patch on both sides,
    decoded once into a patch cache. ``sample(n, gen)`` gives random crops of randomly chosen masks."""

    def __init__(self, folder: str | Path, patch: int):
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DatasetError(f"data.masks={str(folder)!r}: not one of {', '.join(GENERATED)} and no such folder "
                               "of mask images (white = hole)")
        patches = load_patches(path, patch, channels=1)
        cache = patches.store
        assert isinstance(cache, PatchCache)
        for k in range(len(cache)):
            if cache.errors[k] is not None:
                raise DatasetError(f"mask pool {path}: {cache.names[k]} cannot be read ({cache.errors[k]}); "
                                   "fix or remove it")
            h, w = cache.size(k)
            if h < patch or w < patch:
                raise DatasetError(f"mask pool {path}: {cache.names[k]} is {w}x{h}, smaller than the {patch}x{patch} "
                                   f"training patch; every mask must be at least the patch on both sides (resize "
                                   "it, or train with a smaller data.resolution)")
        self.path, self.patch, self.cache = path, patch, cache
        self.rows = np.arange(len(cache), dtype=np.int64)
        self.digest = cache.digest

    def __len__(self) -> int:
        return len(self.rows)

    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        """float [n, 1, patch, patch] in {0, 1}. Draws rand(n) (which mask), rand(n, 2) (crops), rand(n, 2) (flips)."""
        pick = (_rand(gen, n) * len(self.rows)).floor().long().clamp(max=len(self.rows) - 1).numpy()
        rows = self.rows[pick]
        sizes = np.array([self.cache.size(int(i)) for i in rows], dtype=np.int64).reshape(-1, 2)
        pos = crop_positions(sizes, self.patch, gen)
        flips = _rand(gen, n, 2) > 0.5
        crops = np.stack([crop(self.cache.image(int(i)), int(t), int(l), self.patch)
                          for i, (t, l) in zip(rows, pos, strict=True)])                           # [N, 1, p, p]
        mask = torch.from_numpy(crops) > MASK_THRESHOLD
        mask = torch.where(flips[:, 0, None, None, None], mask.flip(3), mask)
        mask = torch.where(flips[:, 1, None, None, None], mask.flip(2), mask)
        return mask.float()


class MaskSource:
    """``data.masks`` resolved for one patch size: ``masks(n, gen)`` -> float [n, 1, patch, patch] in {0, 1}."""

    def __init__(self, spec: str, patch: int):
        self.spec, self.patch = spec, patch
        self.pool = MaskPool(spec, patch) if spec not in GENERATED else None

    def __call__(self, n: int, gen: torch.Generator) -> Tensor:
        if self.pool is not None:
            return self.pool.sample(n, gen)
        if self.spec == "center":
            return center_masks(n, self.patch)
        if self.spec == "box":
            return box_masks(n, self.patch, gen)
        ff = free_form_masks(n, self.patch, gen)
        return ff if self.spec == "free-form" else torch.maximum(ff, box_masks(n, self.patch, gen))

    def identity(self) -> dict[str, Any]:
        """What the fingerprint depends on: the kind, or the pool's pixels."""
        return {"masks": self.spec if self.pool is None else "pool", "pool": self.pool.digest if self.pool else None}

    def describe(self) -> str:
        return self.spec if self.pool is None else f"pool of {len(self.pool)} masks from {self.pool.path}"


def mask_source(spec: str, patch: int) -> MaskSource:
    """The masks named by ``data.masks`` (a generated kind or a folder path) at ``patch`` pixels."""
    return MaskSource(spec, patch)


def coverage(masks: Tensor) -> np.ndarray:
    """Hole share per mask: float64 [N] from masks [N, 1, H, W] in {0, 1}."""
    return masks.flatten(1).double().mean(1).numpy()


def generated_coverage_note(source: MaskSource, n: int = 256, seed: int = 0) -> str:
    """The coverage of ``n`` masks drawn from a fixed seed, as a log line (what the run's masks look like)."""
    stats = mask_coverage_stats(coverage(source(n, torch.Generator().manual_seed(seed))))
    return f"masks {source.describe()} at {source.patch} px, " + mask_coverage_line(stats)


# ---------------------------------------------------------------------------------------------------------
# The training data


class InpaintBatches:
    """Image crops with a mask each: ``{"image": [N, C, p, p] in [-1, 1], "mask": [N, 1, p, p] in {0, 1}}``.

    fetch draws, in order: crop positions rand(N, 2), flips rand(N) (if xflip), then the masks (module docstring).
    """

    def __init__(self, patches: Patches, masks: MaskSource, xflip: bool = True):
        self.patches, self.masks, self.xflip = patches, masks, xflip
        self.name, self.report, self.patch = patches.name, patches.report, patches.patch
        self.channels, self.num_classes, self.class_names = patches.store.channels, 0, []
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.patches)

    def _config(self) -> dict[str, Any]:
        return {"layout": "images+masks", "patch": self.patch, "xflip": self.xflip, **self.masks.identity()}

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self._config(), sort_keys=True).encode())
            digest.update(self.patches.store.digest.encode())
            digest.update(np.ascontiguousarray(self.patches.rows, dtype=np.int64))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self._config(), "num_images": len(self), "channels": self.channels,
                "fingerprint": self.fingerprint(), "skipped": len(self.report.skipped)}

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        crops = self.patches.random_crops(np.asarray(idx), gen)                                   # [N, C, p, p]
        if self.xflip:
            flip = (torch.rand(len(crops), generator=gen, device=gen.device) < 0.5).cpu().numpy()
            crops = np.stack([c[:, :, ::-1] if f else c for c, f in zip(crops, flip, strict=True)])
        image = to_float(torch.from_numpy(np.ascontiguousarray(crops)).to(device))
        return {"image": image, "mask": self.masks(len(crops), gen).to(device)}

    def preview(self, idx: np.ndarray) -> np.ndarray:
        store, out = self.patches.store, []
        for i in self.patches.rows[np.asarray(idx)]:
            h, w = store.size(int(i))
            out.append(crop(store.image(int(i)), max(h - self.patch, 0) // 2, max(w - self.patch, 0) // 2,
                            self.patch))
        return np.stack(out)


def has_mask_folders(source: str | Path) -> bool:
    """True when the source (folder or .zip) is laid out as images/ + masks/ (its own masks, matching names)."""
    if parse_builtin(source) is not None:
        return False
    path = Path(source).expanduser()
    if not path.exists():
        return False
    return detect_layout(list_source(path, "train", []).images).kind == "masked"


def masked_coverage_note(data: MaskedBatches) -> str:
    """The hole share of the masks of images/ + masks/ data (whole masks, before cropping), as a report line."""
    fractions = [float((data.masks.image(int(r)) > data.threshold).mean()) for r in np.unique(data.rows[:, 1])]
    return mask_coverage_line(mask_coverage_stats(np.asarray(fractions)))


def load_inpaint(source: str, patch: int, masks: str = "free-form", *, channels: int | None = None,
                 max_images: int | None = None, seed: int = 0, xflip: bool = True) -> InpaintBatches | MaskedBatches:
    """Inpainting training data. A source with images/ + masks/ folders gives its own masks (``masks`` is then
    ignored, and the report says so); any other image source gets ``masks`` (a generated kind or a mask folder).
    The mask coverage is added to the intake report's notes (logged in log.txt)."""
    if has_mask_folders(source):
        data = load_masked(source, patch, channels=channels, max_images=max_images, seed=seed, xflip=xflip)
        data.report.notes.append(f"the source has images/ + masks/: its own masks are used (data.masks={masks!r} "
                                 "is ignored); " + masked_coverage_note(data))
        return data
    mask_src = mask_source(masks, patch)
    patches = load_patches(source, patch, channels, max_images=max_images, seed=seed)
    patches.report.notes.append(generated_coverage_note(mask_src))
    return InpaintBatches(patches, mask_src, xflip)
