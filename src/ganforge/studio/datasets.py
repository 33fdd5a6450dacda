"""Datasets in the studio: user uploads (folders under ``<data-dir>/datasets/``) and the built-in ones.

An upload is assembled in ``<data-dir>/tmp/`` and renamed into place only once every file passed the checks in
``uploads.py``, so a refused or interrupted upload leaves nothing behind. The intake report (``inspect_source``,
the same one `ganforge dataset inspect` prints) is computed once and cached as JSON beside the data.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ganforge.data import BUILTINS, IMAGE_EXTENSIONS, DatasetError, inspect_source
from ganforge.data.decode import open_image, standard_mode
from ganforge.studio.settings import StudioSettings
from ganforge.studio.uploads import (
    UploadError,
    check_image,
    check_suffix,
    copy_capped,
    count_images,
    dataset_name,
    extract_zip,
    inside,
    safe_component,
    single_top_folder,
)

THUMB_PX = 96


class DatasetNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's name (untrusted) and an open binary stream."""

    filename: str
    stream: BinaryIO


class DatasetStore:
    def __init__(self, settings: StudioSettings):
        self.s = settings
        self._lock = threading.Lock()
        self._builtin_cache: dict[str, np.ndarray] = {}
        self._builtin_reports: dict[str, dict[str, Any]] = {}

    # ---- names and paths ------------------------------------------------------------------------------------
    def is_builtin(self, name: str) -> bool:
        return name in BUILTINS

    def folder(self, name: str) -> Path:
        """The folder of a user dataset; DatasetNotFound for unknown (or unsafe) names."""
        try:
            path = inside(self.s.datasets_dir, dataset_name(name))
        except UploadError:
            raise DatasetNotFound(name) from None
        if dataset_name(name) != name or not path.is_dir():
            raise DatasetNotFound(name)
        return path

    def source(self, name: str) -> str:
        """What ``data.source`` gets for this dataset: the built-in's name, or the folder's absolute path."""
        return name if self.is_builtin(name) else str(self.folder(name))

    def _report_path(self, name: str) -> Path:
        return self.s.cache_dir / "reports" / f"{name}.json"

    # ---- upload ------------------------------------------------------------------------------------------------
    def create(self, name: str, uploads: list[Upload]) -> dict[str, Any]:
        """Make a dataset from uploaded images and/or zips. Raises UploadError (nothing is kept on refusal)."""
        if not uploads:
            raise UploadError("no files: upload images or a .zip of them (class subfolders become classes)")
        clean = dataset_name(name)
        if clean in BUILTINS:
            raise UploadError(f"dataset name {clean!r} is a built-in dataset; choose another name")
        if len(uploads) > self.s.max_files:
            raise UploadError(f"{len(uploads)} files in one upload, more than the limit of {self.s.max_files}", 413)
        work = self.s.tmp_dir / f"upload-{uuid.uuid4().hex}"
        data = work / "data"
        data.mkdir(parents=True)
        try:
            budget = [self.s.max_upload_bytes]
            for up in uploads:
                suffix = check_suffix(up.filename)
                if suffix == ".zip":
                    archive = work / f"{uuid.uuid4().hex}.zip"
                    copy_capped(up.stream, archive, budget, up.filename)
                    extract_zip(archive, data, max_files=self.s.max_files,
                                max_unpacked_bytes=self.s.max_unpacked_bytes, max_pixels=self.s.max_pixels)
                    archive.unlink()
                elif suffix in IMAGE_EXTENSIONS:
                    # A browser sends "class/file.png" for dropped folders (webkitRelativePath): keep one level.
                    parts = [safe_component(p) for p in up.filename.replace("\\", "/").split("/")
                             if p not in ("", ".", "..")]
                    target = inside(data, *parts[-2:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    copy_capped(up.stream, target, budget, up.filename)
                    check_image(target, up.filename, self.s.max_pixels)
                else:
                    raise UploadError(f"{up.filename}: not an image (png, jpg, jpeg, webp, bmp, tif, tiff) or .zip")
            single_top_folder(data)
            if count_images(data) == 0:
                raise UploadError("the upload holds no image files (png, jpg, jpeg, webp, bmp, tif, tiff)")
            with self._lock:
                final = inside(self.s.datasets_dir, clean)
                if final.exists():
                    raise UploadError(f"a dataset named {clean!r} exists; delete it or choose another name", 409)
                data.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.inspect(clean)

    def delete(self, name: str) -> None:
        if self.is_builtin(name):
            raise UploadError(f"{name} is a built-in dataset and cannot be deleted", 409)
        folder = self.folder(name)
        trash = self.s.tmp_dir / f"delete-{uuid.uuid4().hex}"
        folder.rename(trash)  # atomic: the name is free at once, the files go after
        shutil.rmtree(trash, ignore_errors=True)
        self._report_path(name).unlink(missing_ok=True)

    # ---- listing and inspection -----------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"name": n, "builtin": True} for n in BUILTINS]
        for d in sorted(self.s.datasets_dir.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                report = self._cached_report(d.name)
                out.append({"name": d.name, "builtin": False,
                            "images": report["files_loaded"] if report else count_images(d),
                            "skipped": len(report["skipped"]) if report else None,
                            "classes": len(report["class_counts"]) if report else None})
        return out

    def _cached_report(self, name: str) -> dict[str, Any] | None:
        path = self._report_path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def inspect(self, name: str) -> dict[str, Any]:
        """The intake report (counts, classes, sizes, modes, unreadable files with reasons) plus the thumbnail
        count; user datasets are cached. Raises DatasetNotFound, or DatasetError for an unusable built-in."""
        if self.is_builtin(name):
            if name not in self._builtin_reports:  # built-ins never change: inspect once per server
                self._builtin_reports[name] = inspect_source(name).to_dict()
            return {"name": name, "builtin": True, **self._builtin_reports[name], "source": name,
                    "thumbnails": int(len(self._builtin_images(name)))}
        folder = self.folder(name)
        report = self._cached_report(name)
        if report is None:
            report = inspect_source(folder, max_pixels=self.s.max_pixels).to_dict()
            report["source"] = name  # never show the server's absolute paths
            path = self._report_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report), encoding="utf-8")
        return {"name": name, "builtin": False, **report, "thumbnails": len(self._readable(name, folder))}

    # ---- thumbnails ------------------------------------------------------------------------------------------------
    def _files(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                      and not any(part.startswith(".") for part in p.relative_to(folder).parts))

    def _readable(self, name: str, folder: Path) -> list[Path]:
        """The images the report found readable, in sorted order: what the thumbnails show (the unreadable ones are
        listed in the report instead)."""
        report = self._cached_report(name) or {}
        skipped = {s["path"] for s in report.get("skipped", [])}
        return [p for p in self._files(folder) if p.relative_to(folder).as_posix() not in skipped]

    def _builtin_images(self, name: str) -> np.ndarray:
        if name not in self._builtin_cache:
            images, _labels, _names = BUILTINS[name]("train", None)
            self._builtin_cache[name] = images
        return self._builtin_cache[name]

    def thumbnail(self, name: str, index: int, size: int = THUMB_PX) -> bytes:
        """PNG thumbnail of image ``index`` (sorted order); IndexError when out of range, DatasetError when the
        file does not decode (the report says why)."""
        if self.is_builtin(name):
            images = self._builtin_images(name)
            if not 0 <= index < len(images):
                raise IndexError(index)
            image = Image.fromarray(images[index])
        else:
            files = self._readable(name, self.folder(name))
            if not 0 <= index < len(files):
                raise IndexError(index)
            try:
                image = standard_mode(open_image(files[index], self.s.max_pixels))
            except Exception as exc:  # noqa: BLE001 - any decoding failure: the report lists it
                raise DatasetError(f"{files[index].name} does not decode ({type(exc).__name__})") from None
        image.thumbnail((size, size), Image.Resampling.NEAREST if max(image.size) <= size else
                        Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
