"""Super-resolution on the restore task: MSRResNet shapes and golden values, the scale cross-checks, a short
training run whose pipeline upscales files (tiled = whole), `ganforge upscale`, and a PSNR win over bicubic on a
held-out photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import ConfigError, resolve_config
from ganforge.core.imageio import read_image, write_image
from ganforge.data.derive import downscale
from ganforge.nets import build_net
from ganforge.training.loop import train

skdata = pytest.importorskip("skimage.data")


def sr_photos(root: Path) -> Path:
    """Three scikit-image photos (public domain / CC0), halved with PIL's antialiasing filter so that they look like
    camera photos (a [::2] subsample would alias, and the model would learn to make aliasing)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "rocket"):  # not chelsea: it is the held-out photo
        Image.fromarray(getattr(skdata, name)()).reduce(2).save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return sr_photos(tmp_path_factory.mktemp("sr") / "photos")


def _cfg(source: Path, out: Path, kimg: float, **sections):
    base = {"data": {"source": str(source), "resolution": 48},
            "model": {"width": 16, "blocks": 3},
            "optim": {"batch": 8, "g_lr": 1e-3},
            "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.4, "threads": 2, "sample_every_kimg": 100,
                    "snapshot_every_kimg": 100, "checkpoint_every_kimg": 100}}
    for k, v in sections.items():
        base[k] = {**base[k], **v}
    return resolve_config("srresnet-x4", base)


@pytest.fixture(scope="module")
def upscaler(photos, tmp_path_factory) -> Path:
    """A small x4 MSRResNet trained for 600 steps (about 8 s of CPU) on the three photos."""
    return train(_cfg(photos, tmp_path_factory.mktemp("runs"), 4.8), progress=False)


# ---- The network -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srresnet_shapes(scale):
    net = build_net("srresnet", channels=3, width=8, blocks=2, scale=scale)
    assert net.config == {"channels": 3, "width": 8, "blocks": 2, "scale": scale}
    assert net(torch.zeros(2, 3, 10, 13)).shape == (2, 3, 10 * scale, 13 * scale)
    assert net.receptive_field == 15  # radius 1 + 2 * 2 + 1 (+ the HR convs' < 1 px) -> 7
    with pytest.raises(AssertionError, match=r"expected \[N, 3, h, w\]"):
        net(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="scale must be one of 2, 3, 4"):
        build_net("srresnet", scale=5)


def test_srresnet_golden_slice():
    torch.manual_seed(0)
    net = build_net("srresnet", channels=3, width=8, blocks=2, scale=4)
    x = torch.linspace(-1, 1, 3 * 6 * 5).reshape(1, 3, 6, 5)
    with torch.no_grad():
        y = net(x)                                                                      # [1, 3, 24, 20]
    # BasicSR's init (Kaiming x 0.1) starts the net near its bilinear skip: check that and the residual.
    base = torch.nn.functional.interpolate(x, size=(24, 20), mode="bilinear", align_corners=False)
    want = torch.tensor([8.000061e-07, 9.352341e-06, 7.139519e-06, 2.363697e-06])
    torch.testing.assert_close((y - base)[0, 1, 12, 8:12], want, atol=1e-8, rtol=1e-3)
    torch.testing.assert_close(y[0, 1, 12, 8:12], torch.tensor([0.005619, 0.011245, 0.016861, 0.022474]),
                               atol=1e-5, rtol=0)


def test_srresnet_is_exact_under_its_receptive_field():
    """Output pixels farther than the receptive-field radius from a change do not move (what tiling relies on)."""
    torch.manual_seed(1)
    net = build_net("srresnet", channels=3, width=8, blocks=2, scale=4).eval()
    x = torch.randn(1, 3, 40, 40)
    x2 = x.clone()
    x2[..., 20, 20] += 1.0
    with torch.no_grad():
        diff = (net(x) - net(x2)).abs()[0].amax(0)                                 # [160, 160]
    r = net.receptive_field // 2
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert ys.min() >= (20 - r) * 4 and ys.max() < (21 + r) * 4 and xs.min() >= (20 - r) * 4


# ---- Config ----------------------------------------------------------------------------------------------


def test_scale_mismatch_is_a_config_error_naming_both_fields():
    with pytest.raises(ConfigError, match=r"data.derive='downscale:2'.*model.scale=4"):
        resolve_config("srresnet-x4", {"data": {"derive": "downscale:2"}})
    with pytest.raises(ConfigError, match=r"data.derive='noise:gaussian:25'.*model.scale=4"):
        resolve_config("srresnet-x4", {"data": {"derive": "noise:gaussian:25"}})
    with pytest.raises(ConfigError, match=r"downscale:4.*model.arch='rescnn' keeps|model.arch='srresnet'"):
        resolve_config("denoise-25", {"data": {"derive": "downscale:4"}})
    with pytest.raises(ConfigError, match="model.scale"):
        resolve_config("srresnet-x4", {"model": {"scale": 5}})
    with pytest.raises(ConfigError, match=r"data.resolution=64.*multiple of model.scale=3"):
        resolve_config("srresnet-x4", {"data": {"derive": "downscale:3"}, "model": {"scale": 3}})
    cfg = resolve_config("srresnet-x4", {"data": {"derive": "downscale:2"}, "model": {"scale": 2}})
    assert (cfg.model.arch, cfg.model.scale, cfg.data.resolution) == ("srresnet", 2, 64)


def test_lq_gt_scale_must_match_the_model(tmp_path):
    from ganforge.data.pairs import load_pairs
    from ganforge.tasks.restore import RestoreTask

    rng = np.random.default_rng(0)
    for i in range(2):
        (tmp_path / "gt").mkdir(exist_ok=True)
        (tmp_path / "lq").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "gt" / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "lq" / f"{i}.png")
    data = load_pairs(tmp_path, 32)
    assert data.scale == 2
    cfg = resolve_config("srresnet-x4", {"data": {"source": str(tmp_path), "derive": "", "resolution": 32}})
    with pytest.raises(ValueError, match=r"data.scale=2.*model.scale=4"):
        RestoreTask.from_data(cfg.model, cfg.loss, cfg.optim, 32, data)
    cfg = resolve_config("srresnet-x4", {"data": {"source": str(tmp_path), "derive": "", "resolution": 32},
                                         "model": {"scale": 2}})
    assert RestoreTask.from_data(cfg.model, cfg.loss, cfg.optim, 32, data).snapshot_meta()["scale"] == 2


# ---- Training, the pipeline and the CLI ------------------------------------------------------------------


def test_trained_upscaler_snapshot_and_pipeline(upscaler, tmp_path):
    meta = json.loads((upscaler / "snapshots" / "latest.json").read_text())
    assert (meta["task"], meta["pipeline"], meta["arch"], meta["scale"]) == ("restore", "restore", "srresnet", 4)
    assert meta["modules"]["net"] == {"net": "srresnet", "config": {"channels": 3, "width": 16, "blocks": 3,
                                                                    "scale": 4}}
    pipe = ganforge.load(str(upscaler))
    rgba16 = (np.random.default_rng(1).random((40, 50, 4)) * 65535).astype(np.uint16)
    write_image(tmp_path / "in.png", rgba16)
    pipe.process_file(tmp_path / "in.png", tmp_path / "out.png")
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16 and back.pixels.shape == (160, 200, 3) and back.pixels.dtype == np.uint16
    assert np.array_equal(back.alpha, rgba16[:, :, 3].repeat(4, 0).repeat(4, 1))
    gray = (np.random.default_rng(2).random((40, 50)) * 255).astype(np.uint8)
    assert pipe(gray).shape == (160, 200) and pipe(gray).dtype == np.uint8


def test_tiled_upscaling_equals_whole_image(upscaler):
    pipe = ganforge.load(str(upscaler))
    img = skdata.coffee()[::3, ::3][:110, :170]
    whole, tiled = pipe(img, tile=1024), pipe(img, tile=64)
    assert tiled.shape == (440, 680, 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_upscale_cli_file_and_refuses_a_same_size_model(upscaler, tmp_path):
    Image.fromarray(skdata.chelsea()[:30, :40]).save(tmp_path / "cat.png")
    res = CliRunner().invoke(app, ["upscale", str(upscaler), str(tmp_path / "cat.png"), "-o", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "b.png")).shape == (120, 160, 3)
    res = CliRunner().invoke(app, ["upscale", str(upscaler), str(tmp_path), "-o", str(tmp_path / "big")])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "big" / "cat.png")).shape == (120, 160, 3)

    denoiser = train(resolve_config("denoise-25", {
        "data": {"source": str(tmp_path / "big"), "resolution": 24}, "model": {"width": 8, "depth": 3},
        "optim": {"batch": 4}, "run": {"kimg": 0.008, "out": str(tmp_path / "runs"), "tick_kimg": 0.004}}),
        progress=False)
    res = CliRunner().invoke(app, ["upscale", str(denoiser), str(tmp_path / "cat.png"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "not an upscaler" in res.output and "ganforge apply" in res.output


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_upscaler_beats_bicubic_on_a_held_out_photo(upscaler):
    """x4 on scikit-image's chelsea (never trained on), downscaled by the training derive (bicubic, antialiased):
    the model's RGB PSNR is above PIL bicubic upsampling's."""
    gt = skdata.chelsea()[:300, :448]                                                   # [300, 448, 3]
    x = torch.from_numpy(gt).permute(2, 0, 1)[None].float() / 127.5 - 1
    lq = ((downscale(x, torch.Generator(), 4)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    lq = lq.to(torch.uint8).numpy()                                                     # [75, 112, 3]
    bicubic = np.asarray(Image.fromarray(lq).resize((448, 300), Image.BICUBIC))
    out = ganforge.load(str(upscaler))(lq)
    model_db, bicubic_db = _psnr(out, gt), _psnr(bicubic, gt)
    print(f"x4 PSNR: model {model_db:.2f} dB, bicubic {bicubic_db:.2f} dB")
    assert model_db > bicubic_db + 0.1, f"model {model_db:.2f} dB vs bicubic {bicubic_db:.2f} dB"
