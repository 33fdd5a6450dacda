"""On-disk caches of decoded pixels under `cache_dir()`, reused while the files are unchanged.

`cache_key` names a cache by everything that determines its pixels: the listing (each file's name, size and
mtime or CRC) and the preprocessing. `decode_to_memmap` holds a fixed-size dataset larger than
`GANFORGE_MAX_MEMORY_MB` as a `.npy` memmap; `patches.py` keeps variable-size photos in its own format.
Both publish a cache with a rename after its content is complete and fsynced, so a killed run never leaves
a half-written cache that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ganforge.core.files import atomic_write_text
from ganforge.data.builtin import DatasetError, cache_dir
from ganforge.data.sources import Entry, Listing

CACHE_VERSION = 1  # bump when preprocessing changes, so old caches are not reused
HASH_CHUNK_BYTES = 64 << 20  # rows of pixels read at a time when hashing or copying a memmap


def memory_limit_bytes() -> int:
    """`GANFORGE_MAX_MEMORY_MB` (default 4096) in bytes: decoded datasets above it live in a disk memmap."""
    value = os.environ.get("GANFORGE_MAX_MEMORY_MB", "4096")
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise DatasetError(f"GANFORGE_MAX_MEMORY_MB must be a number of megabytes, got {value!r}") from None


def cache_key(listing: Listing, rows: list[Entry], *params) -> str:
    """16 hex digits naming a cache: the source, the files (name, size, mtime or CRC) and `params`, the
    preprocessing (JSON-serialisable)."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, str(listing.path.resolve()), listing.root, *params]).encode())
    for entry in rows:
        # fsencode: a file name that is not UTF-8 (a lone surrogate in `key`) hashes as its real bytes.
        digest.update(os.fsencode(entry.key) + f"\0{entry.size}\0{entry.stamp}\n".encode())
    return digest.hexdigest()[:16]


def publish(tmp: Path, final: Path) -> None:
    """fsync a finished temporary file and rename it over `final` (atomic on POSIX and Windows)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def decode_to_memmap(
    decode_into: Callable[[np.ndarray], list[str | None]], shape: tuple, name: str, key: str
) -> tuple[np.ndarray, list[str | None]]:
    """A read-only `.npy` memmap of `shape` ([N, C, R, R]) filled by `decode_into(array)`, which returns one
    error (or None) per row; rows that failed are dropped. Reused when a finished cache with `key` exists."""
    folder = cache_dir() / "images"
    final = folder / f"{name}-{key}.npy"
    meta = final.with_suffix(".json")  # per-row decode errors; written before the .npy appears
    if final.exists() and meta.exists():
        try:
            errors = json.loads(meta.read_text())["errors"]
            images = np.load(final, mmap_mode="r")
            n_ok = sum(e is None for e in errors)
            if len(errors) == shape[0] and images.shape == (n_ok, *shape[1:]):
                return images, errors
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache (malformed JSON, short .npy) is rebuilt below, over the old files

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
            step = max(1, HASH_CHUNK_BYTES // int(np.prod(shape[1:])))
            for start in range(0, len(keep), step):
                packed[start : start + step] = images[keep[start : start + step]]
            del images
            os.replace(compact, tmp)
            images = packed
        images.flush()
        del images
        atomic_write_text(meta, json.dumps({"errors": errors}))
        publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        compact.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r"), errors
