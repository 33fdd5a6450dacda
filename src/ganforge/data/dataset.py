"""Data intake: turn a folder, a .zip or a built-in name into one uint8 image array `[N, C, H, W]`.

Reading order of this file: the public types (`SkippedFile`, `IntakeReport`, `ImageDataset`), the two entry
points (`load_dataset`, `inspect_source`), then the steps they run, and the array path of built-ins. The steps
live in their own modules: `sources` (list files, readers, classes), `decode` (one image), `cache` (memmaps);
`layouts` finds pair layouts (A/ B/, lq/ gt/, trainA/ trainB/, images/ masks/) for `inspect_source`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ganforge.data.builtin import BUILTINS, DatasetError
from ganforge.data.cache import HASH_CHUNK_BYTES, cache_key, decode_to_memmap, memory_limit_bytes
from ganforge.data.decode import (
    DEFAULT_MAX_PIXELS,
    GRAY_MODES,
    RESIZE_MODES,
    ResizeMode,
    check_pil_settings,
    pixel_limit,
)
from ganforge.data.layouts import PAIRED_KINDS, Layout, Matching, PairCheck, check_pairs, detect_layout, match_partners
from ganforge.data.sources import (
    IMAGE_EXTENSIONS,
    Entry,
    Listing,
    Probe,
    Reader,
    assign_classes,
    decode_entry,
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
    "BUILTINS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "ImageDataset",
    "IntakeReport",
    "SkippedFile",
    "inspect_source",
    "load_dataset",
    "parse_builtin",
]

Split = Literal["train", "test"]
_LISTED = 10  # file names kept per list in a report (missing partners, size mismatches)
SMALL_DATASET = 100  # fewer images than this get a note: a GAN memorises them without augmentation
TINY_FACTOR = 4  # images upscaled more than this to reach the training resolution get a note
TINY_SIDE = 16  # without a resolution (inspect): images with a side under this many pixels get a note
MAX_ASPECT = 4.0  # images longer than this times their width (or wider) get a note
_FORMATS = {".png": {"PNG"}, ".jpg": {"JPEG", "MPO"}, ".jpeg": {"JPEG", "MPO"}, ".webp": {"WEBP"},
            ".bmp": {"BMP", "DIB"}, ".tif": {"TIFF"}, ".tiff": {"TIFF"}}
_CONVERTED = {"CMYK": "CMYK to RGB", "YCbCr": "YCbCr to RGB", "LAB": "Lab to RGB", "HSV": "HSV to RGB",
              "I": "16/32-bit to 8-bit", "F": "floating point to 8-bit", "I;16": "16-bit to 8-bit",
              "I;16B": "16-bit to 8-bit", "I;16L": "16-bit to 8-bit", "I;16N": "16-bit to 8-bit"}
_log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SkippedFile:
    """A file that was not loaded: its path relative to the source, and a short human reason."""

    path: str
    reason: str


@dataclass
class IntakeReport:
    """What intake found in a source and what it did with it."""

    source: str
    files_found: int = 0  # image files (by extension) in the source and split
    files_loaded: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    other_files: int = 0  # files without an image extension
    other_examples: list[str] = field(default_factory=list)  # the first few of them, for messages
    class_counts: dict[str, int] = field(default_factory=dict)  # loaded images per class; empty if unlabeled
    sizes: Counter = field(default_factory=Counter)  # (width, height) before resizing -> count
    modes: Counter = field(default_factory=Counter)  # PIL mode before conversion -> count
    notes: list[str] = field(default_factory=list)  # decisions worth telling (labels off, split folder used)
    # Pair layouts (see data/layouts.py); "images" means single images and leaves the rest empty.
    layout: str = "images"  # images, A/B, lq/gt, unpaired, masked, side-by-side, derived
    partner_counts: dict[str, int] = field(default_factory=dict)  # image files per partner folder, input first
    pairs: int = 0  # partners matched, both readable, sizes agreeing
    scale: int | None = None  # target side / input side of aligned pairs (2 for x2 super-resolution)
    missing_partners: dict[str, list[str]] = field(default_factory=dict)  # folder -> first files lacking one there
    missing_counts: dict[str, int] = field(default_factory=dict)  # folder -> how many files lack a partner there
    size_mismatches: list[str] = field(default_factory=list)  # the first pairs whose sizes disagree
    size_mismatch_count: int = 0
    mask_coverage: dict[str, float] | None = None  # images/ + masks/: hole share of the masks (mask_coverage_stats)

    def to_dict(self) -> dict:
        """JSON-ready: sizes as "WxH" keys, skipped files as {path, reason}."""
        return {"source": self.source, "files_found": self.files_found, "files_loaded": self.files_loaded,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "other_files": self.other_files, "other_examples": list(self.other_examples),
                "class_counts": dict(self.class_counts),
                "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
                "modes": dict(self.modes.most_common()), "notes": list(self.notes),
                "layout": self.layout, "partner_counts": dict(self.partner_counts), "pairs": self.pairs,
                "scale": self.scale, "missing_partners": {k: list(v) for k, v in self.missing_partners.items()},
                "missing_counts": dict(self.missing_counts), "size_mismatches": list(self.size_mismatches),
                "size_mismatch_count": self.size_mismatch_count, "mask_coverage": self.mask_coverage}

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the CLI and logs."""
        lines = [
            f"source: {self.source}",
            f"image files: {self.files_found} found, {self.files_loaded} loaded, {len(self.skipped)} skipped",
        ]
        if self.other_files:
            examples = preview(self.other_examples, self.other_files)
            lines.append(f"other files: {self.other_files} ({examples})")
        if self.layout != "images":
            lines += self._layout_lines()
        elif self.class_counts:
            counts = ", ".join(f"{name}: {n}" for name, n in self.class_counts.items())
            lines.append(f"classes: {len(self.class_counts)} ({counts})")
        else:
            lines.append("classes: none (unlabeled)")
        if self.sizes:
            top = [f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(5)]
            lines.append(f"sizes: {preview(top, len(self.sizes))}")
        if self.modes:
            lines.append("modes: " + ", ".join(f"{mode} ({n})" for mode, n in self.modes.most_common()))
        lines += [f"note: {note}" for note in self.notes]
        if self.skipped:
            lines.append("skipped:")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        return lines


    def _layout_lines(self) -> list[str]:
        folders = [f"{name}/" for name in self.partner_counts]
        roles = {"A/B": "input {}, target {}", "lq/gt": "input {}, target {}", "unpaired": "domains {}, {}",
                 "masked": "images {}, masks {}"}
        if self.layout in roles and len(folders) == 2:
            lines = [f"layout: {self.layout} ({roles[self.layout].format(*folders)})"]
        else:
            lines = [f"layout: {self.layout}"]
        if self.partner_counts:
            counts = ", ".join(f"{name}/ {n}" for name, n in self.partner_counts.items())
            matched = f"; {self.pairs} pairs" if self.layout != "unpaired" else ""
            lines.append(f"partner folders: {counts} image files{matched}")
        elif self.pairs:
            lines.append(f"pairs: {self.pairs}")
        if self.scale is not None and self.scale > 1:
            lines.append(f"scale: x{self.scale} (the input is {self.scale} times smaller than the target)")
        for folder, count in self.missing_counts.items():
            names = self.missing_partners.get(folder, [])
            other = next((name for name in self.partner_counts if name != folder), "the other folder")
            lines.append(f"no partner in {folder}/: {count} files of {other}/ ({preview(names, count)})")
        if self.size_mismatch_count:
            lines.append(f"size mismatches: {self.size_mismatch_count} (first: {'; '.join(self.size_mismatches[:3])})")
        if self.mask_coverage:
            lines.append(mask_coverage_line(self.mask_coverage))
        return lines


def record_layout(report: IntakeReport, layout: Layout, matching: Matching | None, check: PairCheck | None) -> None:
    """Fill the pair fields of `report` from a detected layout, its matching and its size check."""
    first, second = layout.folders
    report.layout = layout.kind
    report.partner_counts = {first: len(layout.sides[0]), second: len(layout.sides[1])}
    if layout.outside:
        report.notes.append(f"{len(layout.outside)} image files outside {first}/ and {second}/ are not used: "
                            f"{preview(layout.outside)}")
    if matching is not None:
        for folder, names in ((second, matching.missing_second), (first, matching.missing_first)):
            if names:
                report.missing_counts[folder] = len(names)
                report.missing_partners[folder] = names[:_LISTED]
        if matching.duplicates:
            report.notes.append(f"{len(matching.duplicates)} files share their name (up to the extension) with "
                                f"another file of the same folder and are not used: {preview(matching.duplicates)}")
    if check is not None:
        report.pairs, report.scale = len(check.pairs), check.scale
        report.size_mismatch_count, report.size_mismatches = len(check.mismatches), check.mismatches[:_LISTED]


@dataclass(eq=False)
class ImageDataset:
    """Decoded, preprocessed images kept as one uint8 array, plus labels and the intake report.

    `images` is `[N, C, H, W]` uint8 with `H == W == resolution`; it is read-only (a plain array, or a
    memmap for datasets larger than `GANFORGE_MAX_MEMORY_MB`). `labels` is int64 `[N]` or None.
    """

    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray | None  # int64 [N]
    class_names: list[str]
    name: str  # short, [a-z0-9-]; used in run folder names
    resolution: int
    channels: int
    report: IntakeReport
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        expected = (self.channels, self.resolution, self.resolution)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1:] != expected:
            raise ValueError(
                f"ImageDataset.images must be uint8 [N, {', '.join(map(str, expected))}], "
                f"got {self.images.dtype} {list(self.images.shape)}"
            )
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(f"ImageDataset.labels must be int64 [{len(self.images)}], got {list(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, N={len(self)}, shape={list(self.images.shape[1:])}, "
            f"num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 when unlabeled."""
        return 0 if self.labels is None else len(self.class_names)

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of shape, pixels and labels; computed once, in chunks."""
        if self._fingerprint is None:
            digest = hashlib.sha256(repr(tuple(self.images.shape)).encode())
            row_bytes = max(1, int(np.prod(self.images.shape[1:])))
            rows = max(1, HASH_CHUNK_BYTES // row_bytes)
            for start in range(0, len(self.images), rows):  # chunked, so memmaps are never fully resident
                digest.update(np.ascontiguousarray(self.images[start : start + rows]))
            if self.labels is None:
                digest.update(b"unlabeled")
            else:
                digest.update(np.ascontiguousarray(self.labels, dtype=np.int64))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        """A JSON-ready summary (stored in run configs and snapshots)."""
        return {
            "name": self.name,
            "num_images": len(self),
            "resolution": self.resolution,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.labels is not None else [],
            "fingerprint": self.fingerprint(),
            "skipped": len(self.report.skipped),
        }


# ---------------------------------------------------------------------------------------------------------
# Entry points


def load_dataset(
    source: str | Path,
    resolution: int,
    channels: int | None = None,
    resize: ResizeMode = "crop",
    max_images: int | None = None,
    use_labels: bool | None = None,
    split: Split = "train",
    seed: int = 0,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    """Load a folder, a .zip archive or a built-in dataset into an `ImageDataset`.

    Args:
        source: a folder (searched recursively), a `.zip` (read in place), or a name from `BUILTINS`
            (`"fashion-mnist:/dir"` points Fashion-MNIST at a folder). A string equal to a built-in name
            means the built-in; write `./shapes` for a folder of that name.
        resolution: output height and width in pixels.
        channels: 1 (gray), 3 (RGB) or 4 (RGBA); None picks 1 when every image header is grayscale, else 3.
            Transparent pixels become black when alpha is dropped.
        resize: "crop" scales the short side to `resolution` and center-crops; "pad" scales the long side
            and centers on black (alpha 0); "stretch" ignores the aspect ratio. For built-ins smaller than
            `resolution`, "pad" pads without scaling (Fashion-MNIST 28 -> 32 gets a 2-pixel border).
        max_images: load a random subset of this many files (seeded by `seed`, indices kept sorted).
        use_labels: None labels the images when there are >= 2 class subfolders (first level, sorted names
            -> 0..K-1) and no images beside them; True requires labels; False drops them.
        split: built-ins have "train" and "test"; a folder or zip has a test split only when it holds
            `train/` and `test/` subfolders, which then select the split.
        seed: seed of the `max_images` subset.
        max_pixels: files with more pixels (width x height, from the header) are skipped.

    Unreadable, truncated, empty and oversized files are skipped and listed in `report.skipped`.
    Raises `DatasetError` when nothing usable is found, with what was found and what to do.
    """
    _check_args(resolution, channels, resize, max_images, split, max_pixels)
    resolution = int(resolution)
    builtin = parse_builtin(source)
    if builtin is not None:
        return _load_builtin(*builtin, resolution, channels, resize, max_images, use_labels, split, seed)
    path = Path(source).expanduser()
    return _load_files(path, resolution, channels, resize, max_images, use_labels, split, seed, max_pixels)


def inspect_source(source: str | Path, split: Split = "train", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> IntakeReport:
    """Scan a source and fully decode every image file, without resizing or caching.

    Reports counts, original sizes, PIL modes, classes and the unreadable files (with reasons).
    Used by `ganforge dataset inspect`. Only a missing or unusable source raises `DatasetError`.
    """
    _check_split_and_limit(split, max_pixels)
    builtin = parse_builtin(source)
    if builtin is not None:
        name, location = builtin
        images, labels, class_names = BUILTINS[name](split, location)
        return _builtin_report(name, location, split, images, labels, class_names)

    check_pil_settings()
    path = Path(source).expanduser()
    report = IntakeReport(source=str(path))
    listing = list_source(path, split, report.notes)
    report_listing(report, listing)
    layout = detect_layout(listing.images, split)
    if layout.kind == "images":
        class_names, class_of = assign_classes(listing.images, None, path, report.notes)
    else:
        class_names, class_of = [], None  # the partner folders are not classes
    with contextlib.closing(open_reader(listing)) as reader:
        probes = parallel_map(lambda e: probe_entry(reader, e, pixel_limit(max_pixels), decode=True), listing.images)
    for i, (entry, probe) in enumerate(zip(listing.images, probes, strict=True)):
        if probe.error is not None:
            report.skipped.append(SkippedFile(entry.rel, probe.error))
        else:
            _count_loaded(report, probe, class_names, class_of, i)
    if layout.kind != "images":
        _inspect_layout(report, layout, {e.key: p.oriented for e, p in zip(listing.images, probes, strict=True)})
    if layout.kind == "masked":
        with contextlib.closing(open_reader(listing)) as reader:
            report.mask_coverage = _mask_coverage(reader, layout.sides[1], max_pixels)
    elif report.files_loaded and all(p.oriented[0] // 2 == p.oriented[1] for p in probes if p.error is None):
        report.notes.append("every image is twice as wide as tall: side-by-side A|B pairs for `load_pairs` "
                            "(left half = input, right half = target)")
    else:
        loaded = [(e.rel, p) for e, p in zip(listing.images, probes, strict=True) if p.error is None]
        add_file_notes(report, loaded, None)
    return report


def _inspect_layout(report: IntakeReport, layout: Layout, oriented: dict[str, tuple[int, int] | None]) -> None:
    # oriented: decoded (width, height) per entry key, None for unreadable files.
    matching = check = None
    if layout.kind in PAIRED_KINDS:
        matching = match_partners(*layout.sides, scale_suffix=layout.kind == "lq/gt")
        first, second = layout.sides
        check = check_pairs(
            [first[i].rel for i, _ in matching.pairs],
            [oriented[first[i].key] for i, _ in matching.pairs],
            [oriented[second[j].key] for _, j in matching.pairs],
            layout.folders,
            allow_scale=layout.kind != "masked",
        )
    record_layout(report, layout, matching, check)


# ---------------------------------------------------------------------------------------------------------
# Mask coverage (images/ + masks/ inpainting data; data/masks.py logs the same numbers for generated masks).

MASK_THRESHOLD = 127  # a mask pixel whose gray value is above this is a hole (white = hole), as data/pairs.py


def mask_coverage_stats(fractions: np.ndarray) -> dict[str, float]:
    """Hole share per mask (floats in [0, 1]) -> count, mean, 10th/50th/90th percentiles, and the share of masks
    in the 10-20 % and 30-40 % coverage bands (the bands the inpainting benchmark reports)."""
    f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if f.size == 0:
        return {"count": 0}
    p10, p50, p90 = np.percentile(f, [10, 50, 90])
    return {"count": int(f.size), "mean": float(f.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
            "band_10_20": float(((f >= 0.1) & (f < 0.2)).mean()), "band_30_40": float(((f >= 0.3) & (f < 0.4)).mean())}


def mask_coverage_line(stats: dict[str, float]) -> str:
    """One report line for ``mask_coverage_stats``: 'mask coverage: mean 23.1% (p10 ..., p50 ..., p90 ...); ...'."""
    if not stats.get("count"):
        return "mask coverage: no readable masks"
    return (f"mask coverage: mean {stats['mean']:.1%} (p10 {stats['p10']:.1%}, p50 {stats['p50']:.1%}, "
            f"p90 {stats['p90']:.1%}) over {stats['count']} masks; in 10-20%: {stats['band_10_20']:.0%}, "
            f"in 30-40%: {stats['band_30_40']:.0%}")


def _mask_coverage(reader: Reader, masks: list[Entry], max_pixels: int) -> dict[str, float]:
    # Decodes each mask as gray, one at a time (memory: one mask); unreadable ones are already in report.skipped.
    limit = pixel_limit(max_pixels)
    fractions = []
    for entry in masks:
        pixels, error = read_entry(reader, entry, 1, limit)
        if error is None and pixels.size:
            fractions.append(float((pixels > MASK_THRESHOLD).mean()))
    return mask_coverage_stats(np.asarray(fractions))


def _check_args(
    resolution: int, channels: int | None, resize: str, max_images: int | None, split: str, max_pixels: int
) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise DatasetError(f"resolution must be a positive integer (pixels), got {resolution!r}")
    if channels not in (None, 1, 3, 4):
        raise DatasetError(f"channels must be 1, 3, 4 or None (auto), got {channels!r}")
    if resize not in RESIZE_MODES:
        raise DatasetError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise DatasetError(f"max_images must be a positive integer or None, got {max_images!r}")
    _check_split_and_limit(split, max_pixels)


def _check_split_and_limit(split: str, max_pixels: int) -> None:
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if max_pixels < 1:
        raise DatasetError(f"max_pixels must be positive, got {max_pixels!r}")


def parse_builtin(source: str | Path) -> tuple[str, str | None] | None:
    """``"fashion-mnist"`` or ``"fashion-mnist:/dir"`` -> (name, location); None for anything else. A Path is
    always a path; a string is a built-in when its name (before an optional ":dir") is one."""
    if isinstance(source, Path):
        return None
    name, _, location = str(source).partition(":")
    return (name, location or None) if name in BUILTINS else None


# ---------------------------------------------------------------------------------------------------------
# Loading files: list, assign classes, subset, read headers, decode into the cache array.


def _load_files(
    path: Path,
    resolution: int,
    channels: int | None,
    resize: ResizeMode,
    max_images: int | None,
    use_labels: bool | None,
    split: str,
    seed: int,
    max_pixels: int,
) -> ImageDataset:
    check_pil_settings()
    report = IntakeReport(source=str(path))
    listing = list_source(path, split, report.notes)
    report_listing(report, listing)
    if not listing.images:
        if listing.others:
            found = f"{len(listing.others)} other files: {preview(listing.others, len(listing.others))}"
        else:
            found = f"the {listing.kind} is empty"
        raise DatasetError(
            f"{listing.describe()}: found 0 image files ({found}); add images with extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} (one subfolder per class for labels)"
        )
    class_names, class_of = assign_classes(listing.images, use_labels, path, report.notes)
    selected = subset(len(listing.images), max_images, seed)
    if len(selected) < len(listing.images):
        report.notes.append(f"max_images: using {len(selected)} of {len(listing.images)} image files")
    entries = [listing.images[i] for i in selected]
    limit = pixel_limit(max_pixels)
    name = sanitize_name(listing.stem)

    with contextlib.closing(open_reader(listing)) as reader:
        # Pass 1, headers only: sizes, modes and the pixel limit, before any pixel is decoded. It also
        # fixes the channel count, so pass 2 can write straight into the final array.
        probes = parallel_map(lambda e: probe_entry(reader, e, limit, decode=False), entries)
        rows = [i for i, p in enumerate(probes) if p.error is None]
        if channels is None:
            channels = 1 if all(probes[i].mode in GRAY_MODES for i in rows) else 3
        # Pass 2: decode and preprocess into [N, C, R, R].
        shape = (len(rows), channels, resolution, resolution)
        images, errors = _decode_all(reader, listing, [entries[i] for i in rows], shape, resize, limit, name)

    # Report, in file order: header failures and decode failures are both "skipped".
    decode_error = dict(zip(rows, errors, strict=True))
    loaded_labels, loaded = [], []
    for i, (entry, probe) in enumerate(zip(entries, probes, strict=True)):
        error = probe.error or decode_error.get(i)
        if error is not None:
            report.skipped.append(SkippedFile(entry.rel, error))
            continue
        _count_loaded(report, probe, class_names, class_of, selected[i])
        loaded.append((entry.rel, probe))
        if class_of is not None:
            loaded_labels.append(class_of[selected[i]])
    add_file_notes(report, loaded, resolution, warn=True)
    if report.files_loaded == 0:
        failures = ", ".join(f"{s.path} ({s.reason})" for s in report.skipped[:5])
        raise DatasetError(
            f"{listing.describe()}: all {len(entries)} image files were unreadable: {failures}"
            f"{' ...' if len(report.skipped) > 5 else ''}; replace or re-export them "
            f"(`ganforge dataset inspect {path}` lists every problem)"
        )

    images.flags.writeable = False  # the cached fingerprint must stay valid
    return ImageDataset(
        images=images,
        labels=None if class_of is None else np.asarray(loaded_labels, dtype=np.int64),
        class_names=class_names,
        name=name,
        resolution=resolution,
        channels=channels,
        report=report,
    )


def _decode_all(
    reader: Reader,
    listing: Listing,
    entries: list[Entry],
    shape: tuple[int, int, int, int],  # [N, C, R, R], N == len(entries)
    resize: ResizeMode,
    max_pixels: int,
    name: str,
) -> tuple[np.ndarray, list[str | None]]:
    # Returns the images of the files that decoded, and per entry None or the reason it failed.
    def decode_into(out: np.ndarray) -> list[str | None]:
        return parallel_map(lambda k: decode_entry(reader, entries[k], out[k], max_pixels, resize), range(len(out)))

    if not entries:
        return np.empty(shape, dtype=np.uint8), []
    if int(np.prod(shape)) > memory_limit_bytes():
        key = cache_key(listing, entries, list(shape), resize, max_pixels)
        return decode_to_memmap(decode_into, shape, name, key)
    images = np.empty(shape, dtype=np.uint8)
    errors = decode_into(images)
    if any(e is not None for e in errors):
        images = images[[e is None for e in errors]]
    return images, errors


def report_listing(report: IntakeReport, listing: Listing) -> None:
    """Fill the listing's counts into `report`; links and archive members that were refused (see
    `sources.walk_folder`, `walk_zip`) count as found and skipped."""
    report.source = listing.describe()
    report.files_found = len(listing.images) + len(listing.refused)
    report.other_files = len(listing.others)
    report.other_examples = listing.others[:5]
    report.skipped += [SkippedFile(rel, reason) for rel, reason in listing.refused]


def small_dataset_note(n: int) -> str:
    return (f"only {n} images: a GAN memorises a dataset this small within a few kimg; train with --aug ada "
            "(adaptive augmentation) or DiffAugment (--aug color,translation,cutout)")


def add_file_notes(report: IntakeReport, loaded: list[tuple[str, Probe]], resolution: int | None,
                   warn: bool = False) -> None:
    """Notes about loaded files that work but deserve a word, each naming the first files: a name that lies
    about the format, several frames or pages, a mode converted to 8-bit L/RGB, images much smaller than the
    training resolution (`resolution`; None: a side under `TINY_SIDE`), aspect ratios beyond `MAX_ASPECT`:1,
    and a dataset under `SMALL_DATASET` images. With `warn`, each note is also logged as a warning."""
    notes: list[str] = []

    def named(what: str, items: list[str], advice: str) -> None:
        if items:
            notes.append(f"{what} ({len(items)}): {preview(items)}; {advice}")

    named("named as another format", [f"{rel} is {p.format}" for rel, p in loaded
                                      if p.format and p.format not in _FORMATS.get(Path(rel).suffix.lower(),
                                                                                   {p.format})],
          "they load by their content, but rename them")
    named("several frames or pages", [f"{rel} ({p.frames})" for rel, p in loaded if p.frames > 1
                                      and p.format != "MPO"], "only the first is used")
    named("converted to 8-bit gray or RGB", [f"{rel} ({_CONVERTED[p.mode]})" for rel, p in loaded
                                             if p.mode in _CONVERTED], "check that they look right")
    sizes = [(rel, p.oriented or p.size) for rel, p in loaded]
    if resolution is None:
        named(f"a side under {TINY_SIDE} pixels", [f"{rel} {w}x{h}" for rel, (w, h) in sizes if min(w, h) < TINY_SIDE],
              "upscaled to a training resolution they carry almost no detail; drop them")
    else:
        named(f"much smaller than the {resolution}-pixel training resolution",
              [f"{rel} {w}x{h}" for rel, (w, h) in sizes if TINY_FACTOR * min(w, h) < resolution],
              f"upscaled more than {TINY_FACTOR}x they train as blurry blobs; drop them or lower the resolution")
    named(f"aspect ratio over {MAX_ASPECT:g}:1", [f"{rel} {w}x{h}" for rel, (w, h) in sizes
                                                  if max(w, h) > MAX_ASPECT * min(w, h)],
          "a square crop keeps a small part of each and padding makes it a thin strip; crop them to the subject")
    if 0 < len(loaded) < SMALL_DATASET:
        notes.append(small_dataset_note(len(loaded)))
    report.notes += notes
    for note in notes if warn else []:
        _log.warning("%s: %s", report.source, note)  # visible on stderr while the run log is being set up


def _count_loaded(
    report: IntakeReport, probe: Probe, class_names: list[str], class_of: list[int] | None, index: int
) -> None:
    report.files_loaded += 1
    report.sizes[probe.size] += 1
    report.modes[probe.mode] += 1
    if class_of is not None:
        name = class_names[class_of[index]]
        report.class_counts[name] = report.class_counts.get(name, 0) + 1


# ---------------------------------------------------------------------------------------------------------
# Built-ins: whole arrays at native size, converted and resized in batches.


def _load_builtin(
    name: str,
    location: str | None,
    resolution: int,
    channels: int | None,
    resize: ResizeMode,
    max_images: int | None,
    use_labels: bool | None,
    split: str,
    seed: int,
) -> ImageDataset:
    images, labels, class_names = BUILTINS[name](split, location)  # [N, h, w] or [N, h, w, c], [N]
    total = len(images)
    selected = subset(total, max_images, seed)
    if len(selected) < total:
        images, labels = images[selected], labels[selected]
    report = _builtin_report(name, location, split, images, labels, class_names)
    if len(selected) < total:
        report.files_found = total
        report.notes.append(f"max_images: using {len(selected)} of {total} images")
    if len(selected) < SMALL_DATASET:
        report.notes.append(small_dataset_note(len(selected)))
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)  # [N, c, h, w]
    channels = channels or x.shape[1]
    x = _resize_batch(_convert_channels(x, channels), resolution, resize)  # [N, C, R, R]
    x.flags.writeable = False
    if use_labels is False:
        labels, class_names, report.class_counts = None, [], {}
    return ImageDataset(
        images=x,
        labels=labels,
        class_names=class_names,
        name=name,
        resolution=resolution,
        channels=channels,
        report=report,
    )


def _builtin_report(
    name: str,
    location: str | None,
    split: str,
    images: np.ndarray,  # uint8 [N, h, w] or [N, h, w, c]
    labels: np.ndarray,  # int64 [N]
    class_names: list[str],
) -> IntakeReport:
    n, height, width = images.shape[:3]
    counts = np.bincount(labels, minlength=len(class_names))
    return IntakeReport(
        source=f"built-in {name}" + (f" from {location}" if location else "") + f" (split {split})",
        files_found=n,
        files_loaded=n,
        class_counts={c: int(k) for c, k in zip(class_names, counts, strict=True)},
        sizes=Counter({(width, height): n}),
        modes=Counter({"L" if images.ndim == 3 else "RGB": n}),
    )


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    # x: uint8 [N, 1 or 3, h, w] -> [N, channels, h, w]
    if x.shape[1] == 3 and channels == 1:
        # ITU-R 601-2 luma in PIL's fixed-point form, so arrays and files convert alike.
        r, g, b = (x[:, k].astype(np.uint32) for k in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[:, None]
    if x.shape[1] == 1 and channels > 1:
        x = np.repeat(x, 3, axis=1)
    if channels == 4:
        x = np.concatenate([x, np.full_like(x[:, :1], 255)], axis=1)
    return x


def _resize_batch(x: np.ndarray, resolution: int, resize: ResizeMode) -> np.ndarray:
    # x: uint8 [N, C, s, s] (built-ins are square, so crop and stretch are the same plain resize)
    n, c, height, width = x.shape
    assert height == width, "built-in datasets are square"
    if height == resolution:
        return np.ascontiguousarray(x)
    if resize == "pad" and height < resolution:
        before = (resolution - height) // 2
        after = resolution - height - before
        return np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)))

    import torch  # deferred: importing ganforge.data stays cheap for the CLI
    import torch.nn.functional as F

    out = np.empty((n, c, resolution, resolution), dtype=np.uint8)
    for start in range(0, n, 4096):
        chunk = torch.from_numpy(np.asarray(x[start : start + 4096], dtype=np.float32))  # a writable copy
        chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bicubic", antialias=True)
        out[start : start + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
