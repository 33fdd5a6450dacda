"""Photos of any size, decoded once into an on-disk cache, then cropped at random to the training patch.

A restoration model learns from crops (say 128 x 128) of large photos, so the photos are neither resized nor
held in memory: each is decoded once, at its own size, into one flat uint8 file (`[H, W, C]` per image, back
to back) with a JSON index of (offset, H, W) per image. The file is memory-mapped; a batch reads only the rows
of its crops, so resident memory is bounded by the batch, not by the data (300 photos of 12 MP are 10 GB
decoded). The cache is keyed like the fixed-size caches (`cache.cache_key`: the files and the preprocessing),
lives under `cache_dir()/patches/`, and is published in two atomic steps (`ganforge.core.files`): the pixels,
then the index; a cache is trusted only when its index exists and the pixel file has the indexed length, so a
killed run leaves nothing that a later run would read.

Images smaller than the patch: a side shorter than half the patch is skipped (with the reason in the report),
as padding would make most of the crop a mirror copy; between half the patch and the patch the crop takes
the whole side and is mirror-padded on both sides (`crop`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ganforge.core.files import atomic_write, atomic_write_text
from ganforge.data.builtin import DatasetError, cache_dir
from ganforge.data.cache import cache_key
from ganforge.data.dataset import IntakeReport, SkippedFile, load_dataset, parse_builtin, report_listing
from ganforge.data.decode import DEFAULT_MAX_PIXELS, GRAY_MODES, check_pil_settings, pixel_limit
from ganforge.data.sources import (
    IMAGE_EXTENSIONS,
    NUM_THREADS,
    Entry,
    Listing,
    Probe,
    Reader,
    list_source,
    open_reader,
    parallel_map,
    preview,
    probe_entry,
    read_entry,
    sanitize_name,
    subset,
)

__all__ = [
    "ArrayStore",
    "ImageStore",
    "PatchCache",
    "Patches",
    "cache_images",
    "crop",
    "crop_positions",
    "load_patches",
    "random_crops",
    "too_small",
]

PATCH_CACHE_VERSION = 1  # bump when the decoding or the file format changes
_DECODE_BUDGET_BYTES = 256 << 20  # decoded pixels in flight while the cache file is written
_ZEROS_CHUNK = 64 << 20


class ImageStore(Protocol):
    """Images of possibly different sizes, read as `[H, W, C]` uint8 views (pixels are read when sliced)."""

    channels: int
    digest: str  # identity of the pixels, for fingerprints

    def __len__(self) -> int: ...

    def size(self, i: int) -> tuple[int, int]:
        """(H, W) of image i."""
        ...

    def image(self, i: int) -> np.ndarray: ...


@dataclass(eq=False)
class PatchCache:
    """Images of any size in one flat uint8 memmap; row i is `pixels[offsets[i]:][:H*W*C]` as `[H, W, C]`.

    Rows correspond one to one to the entries the cache was built from; a row whose file could not be read
    has `errors[i]` set (and size 0 x 0). `digest` hashes the readable rows' sizes and pixels, in order.
    """

    pixels: np.ndarray  # uint8 [total]; a read-only np.memmap
    offsets: np.ndarray  # int64 [N]
    sizes: np.ndarray  # int64 [N, 2]: (H, W)
    channels: int
    names: list[str]  # rel path of each row
    errors: list[str | None]
    digest: str
    path: Path | None = None  # the pixel file

    def __len__(self) -> int:
        return len(self.offsets)

    def size(self, i: int) -> tuple[int, int]:
        return int(self.sizes[i, 0]), int(self.sizes[i, 1])

    def image(self, i: int) -> np.ndarray:
        h, w = self.size(i)
        start = int(self.offsets[i])
        return self.pixels[start : start + h * w * self.channels].reshape(h, w, self.channels)


@dataclass(eq=False)
class ArrayStore:
    """Same-size images from an array `[N, C, H, W]` (a built-in dataset), read as `[H, W, C]` views."""

    images: np.ndarray  # uint8 [N, C, H, W]
    digest: str
    channels: int = field(init=False)

    def __post_init__(self) -> None:
        self.channels = self.images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    def size(self, i: int) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def image(self, i: int) -> np.ndarray:
        return self.images[i].transpose(1, 2, 0)


# ---------------------------------------------------------------------------------------------------------
# Crops


def crop_positions(sizes: np.ndarray, size: int, gen: torch.Generator) -> np.ndarray:
    """Uniform random (top, left) of a `size` x `size` window in images of `sizes` (int [N, 2], (H, W)):
    int64 [N, 2], 0 on a side shorter than the window. Draws one `torch.rand(N, 2)` from `gen`."""
    u = torch.rand(len(sizes), 2, generator=gen, device=gen.device).cpu().double().numpy()
    free = np.maximum(np.asarray(sizes, dtype=np.int64) - size, 0) + 1  # positions per side
    return np.minimum((u * free).astype(np.int64), free - 1)


def crop(image: np.ndarray, top: int, left: int, size: int, before: tuple[int, int] | None = None) -> np.ndarray:
    """The `size` x `size` window of `image` (`[H, W, C]`) at (top, left) as uint8 `[C, size, size]`. A side
    shorter than `size` is taken whole and mirror-padded: `before` (top, left) rows and columns before it, by
    default half the shortfall, the rest after it."""
    window = np.asarray(image[top : top + size, left : left + size])  # reads only these rows
    h, w = window.shape[:2]
    if h < size or w < size:
        dh, dw = size - h, size - w
        bh, bw = (dh // 2, dw // 2) if before is None else (min(before[0], dh), min(before[1], dw))
        # "symmetric" mirrors with the edge pixel repeated: a pad of s*k pixels of a nearest-upscaled image
        # then equals the upscaled pad of k pixels, so padded lq/gt crops stay aligned.
        window = np.pad(window, ((bh, dh - bh), (bw, dw - bw), (0, 0)), mode="symmetric")
    return window.transpose(2, 0, 1)


def random_crops(store: ImageStore, rows: np.ndarray, size: int, gen: torch.Generator) -> np.ndarray:
    """uint8 [N, C, size, size]: one random window per image `rows[k]` of `store`, positions from `gen`."""
    sizes = np.array([store.size(int(i)) for i in rows], dtype=np.int64).reshape(-1, 2)
    pos = crop_positions(sizes, size, gen)
    return np.stack([crop(store.image(int(i)), int(t), int(l), size) for i, (t, l) in zip(rows, pos, strict=True)])


def too_small(height: int, width: int, patch: int) -> str | None:
    """The skip reason for an image with a side shorter than half the patch, else None."""
    if 2 * min(height, width) < patch:
        return f"smaller than half the patch ({width}x{height}, patch {patch}); use a smaller patch or drop it"
    return None


# ---------------------------------------------------------------------------------------------------------
# Building the cache


def probe_all(reader: Reader, entries: list[Entry], max_pixels: int) -> list[Probe]:
    """Header probes (size, mode, or the reason to skip) of `entries`, in order."""
    limit = pixel_limit(max_pixels)
    return parallel_map(lambda e: probe_entry(reader, e, limit, decode=False), entries)


def auto_channels(probes: list[Probe]) -> int:
    """1 when every readable header is grayscale, else 3."""
    return 1 if all(p.mode in GRAY_MODES for p in probes if p.error is None) else 3


def cache_images(
    reader: Reader,
    listing: Listing,
    entries: list[Entry],
    probes: list[Probe],
    channels: int,
    max_pixels: int,
    name: str,
) -> PatchCache:
    """Decode `entries` (EXIF-oriented, converted to `channels`, at their own size) into a `PatchCache`, or
    open the finished cache of the same files and preprocessing. Entries whose probe failed get that error."""
    key = cache_key(listing, entries, "patches", PATCH_CACHE_VERSION, channels, max_pixels)
    folder = cache_dir() / "patches"
    data_path, index_path = folder / f"{name}-{key}.u8", folder / f"{name}-{key}.json"
    cached = _open_cache(data_path, index_path, entries, channels)
    if cached is not None:
        return cached

    # Room per row from the header: H * W * C does not change when the EXIF orientation swaps H and W.
    nbytes = [0 if p.error else p.size[0] * p.size[1] * channels for p in probes]
    offsets = np.concatenate([[0], np.cumsum(nbytes, dtype=np.int64)])[:-1] if nbytes else np.zeros(0, np.int64)
    sizes = np.zeros((len(entries), 2), dtype=np.int64)
    errors: list[str | None] = [p.error for p in probes]
    digest = hashlib.sha256(f"patches {channels}\n".encode())
    limit = pixel_limit(max_pixels)

    def write(f) -> None:
        with ThreadPoolExecutor(max_workers=NUM_THREADS) as pool:
            for chunk in _chunks([k for k in range(len(entries)) if errors[k] is None], nbytes):
                # Decoded in parallel, written in order; at most _DECODE_BUDGET_BYTES of pixels in flight.
                results = pool.map(lambda k: read_entry(reader, entries[k], channels, limit), chunk)
                for k, (pixels, error) in zip(chunk, results, strict=True):
                    if error is None and pixels.size != nbytes[k]:
                        error = f"decoded size {pixels.shape[1]}x{pixels.shape[0]} differs from the header"
                    if error is not None:
                        errors[k] = error
                        _write_zeros(f, nbytes[k])  # keeps the offsets; the gap is never read
                        continue
                    sizes[k] = pixels.shape[:2]
                    f.write(pixels.data)
                    digest.update(f"{pixels.shape}\n".encode())
                    digest.update(pixels.data)

    atomic_write(data_path, write)
    index = {
        "version": PATCH_CACHE_VERSION,
        "channels": channels,
        "total": int(sum(nbytes)),
        "names": [e.rel for e in entries],
        "offsets": offsets.tolist(),
        "sizes": sizes.tolist(),
        "errors": errors,
        "digest": digest.hexdigest()[:16],
    }
    atomic_write_text(index_path, json.dumps(index))  # last: its presence means the pixel file is complete
    cache = _open_cache(data_path, index_path, entries, channels)
    assert cache is not None, f"the patch cache {data_path} was written but does not read back"
    return cache


def _chunks(rows: list[int], nbytes: list[int]) -> Iterator[list[int]]:
    chunk, size = [], 0
    for k in rows:
        if chunk and (size + nbytes[k] > _DECODE_BUDGET_BYTES or len(chunk) >= 2 * NUM_THREADS):
            yield chunk
            chunk, size = [], 0
        chunk.append(k)
        size += nbytes[k]
    if chunk:
        yield chunk


def _write_zeros(f, n: int) -> None:
    while n > 0:
        step = min(n, _ZEROS_CHUNK)
        f.write(bytes(step))
        n -= step


def _open_cache(data_path: Path, index_path: Path, entries: list[Entry], channels: int) -> PatchCache | None:
    if not (index_path.exists() and data_path.exists()):
        return None
    try:
        index = json.loads(index_path.read_text())
        ok = (index["version"] == PATCH_CACHE_VERSION and index["channels"] == channels
              and index["names"] == [e.rel for e in entries] and data_path.stat().st_size == index["total"])
    except (OSError, ValueError, KeyError):
        return None
    if not ok:
        return None
    pixels = np.memmap(data_path, dtype=np.uint8, mode="r") if index["total"] else np.zeros(0, np.uint8)
    return PatchCache(
        pixels=pixels,
        offsets=np.asarray(index["offsets"], dtype=np.int64).reshape(-1),
        sizes=np.asarray(index["sizes"], dtype=np.int64).reshape(-1, 2),
        channels=channels,
        names=list(index["names"]),
        errors=list(index["errors"]),
        digest=index["digest"],
        path=data_path,
    )


def report_rows(report: IntakeReport, cache: PatchCache, probes: list[Probe], rows: list[int] | None = None) -> None:
    """Count `rows` of `cache` (default: all) into `report`: loaded (sizes and modes as stored) or skipped."""
    for k in range(len(cache)) if rows is None else rows:
        if cache.errors[k] is not None:
            report.skipped.append(SkippedFile(cache.names[k], cache.errors[k]))
        else:
            report.files_loaded += 1
            report.sizes[probes[k].size] += 1
            report.modes[probes[k].mode] += 1


# ---------------------------------------------------------------------------------------------------------
# A source of single images as patches


@dataclass(eq=False)
class Patches:
    """The images of a source that can give `patch` x `patch` crops: `store` rows `rows`."""

    store: PatchCache | ArrayStore
    rows: np.ndarray  # int64 [N]: usable rows of the store
    patch: int
    name: str
    report: IntakeReport

    def __len__(self) -> int:
        return len(self.rows)

    def random_crops(self, idx: np.ndarray, gen: torch.Generator) -> np.ndarray:
        """uint8 [N, C, patch, patch]: a random crop of each image `idx[k]` (an index into `rows`)."""
        return random_crops(self.store, self.rows[np.asarray(idx)], self.patch, gen)


def load_patches(
    source: str | Path,
    patch: int,
    channels: int | None = None,
    *,
    split: str = "train",
    max_images: int | None = None,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Patches:
    """The images of a folder, .zip or built-in, ready for random `patch` x `patch` crops.

    Folders and zips are read recursively (class subfolders are ignored) into a `PatchCache` at the images'
    own sizes; built-ins are loaded by `load_dataset` at `resolution=patch`. `channels` is 1, 3, 4 or None
    (1 when every file is grayscale, else 3). Images with a side under patch/2 are skipped and reported.
    Raises `DatasetError` when no image is usable.
    """
    check_patch(patch)
    builtin = parse_builtin(source)
    if builtin is not None:
        data = load_dataset(source, patch, channels=channels, max_images=max_images, split=split, seed=seed,
                            use_labels=False)
        store = ArrayStore(np.asarray(data.images), digest=data.fingerprint())
        return Patches(store, np.arange(len(data), dtype=np.int64), patch, data.name, data.report)

    check_pil_settings()
    path = Path(source).expanduser()
    report = IntakeReport(source=str(path))
    listing = list_source(path, split, report.notes)
    report_listing(report, listing)
    if not listing.images:
        raise DatasetError(f"{listing.describe()}: found 0 image files ({preview(listing.others) or 'none'}); "
                           f"add images with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}")
    selected = subset(len(listing.images), max_images, seed)
    if len(selected) < len(listing.images):
        report.notes.append(f"max_images: using {len(selected)} of {len(listing.images)} image files")
    entries = [listing.images[i] for i in selected]
    name = sanitize_name(listing.stem)
    with contextlib.closing(open_reader(listing)) as reader:
        probes = probe_all(reader, entries, max_pixels)
        channels = channels or auto_channels(probes)
        cache = cache_images(reader, listing, entries, probes, channels, max_pixels, name)
    report_rows(report, cache, probes)
    rows = usable_rows(cache, patch, report)
    if not rows:
        raise DatasetError(f"{listing.describe()}: none of the {len(entries)} image files can give {patch}x{patch} "
                           f"crops: {_first_reasons(report)}; see `ganforge dataset inspect {path}`")
    return Patches(cache, np.asarray(rows, dtype=np.int64), patch, name, report)


def usable_rows(cache: PatchCache, patch: int, report: IntakeReport) -> list[int]:
    """Rows of `cache` that decoded and are at least half the patch on each side; the small ones are
    reported as skipped, and the padded ones counted in a note."""
    rows, padded = [], 0
    for k in range(len(cache)):
        if cache.errors[k] is not None:
            continue
        h, w = cache.size(k)
        reason = too_small(h, w, patch)
        if reason is not None:
            report.skipped.append(SkippedFile(cache.names[k], reason))
            report.files_loaded -= 1
            continue
        padded += min(h, w) < patch
        rows.append(k)
    if padded:
        report.notes.append(f"{padded} images are smaller than the {patch}-pixel patch; their crops are "
                            "mirror-padded")
    return rows


def check_patch(patch: int) -> None:
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 4:
        raise DatasetError(f"patch must be an integer >= 4 (pixels), got {patch!r}")


def _first_reasons(report: IntakeReport) -> str:
    text = ", ".join(f"{s.path} ({s.reason})" for s in report.skipped[:3])
    return text + (" ..." if len(report.skipped) > 3 else "")
