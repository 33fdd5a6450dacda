"""Training data for restoration, translation and inpainting: pairs, unpaired domains and images with masks,
cut into random `patch` x `patch` crops, as `TrainData` (see `batches.py`).

    load_pairs(source, patch)                 {"input", "target"}  A/ + B/, lq/ + gt/ (LR/ + HR/), or side-by-side
                                                                    A|B files twice as wide as tall (split in the
                                                                    middle; any shape with side_by_side=True)
    load_pairs(source, patch, derive=SPEC)    {"input", "target"}  any image source; input = derive(target)
    load_unpaired(source, patch)              {"A", "B"}           trainA/ + trainB/ (testA/ + testB/ for "test")
    load_masked(source, patch)                {"image", "mask"}    images/ + masks/; mask 1 = hole

Which folders make which layout, and how partners are matched, is in `layouts.py`. Every image is decoded once
into a `PatchCache` (`patches.py`) at its own size, so photos of any size and aspect train within bounded
memory. Partners get the same crop window (scaled for lq/gt: the input crop is patch/s), the same horizontal
flip and the same rotation by a multiple of 90 degrees; unpaired domains get independent ones.

Randomness: `fetch(idx, gen, device)` draws everything from `gen`, in a fixed order per class (documented on
each `fetch`), so the same indices and generator state give identical tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.data.batches import to_float
from ganforge.data.builtin import DatasetError
from ganforge.data.dataset import IntakeReport, SkippedFile, parse_builtin, record_layout, report_listing
from ganforge.data.decode import DEFAULT_MAX_PIXELS, check_pil_settings
from ganforge.data.derive import Derive, parse_derive
from ganforge.data.layouts import Layout, Matching, check_pairs, detect_layout, match_partners, size_mismatch
from ganforge.data.patches import (
    ImageStore,
    PatchCache,
    auto_channels,
    cache_images,
    check_patch,
    crop,
    crop_positions,
    load_patches,
    probe_all,
    report_rows,
    too_small,
    usable_rows,
)
from ganforge.data.sources import Entry, Listing, list_source, open_reader, preview, sanitize_name, subset

__all__ = ["MaskedBatches", "PairBatches", "UnpairedBatches", "load_masked", "load_pairs", "load_unpaired"]


# ---------------------------------------------------------------------------------------------------------
# The TrainData classes


class PairBatches:
    """Aligned pairs as `{"input": [N, Ci, p/s, p/s], "target": [N, C, p, p]}`, floats in [-1, 1].

    `rows[k]` = (input row, target row) of pair k in the stores; with `derive`, there is no input store and
    the input is `derive(target, gen)`. `scale` s: the input side is the target side / s (lq/gt data, or a
    `downscale:s` derive).
    """

    def __init__(
        self,
        *,
        name: str,
        layout: str,
        report: IntakeReport,
        target: ImageStore,
        input: ImageStore | None,
        rows: np.ndarray,  # int64 [P, 2]
        patch: int,
        scale: int = 1,
        derive: Derive | None = None,
        xflip: bool = True,
        rot90: bool = True,
    ):
        assert (input is None) != (derive is None), "give an input store or a derive, not both"
        self.name, self.layout, self.report = name, layout, report
        self.target, self.input, self.rows, self.derive = target, input, rows, derive
        self.patch, self.scale, self.xflip, self.rot90 = patch, scale, xflip, rot90
        self.channels = target.channels
        self.input_channels = derive.input_channels(target.channels) if derive else input.channels
        self.num_classes, self.class_names = 0, []
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            stores = [self.target.digest, self.input.digest if self.input is not None else ""]
            self._fingerprint = _fingerprint(self._config(), stores, self.rows)
        return self._fingerprint

    def _config(self) -> dict[str, Any]:
        return {"layout": self.layout, "patch": self.patch, "scale": self.scale,
                "derive": self.derive.spec if self.derive else None}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self._config(), "num_pairs": len(self), "channels": self.channels,
                "input_channels": self.input_channels, "fingerprint": self.fingerprint(),
                "skipped": len(self.report.skipped)}

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """Draws, in order: crop positions `rand(N, 2)` (on the input grid), flips `rand(N)` (if xflip),
        rotations `randint(4, (N,))` (if rot90), then whatever the derive draws."""
        rows = self.rows[np.asarray(idx)]
        q = self.patch // self.scale if self.input is not None else self.patch  # side of the cropped input
        grid = self.input if self.input is not None else self.target
        grid_rows = rows[:, 0] if self.input is not None else rows[:, 1]
        pos = crop_positions(_sizes(grid, grid_rows), q, gen)
        flips, rots = _draw_dihedral(len(rows), gen, self.xflip, self.rot90)
        inputs, targets = [], []
        for (ri, rt), (top, left), flip, k in zip(rows, pos, flips, rots, strict=True):
            if self.input is None:
                targets.append(_dihedral(crop(self.target.image(rt), top, left, self.patch), flip, k))
                continue
            image_in = self.input.image(ri)
            before = _pad_before(image_in.shape[:2], q)  # keep the padded target aligned with the padded input
            inputs.append(_dihedral(crop(image_in, top, left, q), flip, k))
            s = self.scale
            window = crop(self.target.image(rt), s * top, s * left, self.patch, before=(s * before[0], s * before[1]))
            targets.append(_dihedral(window, flip, k))
        target = _to_device(targets, device)  # [N, C, p, p]
        input = self.derive(target, gen) if self.derive is not None else _to_device(inputs, device)
        return {"input": input, "target": target}

    def preview(self, idx: np.ndarray) -> np.ndarray:
        return _center_crops(self.target, self.rows[np.asarray(idx), 1], self.patch)


class UnpairedBatches:
    """Two unpaired domains as `{"A": [N, C, p, p], "B": [N, C, p, p]}`, floats in [-1, 1].

    Indices index domain A; each A image gets a B image drawn uniformly from `gen`. The two crops, flips and
    rotations are independent.
    """

    def __init__(
        self,
        *,
        name: str,
        report: IntakeReport,
        a: ImageStore,
        b: ImageStore,
        rows_a: np.ndarray,  # int64 [Na]
        rows_b: np.ndarray,  # int64 [Nb]
        patch: int,
        xflip: bool = True,
        rot90: bool = False,
    ):
        self.name, self.report, self.a, self.b, self.rows_a, self.rows_b = name, report, a, b, rows_a, rows_b
        self.patch, self.xflip, self.rot90 = patch, xflip, rot90
        self.channels, self.num_classes, self.class_names = a.channels, 0, []
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.rows_a)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            config = {"layout": "unpaired", "patch": self.patch}
            rows = np.concatenate([self.rows_a, [-1], self.rows_b])
            self._fingerprint = _fingerprint(config, [self.a.digest, self.b.digest], rows)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "layout": "unpaired", "patch": self.patch, "num_a": len(self.rows_a),
                "num_b": len(self.rows_b), "channels": self.channels, "fingerprint": self.fingerprint(),
                "skipped": len(self.report.skipped)}

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """Draws, in order: the B partners `randint(Nb, (N,))`, then for A and then for B: crop positions,
        flips and rotations as `PairBatches.fetch`."""
        partners = torch.randint(len(self.rows_b), (len(idx),), generator=gen, device=gen.device).cpu().numpy()
        a = _augmented_crops(self.a, self.rows_a[np.asarray(idx)], self.patch, gen, self.xflip, self.rot90)
        b = _augmented_crops(self.b, self.rows_b[partners], self.patch, gen, self.xflip, self.rot90)
        return {"A": _to_device(a, device), "B": _to_device(b, device)}

    def preview(self, idx: np.ndarray) -> np.ndarray:
        return _center_crops(self.a, self.rows_a[np.asarray(idx)], self.patch)


class MaskedBatches:
    """Images with inpainting masks as `{"image": [N, C, p, p] in [-1, 1], "mask": [N, 1, p, p] in {0, 1}}`.

    A mask pixel is 1 (a hole) where the mask file's gray value is above `threshold` (0..255), so white marks
    the hole. Image and mask get the same crop, flip and rotation.
    """

    def __init__(
        self,
        *,
        name: str,
        report: IntakeReport,
        images: ImageStore,
        masks: ImageStore,
        rows: np.ndarray,  # int64 [P, 2]: (image row, mask row)
        patch: int,
        threshold: int = 127,
        xflip: bool = True,
        rot90: bool = False,
    ):
        self.name, self.report, self.images, self.masks, self.rows = name, report, images, masks, rows
        self.patch, self.threshold, self.xflip, self.rot90 = patch, threshold, xflip, rot90
        self.channels, self.num_classes, self.class_names = images.channels, 0, []
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            config = {"layout": "masked", "patch": self.patch, "threshold": self.threshold}
            self._fingerprint = _fingerprint(config, [self.images.digest, self.masks.digest], self.rows)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "layout": "masked", "patch": self.patch, "threshold": self.threshold,
                "num_images": len(self), "channels": self.channels, "fingerprint": self.fingerprint(),
                "skipped": len(self.report.skipped)}

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        """Draws, in order: crop positions, flips and rotations, as `PairBatches.fetch`."""
        rows = self.rows[np.asarray(idx)]
        pos = crop_positions(_sizes(self.images, rows[:, 0]), self.patch, gen)
        flips, rots = _draw_dihedral(len(rows), gen, self.xflip, self.rot90)
        images, masks = [], []
        for (ri, rm), (top, left), flip, k in zip(rows, pos, flips, rots, strict=True):
            images.append(_dihedral(crop(self.images.image(ri), top, left, self.patch), flip, k))
            masks.append(_dihedral(crop(self.masks.image(rm), top, left, self.patch), flip, k))
        mask = torch.from_numpy(np.stack(masks)).to(device) > self.threshold  # [N, 1, p, p]
        return {"image": _to_device(images, device), "mask": mask.float()}

    def preview(self, idx: np.ndarray) -> np.ndarray:
        return _center_crops(self.images, self.rows[np.asarray(idx), 0], self.patch)


# ---------------------------------------------------------------------------------------------------------
# Loaders


def load_pairs(
    source: str | Path,
    patch: int,
    *,
    derive: str | Derive | None = None,
    channels: int | None = None,
    input_channels: int | None = None,
    scale: int | None = None,
    reverse: bool = False,
    side_by_side: bool | None = None,
    xflip: bool = True,
    rot90: bool = True,
    split: str = "train",
    max_images: int | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PairBatches:
    """Aligned pairs from a folder or .zip, or derived pairs from any image source, as `PairBatches`.

    Args:
        source: a folder or .zip holding A/ + B/ or lq/ + gt/ (LR/ + HR/) with partners of the same name, or
            side-by-side A|B files (each split in the middle of its width; left = A = input); with `derive`,
            any folder, .zip or built-in name of single images.
        side_by_side: None finds partner folders, else takes the files as side-by-side pairs when every one
            is twice as wide as tall (pix2pix's 512x256), and raises otherwise; True splits all files of the
            source whatever their shape; False requires partner folders.
        patch: side of the target crops in pixels (>= 4; a multiple of the scale).
        derive: a spec such as "noise:gaussian:25" or "downscale:4" (see `derive.py`): the input is made from
            each target crop on the fly.
        channels / input_channels: 1, 3, 4 or None (1 when every file of that side is grayscale, else 3).
            Side-by-side files have one channel count for both halves.
        scale: the input is `scale` times smaller than the target (lq/gt); None infers the most common factor.
        reverse: swap input and target (pix2pix's BtoA).
        xflip, rot90: joint random horizontal flips and rotations by multiples of 90 degrees.
        split: a source with train/ and test/ folders is read from the `split` one.
        max_images: use a random subset of this many pairs (seeded by `seed`).
        max_pixels: files with more pixels (from the header) are skipped.

    Unreadable files, pairs whose sizes disagree and images with a side under half the patch are skipped and
    reported; missing partners are reported. Raises `DatasetError` when no pair is usable, saying what was found.
    """
    check_patch(patch)
    _check_common(channels, split, max_images, max_pixels)
    if input_channels not in (None, 1, 3, 4):
        raise DatasetError(f"input_channels must be 1, 3, 4 or None (auto), got {input_channels!r}")
    if scale is not None and (not isinstance(scale, int) or scale < 1):
        raise DatasetError(f"scale must be a positive integer or None (inferred), got {scale!r}")
    if derive is not None:
        spec = derive if isinstance(derive, Derive) else parse_derive(derive)
        if patch % spec.scale:
            raise DatasetError(f"patch {patch} must be a multiple of {spec.scale} for derive {spec.spec!r}")
        data = load_patches(source, patch, channels, split=split, max_images=max_images, seed=seed,
                            max_pixels=max_pixels)
        data.report.layout, data.report.pairs, data.report.scale = "derived", len(data), spec.scale
        data.report.notes.append(f"inputs derived from each crop on the fly: {spec.spec}")
        rows = np.stack([np.full(len(data), -1), data.rows], axis=1)
        return PairBatches(name=data.name, layout="derived", report=data.report, target=data.store, input=None,
                           rows=rows, patch=patch, scale=spec.scale, derive=spec, xflip=xflip, rot90=rot90)

    path, listing, report = _open_listing(source, split, "aligned pairs", "give derive=... to make pairs from it")
    layout = detect_layout(listing.images, split)
    aligned_folders = layout.kind in ("A/B", "lq/gt")
    if side_by_side is False and not aligned_folders:
        raise DatasetError(f"{listing.describe()}: side_by_side=False needs A/ + B/ or lq/ + gt/ folders "
                           f"(found {_top_folders(listing)})")
    if aligned_folders and not side_by_side:
        return _folder_pairs(path, listing, layout, report, patch, channels, input_channels, scale, reverse,
                             xflip, rot90, max_images, seed, max_pixels)
    if side_by_side is None and layout.kind != "images":
        loader = {"unpaired": "load_unpaired", "masked": "load_masked"}[layout.kind]
        raise DatasetError(f"{listing.describe()}: holds {layout.folders[0]}/ and {layout.folders[1]}/, the "
                           f"{layout.kind} layout, not aligned pairs; load it with {loader} (a task for "
                           f"{layout.kind} data)")
    return _side_by_side(path, listing, report, patch, channels, input_channels, reverse, xflip, rot90,
                         max_images, seed, max_pixels, any_shape=bool(side_by_side))


def load_unpaired(
    source: str | Path,
    patch: int,
    *,
    channels: int | None = None,
    xflip: bool = True,
    rot90: bool = False,
    split: str = "train",
    max_images: int | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> UnpairedBatches:
    """Two domains from `trainA/` and `trainB/` (`testA/`, `testB/` for split="test") of a folder or .zip.

    `channels` applies to both (None: 1 when every file is grayscale, else 3); `max_images` subsets each
    domain. Raises `DatasetError` when the folders are missing or a domain has no usable image.
    """
    check_patch(patch)
    _check_common(channels, split, max_images, max_pixels)
    path, listing, report = _open_listing(source, split, "unpaired domains", "", split_folders=False)
    layout = detect_layout(listing.images, split)
    if layout.kind != "unpaired":
        raise DatasetError(f"{listing.describe()}: expected {split}A/ and {split}B/ folders (found "
                           f"{_top_folders(listing)}); put the images of domain A in {split}A/ and those of "
                           f"domain B in {split}B/")
    record_layout(report, layout, None, None)
    _need_both(listing, layout)
    sides = [[side[i] for i in subset(len(side), max_images, seed)] for side in layout.sides]
    caches, rows = [], []
    with contextlib.closing(open_reader(listing)) as reader:
        probes = [probe_all(reader, _inside(side, folder), max_pixels)
                  for side, folder in zip(sides, layout.folders, strict=True)]
        channels = channels or auto_channels(probes[0] + probes[1])
        name = sanitize_name(listing.stem)
        for side, folder, side_probes in zip(sides, layout.folders, probes, strict=True):
            entries = _inside(side, folder)
            cache = cache_images(reader, listing, entries, side_probes, channels, max_pixels, f"{name}-{folder}")
            report_rows(report, cache, side_probes)
            caches.append(cache)
            rows.append(np.asarray(usable_rows(cache, patch, report), dtype=np.int64))
    for folder, side_rows in zip(layout.folders, rows, strict=True):
        if len(side_rows) == 0:
            raise DatasetError(f"{listing.describe()}: no usable image in {folder}/ for {patch}x{patch} crops "
                               f"({_first_reasons(report)}); see `ganforge dataset inspect {path}`")
    return UnpairedBatches(name=name, report=report, a=caches[0], b=caches[1], rows_a=rows[0], rows_b=rows[1],
                           patch=patch, xflip=xflip, rot90=rot90)


def load_masked(
    source: str | Path,
    patch: int,
    *,
    channels: int | None = None,
    threshold: int = 127,
    xflip: bool = True,
    rot90: bool = False,
    split: str = "train",
    max_images: int | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> MaskedBatches:
    """Images and inpainting masks from `images/` and `masks/` of a folder or .zip, partners of the same name
    and size. Masks are read as gray; a pixel above `threshold` (0..254) is a hole (1). Missing partners and
    size mismatches are reported; raises `DatasetError` when no pair is usable."""
    check_patch(patch)
    _check_common(channels, split, max_images, max_pixels)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold <= 254:
        raise DatasetError(f"threshold must be an integer in 0..254 (mask gray level), got {threshold!r}")
    path, listing, report = _open_listing(source, split, "images with masks", "")
    layout = detect_layout(listing.images, split)
    if layout.kind != "masked":
        raise DatasetError(f"{listing.describe()}: expected images/ and masks/ folders (found "
                           f"{_top_folders(listing)}); put each image in images/ and its mask, with the same file "
                           "name, in masks/ (white = hole)")
    name = sanitize_name(listing.stem)
    entries, matching = _match(listing, layout, report, max_images, seed, "mask")
    with contextlib.closing(open_reader(listing)) as reader:
        probes = [probe_all(reader, side, max_pixels) for side in entries]
        channels = channels or auto_channels(probes[0])
        check = check_pairs(_names(entries[0]), [p.oriented for p in probes[0]], [p.oriented for p in probes[1]],
                            layout.folders, scale=1)
        record_layout(report, layout, matching, check)
        keep = check.pairs
        images = cache_images(reader, listing, [entries[0][k] for k in keep], [probes[0][k] for k in keep],
                              channels, max_pixels, f"{name}-images")
        masks = cache_images(reader, listing, [entries[1][k] for k in keep], [probes[1][k] for k in keep],
                             1, max_pixels, f"{name}-masks")
    rows = _usable_pairs(report, images, masks, [probes[0][k] for k in keep], [probes[1][k] for k in keep],
                         layout.folders, patch, 1)
    _need_pairs(listing, path, report, rows, patch)
    return MaskedBatches(name=name, report=report, images=images, masks=masks, rows=rows, patch=patch,
                         threshold=threshold, xflip=xflip, rot90=rot90)


# ---------------------------------------------------------------------------------------------------------
# Loader steps


def _folder_pairs(path, listing, layout, report, patch, channels, input_channels, scale, reverse, xflip, rot90,
                  max_images, seed, max_pixels) -> PairBatches:
    name = sanitize_name(listing.stem)
    entries, matching = _match(listing, layout, report, max_images, seed, "partner")
    folders = layout.folders
    if reverse:
        entries, folders = entries[::-1], folders[::-1]
    with contextlib.closing(open_reader(listing)) as reader:
        probes = [probe_all(reader, side, max_pixels) for side in entries]
        check = check_pairs(_names(entries[0]), [p.oriented for p in probes[0]], [p.oriented for p in probes[1]],
                            folders, scale=scale)
        record_layout(report, layout, matching, check)
        if reverse:
            report.partner_counts = dict(reversed(list(report.partner_counts.items())))
        s = check.scale
        if patch % s:
            raise DatasetError(f"{listing.describe()}: the inputs are {s} times smaller than the targets, so the "
                               f"patch must be a multiple of {s}; got {patch}")
        keep = check.pairs
        caches = []
        for side, side_probes, folder, want in zip(entries, probes, folders, (input_channels, channels), strict=True):
            kept_probes = [side_probes[k] for k in keep]
            caches.append(cache_images(reader, listing, [side[k] for k in keep], kept_probes,
                                       want or auto_channels(kept_probes), max_pixels, f"{name}-{folder}"))
    rows = _usable_pairs(report, caches[0], caches[1], [probes[0][k] for k in keep], [probes[1][k] for k in keep],
                         folders, patch, s)
    _need_pairs(listing, path, report, rows, patch)
    return PairBatches(name=name, layout=layout.kind, report=report, target=caches[1], input=caches[0], rows=rows,
                       patch=patch, scale=s, xflip=xflip, rot90=rot90)


def _side_by_side(path, listing, report, patch, channels, input_channels, reverse, xflip, rot90, max_images,
                  seed, max_pixels, any_shape: bool) -> PairBatches:
    if input_channels is not None and channels is not None and input_channels != channels:
        raise DatasetError(f"{listing.describe()}: side-by-side A|B files have one channel count for both halves; "
                           f"got channels={channels} and input_channels={input_channels}")
    channels = channels or input_channels
    selected = subset(len(listing.images), max_images, seed)
    entries = [listing.images[i] for i in selected]
    name = sanitize_name(listing.stem)
    if not entries:
        raise DatasetError(f"{listing.describe()}: found no image files, and no A/ + B/ or lq/ + gt/ folders; "
                           "give side-by-side A|B images, or partner folders")
    with contextlib.closing(open_reader(listing)) as reader:
        probes = probe_all(reader, entries, max_pixels)
        not_pairs = [f"{e.rel} {p.oriented[0]}x{p.oriented[1]}" for e, p in zip(entries, probes, strict=True)
                     if p.error is None and p.oriented[0] // 2 != p.oriented[1]]
        if not_pairs and not any_shape:
            raise DatasetError(
                f"{listing.describe()}: no A/ + B/ or lq/ + gt/ folders, and {len(not_pairs)} of {len(entries)} "
                f"images are not side-by-side A|B pairs (twice as wide as tall): {preview(not_pairs, shown=3)}; "
                "put partners with the same file name in A/ and B/, pass side_by_side=True to split the files "
                "anyway, or give derive=... to make pairs from single images"
            )
        cache = cache_images(reader, listing, entries, probes, channels or auto_channels(probes), max_pixels, name)
    report_rows(report, cache, probes)
    report.layout = "side-by-side"
    report.notes.append("side-by-side pairs: each file is split in the middle of its width, "
                        + ("right half = input, left half = target (reverse)" if reverse
                           else "left half = input, right half = target"))
    rows = []
    for k in range(len(cache)):
        if cache.errors[k] is not None:
            continue
        h, w = cache.size(k)
        reason = too_small(h, w // 2, patch)
        if reason is not None:
            report.skipped.append(SkippedFile(cache.names[k], f"each half is {reason}"))
            report.files_loaded -= 1
        else:
            rows.append((k, k))
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    report.pairs = len(rows)
    _need_pairs(listing, path, report, rows, patch)
    left, right = HalfStore(cache, 0), HalfStore(cache, 1)
    target, input = (left, right) if reverse else (right, left)
    return PairBatches(name=name, layout="side-by-side", report=report, target=target, input=input, rows=rows,
                       patch=patch, xflip=xflip, rot90=rot90)


@dataclass(eq=False)
class HalfStore:
    """The left (side 0) or right (side 1) half of each image of a store: side-by-side A|B files. An odd
    width leaves its last column out of both halves."""

    store: PatchCache
    side: int

    @property
    def channels(self) -> int:
        return self.store.channels

    @property
    def digest(self) -> str:
        return f"{self.store.digest}/{self.side}"

    def __len__(self) -> int:
        return len(self.store)

    def size(self, i: int) -> tuple[int, int]:
        h, w = self.store.size(i)
        return h, w // 2

    def image(self, i: int) -> np.ndarray:
        image = self.store.image(i)
        half = image.shape[1] // 2
        return image[:, self.side * half : (self.side + 1) * half]


def _match(listing: Listing, layout: Layout, report: IntakeReport, max_images: int | None, seed: int,
           word: str) -> tuple[list[list[Entry]], Matching]:
    # Entries of the matched pairs (input side, target side), aligned by pair, after the max_images subset;
    # their rel keeps the partner folder ("A/x.png").
    a, b = layout.folders
    first, second = layout.sides
    _need_both(listing, layout)
    matching = match_partners(first, second, scale_suffix=layout.kind == "lq/gt")
    if not matching.pairs:
        raise DatasetError(
            f"{listing.describe()}: none of the {len(first)} files in {a}/ has a {word} in {b}/ (the same name, "
            f"any extension): {a}/ has {preview([e.rel for e in first], shown=3)}; {b}/ has "
            f"{preview([e.rel for e in second], shown=3)}; rename them so that partners share a name"
        )
    pairs = [matching.pairs[k] for k in subset(len(matching.pairs), max_images, seed)]
    if len(pairs) < len(matching.pairs):
        report.notes.append(f"max_images: using {len(pairs)} of {len(matching.pairs)} pairs")
    return [_inside([first[i] for i, _ in pairs], a), _inside([second[j] for _, j in pairs], b)], matching


def _usable_pairs(report, first: PatchCache, second: PatchCache, first_probes, second_probes, folders, patch,
                  scale) -> np.ndarray:
    # Count the cached files into the report; keep the pairs that decoded with the expected sizes and are at
    # least half the patch. int64 [P, 2] rows (both columns index the same position in the two caches).
    report_rows(report, first, first_probes)
    report_rows(report, second, second_probes)
    q, rows, padded = patch // scale, [], 0
    for k in range(len(first)):
        if first.errors[k] is not None or second.errors[k] is not None:
            continue
        (hi, wi), (ht, wt) = first.size(k), second.size(k)
        mismatch = size_mismatch(_names([first.names[k]])[0], folders, (wi, hi), (wt, ht), scale)
        if mismatch is not None:  # seen only after decoding: an EXIF rotation the header probe missed
            report.size_mismatch_count += 1
            report.size_mismatches.append(mismatch)
            continue
        reason = too_small(hi, wi, q)
        if reason is not None:
            report.skipped.append(SkippedFile(first.names[k], reason))
            continue
        padded += min(hi, wi) < q
        rows.append((k, k))
    report.pairs = len(rows)
    if padded:
        report.notes.append(f"{padded} pairs are smaller than the patch; their crops are mirror-padded")
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def _open_listing(source, split, what: str, builtin_hint: str, split_folders: bool = True):
    if parse_builtin(source) is not None:
        hint = f"; {builtin_hint}" if builtin_hint else ""
        raise DatasetError(f"{source!r} is a built-in dataset of single images, not {what}{hint}")
    check_pil_settings()
    path = Path(source).expanduser()
    report = IntakeReport(source=str(path))
    listing = list_source(path, split, report.notes, split_folders=split_folders)
    report_listing(report, listing)
    return path, listing, report


def _check_common(channels, split, max_images, max_pixels) -> None:
    if channels not in (None, 1, 3, 4):
        raise DatasetError(f"channels must be 1, 3, 4 or None (auto), got {channels!r}")
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise DatasetError(f"max_images must be a positive integer or None, got {max_images!r}")
    if max_pixels < 1:
        raise DatasetError(f"max_pixels must be positive, got {max_pixels!r}")


def _need_both(listing: Listing, layout: Layout) -> None:
    (a, b), (first, second) = layout.folders, layout.sides
    if not first or not second:
        raise DatasetError(f"{listing.describe()}: found {a}/ with {len(first)} images and {b}/ with "
                           f"{len(second)}; both folders need images")


def _need_pairs(listing: Listing, path: Path, report: IntakeReport, rows: np.ndarray, patch: int) -> None:
    if len(rows) == 0:
        problems = [*report.size_mismatches[:3], *(f"{s.path} ({s.reason})" for s in report.skipped[:3])]
        raise DatasetError(f"{listing.describe()}: no usable pair for {patch}x{patch} crops: "
                           f"{'; '.join(problems) or 'nothing matched'}; see `ganforge dataset inspect {path}`")


def _names(entries: list[Entry] | list[str]) -> list[str]:
    # "A/sub/x.png" -> "sub/x.png": a pair's name in reports, without its partner folder.
    return [(e if isinstance(e, str) else e.rel).split("/", 1)[1] for e in entries]


def _inside(entries: list[Entry], folder: str) -> list[Entry]:
    # Entries of a partner folder with the folder put back in their rel (for reports and cache names).
    return [Entry(f"{folder}/{e.rel}", e.key, e.size, e.stamp) for e in entries]


def _top_folders(listing: Listing) -> str:
    folders = sorted({e.rel.split("/", 1)[0] + "/" for e in listing.images if "/" in e.rel})
    return preview(folders) if folders else "no subfolders"


def _first_reasons(report: IntakeReport) -> str:
    return ", ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3]) or "no readable files"


# ---------------------------------------------------------------------------------------------------------
# Batch helpers


def _sizes(store: ImageStore, rows: np.ndarray) -> np.ndarray:
    return np.array([store.size(int(i)) for i in rows], dtype=np.int64).reshape(-1, 2)


def _draw_dihedral(n: int, gen: torch.Generator, xflip: bool, rot90: bool) -> tuple[np.ndarray, np.ndarray]:
    # Flips (bool [N]) and quarter turns (int [N], 0..3), each drawn only when enabled.
    flips = (torch.rand(n, generator=gen, device=gen.device) < 0.5).cpu().numpy() if xflip else np.zeros(n, bool)
    rots = torch.randint(4, (n,), generator=gen, device=gen.device).cpu().numpy() if rot90 else np.zeros(n, int)
    return flips, rots


def _dihedral(x: np.ndarray, flip: bool, k: int) -> np.ndarray:
    # x: [C, s, s] -> mirrored left-right, then rotated by k quarter turns counter-clockwise (a view).
    if flip:
        x = x[:, :, ::-1]
    return np.rot90(x, int(k), axes=(1, 2)) if k else x


def _pad_before(hw: tuple[int, int], size: int) -> tuple[int, int]:
    # The top and left padding `crop` gives a side shorter than `size`.
    return max(size - hw[0], 0) // 2, max(size - hw[1], 0) // 2


def _augmented_crops(store: ImageStore, rows: np.ndarray, size: int, gen: torch.Generator, xflip: bool,
                     rot90: bool) -> list[np.ndarray]:
    pos = crop_positions(_sizes(store, rows), size, gen)
    flips, rots = _draw_dihedral(len(rows), gen, xflip, rot90)
    return [_dihedral(crop(store.image(int(i)), int(t), int(l), size), f, k)
            for i, (t, l), f, k in zip(rows, pos, flips, rots, strict=True)]


def _to_device(crops: list[np.ndarray], device: torch.device) -> Tensor:
    # uint8 [C, s, s] crops -> float [N, C, s, s] in [-1, 1] on device (the uint8 batch is what travels).
    return to_float(torch.from_numpy(np.stack(crops)).to(device, non_blocking=True))


def _center_crops(store: ImageStore, rows: np.ndarray, size: int) -> np.ndarray:
    crops = []
    for i in rows:
        h, w = store.size(int(i))
        crops.append(crop(store.image(int(i)), max(h - size, 0) // 2, max(w - size, 0) // 2, size))
    return np.stack(crops)


def _fingerprint(config: dict, digests: list[str], rows: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update("\n".join(digests).encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.int64))
    return digest.hexdigest()[:16]
