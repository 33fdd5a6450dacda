"""Image I/O: exact round trips at 8 and 16 bits, alpha pass-through, EXIF orientation, clear errors."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ganforge.core.imageio import ImageIOError, from_float, read_image, to_float, write_image


def _random(shape, bit_depth, seed=0):
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_round_trip_is_exact(tmp_path, suffix, bit_depth, channels, with_alpha):
    pixels = _random((13, 17, channels), bit_depth)  # odd sizes catch stride and row-padding bugs
    alpha = _random((13, 17), bit_depth, seed=1) if with_alpha else None
    path = write_image(tmp_path / f"img{suffix}", pixels, alpha)
    got = read_image(path)
    assert got.bit_depth == bit_depth and got.path == path
    assert got.pixels.dtype == pixels.dtype and got.pixels.shape == (13, 17, channels)
    assert got.pixels.flags.writeable  # callers may edit in place
    np.testing.assert_array_equal(got.pixels, pixels)
    if with_alpha:
        assert got.alpha is not None and got.alpha.dtype == pixels.dtype
        np.testing.assert_array_equal(got.alpha, alpha)
    else:
        assert got.alpha is None


def test_16_bit_colour_png_is_really_16_bit(tmp_path):
    # Pillow alone would read this file as 8-bit RGB: values that are not multiples of 257 prove the codec path.
    pixels = np.full((4, 5, 3), 1000, np.uint16)
    write_image(tmp_path / "a.png", pixels)
    assert Image.open(tmp_path / "a.png").mode == "RGB"  # what Pillow would have given
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").pixels, pixels)


def test_combined_alpha_channel_and_gray_2d(tmp_path):
    rgba = _random((6, 7, 4), 8)
    got = read_image(write_image(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(got.pixels, rgba[:, :, :3])
    np.testing.assert_array_equal(got.alpha, rgba[:, :, 3])
    gray = _random((6, 7), 16)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "g.tif", gray)).pixels[:, :, 0], gray)


def test_float_input_and_depth_change(tmp_path):
    x = np.linspace(0, 1, 6 * 7 * 3, dtype=np.float32).reshape(6, 7, 3)
    got = read_image(write_image(tmp_path / "f.png", x, bit_depth=16))
    np.testing.assert_array_equal(got.pixels, from_float(x, 16))
    got8 = read_image(write_image(tmp_path / "d.png", got.pixels, bit_depth=8))
    assert got8.bit_depth == 8
    np.testing.assert_array_equal(got8.pixels, from_float(x, 8))
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "x.png", x)


def test_palette_images_become_rgb_or_rgba(tmp_path):
    idx = np.arange(12, dtype=np.uint8).reshape(3, 4) % 4
    im = Image.fromarray(idx, "L").convert("P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    im.save(tmp_path / "p.png")
    got = read_image(tmp_path / "p.png")
    assert got.pixels.shape == (3, 4, 3) and got.alpha is None
    np.testing.assert_array_equal(got.pixels[0, 1], [0, 255, 0])
    im.save(tmp_path / "pt.png", transparency=1)
    got = read_image(tmp_path / "pt.png")
    assert got.alpha is not None and got.alpha[0, 1] == 0 and got.alpha[0, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)  # [H, W, C]: landscape as stored
    pixels[:, :5] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    got = read_image(tmp_path / "o.jpg")
    assert got.pixels.shape == (20, 10, 3)  # portrait after the rotation
    assert got.pixels[:5].mean() > 200 and got.pixels[-5:].mean() < 50  # the left band is now at the top


def test_exif_orientation_in_16_bit_png(tmp_path):
    pixels = _random((6, 9, 3), 16)
    write_image(tmp_path / "a.png", pixels)
    data = (tmp_path / "a.png").read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    chunk = _png_chunk(b"eXIf", exif.tobytes()[6:])  # PNG stores the TIFF structure without the "Exif\0\0" prefix
    ihdr_end = 8 + 25
    (tmp_path / "b.png").write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    np.testing.assert_array_equal(read_image(tmp_path / "b.png").pixels, np.rot90(pixels, -1))


def test_lossy_writes_are_8_bit(tmp_path):
    rgb16 = np.full((8, 8, 3), 40000, np.uint16)
    alpha16 = np.full((8, 8), 65535, np.uint16)
    alpha16[:4] = 0  # not fully opaque: libwebp drops an all-opaque alpha plane
    jpg = read_image(write_image(tmp_path / "a.jpg", rgb16, alpha16))
    assert jpg.bit_depth == 8 and jpg.alpha is None  # JPEG has no alpha: dropped, no error
    assert np.abs(jpg.pixels.astype(int) - round(40000 / 257)).max() <= 2
    webp = read_image(write_image(tmp_path / "a.webp", rgb16, alpha16, quality=90))
    assert webp.bit_depth == 8 and webp.alpha is not None and webp.alpha.max() == 255 and webp.alpha.min() == 0
    assert np.abs(webp.pixels.astype(int) - round(40000 / 257)).max() <= 2


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"'\.xyz'.*\.png"):
        write_image(tmp_path / "a.xyz", np.zeros((2, 2, 3), np.uint8))


def test_missing_unknown_and_corrupt_files(tmp_path):
    with pytest.raises(ImageIOError, match="nope.png.*does not exist"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "noise.png").write_bytes(b"this is not an image at all")
    with pytest.raises(ImageIOError, match="noise.png.*not an image format"):
        read_image(tmp_path / "noise.png")
    for bit_depth in (8, 16):  # 16-bit colour goes through pypng: its errors must be wrapped too
        good = (write_image(tmp_path / "good.png", _random((64, 64, 3), bit_depth))).read_bytes()
        (tmp_path / "cut.png").write_bytes(good[:len(good) // 2])
        with pytest.raises(ImageIOError, match="cut.png.*re-export"):
            read_image(tmp_path / "cut.png")


def test_pixel_limit_is_checked_from_the_header(tmp_path):
    # A header that promises 25 MP with no pixel data: the limit must fire before any decoding is tried.
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0))
    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageIOError, match=r"big.png.*1,000,000 pixels"):
        read_image(tmp_path / "big.png", max_pixels=1_000_000)
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))  # over Pillow's own limit
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageIOError, match="huge.png.*too large"):
        read_image(tmp_path / "huge.png")


def test_float_conversions_round_trip_every_value():
    for bit_depth, dtype in ((8, np.uint8), (16, np.uint16)):
        values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
        x = to_float(values, bit_depth)
        assert x.dtype == np.float32 and x.min() == 0 and x.max() == 1
        np.testing.assert_array_equal(from_float(x, bit_depth), values)
    np.testing.assert_array_equal(from_float(np.array([-0.5, 0.5, 2.0]), 8), [0, 128, 255])


def test_orientation_tag_in_16_bit_tiff(tmp_path):
    import tifffile

    pixels = _random((6, 9, 3), 16)
    tifffile.imwrite(tmp_path / "o.tif", pixels, photometric="rgb", extratags=[(274, "H", 1, 8, False)])
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif").pixels, np.rot90(pixels, 1))  # 8: rotate 90 CCW


@pytest.mark.parametrize("mode,suffix,shape", [("RGB", ".bmp", (5, 7, 3)), ("L", ".bmp", (5, 7, 1)),
                                               ("P", ".gif", (5, 7, 3)), ("CMYK", ".jpg", (5, 7, 3)),
                                               ("1", ".png", (5, 7, 1)), ("LA", ".png", (5, 7, 1))])
def test_other_pillow_modes_read_as_8_bit(tmp_path, mode, suffix, shape):
    Image.new(mode, (7, 5)).save(tmp_path / f"a{suffix}")
    got = read_image(tmp_path / f"a{suffix}")
    assert got.bit_depth == 8 and got.pixels.dtype == np.uint8 and got.pixels.shape == shape
    assert (got.alpha is not None) == (mode == "LA")
