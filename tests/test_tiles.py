"""Tiled inference: equal to whole-image inference (pointwise, upsampling and conv nets), memory bounded by tiles."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ganforge.infer.tiles import run_tiled


def _whole(fn, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fn(torch.from_numpy(image)[None])[0].numpy()  # [C', H', W']


def _pointwise(t):
    return t * 0.5 + 0.13  # 0.13, not 0.1: integer outputs never land on a rounding tie (x.5)


def _up2_pointwise(t):
    return _pointwise(F.interpolate(t, scale_factor=2, mode="nearest"))


def _image(c, h, w, seed=0):
    return np.random.default_rng(seed).random((c, h, w), dtype=np.float32)  # [C, H, W]


@pytest.mark.parametrize("fn,scale", [(lambda t: t, 1), (_pointwise, 1), (_up2_pointwise, 2)])
@pytest.mark.parametrize("size", [(70, 93), (33, 200), (20, 25)])  # not multiples of the tile; one smaller
def test_pointwise_tiling_equals_whole(fn, scale, size):
    image = _image(3, *size)
    got = run_tiled(fn, image, tile=32, overlap=8, scale=scale, batch=3)
    assert got.shape == (3, size[0] * scale, size[1] * scale) and got.dtype == np.float32
    np.testing.assert_allclose(got, _whole(fn, image), atol=1e-6, rtol=0)


def test_small_image_is_padded_to_a_multiple_and_cropped_back():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape))
        return _pointwise(t)

    image = torch.from_numpy(_image(1, 13, 21))  # a CPU tensor works too
    got = run_tiled(fn, image, tile=64, overlap=16, multiple=8)
    assert seen == [(1, 1, 16, 24)]  # processed whole, reflection-padded to multiples of 8
    np.testing.assert_allclose(got, _pointwise(image).numpy(), atol=1e-6, rtol=0)


def test_integer_input_and_output():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # [H, W, C] as read from a file
    out = np.zeros((100, 140, 3), np.uint16)  # [H*2, W*2, C]: 16-bit result from 8-bit input
    run_tiled(_up2_pointwise, hwc.transpose(2, 0, 1), tile=32, overlap=8, scale=2, out=out.transpose(2, 0, 1))
    ref = _whole(_up2_pointwise, (hwc.transpose(2, 0, 1) / 255).astype(np.float32))
    np.testing.assert_array_equal(out, np.rint(np.clip(ref, 0, 1) * 65535).astype(np.uint16).transpose(1, 2, 0))


def _conv_net(scale: int) -> nn.Module:
    torch.manual_seed(0)
    # Receptive-field radius: 3 input pixels (three 3x3 convs; with scale 2 the last conv adds half a pixel).
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8 * scale * scale, 3, padding=1)]
    layers += [nn.PixelShuffle(scale)] if scale > 1 else []
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(8, 3, 3, padding=1)]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("scale", [1, 2])
def test_conv_net_tiling_equals_whole(scale):
    net = _conv_net(scale)
    image = _image(3, 75, 101)
    ref = _whole(net, image)
    got = run_tiled(net, image, tile=32, overlap=16, margin=4, scale=scale, batch=2)  # margin >= radius 3
    assert np.abs(got - ref).max() < 1e-5
    # The margin is what makes this exact: without it the zero-padded tile borders leak into the blend.
    leaky = run_tiled(net, image, tile=32, overlap=16, margin=0, scale=scale)
    assert np.abs(leaky - ref).max() > 1e-4


def test_bad_arguments_name_the_problem():
    image = _image(3, 40, 40)
    with pytest.raises(ValueError, match="overlap < tile"):
        run_tiled(_pointwise, image, tile=16, overlap=16)
    with pytest.raises(ValueError, match="margin"):
        run_tiled(_pointwise, image, tile=32, overlap=8, margin=5)
    with pytest.raises(ValueError, match="expected"):
        run_tiled(_pointwise, image, tile=32, overlap=8, scale=2)  # fn does not upsample
    with pytest.raises(ValueError, match="out must have shape"):
        run_tiled(_pointwise, image, tile=32, overlap=8, out=np.zeros((3, 40, 41), np.uint8))


def _traced_peak(hwc: np.ndarray, out: np.ndarray) -> int:
    """Peak bytes numpy allocated inside run_tiled (input and output are allocated outside)."""
    tracemalloc.start()
    try:
        run_tiled(_pointwise, hwc.transpose(2, 0, 1), tile=512, overlap=32, out=out.transpose(2, 0, 1))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_is_bounded_by_the_tile_strip_not_the_image():
    peaks = {}
    for side in (1000, 4000):  # 1 MP and 16 MP
        hwc = np.empty((side, side, 3), np.uint8)  # [H, W, C]
        hwc[:] = (np.arange(side, dtype=np.uint8) * 7)[:, None, None]  # cheap, varied rows
        out = np.empty_like(hwc)
        peaks[side] = _traced_peak(hwc, out)
        expected = np.rint(np.clip(hwc[::97, ::89] / 255 * 0.5 + 0.13, 0, 1) * 255)
        np.testing.assert_array_equal(out[::97, ::89], expected)
        del hwc, out
    print(f"traced peak: 1 MP {peaks[1000] / 1e6:.1f} MB, 16 MP {peaks[4000] / 1e6:.1f} MB")
    assert peaks[4000] < 3 * peaks[1000]
    assert peaks[4000] < 192e6 / 4  # a float32 copy of the 16 MP image would be 192 MB
