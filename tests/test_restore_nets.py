"""The restoration and SR-discriminator networks of issue 13: RRDBNet (ESRGAN), the non-blind DnCNN (noise map),
the U-Net denoising autoencoder, the VGG-style D and the U-Net D with spectral norm. Shapes, seeded golden
slices, receptive-field claims, and a short restore-task run for rrdb and unet that loads and applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.config import resolve_config
from ganforge.nets import NETS, build_net
from ganforge.training.loop import train

skdata = pytest.importorskip("skimage.data")


# ---- Shapes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rrdb_shapes(scale):
    net = build_net("rrdb", channels=3, width=8, blocks=1, growth=4, scale=scale)
    assert net.config == {"channels": 3, "width": 8, "blocks": 1, "growth": 4, "scale": scale}
    assert net(torch.zeros(2, 3, 10, 13)).shape == (2, 3, 10 * scale, 13 * scale)
    assert type(build_net("rrdb", **net.config)) is type(net)
    with pytest.raises(AssertionError, match=r"expected \[N, 3, h, w\]"):
        net(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="scale must be one of 2, 3, 4"):
        build_net("rrdb", scale=5)


@pytest.mark.parametrize("size", [(37, 53), (8, 8), (5, 3), (64, 48)])
def test_unet_keeps_any_size(size):
    net = build_net("unet", channels=3, width=4, levels=2)
    assert net.config == {"channels": 3, "width": 4, "levels": 2}
    assert net(torch.zeros(2, 3, *size)).shape == (2, 3, *size)
    assert build_net("unet", channels=1, width=4, levels=3)(torch.zeros(1, 1, *size)).shape == (1, 1, *size)


def test_unet_starts_near_identity():
    torch.manual_seed(0)
    net = build_net("unet", channels=3, width=8, levels=2)
    y = torch.rand(1, 3, 20, 20) * 2 - 1
    with torch.no_grad():
        assert (net(y) - y).abs().max() < 0.1


@pytest.mark.parametrize("size", [32, 48])
def test_vgg_d_scores_any_size_from_32(size):
    d = build_net("vgg.D", channels=3, width=4)
    assert d(torch.zeros(2, 3, size, size)).shape == (2,)
    assert build_net("vgg.D", channels=1, width=4, batch_norm=False)(torch.zeros(3, 1, size, 40)).shape == (3,)
    with pytest.raises(AssertionError, match="H, W >= 32"):
        d(torch.zeros(2, 3, 16, 16))


def test_unet_d_scores_every_pixel_with_spectral_norm():
    d = build_net("unet.D", channels=3, width=4)
    assert d(torch.zeros(2, 3, 32, 40)).shape == (2, 1, 32, 40)
    with pytest.raises(AssertionError, match="multiples of 8"):
        d(torch.zeros(1, 3, 30, 32))
    from torch.nn.utils import parametrize
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    sn = [m for m in convs if parametrize.is_parametrized(m, "weight")]
    assert len(convs) == 10 and len(sn) == 8  # Real-ESRGAN: all but the first and the last conv
    assert all(type(p).__name__ == "_SpectralNorm" for m in sn for p in m.parametrizations.weight)
    # The spectrally normalized weight has largest singular value ~1 once power iteration has converged.
    w = d.down[0]
    d.train()
    for _ in range(30):
        d(torch.zeros(1, 3, 8, 8))
    assert torch.linalg.matrix_norm(w.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_registry_names():
    assert {"rrdb", "unet", "vgg.D", "unet.D"} <= set(NETS)


# ---- Golden slices (torch.manual_seed(0), tiny widths) ---------------------------------------------------


def _golden(name: str, x: torch.Tensor, **kwargs) -> torch.Tensor:
    torch.manual_seed(0)
    net = build_net(name, **kwargs).eval()
    with torch.no_grad():
        return net(x)


def test_golden_slices():
    x = torch.linspace(-1, 1, 3 * 6 * 5).reshape(1, 3, 6, 5)
    y = _golden("rrdb", x, channels=3, width=8, blocks=1, growth=4, scale=4)                  # [1, 3, 24, 20]
    torch.testing.assert_close(y[0, 1, 12, 8:12], torch.tensor([-0.0330034, -0.0332034, -0.0335855, -0.0328779]),
                               atol=1e-5, rtol=0)
    x = torch.linspace(-1, 1, 3 * 9 * 7).reshape(1, 3, 9, 7)
    y = _golden("unet", x, channels=3, width=4, levels=2)                                       # [1, 3, 9, 7]
    torch.testing.assert_close((y - x)[0, 1, 4, 2:6], torch.tensor([-0.0419986, -0.0420406, -0.0420408, -0.0420049]),
                               atol=1e-5, rtol=0)
    x = torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    torch.testing.assert_close(_golden("vgg.D", x, channels=3, width=4), torch.tensor([-0.0350318, -0.0350340]),
                               atol=1e-5, rtol=0)
    x = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)
    y = _golden("unet.D", x, channels=3, width=4)                                               # [1, 1, 16, 16]
    torch.testing.assert_close(y[0, 0, 8, 4:8], torch.tensor([-0.1735925, -0.1679338, -0.1655356, -0.1646842]),
                               atol=1e-5, rtol=0)
    torch.manual_seed(0)
    net = build_net("rescnn", channels=3, width=8, depth=3, batch_norm=False, noise_map=True)
    x = torch.linspace(-1, 1, 3 * 6 * 5).reshape(1, 3, 6, 5)
    with torch.no_grad():
        y = net(x, 25.0)
    torch.testing.assert_close(y[0, 1, 3, 1:5], torch.tensor([0.1497640, 0.1943786, 0.2231877, 0.2330899]),
                               atol=1e-5, rtol=0)


# ---- Receptive fields ------------------------------------------------------------------------------------


def _changed(net: torch.nn.Module, size: int, at: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns of the output that move when input pixel (at, at) does."""
    torch.manual_seed(1)
    x = torch.randn(1, net.channels, size, size)
    x2 = x.clone()
    x2[..., at, at] += 1.0
    with torch.no_grad():
        diff = (net(x) - net(x2)).abs()[0].amax(0)
    return torch.nonzero(diff > 1e-6, as_tuple=True)


@pytest.mark.parametrize("scale", [3, 4])
def test_rrdb_is_exact_beyond_its_receptive_field(scale):
    torch.manual_seed(0)
    net = build_net("rrdb", channels=3, width=4, blocks=1, growth=4, scale=scale).eval()
    r = net.receptive_field // 2
    # conv_first + 15 dense convs + conv_body, + the LR-equivalent of the HR convs (x3: 1; x4: 1.25 -> 2)
    assert r == {3: 18, 4: 19}[scale]
    ys, xs = _changed(net, 48, 24)
    assert len(ys) and ys.min() >= (24 - r) * scale and ys.max() < (25 + r) * scale
    assert xs.min() >= (24 - r) * scale and xs.max() < (25 + r) * scale


@pytest.mark.parametrize("at", [40, 3, 78])  # centre, and next to both borders (where the padding copies pixels)
def test_unet_is_exact_beyond_its_receptive_field(at):
    torch.manual_seed(0)
    net = build_net("unet", channels=1, width=4, levels=2).eval()
    r = net.receptive_field // 2
    assert r == 33
    ys, xs = _changed(net, 79, at)  # 79: not a multiple of 4, so the net pads
    assert len(ys) and ys.min() >= at - r and ys.max() <= at + r and xs.min() >= at - r and xs.max() <= at + r


# ---- Non-blind DnCNN -------------------------------------------------------------------------------------


def test_non_blind_rescnn_takes_sigma():
    torch.manual_seed(0)
    net = build_net("rescnn", channels=3, width=8, depth=3, batch_norm=False, noise_map=True)
    assert net.config["noise_map"] is True and net.body[0].in_channels == 4
    y = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out25, out0 = net(y, 25.0), net(y, 0.0)
        per_image = net(y, torch.tensor([0.0, 25.0]))
    assert out25.shape == y.shape and not torch.allclose(out25, out0)
    torch.testing.assert_close(per_image[0], out0[0])
    torch.testing.assert_close(per_image[1], out25[1])
    with pytest.raises(AssertionError, match="pass sigma"):
        net(y)
    blind = build_net("rescnn", channels=3, width=8, depth=3)
    assert "noise_map" not in blind.config and blind.body[0].in_channels == 3
    with pytest.raises(AssertionError, match="blind"):
        blind(y, 25.0)


# ---- Training through the restore task -------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nets") / "photos"
    root.mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        Image.fromarray(getattr(skdata, name)()[::4, ::4]).save(root / f"{name}.png")
    return root


def _run(preset: str, photos: Path, out: Path, resolution: int, model: dict) -> Path:
    cfg = resolve_config(preset, {
        "data": {"source": str(photos), "resolution": resolution},
        "model": model,
        "optim": {"batch": 4},
        "run": {"kimg": 0.032, "out": str(out), "tick_kimg": 0.016, "threads": 2, "sample_every_kimg": 0.032,
                "snapshot_every_kimg": 0.032, "checkpoint_every_kimg": 0.032, "grid_samples": 4}})
    return train(cfg, progress=False)


def test_rrdb_trains_and_upscales(photos, tmp_path):
    run = _run("esrgan-psnr-x4", photos, tmp_path, 32, {"width": 8, "blocks": 1, "growth": 4})
    pipe = ganforge.load(str(run))
    assert pipe.scale == 4 and pipe.radius == pipe.net.receptive_field // 2 and type(pipe.net).__name__ == "RRDBNet"
    img = skdata.chelsea()[:30, :41]
    out = pipe(img)
    assert out.shape == (120, 164, 3) and out.dtype == np.uint8


def test_unet_trains_and_denoises(photos, tmp_path):
    run = _run("unet-denoise-25", photos, tmp_path, 32, {"width": 4, "levels": 2})
    pipe = ganforge.load(str(run))
    img = skdata.chelsea()[:37, :53]
    out = pipe(img)
    assert pipe.scale == 1 and type(pipe.net).__name__ == "UNet"
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
