"""Features of an image set through an extractor, cached on disk.

A cache entry is ``<folder>/<extractor>-<key>.safetensors`` (``features`` float32 ``[N, D]`` and, when the
extractor has a classifier head, ``logits`` float32 ``[N, K]``) plus ``<same>.json``: the full protocol, the key
and the SHA-256 of the tensor file. Both are written atomically, tensors first, so an entry is complete once its
JSON exists. Reading never unpickles: a JSON that does not parse or does not match the expected protocol, or a
tensor file whose hash, shapes or dtype are off, is reported through ``log`` and the features are recomputed
(and the entry rewritten).

The key is the SHA-256 (first 32 hex digits) of the canonical JSON of

* the format tag ``ganforge-features/1``;
* the extractor's protocol (its weights' SHA-256, input resolution, channel conversion, resize filter, ...)
  without the weights path and the spec string, so moving a weights file keeps its cache;
* the data: a caller's ``key`` if given, else the dataset fingerprint (``ImageDataset.fingerprint()``: shape,
  pixels and labels), else the SHA-256 of the images' shape and bytes; plus the sample count and the split.

Descriptive fields (source, resolution, subset seed) are stored in the JSON but are not part of the key: they
change the pixels, and the pixels are already in it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.core.version import __version__
from ganforge.data.builtin import BUILTINS, cache_dir
from ganforge.data.dataset import ImageDataset, load_dataset, parse_builtin
from ganforge.metrics.domain import colour_spread
from ganforge.metrics.extractors import Extractor, Images, check_images
from ganforge.metrics.progress import Progress

FEATURES_FORMAT = "ganforge-features/1"
SKIPPED_LISTED = 5  # unreadable files named in messages and records (all are counted)
_UNKEYED_EXTRACTOR_FIELDS = ("weights", "spec")  # where the weights are and how they were named
_HASH_CHUNK_BYTES = 64 << 20


@dataclass(frozen=True)
class FeatureSet:
    """``features`` float32 ``[N, D]``, ``logits`` float32 ``[N, K]`` or None, the ``protocol`` that produced them
    (JSON-ready, for metric records), the cache ``key`` and whether they were read from the cache."""

    features: Tensor
    logits: Tensor | None
    protocol: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.features)


def default_cache_dir() -> Path:
    """``$GANFORGE_CACHE/features``, default ``~/.cache/ganforge/features``."""
    return cache_dir() / "features"


def content_hash(images: Images) -> str:
    """SHA-256 (first 16 hex digits) of an image array's dtype, shape and bytes, read in chunks."""
    dtype = str(images.dtype).removeprefix("torch.")  # numpy and torch arrays of equal content hash alike
    digest = hashlib.sha256(f"{dtype} {tuple(images.shape)}".encode())
    row_bytes = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
    rows = max(1, _HASH_CHUNK_BYTES // row_bytes)
    for start in range(0, len(images), rows):  # chunked, so a memmap is never fully resident
        chunk = images[start:start + rows]
        chunk = chunk.cpu().contiguous().numpy() if isinstance(chunk, Tensor) else np.ascontiguousarray(chunk)
        digest.update(chunk)
    return digest.hexdigest()[:16]


def feature_protocol(extractor: Extractor, images: Images | None = None, *, key: str | None = None,
                     fingerprint: str | None = None, count: int | None = None, split: str | None = None,
                     info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The protocol record of a feature set: extractor protocol, data identity (``key``, else ``fingerprint``,
    else the content hash of ``images``), sample count, split, and unkeyed ``info``."""
    if key is not None:
        identity: dict[str, Any] = {"key": str(key)}
    elif fingerprint is not None:
        identity = {"fingerprint": str(fingerprint)}
    elif images is not None:
        identity = {"content_sha256": content_hash(images)}
    else:
        raise ValueError("a feature cache key needs the images, a dataset fingerprint or an explicit key")
    if count is None:
        if images is None:
            raise ValueError("give the sample count when no images are passed")
        count = len(images)
    return _record(extractor, identity, count, split, info)


def _record(extractor: Extractor, identity: dict[str, Any], count: int, split: str | None,
            info: dict[str, Any] | None) -> dict[str, Any]:
    return {"format": FEATURES_FORMAT, "extractor": extractor.protocol(),
            "data": {**identity, "count": int(count), "split": split}, "info": dict(info or {})}


def _keyed(record: dict[str, Any]) -> str:
    extractor = {k: v for k, v in record["extractor"].items() if k not in _UNKEYED_EXTRACTOR_FIELDS}
    return json.dumps({"format": record["format"], "extractor": extractor, "data": record["data"]},
                      sort_keys=True, separators=(",", ":"))


def cache_key(extractor: Extractor, images: Images | None = None, *, key: str | None = None,
              fingerprint: str | None = None, count: int | None = None, split: str | None = None) -> str:
    """The cache key (32 hex digits) of a feature set; see the module docstring for the recipe."""
    record = feature_protocol(extractor, images, key=key, fingerprint=fingerprint, count=count, split=split)
    return hashlib.sha256(_keyed(record).encode()).hexdigest()[:32]


def compute_features(extractor: Extractor, images: Any, cache_dir: str | Path | None = None,
                     key: str | None = None, *, split: str | None = None, info: dict[str, Any] | None = None,
                     cache: bool = True, batch: int = 256, log: Callable[[str], None] = print) -> FeatureSet:
    """Features of ``images`` (uint8 ``[N, C, H, W]``, numpy or torch, or an ``ImageDataset``) through
    ``extractor``, served from the cache folder when an entry with the same key exists.

    Args:
        cache_dir: cache folder; None means :func:`default_cache_dir`.
        key: names the data instead of its fingerprint / content hash (the extractor's protocol, the count and
            the split are still part of the cache key).
        split, info: recorded in the protocol (``split`` is keyed, ``info`` is not).
        cache: False computes and returns without reading or writing the cache (e.g. generated samples).
        log: receives one line per ignored cache entry or failed cache write, and progress lines when the
            extraction takes more than a few seconds.
    """
    fingerprint = None
    if isinstance(images, ImageDataset):
        fingerprint, images = images.fingerprint(), images.images
    n = check_images(images)
    what = f"{extractor.name} features of {(info or {}).get('source') or (info or {}).get('snapshot') or 'images'}"
    if cache or key is not None or fingerprint is not None:
        record = feature_protocol(extractor, images, key=key, fingerprint=fingerprint, count=n, split=split,
                                  info=info)
    else:  # nothing to look up: skip hashing the pixels
        record = _record(extractor, {}, n, split, info)
    keyed = _keyed(record)
    digest = hashlib.sha256(keyed.encode()).hexdigest()[:32] if record["data"].keys() - {"count", "split"} else None
    stem = None
    if cache:
        stem = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        stem = stem / f"{extractor.name}-{digest}"
        hit = _read_entry(stem, keyed, n, extractor, log)
        if hit is not None:
            return FeatureSet(*hit, protocol=record, key=digest, from_cache=True)

    features, logits = _extract(extractor, images, n, batch, what, log)
    _check_shapes(features, logits, n, extractor)
    if stem is not None:
        _write_entry(stem, record, digest, features, logits, log)
    return FeatureSet(features, logits, protocol=record, key=digest)


def _extract(extractor: Extractor, images: Any, n: int, batch: int, what: str,
             log: Callable[[str], None]) -> tuple[Tensor, Tensor | None]:
    # One batch at a time, so that a long run (Inception on a CPU) reports progress.
    progress = Progress(log, what, n)
    feats, logits = [], []
    for start in range(0, n, batch):
        f, lg = extractor(images[start:start + batch], batch=batch)
        feats.append(f)
        logits.append(lg)
        progress.update(min(n, start + batch))
    progress.close()
    if not feats:
        return extractor(images, batch=batch)
    return torch.cat(feats), None if logits[0] is None else torch.cat(logits)


def _check_shapes(features: Tensor, logits: Tensor | None, n: int, extractor: Extractor) -> None:
    if features.dtype != torch.float32 or tuple(features.shape) != (n, extractor.feature_dim):
        raise ValueError(f"features: expected float32 [{n}, {extractor.feature_dim}], got {features.dtype} "
                         f"{list(features.shape)}")
    k = extractor.num_classes
    if (logits is None) != (k == 0) or (logits is not None and (logits.dtype != torch.float32
                                                                or tuple(logits.shape) != (n, k))):
        got = None if logits is None else f"{logits.dtype} {list(logits.shape)}"
        raise ValueError(f"logits: expected {f'float32 [{n}, {k}]' if k else 'None'}, got {got}")


def _read_entry(stem: Path, keyed: str, n: int, extractor: Extractor,
                log: Callable[[str], None]) -> tuple[Tensor, Tensor | None] | None:
    from safetensors.torch import load as st_load

    meta_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FEATURES_FORMAT or _keyed(meta["protocol"]) != keyed:
            raise ValueError("its protocol differs from this one")
        blob = tensor_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            raise ValueError(f"{tensor_path.name} does not match the SHA-256 recorded in {meta_path.name}")
        tensors = st_load(blob)  # safetensors: a JSON header and raw tensor bytes, nothing executable
        features, logits = tensors["features"], tensors.get("logits")
        _check_shapes(features, logits, n, extractor)
    except Exception as exc:  # unreadable, truncated, mismatched: all mean "recompute"
        log(f"warning: ignoring feature cache entry {meta_path} ({type(exc).__name__}: {str(exc)[:200]}); "
            "recomputing")
        return None
    return features, logits


def _write_entry(stem: Path, record: dict[str, Any], digest: str, features: Tensor, logits: Tensor | None,
                 log: Callable[[str], None]) -> None:
    from safetensors.torch import save as st_save

    from ganforge.core.files import CheckpointError, atomic_write_bytes, atomic_write_text

    tensors = {"features": features.contiguous()}
    if logits is not None:
        tensors["logits"] = logits.contiguous()
    blob = st_save(tensors)
    meta = {"format": FEATURES_FORMAT, "key": digest, "sha256": hashlib.sha256(blob).hexdigest(),
            "protocol": record, "features_shape": list(features.shape),
            "logits_shape": None if logits is None else list(logits.shape),
            "ganforge_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        # Tensors first, then JSON: an entry is complete once its JSON exists.
        atomic_write_bytes(stem.with_suffix(".safetensors"), blob)
        atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2))
    except (OSError, CheckpointError) as exc:  # a read-only or full cache costs speed, never the result
        log(f"warning: could not write feature cache entry {stem}.json ({exc})")


def _native_resolution(source: str | Path, split: str) -> int:
    builtin = parse_builtin(source)
    if builtin is None:
        raise ValueError(f"{source}: give the resolution for a folder or zip source (its images may differ in "
                         "size); only built-in datasets have a native size")
    images = BUILTINS[builtin[0]](split, builtin[1])[0]  # uint8 [N, H, W] or [N, H, W, C], square
    return int(images.shape[1])


def dataset_features(extractor: Extractor, source: str | Path, split: str, num: int | None = None,
                     resolution: int | None = None, seed: int = 0, cache_dir: str | Path | None = None, *,
                     resize: str = "crop", batch: int = 256, log: Callable[[str], None] = print) -> FeatureSet:
    """Cached features of a dataset (``ganforge.data.load_dataset``): a folder, zip or built-in name.

    ``resolution`` None means the native size of a built-in (Fashion-MNIST 28); the extractor then brings the
    images to its own input as its protocol says (the shipped judge pads 28 -> 32, Inception resizes to 299).
    ``num`` takes a fixed random subset of that many images, chosen by ``seed`` (``load_dataset(max_images=)``).
    The protocol records source, split, count, resolution and subset, the channels and colour spread (for the
    domain check, metrics/domain.py) and the unreadable files that were skipped (count and the first few).
    """
    if resolution is None:
        resolution = _native_resolution(source, split)
    ds = load_dataset(source, resolution, resize=resize, max_images=num, split=split, seed=seed)
    if num is not None and len(ds) < num:
        log(f"warning: {source} (split {split}) has {len(ds)} images, fewer than the {num} asked for; using all")
    skipped = ds.report.skipped
    if skipped:
        log(f"warning: {source}: {skipped_line(len(skipped), [f'{s.path} ({s.reason})' for s in skipped])}")
    info = {"source": str(source), "resolution": resolution, "resize": resize, "num_requested": num,
            "subset_seed": seed if num is not None and len(ds) == num else None, "dataset": ds.name,
            "channels": ds.channels, "colour_spread": colour_spread(ds.images),
            "skipped": {"count": len(skipped), "first": [f"{s.path} ({s.reason})" for s in skipped[:SKIPPED_LISTED]]}}
    return compute_features(extractor, ds, cache_dir, split=split, info=info, batch=batch, log=log)


def skipped_line(count: int, first: list[str]) -> str:
    """``3 unreadable image files skipped: a.png (reason), b.jpg (reason), ...``"""
    more = f", ... and {count - SKIPPED_LISTED} more" if count > SKIPPED_LISTED else ""
    return (f"{count} unreadable image file{'s' if count != 1 else ''} skipped: "
            f"{', '.join(first[:SKIPPED_LISTED])}{more}")
