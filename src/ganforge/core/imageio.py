"""Read and write the images users actually have: 8- and 16-bit, gray, RGB, with or without alpha.

Every inference pipeline reads its input here and writes its result here, so that a 16-bit grayscale TIFF with
an alpha channel comes back as a 16-bit grayscale TIFF with the same alpha. Pixels are [H, W, C] uint8 or uint16
with C = 1 (gray) or 3 (RGB); alpha is split off into its own [H, W] array of the same dtype, because networks
work on colour and alpha must pass through untouched.

Pillow decodes 8-bit images and 16-bit grayscale exactly, but reduces 16-bit colour (RGB, RGBA, gray+alpha) to
8 bits. Those files go through a real 16-bit codec instead: pypng (pure Python) for PNG and tifffile (pure
Python) for TIFF, chosen from the file header so that every 8-bit file takes the plain Pillow path. Both are
imported only when such a file is read or written.

Limits: only the first frame of a multi-frame file (GIF, animated WebP, multi-page TIFF) is read. A 16-bit
colour TIFF compressed with LZW or JPEG needs the optional `imagecodecs` package (tifffile uses it when
present); deflate, packbits and uncompressed files work without it. pypng decodes in pure Python at about
1-2 s per megapixel, which is only paid for 16-bit colour PNGs.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.core.files import atomic_write_bytes

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: larger inputs are refused before decoding

# Suffix -> Pillow format name. One visible table: an unknown suffix lists these.
WRITE_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_EIGHT_BIT_ONLY = {"JPEG", "WEBP"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (3 is a palette index)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little/big endian, classic/BigTIFF
_EXIF_ORIENTATION = 0x0112  # also the TIFF Orientation tag (274)


class ImageIOError(ValueError):
    """An image could not be read or written; the message names the file and says what to do."""


@dataclass
class LoadedImage:
    """A decoded image: colour pixels, the untouched alpha plane, and the bit depth to give back."""

    pixels: np.ndarray  # [H, W, C] uint8 or uint16, C = 1 (gray) or 3 (RGB); EXIF orientation applied
    alpha: np.ndarray | None  # [H, W], same dtype as pixels, or None
    bit_depth: int  # 8 or 16
    path: Path


# ---------------------------------------------------------------------------------------------------------------
# Conversions


def _max_value(bit_depth: int) -> int:
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    return (1 << bit_depth) - 1


def _depth_of(dtype: np.dtype) -> int:
    if dtype == np.uint8:
        return 8
    if dtype == np.uint16:
        return 16
    raise ValueError(f"expected uint8 or uint16 pixels, got {dtype}; convert floats with from_float(x, bit_depth)")


def to_float(pixels: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """uint8/uint16 pixels -> float32 in [0, 1], same shape. bit_depth defaults to the one the dtype implies."""
    pixels = np.asarray(pixels)
    bit_depth = _depth_of(pixels.dtype) if bit_depth is None else bit_depth
    return pixels.astype(np.float32) * np.float32(1.0 / _max_value(bit_depth))


def from_float(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float in [0, 1] -> uint8 (bit_depth 8) or uint16 (bit_depth 16), rounded to nearest and clipped."""
    peak = _max_value(bit_depth)
    y = np.clip(np.asarray(x, dtype=np.float32) * np.float32(peak), 0, peak)
    return np.rint(y, out=y).astype(np.uint8 if bit_depth == 8 else np.uint16)


def _change_depth(a: np.ndarray, bit_depth: int) -> np.ndarray:
    """Exact integer depth change: 8 -> 16 multiplies by 257 (255 -> 65535), 16 -> 8 rounds a / 257."""
    have = _depth_of(a.dtype)
    if have == bit_depth:
        return a
    if bit_depth == 16:
        return a.astype(np.uint16) * np.uint16(257)
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to [H, W, ...] the way PIL.ImageOps.exif_transpose does."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _split_alpha(a: np.ndarray, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """[H, W, C (+1)] -> contiguous, writable colour [H, W, C] and alpha [H, W] (Pillow's arrays are read-only)."""
    a = a[:, :, None] if a.ndim == 2 else a  # [H, W] -> [H, W, 1]
    colour, alpha = (a[:, :, :-1], a[:, :, -1]) if has_alpha else (a, None)
    return _owned(colour), None if alpha is None else _owned(alpha)


def _owned(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C")


def _header_depth(path: Path, im: Image.Image) -> tuple[int, int]:
    """(bits per sample, samples per pixel) from the file header, before any pixel is decoded."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)  # signature (8), IHDR length and type (8), width, height (8), depth, colour type
        if len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
            return head[24], _PNG_SAMPLES.get(head[25], 1)
    elif im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)  # BitsPerSample: an int or one value per sample
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        return bits, int(im.tag_v2.get(277, 1))  # SamplesPerPixel
    return 8, len(im.getbands())


def _from_pillow(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    transparent = "transparency" in im.info
    if mode.startswith("I;16"):
        a = np.asarray(im)
        return _split_alpha(a.astype(np.uint16, copy=False), False) + (16,)
    if mode == "I":  # 32-bit integer gray: what some encoders use for 16-bit gray
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError("32-bit integer pixels outside 0..65535")
        return _split_alpha(a.astype(np.uint16), False) + (16,)
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if transparent or mode == "PA" else "RGB")
    elif mode in ("1", "La") or (mode == "L" and transparent):
        im = im.convert("LA" if transparent or mode == "La" else "L")
    elif mode == "RGBa" or (mode == "RGB" and transparent):
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        if mode in ("F", "I;32", "I;32B"):
            raise ValueError(f"{mode} pixels (floating point or 32-bit) are not supported")
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    return _split_alpha(np.asarray(im), im.mode in ("LA", "RGBA")) + (8,)


def _png_exif_orientation(data: bytes) -> int:
    """Orientation from a PNG eXIf chunk, walking the chunk headers only (pixel data is skipped)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"eXIf":
            exif = Image.Exif()
            exif.load(data[pos + 8:pos + 8 + length])
            return int(exif.get(_EXIF_ORIENTATION, 1))
        if kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return 1


def _read_png16(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import png  # pypng: Pillow reduces 16-bit colour PNG to 8 bits

    data = path.read_bytes()
    width, height, rows, info = png.Reader(bytes=data).read()
    planes = info["planes"]
    a = np.empty((height, width * planes), np.uint16)  # [H, W * planes]
    for i, row in enumerate(rows):
        a[i] = row
    a = _orient(a.reshape(height, width, planes), _png_exif_orientation(data))
    return _split_alpha(a, info["alpha"])


def _read_tiff(path: Path, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    import tifffile  # Pillow reduces 16-bit colour TIFF to 8 bits, and cannot open 16-bit gray+alpha at all

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
        photometric = int(page.photometric)
        orientation = int(page.tags.valueof(274, 1))
        try:
            a = page.asarray()
        except (ValueError, NotImplementedError) as exc:
            hint = " Install imagecodecs (pip install imagecodecs) to decode it," if "imagecodecs" in str(exc) else ""
            raise ValueError(f"{exc}.{hint} or re-save it uncompressed or with deflate compression") from exc
        axes = page.axes
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"samples of type {a.dtype} are not supported; re-save as unsigned 8 or 16 bits")
    if axes.startswith("S"):  # planar configuration "separate": [S, H, W] -> [H, W, S]
        a = np.moveaxis(a, 0, -1)
    a = a[:, :, None] if a.ndim == 2 else a
    colour = {1: 1, 2: 3}.get(photometric)  # MINISBLACK, RGB; anything else (CMYK, Lab, palette) is refused
    if colour is None or a.ndim != 3 or a.shape[2] not in (colour, colour + 1):
        raise ValueError(f"TIFF with photometric {photometric} and shape {a.shape} is not supported; "
                         "re-save as gray or RGB, optionally with one alpha channel")
    return _split_alpha(_orient(a, orientation), a.shape[2] == colour + 1) + (_depth_of(a.dtype),)


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageIOError(f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of "
                           f"{max_pixels:,} pixels; downscale or crop it, or raise max_pixels")


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file into colour pixels, alpha and bit depth, with the EXIF orientation applied.

    Reads PNG and TIFF at 8 or 16 bits (gray, gray+alpha, RGB, RGBA), JPEG, WebP, BMP and GIF at 8 bits, palette
    images (as RGB, or RGBA when they have transparency). Raises ImageIOError for a missing, unreadable or
    corrupt file, an unknown format, or one with more than `max_pixels` pixels (checked from the header).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise ImageIOError(f"{path}: {what}; check the path")
    if path.stat().st_size == 0:
        raise ImageIOError(f"{path}: empty file (0 bytes); the copy or download was interrupted, copy it again")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below replaces Pillow's warning at about 89 megapixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageIOError(f"{path}: too large to decode safely: {exc} (ganforge's limit: max_pixels="
                           f"{max_pixels:,}); downscale or crop it") from exc
    except UnidentifiedImageError as exc:
        with open(path, "rb") as f:
            is_tiff = f.read(4) in _TIFF_MAGIC
        if not is_tiff:
            raise ImageIOError(f"{path}: not an image format ganforge can read; convert it to PNG, TIFF, JPEG or "
                               "WebP") from exc
        im = None  # a TIFF layout Pillow does not know (16-bit gray+alpha): tifffile reads it
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageIOError(f"{path}: cannot read the image header ({exc}); the file is damaged or truncated, "
                           "re-export it") from exc
    try:
        if im is None:
            pixels, alpha, depth = _read_tiff(path, max_pixels)
        else:
            with im:
                _check_pixels(path, im.width, im.height, max_pixels)
                bits, samples = _header_depth(path, im)
                if bits == 16 and samples > 1 and im.format == "PNG":
                    (pixels, alpha), depth = _read_png16(path), 16
                elif bits == 16 and samples > 1 and im.format == "TIFF":
                    pixels, alpha, depth = _read_tiff(path, max_pixels)
                else:
                    pixels, alpha, depth = _from_pillow(im)
    except ImageIOError:
        raise
    except Exception as exc:  # every codec has its own error types; the caller needs one, naming the file
        raise ImageIOError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc}); the file is "
                           "damaged, truncated or of an unsupported kind, re-export it as PNG or TIFF") from exc
    return LoadedImage(pixels=pixels, alpha=alpha, bit_depth=depth, path=path)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _write_png16(buf: io.BytesIO, a: np.ndarray, has_alpha: bool) -> None:
    import png  # pypng: Pillow cannot write 16-bit colour PNG

    height, width, planes = a.shape
    writer = png.Writer(width, height, greyscale=planes - has_alpha == 1, alpha=has_alpha, bitdepth=16)
    writer.write(buf, a.reshape(height, width * planes))  # rows of [W * planes] samples


def _write_tiff16(buf: io.BytesIO, a: np.ndarray, has_alpha: bool) -> None:
    import tifffile  # Pillow cannot write 16-bit colour TIFF

    photometric = "minisblack" if a.shape[2] - has_alpha == 1 else "rgb"
    extrasamples = ["unassalpha"] if has_alpha else None  # straight (not premultiplied) alpha, as in PNG
    tifffile.imwrite(buf, a, photometric=photometric, planarconfig="contig", extrasamples=extrasamples,
                     compression="zlib")  # deflate: lossless and needs no imagecodecs


def write_image(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int | None = None,
                quality: int = 95) -> Path:
    """Write pixels (and alpha) atomically; the format follows the suffix: .png, .tif/.tiff, .jpg/.jpeg, .webp.

    `pixels` is [H, W, C] (C = 1 or 3; C = 2 or 4 is read as colour plus alpha when `alpha` is None) or [H, W],
    uint8 or uint16, or float in [0, 1] when `bit_depth` is given. `alpha` is [H, W]. `bit_depth` (8 or 16)
    defaults to the dtype's. PNG and TIFF keep 16 bits; JPEG and WebP are 8-bit only, so 16-bit input is rounded
    to 8 bits, and JPEG has no alpha, so alpha is dropped without error. WebP stores gray as RGB and omits an
    alpha plane that is fully opaque. `quality` (1-100) applies to JPEG and WebP.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}; use one of {', '.join(WRITE_FORMATS)}")
    pixels = np.asarray(pixels)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels  # [H, W] -> [H, W, 1]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{path}: pixels must be [H, W, C] with C in 1..4, got shape {pixels.shape}")
    if alpha is None and pixels.shape[2] in (2, 4):
        pixels, alpha = pixels[:, :, :-1], pixels[:, :, -1]
    if pixels.shape[2] not in (1, 3):
        raise ValueError(f"{path}: pixels have {pixels.shape[2]} channels and a separate alpha; expected 1 or 3")
    if alpha is not None:
        alpha = np.asarray(alpha)
        alpha = alpha[:, :, 0] if alpha.ndim == 3 and alpha.shape[2] == 1 else alpha
        if alpha.shape != pixels.shape[:2]:
            raise ValueError(f"{path}: alpha must be [H, W] = {pixels.shape[:2]}, got {alpha.shape}")

    def as_int(a: np.ndarray) -> np.ndarray:
        if a.dtype.kind == "f":
            if bit_depth is None:
                raise ValueError(f"{path}: float pixels need bit_depth=8 or 16 (or convert with from_float)")
            return from_float(a, bit_depth)
        return a if bit_depth is None else _change_depth(a, bit_depth)

    pixels = as_int(pixels)
    alpha = None if alpha is None else _change_depth(as_int(alpha), _depth_of(pixels.dtype))
    if fmt in _EIGHT_BIT_ONLY:
        pixels = _change_depth(pixels, 8)
        alpha = None if alpha is None or fmt == "JPEG" else _change_depth(alpha, 8)
    a = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)  # [H, W, C (+1)]
    has_alpha = alpha is not None

    buf = io.BytesIO()
    if a.dtype == np.uint16 and a.shape[2] > 1:  # 16-bit colour or gray+alpha: Pillow would drop to 8 bits
        (_write_png16 if fmt == "PNG" else _write_tiff16)(buf, a, has_alpha)
    else:
        im = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.shape[2] == 1 else a))  # L, I;16, LA, RGB, RGBA
        options = {"quality": quality} if fmt in _EIGHT_BIT_ONLY else {}
        if fmt == "TIFF":
            options["compression"] = "tiff_adobe_deflate"
        im.save(buf, format=fmt, **options)
    atomic_write_bytes(path, buf.getvalue())
    return path
