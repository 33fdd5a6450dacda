"""What a source holds: list a folder or a .zip into entries, skip hidden files, pick the split folder, assign
classes from subfolders, and open and decode single entries through a reader.

Internal to `ganforge.data`: `dataset.py`, `patches.py` and `pairs.py` build on it. Names here are public to
those modules, not to users (the package exports none of them).
"""

from __future__ import annotations

import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, NamedTuple

import numpy as np
from PIL import ImageOps

from ganforge.data.builtin import BUILTINS, DatasetError
from ganforge.data.decode import (
    BadImage,
    ResizeMode,
    fit,
    open_image,
    oriented_size,
    skip_reason,
    standard_mode,
    to_array,
    to_channels,
)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
NUM_THREADS = min(16, 2 * (os.cpu_count() or 1))  # PIL releases the GIL while decoding; 2x covers file I/O
_BATCH_FILES = 4096  # files handed to the thread pool at a time, which bounds the number of pending futures


# ---------------------------------------------------------------------------------------------------------
# Entries and listings


@dataclass(frozen=True)
class Entry:
    rel: str  # posix path relative to the data root: sort key, class folder, name in reports
    key: str  # what the reader opens: an absolute file path, or a zip member name
    size: int  # bytes
    stamp: str  # changes when the file changes (mtime for files, CRC for zip members); for the cache key


@dataclass
class Listing:
    path: Path  # the folder or the .zip
    kind: Literal["folder", "zip"]
    root: str  # folder inside the source that holds the data ("" or e.g. "photos/train")
    images: list[Entry]  # sorted by rel
    others: list[str]  # non-image files, rel paths

    def describe(self) -> str:
        return str(self.path) + (f" (folder {self.root}/ inside)" if self.root else "")

    @property
    def stem(self) -> str:
        # The dataset name: the folder or archive name, not the split folder.
        return self.path.resolve().stem if self.kind == "zip" else self.path.resolve().name


def list_source(path: Path, split: str, notes: list[str], *, split_folders: bool = True) -> Listing:
    """The image files of a folder or zip. With `split_folders`, a source holding `train/` and `test/` is read
    from the `split` one; without it the split is the caller's business (unpaired trainA/ testA/ layouts)."""
    if path.is_dir():
        kind, files = "folder", walk_folder(path)
    elif path.is_file() and path.suffix.lower() == ".zip":
        kind, files = "zip", walk_zip(path)
    elif path.exists():
        raise DatasetError(f"{path} is a file but not a .zip archive; give a folder of images or a .zip")
    else:
        raise DatasetError(
            f"{path}: no such folder or .zip, and not a built-in dataset (built-ins: {', '.join(BUILTINS)})"
        )

    root = ""
    if kind == "zip":
        # Archives made by zipping a folder wrap everything in that folder: look inside it.
        while files and all("/" in e.rel for e in files) and len({top(e) for e in files}) == 1:
            first = top(files[0])
            root = f"{root}/{first}".lstrip("/")
            files = [strip_top(e) for e in files]
        if root:
            notes.append(f"the archive wraps everything in {root}/; reading from there")
    tops = {top(e) for e in files if "/" in e.rel}
    if split_folders and {"train", "test"} <= tops:
        files = [strip_top(e) for e in files if top(e) == split and "/" in e.rel]
        root = f"{root}/{split}".lstrip("/")
        notes.append(f"using the {split}/ subfolder (split={split!r})")
    elif split_folders and split != "train":
        raise DatasetError(
            f"{path}: split={split!r} needs train/ and test/ subfolders in the {kind}; "
            "point the source at the test images instead, or use split='train'"
        )

    images = [e for e in files if Path(e.rel).suffix.lower() in IMAGE_EXTENSIONS]
    others = [e.rel for e in files if Path(e.rel).suffix.lower() not in IMAGE_EXTENSIONS]
    return Listing(path, kind, root, images, others)


def top(entry: Entry) -> str:
    return entry.rel.split("/", 1)[0]


def strip_top(entry: Entry) -> Entry:
    return Entry(entry.rel.split("/", 1)[1], entry.key, entry.size, entry.stamp)


def is_hidden(parts: Sequence[str]) -> bool:
    # Dotfiles, .git/, macOS resource forks (._x.png) and __MACOSX/ folders inside archives.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def walk_folder(root: Path) -> list[Entry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_hidden([d])]
        for filename in filenames:
            if is_hidden([filename]):
                continue
            file = Path(dirpath, filename)
            try:
                st = file.stat()
            except OSError:  # a dangling link: list it, so that it is reported as unreadable
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                continue
            entries.append(
                Entry(
                    rel=file.relative_to(root).as_posix(),
                    key=str(file),
                    size=-1 if st is None else st.st_size,
                    stamp="" if st is None else str(st.st_mtime_ns),
                )
            )
    return sorted(entries, key=lambda e: e.rel)


def walk_zip(path: Path) -> list[Entry]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: cannot read the zip archive ({exc}); re-create it") from exc
    entries = []
    for info in infos:
        rel = info.filename.replace("\\", "/").strip("/")
        if info.is_dir() or not rel or is_hidden(rel.split("/")):
            continue
        entries.append(Entry(rel=rel, key=info.filename, size=info.file_size, stamp=str(info.CRC)))
    return sorted(entries, key=lambda e: e.rel)


# ---------------------------------------------------------------------------------------------------------
# Readers: open an entry's bytes, from any thread.


class FolderReader:
    def open(self, key: str) -> IO[bytes]:
        return open(key, "rb")

    def close(self) -> None:
        pass


class ZipReader:
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


Reader = FolderReader | ZipReader


def open_reader(listing: Listing) -> Reader:
    return ZipReader(listing.path) if listing.kind == "zip" else FolderReader()


def parallel_map(fn: Callable, items: Sequence) -> list:
    """`[fn(x) for x in items]` on a thread pool; results come back in input order, so the output never
    depends on thread scheduling."""
    results: list = []
    with ThreadPoolExecutor(max_workers=NUM_THREADS) as pool:
        for start in range(0, len(items), _BATCH_FILES):
            results.extend(pool.map(fn, items[start : start + _BATCH_FILES]))
    return results


# ---------------------------------------------------------------------------------------------------------
# One entry: probe the header, or decode it (fitted to a square, or at full size).


class Probe(NamedTuple):
    size: tuple[int, int] | None  # (width, height) as stored
    mode: str | None  # PIL mode as stored
    error: str | None  # why the file is skipped
    oriented: tuple[int, int] | None = None  # (width, height) once the EXIF orientation is applied


def _open_entry(reader: Reader, entry: Entry, max_pixels: int, load: bool):
    if entry.size == 0:
        raise BadImage("empty file (0 bytes)")
    with reader.open(entry.key) as fp:
        return open_image(fp, max_pixels, load=load)


def probe_entry(reader: Reader, entry: Entry, max_pixels: int, decode: bool) -> Probe:
    """Header facts of one file (with `decode`, after a full decode that proves the pixels are readable)."""
    try:
        image = _open_entry(reader, entry, max_pixels, decode)
        oriented = oriented_size(image)
    except Exception as exc:  # PIL plugins raise many types on bad data; one bad file must not stop intake
        return Probe(None, None, skip_reason(exc))
    return Probe(image.size, image.mode, None, oriented)


def decode_entry(reader: Reader, entry: Entry, out: np.ndarray, max_pixels: int, resize: ResizeMode) -> str | None:
    """Decode one file into `out` (uint8 [C, R, R]), fitted by `resize`; None, or the reason to skip it."""
    channels, resolution = out.shape[0], out.shape[1]
    try:
        image = _open_entry(reader, entry, max_pixels, load=True)
        ImageOps.exif_transpose(image, in_place=True)
        image = fit(to_channels(standard_mode(image), channels), resolution, resize)
        pixels = to_array(image)  # [C, R, R]
    except Exception as exc:  # see probe_entry
        return skip_reason(exc)
    out[...] = pixels
    return None


def read_entry(reader: Reader, entry: Entry, channels: int, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """Decode one file at its own size: (uint8 [H, W, C], None), or (None, the reason to skip it)."""
    try:
        image = _open_entry(reader, entry, max_pixels, load=True)
        ImageOps.exif_transpose(image, in_place=True)
        return to_array(to_channels(standard_mode(image), channels), channels_last=True), None
    except Exception as exc:  # see probe_entry
        return None, skip_reason(exc)


# ---------------------------------------------------------------------------------------------------------
# Classes: the first level of subfolders.


def assign_classes(
    entries: list[Entry], use_labels: bool | None, path: Path, notes: list[str]
) -> tuple[list[str], list[int] | None]:
    """(class_names, class index per entry), or ([], None) when unlabeled."""
    folders = sorted({top(e) for e in entries if "/" in e.rel})
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
        return folders, [index[top(e)] for e in entries]
    if use_labels:
        raise DatasetError(
            f"{path}: use_labels=True but {problem}; put each class in its own subfolder (at least 2) "
            "with no images beside them, or set use_labels=False"
        )
    if folders:
        notes.append(f"unlabeled: {problem}")
    return [], None


# ---------------------------------------------------------------------------------------------------------
# Small helpers shared by the loaders.


def subset(n: int, max_images: int | None, seed: int) -> list[int]:
    """A uniform random subset of range(n) (sorted, so file order is preserved); all of it when max_images
    is None or not smaller than n. A uniform subset keeps class proportions approximately."""
    if max_images is None or max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=max_images, replace=False).tolist())


def preview(names: Sequence[str], total: int | None = None, shown: int = 5) -> str:
    """The first `shown` names, comma-separated, with ", ..." when there are more."""
    total = len(names) if total is None else total
    text = ", ".join(names[:shown])
    return text + (", ..." if total > shown else "")


def sanitize_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"
