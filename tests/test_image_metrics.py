"""PSNR / SSIM / MS-SSIM against scikit-image, torchmetrics and hard-coded golden values on a real photo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganforge.metrics.image import MS_SSIM_WEIGHTS, ms_ssim, psnr, rgb_to_y, ssim

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def _noisy_pair(shape, seed=0, noise=30):
    rng = np.random.default_rng(seed)
    # Smooth-ish content (low-res noise upsampled) so SSIM is not trivially near 0.
    a = np.array(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(shape[1::-1], Image.BICUBIC))
    a = a if len(shape) == 3 else a[..., 0]
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
    return a, b


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def astronaut():
    # The usual SR degradation: bicubic x4 down then up (PIL), on skimage's 512x512 RGB astronaut (ships in the wheel).
    hr = data.astronaut()
    sr = Image.fromarray(hr).resize((128, 128), Image.BICUBIC).resize((512, 512), Image.BICUBIC)
    return hr, np.asarray(sr)


@pytest.mark.parametrize("shape", [(48, 40, 3), (37, 52)])
def test_psnr_ssim_match_skimage(shape):
    a, b = _noisy_pair(shape)
    kw = dict(channel_axis=-1) if len(shape) == 3 else {}
    assert psnr(a, b).item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)
    # skimage filters with reflect padding and then averages over the image minus (11-1)//2 = 5 px per side,
    # i.e. exactly the 'valid' positions, so both are float64 means of the same map: agreement is ~1e-15.
    assert ssim(a, b).item() == pytest.approx(structural_similarity(a, b, **SK_SSIM, **kw), abs=1e-12)


def test_batched_nchw_matches_single_images():
    pairs = [_noisy_pair((32, 30, 3), seed=s) for s in range(3)]
    a = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)  # [N, C, H, W]
    b = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
    for f in (psnr, ssim):
        batched = f(a, b, crop_border=2)
        assert batched.shape == (3,) and batched.dtype == torch.float64
        single = torch.cat([f(x, y, crop_border=2) for x, y in pairs])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_rgb_to_y_bt601():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)  # [1, 5, 3]
    y = rgb_to_y(px)
    assert y.shape == (1, 1, 1, 5)
    expect = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]
    torch.testing.assert_close(y.flatten(), torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-12)
    # Same as tensors in [0, 1], and the same as skimage's rgb2ycbcr (MATLAB's matrix) on a random image.
    torch.testing.assert_close(rgb_to_y(torch.from_numpy(px).permute(2, 0, 1)[None] / 255.0), y, rtol=0, atol=1e-12)
    img = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(img)[0, 0].numpy(), color.rgb2ycbcr(img)[..., 0], rtol=0, atol=1e-10)
    gray = img[..., 0]
    np.testing.assert_array_equal(rgb_to_y(gray)[0, 0].numpy(), gray)


def test_astronaut_bicubic_x4_golden(astronaut):
    hr, sr = astronaut
    # Golden values computed once with this module (float64), confirmed by skimage below.
    s = ssim(hr, sr).item()
    assert psnr(hr, sr).item() == pytest.approx(25.378416172, abs=1e-6)
    assert s == pytest.approx(0.816385030, abs=1e-6)
    assert s == pytest.approx(structural_similarity(hr, sr, **SK_SSIM, channel_axis=-1), abs=1e-12)


def test_astronaut_y_channel_crop4_golden(astronaut):
    hr, sr = astronaut
    # The SR-benchmark protocol: Y channel, crop_border = scale = 4.
    p, s = psnr(hr, sr, crop_border=4, y_channel=True).item(), ssim(hr, sr, crop_border=4, y_channel=True).item()
    assert p == pytest.approx(26.838150655, abs=1e-6)
    assert s == pytest.approx(0.842713042, abs=1e-6)
    # Independent path: numpy BT.601 Y, numpy crop, skimage metrics.
    def y_np(im):
        return (16 + (65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2]) / 255.0)[4:-4, 4:-4]

    yh, ys = y_np(hr.astype(np.float64)), y_np(sr.astype(np.float64))
    assert p == pytest.approx(peak_signal_noise_ratio(yh, ys, data_range=255), abs=1e-10)
    assert s == pytest.approx(structural_similarity(yh, ys, **SK_SSIM), abs=1e-12)


def test_ms_ssim_vs_torchmetrics(astronaut):
    tm = pytest.importorskip("torchmetrics.functional.image")
    hr, sr = astronaut
    crops = (slice(100, 292), slice(150, 342)), (slice(300, 492), slice(0, 192))  # two 192x192 crops
    a = torch.from_numpy(np.stack([hr[c] for c in crops])).permute(0, 3, 1, 2) / 255.0  # [2, 3, 192, 192]
    b = torch.from_numpy(np.stack([sr[c] for c in crops])).permute(0, 3, 1, 2) / 255.0
    ours = ms_ssim(a, b)
    torch.testing.assert_close(ours, torch.tensor([0.955371284, 0.946942435], dtype=torch.float64), rtol=0, atol=1e-8)
    # torchmetrics' float64 MS-SSIM is slow (~0.5 s per 192x192 RGB image on one core): compare on the first crop.
    ours, a255, b255 = ours[:1], a[:1].double() * 255, b[:1].double() * 255
    theirs = tm.multiscale_structural_similarity_index_measure(
        b255, a255, data_range=255.0, kernel_size=11, sigma=1.5, normalize="relu", reduction="none")
    # torchmetrics 1.9 reflect-pads, then crops only the cs maps to 'valid' positions; the last scale's full SSIM
    # is averaged over the whole padded-size map (border included). That, and only that, moves the result by ~1e-5:
    assert (ours - theirs).abs().max().item() < 3e-5
    # Swap our last-scale term for theirs (their single-scale SSIM uses the same padded-size mean) and the two agree.
    # The 1e-9 tolerance is torchmetrics' exponents, a float32 tensor (0.1333 -> 0.13330000638...).
    a5, b5 = a255, b255
    for _ in range(len(MS_SSIM_WEIGHTS) - 1):
        a5, b5 = F.avg_pool2d(a5, 2), F.avg_pool2d(b5, 2)  # [1, 3, 12, 12]
    tm_last = tm.structural_similarity_index_measure(b5, a5, data_range=255.0, kernel_size=11, sigma=1.5,
                                                     reduction="none")
    rebuilt = ours / ssim(a5 / 255, b5 / 255) ** MS_SSIM_WEIGHTS[-1] * tm_last ** MS_SSIM_WEIGHTS[-1]
    torch.testing.assert_close(rebuilt, theirs, rtol=0, atol=1e-9)


def test_identical_images():
    a, _ = _noisy_pair((180, 177, 3))
    assert torch.equal(ssim(a, a), torch.ones(1, dtype=torch.float64))
    assert torch.equal(ms_ssim(a, a), torch.ones(1, dtype=torch.float64))
    assert math.isinf(psnr(a, a).item()) and psnr(a, a).item() > 0


def test_ms_ssim_clamps_negative_contrast_structure():
    a, _ = _noisy_pair((176, 176))
    # The photographic negative has negative correlation at every scale; relu -> 0 instead of NaN from cs ** 0.0448.
    assert ms_ssim(a, 255 - a).item() == 0.0


def test_tensor_and_uint8_inputs_agree():
    a, b = _noisy_pair((40, 36, 3), seed=3)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255 for x in (a, b))  # [1, 3, H, W] in [0, 1]
    cases = ((psnr, {}), (ssim, {}), (psnr, dict(crop_border=3, y_channel=True)), (ssim, dict(y_channel=True)))
    for f, kw in cases:
        torch.testing.assert_close(f(ta, tb, **kw), f(a, b, **kw), rtol=0, atol=1e-10)
        # float32 storage rounds k/255 by ~3e-8 relative, ~1e-5 grey levels: ~1e-7 dB of PSNR.
        torch.testing.assert_close(f(ta.float(), tb.float(), **kw), f(a, b, **kw), rtol=0, atol=1e-6)
    torch.testing.assert_close(ssim(ta, b), ssim(a, b), rtol=0, atol=1e-10)  # mixing kinds is fine
    u8 = torch.from_numpy(a).permute(2, 0, 1)[None]  # a uint8 tensor is taken on 0..255, like uint8 numpy
    assert torch.equal(psnr(u8, b), psnr(a, b))


def test_errors():
    a, b = _noisy_pair((20, 20, 3))
    with pytest.raises(ValueError, match=r"shapes differ: \(20, 20, 3\) vs \(20, 19, 3\)"):
        psnr(a, b[:, :19])
    with pytest.raises(ValueError, match=r"1 or 3 channels.*\(20, 20, 2\)"):
        ssim(a[..., :2], b[..., :2])
    with pytest.raises(ValueError, match=r"at least 11x11 px.*10x10 after crop_border=5"):
        ssim(a, b, crop_border=5)
    with pytest.raises(ValueError, match=r"must be uint8"):
        psnr(a.astype(np.float32), b.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    big = np.zeros((200, 175), np.uint8)
    with pytest.raises(ValueError, match=r"MS-SSIM.*at least 176x176 px; got \(200, 175\)"):
        ms_ssim(big, big)
    z = np.zeros((176, 176), np.uint8)
    assert ms_ssim(z, z).item() == 1.0  # 176 is enough: 176 // 16 = 11 px at the coarsest scale
    with pytest.raises(ValueError, match=r"170x170 after crop_border=3"):
        ms_ssim(z, z, crop_border=3)
