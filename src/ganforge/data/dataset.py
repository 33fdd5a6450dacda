"""Data intake: turn a folder, a .zip or a built-in name into one uint8 image array `[N, C, H, W]`.

Reading order of this file: the public types (`SkippedFile`, `IntakeReport`, `ImageDataset`), the two entry
points (`load_dataset`, `inspect_source`), then the steps they run: list the files, assign classes, read
headers, decode and preprocess each image, cache large results in a memmap, and the array path of built-ins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ganforge.data.builtin import BUILTINS, DatasetError, cache_dir

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
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 40_000_000  # per image, checked from the header before decoding
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_RESIZE_MODES = ("crop", "pad", "stretch")
_NUM_THREADS = min(16, 2 * (os.cpu_count() or 1))  # PIL releases the GIL while decoding; 2x covers file I/O
_BATCH_FILES = 4096  # files handed to the thread pool at a time, which bounds the number of pending futures
_HASH_CHUNK_BYTES = 64 << 20
_CACHE_VERSION = 1  # bump when preprocessing changes, so old memmap caches are not reused

ResizeMode = Literal["crop", "pad", "stretch"]
Split = Literal["train", "test"]


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

    def to_dict(self) -> dict:
        """JSON-ready: sizes as "WxH" keys, skipped files as {path, reason}."""
        return {"source": self.source, "files_found": self.files_found, "files_loaded": self.files_loaded,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "other_files": self.other_files, "other_examples": list(self.other_examples),
                "class_counts": dict(self.class_counts),
                "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
                "modes": dict(self.modes.most_common()), "notes": list(self.notes)}

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the CLI and logs."""
        lines = [
            f"source: {self.source}",
            f"image files: {self.files_found} found, {self.files_loaded} loaded, {len(self.skipped)} skipped",
        ]
        if self.other_files:
            examples = _preview(self.other_examples, self.other_files)
            lines.append(f"other files: {self.other_files} ({examples})")
        if self.class_counts:
            counts = ", ".join(f"{name}: {n}" for name, n in self.class_counts.items())
            lines.append(f"classes: {len(self.class_counts)} ({counts})")
        else:
            lines.append("classes: none (unlabeled)")
        if self.sizes:
            top = [f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(5)]
            lines.append(f"sizes: {_preview(top, len(self.sizes))}")
        if self.modes:
            lines.append("modes: " + ", ".join(f"{mode} ({n})" for mode, n in self.modes.most_common()))
        lines += [f"note: {note}" for note in self.notes]
        if self.skipped:
            lines.append("skipped:")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        return lines


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
            rows = max(1, _HASH_CHUNK_BYTES // row_bytes)
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

    _check_pil_settings()
    path = Path(source).expanduser()
    report = IntakeReport(source=str(path))
    listing = _list_source(path, split, report.notes)
    _report_listing(report, listing)
    class_names, class_of = _assign_classes(listing.images, None, path, report.notes)
    with contextlib.closing(_open_reader(listing)) as reader:
        probes = _parallel_map(lambda e: _probe(reader, e, _pixel_limit(max_pixels), decode=True), listing.images)
    for i, (entry, probe) in enumerate(zip(listing.images, probes, strict=True)):
        if probe.error is not None:
            report.skipped.append(SkippedFile(entry.rel, probe.error))
        else:
            _count_loaded(report, probe, class_names, class_of, i)
    return report


def _check_args(
    resolution: int, channels: int | None, resize: str, max_images: int | None, split: str, max_pixels: int
) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise DatasetError(f"resolution must be a positive integer (pixels), got {resolution!r}")
    if channels not in (None, 1, 3, 4):
        raise DatasetError(f"channels must be 1, 3, 4 or None (auto), got {channels!r}")
    if resize not in _RESIZE_MODES:
        raise DatasetError(f"resize must be one of {', '.join(_RESIZE_MODES)}, got {resize!r}")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise DatasetError(f"max_images must be a positive integer or None, got {max_images!r}")
    _check_split_and_limit(split, max_pixels)


def _check_split_and_limit(split: str, max_pixels: int) -> None:
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if max_pixels < 1:
        raise DatasetError(f"max_pixels must be positive, got {max_pixels!r}")


def _check_pil_settings() -> None:
    # With LOAD_TRUNCATED_IMAGES, PIL pads truncated files with gray instead of failing: bad files would
    # enter the dataset silently. ganforge never sets it; refuse to run when someone else has.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DatasetError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code); truncated images would load "
            "silently. Set it back to False before loading a dataset"
        )


def parse_builtin(source: str | Path) -> tuple[str, str | None] | None:
    """``"fashion-mnist"`` or ``"fashion-mnist:/dir"`` -> (name, location); None for anything else. A Path is
    always a path; a string is a built-in when its name (before an optional ":dir") is one."""
    if isinstance(source, Path):
        return None
    name, _, location = str(source).partition(":")
    return (name, location or None) if name in BUILTINS else None


def _pixel_limit(max_pixels: int) -> int:
    # PIL's own decompression-bomb limit still applies when the caller raises ours above it.
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def _preview(names: Sequence[str], total: int, shown: int = 5) -> str:
    text = ", ".join(names[:shown])
    return text + (", ..." if total > shown else "")


def _sanitize_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


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
    _check_pil_settings()
    report = IntakeReport(source=str(path))
    listing = _list_source(path, split, report.notes)
    _report_listing(report, listing)
    if not listing.images:
        if listing.others:
            found = f"{len(listing.others)} other files: {_preview(listing.others, len(listing.others))}"
        else:
            found = f"the {listing.kind} is empty"
        raise DatasetError(
            f"{listing.describe()}: found 0 image files ({found}); add images with extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} (one subfolder per class for labels)"
        )
    class_names, class_of = _assign_classes(listing.images, use_labels, path, report.notes)
    selected = _subset(len(listing.images), max_images, seed)
    if len(selected) < len(listing.images):
        report.notes.append(f"max_images: using {len(selected)} of {len(listing.images)} image files")
    entries = [listing.images[i] for i in selected]
    limit = _pixel_limit(max_pixels)
    name = _sanitize_name(listing.stem)

    with contextlib.closing(_open_reader(listing)) as reader:
        # Pass 1, headers only: sizes, modes and the pixel limit, before any pixel is decoded. It also
        # fixes the channel count, so pass 2 can write straight into the final array.
        probes = _parallel_map(lambda e: _probe(reader, e, limit, decode=False), entries)
        rows = [i for i, p in enumerate(probes) if p.error is None]
        if channels is None:
            channels = 1 if all(probes[i].mode in _GRAY_MODES for i in rows) else 3
        # Pass 2: decode and preprocess into [N, C, R, R].
        shape = (len(rows), channels, resolution, resolution)
        images, errors = _decode_all(reader, listing, [entries[i] for i in rows], shape, resize, limit, name)

    # Report, in file order: header failures and decode failures are both "skipped".
    decode_error = dict(zip(rows, errors, strict=True))
    loaded_labels = []
    for i, (entry, probe) in enumerate(zip(entries, probes, strict=True)):
        error = probe.error or decode_error.get(i)
        if error is not None:
            report.skipped.append(SkippedFile(entry.rel, error))
            continue
        _count_loaded(report, probe, class_names, class_of, selected[i])
        if class_of is not None:
            loaded_labels.append(class_of[selected[i]])
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
    reader: _FolderReader | _ZipReader,
    listing: _Listing,
    entries: list[_Entry],
    shape: tuple[int, int, int, int],  # [N, C, R, R], N == len(entries)
    resize: ResizeMode,
    max_pixels: int,
    name: str,
) -> tuple[np.ndarray, list[str | None]]:
    # Returns the images of the files that decoded, and per entry None or the reason it failed.
    def decode_into(out: np.ndarray) -> list[str | None]:
        return _parallel_map(lambda k: _decode(reader, entries[k], out[k], max_pixels, resize), range(len(out)))

    if not entries:
        return np.empty(shape, dtype=np.uint8), []
    if int(np.prod(shape)) > _memory_limit_bytes():
        key = _cache_key(listing, entries, shape, resize, max_pixels)
        return _decode_to_memmap(decode_into, shape, name, key)
    images = np.empty(shape, dtype=np.uint8)
    errors = decode_into(images)
    if any(e is not None for e in errors):
        images = images[[e is None for e in errors]]
    return images, errors


def _report_listing(report: IntakeReport, listing: _Listing) -> None:
    report.source = listing.describe()
    report.files_found = len(listing.images)
    report.other_files = len(listing.others)
    report.other_examples = listing.others[:5]


def _count_loaded(
    report: IntakeReport, probe: _Probe, class_names: list[str], class_of: list[int] | None, index: int
) -> None:
    report.files_loaded += 1
    report.sizes[probe.size] += 1
    report.modes[probe.mode] += 1
    if class_of is not None:
        name = class_names[class_of[index]]
        report.class_counts[name] = report.class_counts.get(name, 0) + 1


def _subset(n: int, max_images: int | None, seed: int) -> list[int]:
    # A uniform random subset keeps class proportions approximately; sorted so file order is preserved.
    if max_images is None or max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=max_images, replace=False).tolist())


def _parallel_map(fn: Callable, items: Sequence) -> list:
    # Results come back in input order, so the output never depends on thread scheduling.
    results: list = []
    with ThreadPoolExecutor(max_workers=_NUM_THREADS) as pool:
        for start in range(0, len(items), _BATCH_FILES):
            results.extend(pool.map(fn, items[start : start + _BATCH_FILES]))
    return results


# ---------------------------------------------------------------------------------------------------------
# Listing a source: a folder or a zip archive, then the optional train/ + test/ split folders.


@dataclass(frozen=True)
class _Entry:
    rel: str  # posix path relative to the data root: sort key, class folder, name in reports
    key: str  # what the reader opens: an absolute file path, or a zip member name
    size: int  # bytes
    stamp: str  # changes when the file changes (mtime for files, CRC for zip members); for the cache key


@dataclass
class _Listing:
    path: Path  # the folder or the .zip
    kind: Literal["folder", "zip"]
    root: str  # folder inside the source that holds the data ("" or e.g. "photos/train")
    images: list[_Entry]  # sorted by rel
    others: list[str]  # non-image files, rel paths

    def describe(self) -> str:
        return str(self.path) + (f" (folder {self.root}/ inside)" if self.root else "")

    @property
    def stem(self) -> str:
        # The dataset name: the folder or archive name, not the split folder.
        return self.path.resolve().stem if self.kind == "zip" else self.path.resolve().name


def _list_source(path: Path, split: str, notes: list[str]) -> _Listing:
    if path.is_dir():
        kind, files = "folder", _walk_folder(path)
    elif path.is_file() and path.suffix.lower() == ".zip":
        kind, files = "zip", _walk_zip(path)
    elif path.exists():
        raise DatasetError(f"{path} is a file but not a .zip archive; give a folder of images or a .zip")
    else:
        raise DatasetError(
            f"{path}: no such folder or .zip, and not a built-in dataset (built-ins: {', '.join(BUILTINS)})"
        )

    root = ""
    if kind == "zip":
        # Archives made by zipping a folder wrap everything in that folder: look inside it.
        while files and all("/" in e.rel for e in files) and len({_top(e) for e in files}) == 1:
            top = _top(files[0])
            root = f"{root}/{top}".lstrip("/")
            files = [_strip_top(e) for e in files]
        if root:
            notes.append(f"the archive wraps everything in {root}/; reading from there")
    tops = {_top(e) for e in files if "/" in e.rel}
    if {"train", "test"} <= tops:
        files = [_strip_top(e) for e in files if _top(e) == split and "/" in e.rel]
        root = f"{root}/{split}".lstrip("/")
        notes.append(f"using the {split}/ subfolder (split={split!r})")
    elif split != "train":
        raise DatasetError(
            f"{path}: split={split!r} needs train/ and test/ subfolders in the {kind}; "
            "point the source at the test images instead, or use split='train'"
        )

    images = [e for e in files if Path(e.rel).suffix.lower() in IMAGE_EXTENSIONS]
    others = [e.rel for e in files if Path(e.rel).suffix.lower() not in IMAGE_EXTENSIONS]
    return _Listing(path, kind, root, images, others)


def _top(entry: _Entry) -> str:
    return entry.rel.split("/", 1)[0]


def _strip_top(entry: _Entry) -> _Entry:
    return _Entry(entry.rel.split("/", 1)[1], entry.key, entry.size, entry.stamp)


def _is_hidden(parts: Sequence[str]) -> bool:
    # Dotfiles, .git/, macOS resource forks (._x.png) and __MACOSX/ folders inside archives.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _walk_folder(root: Path) -> list[_Entry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _is_hidden([d])]
        for filename in filenames:
            if _is_hidden([filename]):
                continue
            file = Path(dirpath, filename)
            try:
                st = file.stat()
            except OSError:  # a dangling link: list it, so that it is reported as unreadable
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                continue
            entries.append(
                _Entry(
                    rel=file.relative_to(root).as_posix(),
                    key=str(file),
                    size=-1 if st is None else st.st_size,
                    stamp="" if st is None else str(st.st_mtime_ns),
                )
            )
    return sorted(entries, key=lambda e: e.rel)


def _walk_zip(path: Path) -> list[_Entry]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: cannot read the zip archive ({exc}); re-create it") from exc
    entries = []
    for info in infos:
        rel = info.filename.replace("\\", "/").strip("/")
        if info.is_dir() or not rel or _is_hidden(rel.split("/")):
            continue
        entries.append(_Entry(rel=rel, key=info.filename, size=info.file_size, stamp=str(info.CRC)))
    return sorted(entries, key=lambda e: e.rel)


class _FolderReader:
    def open(self, key: str) -> IO[bytes]:
        return open(key, "rb")

    def close(self) -> None:
        pass


class _ZipReader:
    # Opens archive members from any thread: each thread gets its own ZipFile handle, as a handle has one
    # file position.

    def __init__(self, path: Path):
        self._path = path
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def open(self, key: str) -> IO[bytes]:
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self._path)
            with self._lock:
                self._handles.append(archive)
        return archive.open(key)

    def close(self) -> None:
        for archive in self._handles:
            archive.close()


def _open_reader(listing: _Listing) -> _FolderReader | _ZipReader:
    return _ZipReader(listing.path) if listing.kind == "zip" else _FolderReader()


# ---------------------------------------------------------------------------------------------------------
# Classes: the first level of subfolders.


def _assign_classes(
    entries: list[_Entry], use_labels: bool | None, path: Path, notes: list[str]
) -> tuple[list[str], list[int] | None]:
    # Returns (class_names, class index per entry), or ([], None) when unlabeled.
    folders = sorted({_top(e) for e in entries if "/" in e.rel})
    top_level = sum("/" not in e.rel for e in entries)
    if folders and top_level:
        problem = f"{top_level} image files sit at the top level next to the class folders"
    elif len(folders) == 1:
        problem = f"there is only one class folder ({folders[0]}/)"
    elif not folders:
        problem = "there are no class subfolders"
    else:
        problem = None

    if use_labels is False:
        return [], None
    if problem is None:
        index = {name: k for k, name in enumerate(folders)}
        return folders, [index[_top(e)] for e in entries]
    if use_labels:
        raise DatasetError(
            f"{path}: use_labels=True but {problem}; put each class in its own subfolder (at least 2) "
            "with no images beside them, or set use_labels=False"
        )
    if folders:
        notes.append(f"unlabeled: {problem}")
    return [], None


# ---------------------------------------------------------------------------------------------------------
# One image: open and check the header, decode, normalize the mode, convert channels, resize.


class _Probe(NamedTuple):
    size: tuple[int, int] | None  # (width, height)
    mode: str | None  # PIL mode as stored
    error: str | None  # why the file is skipped


class _BadImage(Exception):
    pass


def _open_checked(reader: _FolderReader | _ZipReader, entry: _Entry, max_pixels: int, decode: bool):
    # LOAD_TRUNCATED_IMAGES stays False (never set here), so load() raises on truncated data instead of
    # returning an image padded with gray.
    if entry.size == 0:
        raise _BadImage("empty file (0 bytes)")
    with reader.open(entry.key) as fp:
        image = Image.open(fp)
        width, height = image.size
        if width * height > max_pixels:
            size, limit = width * height / 1e6, max_pixels / 1e6
            raise _BadImage(f"too large ({width}x{height} = {size:.1f} MP, limit {limit:.1f} MP)")
        if decode:
            image.load()
    return image


def _skip_reason(exc: Exception) -> str:
    if isinstance(exc, _BadImage):
        return str(exc)
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (decompression bomb guard)"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (unknown format or corrupt header)"
    if isinstance(exc, FileNotFoundError):
        return "cannot open (missing file or dangling link)"
    if "truncated" in str(exc):
        return "truncated"
    return f"cannot decode ({type(exc).__name__}: {str(exc)[:80]})"


def _probe(reader: _FolderReader | _ZipReader, entry: _Entry, max_pixels: int, decode: bool) -> _Probe:
    try:
        image = _open_checked(reader, entry, max_pixels, decode)
    except Exception as exc:  # PIL plugins raise many types on bad data; one bad file must not stop intake
        return _Probe(None, None, _skip_reason(exc))
    return _Probe(image.size, image.mode, None)


def _decode(
    reader: _FolderReader | _ZipReader, entry: _Entry, out: np.ndarray, max_pixels: int, resize: ResizeMode
) -> str | None:
    # Decodes one file into out (uint8 [C, R, R]); returns None, or the reason to skip the file.
    channels, resolution = out.shape[0], out.shape[1]
    try:
        image = _open_checked(reader, entry, max_pixels, decode=True)
        ImageOps.exif_transpose(image, in_place=True)
        image = _fit(_to_channels(_standard_mode(image), channels), resolution, resize)
        pixels = np.asarray(image)  # [R, R] or [R, R, C]
    except Exception as exc:  # see _probe
        return _skip_reason(exc)
    out[...] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return None


def _standard_mode(image: Image.Image) -> Image.Image:
    # Any PIL mode -> L, LA, RGB or RGBA.
    mode = image.mode
    if "transparency" in image.info and mode in ("L", "RGB", "P"):
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_to_l(image)
    if mode == "P":
        return image.convert("RGB")
    if mode in ("PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        # Float images have no standard range: [0, 1] when they fit in it, else [0, 255].
        values = np.nan_to_num(values.astype(np.float64))
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255)
    else:
        # 16-bit gray ("I;16*", and "I" as Pillow opens 16-bit PNGs): 0..65535 -> 0..255, rounded.
        gray = (np.clip(values.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(gray.astype(np.uint8))


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    # image is L, LA, RGB or RGBA. When alpha is dropped, transparent pixels become black (like the padding):
    # premultiply by compositing over a black background.
    if image.mode in ("LA", "RGBA") and channels != 4:
        flat = Image.new(image.mode[:-1], image.size, 0)
        flat.paste(image.convert(image.mode[:-1]), mask=image.getchannel("A"))
        image = flat
    target = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return image if image.mode == target else image.convert(target)


def _fit(image: Image.Image, resolution: int, resize: ResizeMode) -> Image.Image:
    width, height = image.size
    if (width, height) == (resolution, resolution):
        return image
    square = (resolution, resolution)
    if resize == "stretch":
        return image.resize(square, Image.Resampling.LANCZOS)
    if resize == "crop":
        # Resample only the centered square: same result as scale-then-crop, less work.
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize(square, Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    scale = resolution / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new(image.mode, square, 0)  # black, and alpha 0 for RGBA
    canvas.paste(
        image.resize(new_size, Image.Resampling.LANCZOS),
        ((resolution - new_size[0]) // 2, (resolution - new_size[1]) // 2),
    )
    return canvas


# ---------------------------------------------------------------------------------------------------------
# Large datasets: decode into a .npy memmap under the cache folder, reused while the files are unchanged.


def _memory_limit_bytes() -> int:
    value = os.environ.get("GANFORGE_MAX_MEMORY_MB", "4096")
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise DatasetError(f"GANFORGE_MAX_MEMORY_MB must be a number of megabytes, got {value!r}") from None


def _cache_key(listing: _Listing, rows: list[_Entry], shape: tuple, resize: str, max_pixels: int) -> str:
    # Everything that determines the pixels: the files (name, size, mtime or CRC) and the preprocessing.
    params = [_CACHE_VERSION, str(listing.path.resolve()), listing.root, list(shape), resize, max_pixels]
    digest = hashlib.sha256(json.dumps(params).encode())
    for entry in rows:
        digest.update(f"{entry.key}\0{entry.size}\0{entry.stamp}\n".encode())
    return digest.hexdigest()[:16]


def _decode_to_memmap(
    decode_into: Callable[[np.ndarray], list[str | None]], shape: tuple, name: str, key: str
) -> tuple[np.ndarray, list[str | None]]:
    folder = cache_dir() / "images"
    final = folder / f"{name}-{key}.npy"
    meta = final.with_suffix(".json")  # per-row decode errors; written before the .npy appears
    if final.exists() and meta.exists():
        errors = json.loads(meta.read_text())["errors"]
        images = np.load(final, mmap_mode="r")
        n_ok = sum(e is None for e in errors)
        if len(errors) == shape[0] and images.shape == (n_ok, *shape[1:]):
            return images, errors

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{final.stem}.{os.getpid()}.tmp.npy"
    compact = folder / f".{final.stem}.{os.getpid()}.compact.npy"
    try:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        errors = decode_into(images)
        keep = np.flatnonzero([e is None for e in errors])
        if len(keep) == 0:
            return np.empty((0, *shape[1:]), dtype=np.uint8), errors
        if len(keep) < shape[0]:
            # Drop the rows of files that failed to decode, chunk by chunk (the array may exceed RAM).
            packed_shape = (len(keep), *shape[1:])
            packed = np.lib.format.open_memmap(compact, mode="w+", dtype=np.uint8, shape=packed_shape)
            step = max(1, _HASH_CHUNK_BYTES // int(np.prod(shape[1:])))
            for start in range(0, len(keep), step):
                packed[start : start + step] = images[keep[start : start + step]]
            del images
            os.replace(compact, tmp)
            images = packed
        images.flush()
        del images
        _write_text_atomic(meta, json.dumps({"errors": errors}))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        compact.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r"), errors


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    selected = _subset(total, max_images, seed)
    if len(selected) < total:
        images, labels = images[selected], labels[selected]
    report = _builtin_report(name, location, split, images, labels, class_names)
    if len(selected) < total:
        report.files_found = total
        report.notes.append(f"max_images: using {len(selected)} of {total} images")
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
