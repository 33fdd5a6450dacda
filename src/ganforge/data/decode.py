"""Image decoding, shared by data intake and inference: open a file with its pixel count checked before any
pixel is decoded, name the reason a file cannot be used, bring any PIL mode to L/LA/RGB/RGBA, convert to 1, 3
or 4 channels, fit to a square, and turn the result into a uint8 array.

A typical read, as intake and `infer` do it::

    image = read_image(path, channels=3)                # pixel-limited, EXIF-oriented, RGB
    square = fit(image, 256, "crop")                    # Lanczos, centre square
    pixels = to_array(square)                           # uint8 [3, 256, 256]

Nothing here sets `PIL.ImageFile.LOAD_TRUNCATED_IMAGES`, so truncated files raise instead of decoding as gray.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ganforge.data.builtin import DatasetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GRAY_MODES",
    "RESIZE_MODES",
    "BadImage",
    "ResizeMode",
    "check_pil_settings",
    "fit",
    "open_image",
    "oriented_size",
    "pixel_limit",
    "read_image",
    "skip_reason",
    "standard_mode",
    "to_array",
    "to_channels",
]

DEFAULT_MAX_PIXELS = 40_000_000  # per image, checked from the header before decoding
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
RESIZE_MODES = ("crop", "pad", "stretch")
ResizeMode = Literal["crop", "pad", "stretch"]
_ORIENTATION_TAG = 0x0112  # EXIF; values 5..8 rotate by 90 degrees, so width and height swap


class BadImage(Exception):
    """A file that cannot be used as an image; `str()` is the short reason shown to the user."""


def check_pil_settings() -> None:
    """Raise `DatasetError` when other code has set `PIL.ImageFile.LOAD_TRUNCATED_IMAGES`.

    With it, PIL pads truncated files with gray instead of failing, so bad files would enter a dataset
    silently. ganforge never sets it and refuses to load data while it is set.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DatasetError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code); truncated images would load "
            "silently. Set it back to False before loading a dataset"
        )


def pixel_limit(max_pixels: int) -> int:
    """The effective per-image pixel limit: `max_pixels`, or PIL's own decompression-bomb limit when lower
    (PIL's guard still applies when a caller raises ours above it)."""
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def open_image(fp: str | Path | IO[bytes], max_pixels: int = DEFAULT_MAX_PIXELS, *, load: bool = True) -> Image.Image:
    """Open an image file (a path or a binary file object) and check width x height against `max_pixels`
    from the header, before any pixel is decoded. With `load`, decode the pixels too, so the image stays
    usable after `fp` is closed and truncated data raises here.

    Raises `BadImage` for oversized images, and PIL's own exceptions for unreadable data (`skip_reason`
    turns any of them into a message).
    """
    image = Image.open(fp)
    width, height = image.size
    if width * height > max_pixels:
        size, limit = width * height / 1e6, max_pixels / 1e6
        raise BadImage(f"too large ({width}x{height} = {size:.1f} MP, limit {limit:.1f} MP)")
    if load:
        image.load()
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of `image` once its EXIF orientation is applied (as `ImageOps.exif_transpose` does).

    Cheap on a header-only image, except for PNGs whose EXIF chunk comes after the pixel data: those report
    their stored size until they are loaded.
    """
    width, height = image.size
    if image.format == "PNG" and "exif" not in image.info:
        return width, height  # PIL's PNG getexif() would decode the whole image to look for a late chunk
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block: exif_transpose ignores it too
        return width, height
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def skip_reason(exc: Exception) -> str:
    """A short human reason for an exception raised while opening or decoding an image file."""
    if isinstance(exc, BadImage):
        return str(exc)
    if isinstance(exc, Image.DecompressionBombError):  # "Image size (N pixels) exceeds limit of M pixels, ..."
        return f"too large ({str(exc).split(', could')[0]}: PIL's decompression bomb guard)"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (unknown format or corrupt header)"
    if isinstance(exc, FileNotFoundError):
        return "cannot open (missing file or dangling link)"
    if isinstance(exc, (zipfile.BadZipFile, zlib.error)):
        return f"damaged archive member ({str(exc)[:80]}); re-create the archive"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot open ({exc.strerror or type(exc).__name__})"
    if "truncated" in str(exc):
        return "truncated"
    return f"cannot decode ({type(exc).__name__}: {str(exc)[:80]})"


def standard_mode(image: Image.Image) -> Image.Image:
    """Any PIL mode -> L, LA, RGB or RGBA: palette transparency becomes alpha, 1-bit becomes L, 16-bit and
    float gray scale to 0..255, CMYK/YCbCr/LAB/HSV become RGB."""
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


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """An L, LA, RGB or RGBA image (see `standard_mode`) -> L (1), RGB (3) or RGBA (4).

    When alpha is dropped, transparent pixels become black (composited over black, like the padding of
    `fit`). Color to gray uses PIL's ITU-R 601-2 luma.
    """
    if image.mode in ("LA", "RGBA") and channels != 4:
        flat = Image.new(image.mode[:-1], image.size, 0)
        flat.paste(image.convert(image.mode[:-1]), mask=image.getchannel("A"))
        image = flat
    target = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return image if image.mode == target else image.convert(target)


def fit(image: Image.Image, resolution: int, resize: ResizeMode) -> Image.Image:
    """Resize to `resolution` x `resolution` with Lanczos.

    "crop" scales the short side to `resolution` and keeps the centre square; "pad" scales the long side and
    centres the image on black (alpha 0 for RGBA); "stretch" ignores the aspect ratio.
    """
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


def to_array(image: Image.Image, *, channels_last: bool = False) -> np.ndarray:
    """An L, RGB or RGBA image -> uint8 `[C, H, W]` (or `[H, W, C]` with `channels_last`), C-contiguous."""
    pixels = np.asarray(image)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels  # [H, W, C]
    return np.ascontiguousarray(pixels if channels_last else pixels.transpose(2, 0, 1))


def read_image(
    source: str | Path | IO[bytes], channels: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open, check and decode one image file: pixel-limited (`open_image`), EXIF orientation applied, mode
    standardised, and converted to `channels` (1, 3 or 4; None keeps L, LA, RGB or RGBA as found).

    Raises `BadImage` or PIL's exceptions, as `open_image`; `skip_reason` describes any of them.
    """
    image = open_image(source, pixel_limit(max_pixels), load=True)
    image = ImageOps.exif_transpose(image)
    image = standard_mode(image)
    return image if channels is None else to_channels(image, channels)
