"""Built-in datasets that need no user files: Fashion-MNIST, scikit-learn digits, procedural shapes.

Each loader returns arrays at their native size: `(images, labels, class_names)` with images uint8
`[N, H, W]` (grayscale) or `[N, H, W, C]`, labels int64 `[N]`. `load_dataset` resizes them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


# Defined here rather than in dataset.py because dataset.py builds on this module, not the reverse.
class DatasetError(ValueError):
    """A dataset source cannot be used; the message names the file, folder or field and what to do."""


def cache_dir() -> Path:
    """Root of ganforge's on-disk cache: `$GANFORGE_CACHE`, default `~/.cache/ganforge`."""
    return Path(os.environ.get("GANFORGE_CACHE", "~/.cache/ganforge")).expanduser()


Arrays = tuple[np.ndarray, np.ndarray, list[str]]  # images uint8 [N, H, W(, C)], labels int64 [N], names


def _no_location(name: str, location: str | None) -> None:
    if location is not None:
        raise DatasetError(f"built-in dataset {name!r} takes no path (got {name}:{location}); use {name!r}")


# ---------------------------------------------------------------------------------------------------------
# Fashion-MNIST (Xiao et al. 2017): IDX files, found locally or downloaded with checksum verification.

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of the official files (identical to those in Debian's dataset-fashion-mnist package).
_FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_FASHION_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
_FASHION_HELP = (
    "put the 4 official .gz files in a folder and set GANFORGE_FASHION_MNIST=<folder> "
    "(or use source 'fashion-mnist:<folder>'), or run `apt-get install dataset-fashion-mnist`"
)


def _find_file(folder: Path, gz_name: str) -> Path | None:
    # Accept the official .gz file or its decompressed twin.
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _fashion_folder(split: str, location: str | None) -> Path:
    names = _FASHION_SPLIT_FILES[split]

    def complete(folder: Path) -> bool:
        return all(_find_file(folder, n) is not None for n in names)

    # A folder the user named explicitly must hold the files: silently downloading instead would hide a typo.
    explicit = location if location is not None else os.environ.get("GANFORGE_FASHION_MNIST")
    if explicit:
        folder = Path(explicit).expanduser()
        if not complete(folder):
            raise DatasetError(
                f"Fashion-MNIST folder {folder} lacks {' and '.join(names)} for split {split!r}; {_FASHION_HELP}"
            )
        return folder
    cached = cache_dir() / "fashion-mnist"
    for folder in (_FASHION_SYSTEM_DIR, cached):
        if complete(folder):
            return folder
    for name in names:
        if _find_file(cached, name) is None:
            _download(_FASHION_URL + name, cached / name, _FASHION_SHA256[name])
    return cached


def _download(url: str, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # urllib's URLError and socket timeouts are OSErrors
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url} ({exc}); {_FASHION_HELP}") from exc
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DatasetError(
            f"download of {url} failed its SHA-256 check (got {digest.hexdigest()}, expected {sha256}); "
            f"retry later, or {_FASHION_HELP}"
        )
    os.replace(tmp, dest)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    # IDX: big-endian int32 magic (0x08 = ubyte, then the number of dims), one int32 per dim, raw bytes.
    ndim = magic & 0xFF
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); delete it and restore the official file") from exc
    header = 4 + 4 * ndim
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise DatasetError(f"{path}: not an IDX file with magic {magic:#010x}; delete it and restore the official file")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    body = np.frombuffer(data, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: holds {body.size} bytes of data, its header promises {dims}; the file is damaged")
    return body.reshape(dims)


def fashion_mnist(split: str, location: str | None = None) -> Arrays:
    """Fashion-MNIST: 60k train / 10k test 28x28 grayscale images of 10 clothing classes."""
    folder = _fashion_folder(split, location)
    image_name, label_name = _FASHION_SPLIT_FILES[split]
    images = _read_idx(_find_file(folder, image_name), magic=0x00000803)  # [N, 28, 28]
    labels = _read_idx(_find_file(folder, label_name), magic=0x00000801)  # [N]
    if len(images) != len(labels) or labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(
            f"{folder}: {image_name} ({len(images)} images) and {label_name} ({len(labels)} labels) "
            "do not match; restore the official files"
        )
    return images, labels.astype(np.int64), list(FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------------------------------------
# scikit-learn digits: 1,797 8x8 handwritten digits, shipped inside the scikit-learn wheel.


def digits(split: str, location: str | None = None) -> Arrays:
    """scikit-learn `load_digits`; test = every 5th image (index % 5 == 0), train = the rest."""
    _no_location("digits", location)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("built-in dataset 'digits' needs scikit-learn: `pip install scikit-learn`") from exc
    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    is_test = np.arange(len(images)) % 5 == 0
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep], [str(d) for d in range(10)]


# ---------------------------------------------------------------------------------------------------------
# Procedural shapes: one filled circle, square or triangle per image, colors and geometry from a fixed seed.

SHAPES_CLASSES = ["circle", "square", "triangle"]
_SHAPES_COUNT = {"train": 3000, "test": 600}
_SHAPES_SEED = {"train": 20240501, "test": 20240502}
_SHAPES_SIZE = 64  # px
_SHAPES_SUPERSAMPLE = 2  # drawn at 2x then downsampled, for antialiased edges


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def shapes(split: str, location: str | None = None) -> Arrays:
    """Procedural 64x64 RGB shapes in 3 balanced classes; 3000 train / 600 test, deterministic."""
    _no_location("shapes", location)
    rng = np.random.default_rng(_SHAPES_SEED[split])
    n = _SHAPES_COUNT[split]
    labels = rng.permutation(np.arange(n) % len(SHAPES_CLASSES)).astype(np.int64)
    big = _SHAPES_SIZE * _SHAPES_SUPERSAMPLE
    images = np.empty((n, _SHAPES_SIZE, _SHAPES_SIZE, 3), dtype=np.uint8)  # [N, H, W, C]
    for i, label in enumerate(labels):
        background = rng.integers(0, 256, 3)
        foreground = rng.integers(0, 256, 3)
        while abs(_luma(foreground) - _luma(background)) < 80:  # keep the shape visible in grayscale too
            foreground = rng.integers(0, 256, 3)
        radius = rng.uniform(0.15, 0.4) * big  # circumradius
        cx, cy = rng.uniform(radius, big - radius, 2)
        angle = rng.uniform(0, 2 * np.pi)
        canvas = Image.new("RGB", (big, big), tuple(int(v) for v in background))
        draw = ImageDraw.Draw(canvas)
        fill = tuple(int(v) for v in foreground)
        if SHAPES_CLASSES[label] == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        else:
            corners = 4 if SHAPES_CLASSES[label] == "square" else 3
            theta = angle + 2 * np.pi * np.arange(corners) / corners
            corner_xy = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)  # [K, 2]
            draw.polygon([tuple(p) for p in corner_xy.tolist()], fill=fill)
        images[i] = np.asarray(canvas.resize((_SHAPES_SIZE, _SHAPES_SIZE), Image.Resampling.BOX))
    return images, labels, list(SHAPES_CLASSES)


# ---------------------------------------------------------------------------------------------------------
# The registry: source name -> loader(split, location). `load_dataset("fashion-mnist:/dir")` passes "/dir".

BUILTINS: dict[str, Callable[[str, str | None], Arrays]] = {
    "fashion-mnist": fashion_mnist,
    "digits": digits,
    "shapes": shapes,
}
