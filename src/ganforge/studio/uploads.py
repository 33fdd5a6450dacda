"""Safe intake of user files: names, archives and images are checked before anything is kept.

Every rule here is a refusal with a message that names the file and says what to do:
* names are sanitised per path component (letters, digits, ``._-``; no hidden files), and every destination is
  resolved and checked to lie under its folder;
* zip members with absolute paths, drive letters, ``..`` components or symlink bits are refused, and so are
  archives with more than ``max_files`` members or more than ``max_unpacked_bytes`` in total (counted while
  inflating, not trusted from the header: a zip bomb is stopped when it crosses the limit);
* images whose header claims more than ``max_pixels`` are refused before a pixel is decoded (decompression bombs);
  images that do not decode are kept, so the dataset's report lists them with the reason;
* pickles and other code-bearing model files (.pt, .pth, .pkl, .ckpt, .bin, ...) are refused: the studio only
  ever loads safetensors and JSON.
"""

from __future__ import annotations

import re
import shutil
import stat
import unicodedata
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from ganforge.data import IMAGE_EXTENSIONS
from ganforge.data.decode import BadImage, open_image

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz", ".h5"})
_CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload is refused; ``status`` is the HTTP status (413 for size limits, 422 otherwise)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def safe_component(name: str, what: str = "file name") -> str:
    """One path component reduced to ``[A-Za-z0-9._-]`` (other characters become ``_``), without a leading dot.
    Raises UploadError for names that are empty or only dots."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", text))  # no '..' anywhere
    text = text.strip("._-")[:120]  # no hidden files, no leading dash (an option to some tool)
    if not text:
        raise UploadError(f"{what} {name!r} has no usable characters; rename it (letters, digits, . _ -)")
    return text


def dataset_name(name: str) -> str:
    """A dataset's folder name: a sanitised component of at most 64 characters."""
    return safe_component(name, "dataset name")[:64]


def inside(root: Path, *parts: str) -> Path:
    """``root/parts`` resolved, refused unless it stays under ``root`` (a last defence after sanitising)."""
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise UploadError(f"{'/'.join(parts)!r} resolves outside {root.name}/; refused")
    return path


def member_parts(name: str) -> list[str]:
    """A zip member's name checked for traversal and split into sanitised components.
    Raises UploadError for absolute names, drive letters, backslash paths and ``..``."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise UploadError(f"zip member {name!r} has an absolute or Windows path; refused (path traversal). "
                          "Make the archive with relative paths")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"zip member {name!r} climbs out of the archive with '..'; refused (path traversal)")
    return [safe_component(p) for p in parts]


def check_suffix(name: str) -> str:
    """The lower-case suffix of an uploaded file; pickles and model files are refused with the reason."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UploadError(f"{name}: {suffix} files can hold pickled code and are never loaded by ganforge; upload "
                          "images (png, jpg, webp, bmp, tif) or a .zip of them")
    return suffix


def check_image(path: Path, shown: str, max_pixels: int) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` (checked before decoding). Files that do not
    open at all are left for the dataset report (it lists them with the reason)."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            open_image(f, max_pixels, load=False)
    except (BadImage, Image.DecompressionBombError) as exc:
        reason = str(exc) if isinstance(exc, BadImage) else f"too large ({exc})"
        raise UploadError(f"{shown} is {reason}: refused (a decompression bomb, or raise --max-pixels)", 413) \
            from None
    except Exception:  # noqa: BLE001 - an unreadable image is reported by inspect, not refused here
        return


def copy_capped(src: BinaryIO, dst: Path, budget: list[int], what: str) -> int:
    """Copy ``src`` into ``dst`` in chunks, charging ``budget[0]`` (bytes left); refuses with 413 when it runs out."""
    n = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            n += len(chunk)
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise UploadError(f"{what} is larger than the limit; split it or raise the studio's limits", 413)
            out.write(chunk)
    return n


def extract_zip(archive: Path, dest: Path, *, max_files: int, max_unpacked_bytes: int, max_pixels: int) -> int:
    """Extract the image members of ``archive`` into ``dest`` (which must exist), keeping class subfolders.
    Non-image members (readme files, __MACOSX) are skipped. Returns the number of images written."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(f"{archive.name} is not a readable zip archive ({exc}); zip the image folder again") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise UploadError(f"{archive.name} has {len(infos)} members, more than the limit of {max_files}", 413)
        claimed = sum(i.file_size for i in infos)
        if claimed > max_unpacked_bytes:
            raise UploadError(f"{archive.name} unpacks to {claimed / 2**20:.0f} MB, more than the limit of "
                              f"{max_unpacked_bytes / 2**20:.0f} MB", 413)
        plan: list[tuple[zipfile.ZipInfo, list[str]]] = []
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadError(f"zip member {info.filename!r} is a symbolic link; refused (links can point outside "
                                  "the data folder). Archive the files themselves")
            parts = member_parts(info.filename)
            if info.is_dir() or not parts or parts[0] == "__MACOSX":
                continue
            suffix = check_suffix(info.filename)
            if suffix in IMAGE_EXTENSIONS:
                plan.append((info, parts))
        budget = [max_unpacked_bytes]
        written = 0
        for info, parts in plan:
            target = inside(dest, *parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src:
                    copy_capped(src, target, budget, f"{archive.name} (unpacked)")
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:  # CRC error, encrypted, damaged
                target.unlink(missing_ok=True)
                raise UploadError(f"zip member {info.filename!r} cannot be read ({exc}); zip the folder again") \
                    from None
            check_image(target, info.filename, max_pixels)
            written += 1
    return written


def single_top_folder(dest: Path) -> None:
    """A zip whose images all sit in one top folder (``photos/...``) has that wrapper removed, so class
    subfolders below it become the dataset's classes."""
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        tmp = dest.with_name(dest.name + ".unwrap")
        inner.rename(tmp)
        dest.rmdir()
        tmp.rename(dest)


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def remove_tree(paths: Iterable[Path]) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
