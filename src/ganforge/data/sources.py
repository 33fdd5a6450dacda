"""What a source holds: list a folder or a .zip into entries, skip hidden files, pick the split folder, assign
classes from subfolders, and open and decode single entries through a reader.

Internal to `ganforge.data`: `dataset.py`, `patches.py` and `pairs.py` build on it. Names here are public to
those modules, not to users (the package exports none of them).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

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
# A zip member that claims more bytes than this is refused before it is opened (a zip bomb). A 40 MP image is at
# most 320 MB even as an uncompressed 16-bit RGBA TIFF; a member that inflates past its claimed size fails
# zipfile's CRC check and is skipped as damaged.
MAX_MEMBER_BYTES = 1 << 30
NUM_THREADS = min(16, 2 * (os.cpu_count() or 1))  # PIL releases the GIL while decoding; 2x covers file I/O
_BATCH_FILES = 4096  # files handed to the thread pool at a time, which bounds the number of pending futures


# ---------------------------------------------------------------------------------------------------------
# Entries and listings


def display_name(name: str) -> str:
    """A file name as printable, encodable text: bytes that are not UTF-8 (a Latin-1 ``caf\\xe9.png`` on a UTF-8
    system arrives as a lone surrogate) become ``\\xe9``. Used for every name that reaches a report, a log, a
    cache index or JSON; the file itself is opened by its real name."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Entry:
    rel: str  # posix path relative to the data root, printable (display_name): sort key, class folder, reports
    key: str  # what the reader opens: an absolute file path (the real, possibly undecodable name), or a zip member
    size: int  # bytes
    stamp: str  # changes when the file changes (mtime for files, CRC for zip members); for the cache key


@dataclass
class Listing:
    path: Path  # the folder or the .zip
    kind: Literal["folder", "zip"]
    root: str  # folder inside the source that holds the data ("" or e.g. "photos/train")
    images: list[Entry]  # sorted by rel
    others: list[str]  # non-image files, rel paths
    refused: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason): links and members not read

    def describe(self) -> str:
        return display_name(str(self.path)) + (f" (folder {self.root}/ inside)" if self.root else "")

    @property
    def stem(self) -> str:
        # The dataset name: the folder or archive name, not the split folder.
        return self.path.resolve().stem if self.kind == "zip" else self.path.resolve().name


def list_source(path: Path, split: str, notes: list[str], *, split_folders: bool = True) -> Listing:
    """The image files of a folder or zip. With `split_folders`, a source holding `train/` and `test/` is read
    from the `split` one; without it the split is the caller's business (unpaired trainA/ testA/ layouts)."""
    if path.is_dir():
        kind, (files, refused) = "folder", walk_folder(path)
    elif path.is_file() and path.suffix.lower() == ".zip":
        kind, (files, refused) = "zip", walk_zip(path)
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
    return Listing(path, kind, root, images, others, refused)


def top(entry: Entry) -> str:
    return entry.rel.split("/", 1)[0]


def strip_top(entry: Entry) -> Entry:
    return Entry(entry.rel.split("/", 1)[1], entry.key, entry.size, entry.stamp)


def is_hidden(parts: Sequence[str]) -> bool:
    # Dotfiles, .git/, macOS resource forks (._x.png) and __MACOSX/ folders inside archives.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def walk_folder(root: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The regular files under `root` (hidden ones left out), and the links refused, as (rel, reason).

    Symbolic links are followed when their target lies inside `root` (a class folder linked from elsewhere in the
    tree); a link that leads out of `root`, a loop and a dangling link are refused with the reason, so that a
    dataset is exactly the tree the user pointed at. Refusals of plain non-image files are not listed."""
    base = os.path.realpath(root)
    entries: list[Entry] = []
    refused: list[tuple[str, str]] = []
    # (folder as listed, its real path, the real paths of its ancestors): a link back to an ancestor is a loop.
    stack: list[tuple[Path, str, tuple[str, ...]]] = [(Path(root), base, ())]
    while stack:
        folder, real_folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            if folder != Path(root):
                refused.append((_rel(folder, root), f"cannot list the folder ({exc.strerror or exc})"))
                continue
            raise DatasetError(f"{display_name(str(root))}: cannot list the folder ({exc})") from exc
        for child in children:
            if is_hidden([child.name]):
                continue
            path = Path(folder, child.name)
            rel = _rel(path, root)
            is_image = Path(child.name).suffix.lower() in IMAGE_EXTENSIONS
            if child.is_symlink():
                target = os.path.realpath(path)
                try:
                    st = path.stat()  # follows the link
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        refused.append((rel, "symbolic link loop; remove the link"))
                    elif is_image:
                        refused.append((rel, f"dangling symbolic link (its target {display_name(target)} does not "
                                             "exist)"))
                    continue
                if not _inside(target, base):
                    if is_image or stat.S_ISDIR(st.st_mode):
                        what = "folder" if stat.S_ISDIR(st.st_mode) else "file"
                        refused.append((rel, f"symbolic link to a {what} outside the data folder "
                                             f"({display_name(target)}); not followed: copy it in, or point the "
                                             "source at a folder that holds it"))
                    continue
                if stat.S_ISDIR(st.st_mode) and (target == real_folder or target in ancestors):
                    refused.append((rel, "symbolic link loop (it points back to a folder that holds it); not "
                                         "followed"))
                    continue
            else:
                try:
                    st = path.stat()
                except OSError:
                    continue  # vanished while listing
                target = os.path.join(real_folder, child.name)
            if stat.S_ISDIR(st.st_mode):
                stack.append((path, target, (*ancestors, real_folder)))
            elif stat.S_ISREG(st.st_mode):
                entries.append(Entry(rel=rel, key=str(path), size=st.st_size, stamp=str(st.st_mtime_ns)))
            elif is_image:  # a FIFO or device named like an image: opening it could block forever
                refused.append((rel, "not a regular file (a pipe, socket or device)"))
    return sorted(entries, key=lambda e: e.rel), sorted(refused)


def _rel(path: Path, root: Path) -> str:
    return display_name(path.relative_to(root).as_posix())


def _inside(real: str, base: str) -> bool:
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def walk_zip(path: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The file members of an archive (hidden ones left out), and the members refused, as (rel, reason):
    absolute paths, paths with `..` (zip-slip), symbolic links, and members that claim more than
    `MAX_MEMBER_BYTES` uncompressed. Nothing is ever extracted; members are read in place."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{display_name(str(path))}: cannot read the zip archive ({exc}); re-create it") from exc
    entries, refused = [], []
    for info in infos:
        name = info.filename.replace("\\", "/")
        rel = display_name(name.strip("/"))
        if name.startswith("/") or re.match(r"[A-Za-z]:", name):
            refused.append((display_name(name), "absolute path inside the archive; re-create it with relative paths"))
            continue
        if ".." in name.split("/"):
            refused.append((display_name(name), "path with '..' leaves the archive's folder (zip-slip); re-create "
                                                 "the archive without it"))
            continue
        if info.is_dir() or not rel or is_hidden(rel.split("/")):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            refused.append((rel, "symbolic link inside the archive; not followed"))
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            refused.append((rel, f"claims {info.file_size / 2**20:,.0f} MiB uncompressed, over the "
                                 f"{MAX_MEMBER_BYTES >> 20} MiB per-file limit (a zip bomb?); not read"))
            continue
        entries.append(Entry(rel=rel, key=info.filename, size=info.file_size, stamp=str(info.CRC)))
    return sorted(entries, key=lambda e: e.rel), refused


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
    format: str | None = None  # what PIL found in the file (PNG, JPEG, ...), whatever the name says
    frames: int = 1  # frames or pages (animated PNG/WebP, multi-page TIFF); intake uses the first


def _open_entry(reader: Reader, entry: Entry, max_pixels: int, load: bool):
    if entry.size == 0:
        raise BadImage("empty file (0 bytes)")
    with reader.open(entry.key) as fp:
        return open_image(fp, max_pixels, load=load)


def _probe_open(reader: Reader, entry: Entry, max_pixels: int, load: bool) -> tuple[Any, int]:
    # The image and its frame count, counted while the file is open (TIFF pages are found by seeking).
    if entry.size == 0:
        raise BadImage("empty file (0 bytes)")
    with reader.open(entry.key) as fp:
        image = open_image(fp, max_pixels, load=load)
        try:
            frames = int(getattr(image, "n_frames", 1) or 1)
        except Exception:  # a damaged later frame: the first one is what intake reads
            frames = 1
        return image, frames


def probe_entry(reader: Reader, entry: Entry, max_pixels: int, decode: bool) -> Probe:
    """Header facts of one file (with `decode`, after a full decode that proves the pixels are readable)."""
    try:
        image, frames = _probe_open(reader, entry, max_pixels, decode)
        oriented = oriented_size(image)
    except Exception as exc:  # PIL plugins raise many types on bad data; one bad file must not stop intake
        return Probe(None, None, skip_reason(exc))
    return Probe(image.size, image.mode, None, oriented, image.format, frames)


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
