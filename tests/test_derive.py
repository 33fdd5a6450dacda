"""Degradation chains (ganforge.data.derive): each op's shape, range and statistics, chains, determinism, errors,
the config's scale check, and derived pairs end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import ConfigError, resolve_config
from ganforge.data import load_pairs
from ganforge.data.derive import PRESETS, RecordingDerive, blur, jpeg, parse_derive, poisson_noise, rain, salt_pepper

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noise_image(n=2, c=3, side=32, seed=0) -> torch.Tensor:
    return torch.rand((n, c, side, side), generator=gen(seed)) * 2 - 1  # [N, C, H, W] in [-1, 1]


def smooth_image(n=2, c=3, side=64) -> torch.Tensor:
    t = torch.linspace(0, 1, side)
    y, x = torch.meshgrid(t, t, indexing="ij")
    base = 0.6 * torch.sin(3 * x + 2 * y) * torch.cos(2 * y)  # [H, W]
    return torch.stack([base * (0.5 + 0.25 * k) for k in range(c)])[None].expand(n, -1, -1, -1).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) / 2).square().mean().item()  # [-1, 1] -> [0, 1] units
    return 10 * np.log10(1 / mse)


@pytest.mark.parametrize("spec, side", [
    ("noise:gaussian:5-50", 32), ("noise:poisson:10-100", 32), ("noise:saltpepper:0.1", 32), ("blur:0.5-2", 32),
    ("jpeg:30-95", 32), ("rain:0.02-0.1", 32), ("downscale:2:bilinear", 16), ("downscale:4:area", 8),
    ("downscale:3", 32), ("second-order:4", 8), ("gray,jpeg:50", 32), ("edges:1,noise:poisson:20", 32)])
def test_each_op_keeps_shape_and_range(spec, side):
    x = noise_image(side=24 if spec == "downscale:3" else 32)
    y = parse_derive(spec)(x, gen())
    side = 8 if spec == "downscale:3" else side
    channels = 1 if spec.startswith("edges:1") else 3
    assert y.shape == (2, channels, side, side) and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1 and torch.isfinite(y).all()


def test_poisson_variance_is_mean_over_peak():
    x = torch.zeros(4, 1, 64, 64)  # clean 0.5 in [0, 1] units
    u = (poisson_noise(x, gen(), peak=(50.0, 50.0)) + 1) / 2
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(u.var().item() / (0.5 / 50) - 1) < 0.1  # Var[Poisson(p c) / p] = c / p
    low, high = ((poisson_noise(x, gen(), peak=(p, p)) + 1) / 2 for p in (5.0, 500.0))
    assert low.var() > 20 * high.var()  # fewer photons (low dose), more noise


def test_salt_and_pepper_hits_the_requested_fraction():
    x = torch.zeros(4, 3, 64, 64)
    y = salt_pepper(x, gen(), amount=(0.2, 0.2))
    hit = y.abs() == 1  # [N, C, H, W]
    assert (hit == hit[:, :1]).all()  # a hit replaces the whole pixel
    assert abs(hit[:, 0].float().mean().item() - 0.2) < 0.02
    assert abs((y[:, 0] == 1).float().mean().item() - 0.1) < 0.02  # half salt, half pepper
    assert (y[~hit] == 0).all()


def test_blur_removes_high_frequencies_and_keeps_the_mean():
    x = noise_image(side=48)
    y = blur(x, gen(), sigma=(1.5, 1.5))

    def hf(z):
        return (z[..., 1:, :] - z[..., :-1, :]).square().mean() + (z[..., 1:] - z[..., :-1]).square().mean()

    assert hf(y) < 0.1 * hf(x)
    assert (y.mean((2, 3)) - x.mean((2, 3))).abs().max() < 0.02
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(blur(flat, gen(), sigma=(0.5, 3.0)), flat)  # reflect padding: no dark border
    torch.testing.assert_close(blur(x, gen(), sigma=(0.0, 0.0)), x)  # sigma 0: a delta kernel


def test_jpeg_is_real_lossy_compression():
    x = smooth_image()
    y95 = jpeg(x, gen(), quality=(95, 95))
    assert not torch.equal(y95, x) and psnr(y95, x) > 25
    assert psnr(jpeg(x, gen(), quality=(5, 5)), x) < psnr(y95, x) - 3
    assert jpeg(x[:, :1], gen(), quality=(50, 50)).shape == (2, 1, 64, 64)
    rgba = torch.cat([x, torch.full((2, 1, 64, 64), 1.0)], 1)
    assert (jpeg(rgba, gen(), quality=(50, 50))[:, 3] == 1).all()  # alpha kept


def test_rain_adds_bright_near_vertical_streaks():
    x = torch.full((2, 3, 64, 64), -0.5)
    d = rain(x, gen(), density=(0.05, 0.05)) - x  # [N, C, H, W]
    assert d.min() >= 0 and (d == d[:, :1]).all()  # only brighter, the same in every channel
    coverage = (d[:, 0] > 0.2).float().mean().item()
    assert 0.02 < coverage < 0.2 and d.max() > 2 * 0.6 * 0.9  # ~5% streaks of brightness 0.6..1 (x2 in [-1, 1])
    vertical = (d[..., 1:, :] * d[..., :-1, :]).mean()  # energy shared by column neighbours
    horizontal = (d[..., 1:] * d[..., :-1]).mean()
    assert vertical > 2 * horizontal
    more = (rain(x, gen(), density=(0.2, 0.2)) - x)[:, 0].gt(0.2).float().mean().item()
    assert more > 2 * coverage


def test_chain_order_matters_and_scales_multiply():
    x = noise_image(side=32)
    a = parse_derive("noise:gaussian:30,blur:1.5")(x, gen())
    b = parse_derive("blur:1.5,noise:gaussian:30")(x, gen())
    assert (b - blur(x, gen(), (1.5, 1.5))).std() > 2 * (a - blur(x, gen(), (1.5, 1.5))).std()  # noise blurred in a
    d = parse_derive("downscale:2,blur:1,downscale:2:area")
    assert d.scale == 4 and d(x, gen()).shape == (2, 3, 8, 8)
    assert parse_derive("blur:1,jpeg:50").scale == 1 and parse_derive("second-order:3").scale == 3
    assert parse_derive("gray:1,jpeg:50").input_channels(3) == 1 and parse_derive("gray,blur:1").input_channels(3) == 3
    normal = parse_derive(" blur:0.50 , downscale:2:bicubic,noise:gaussian:5-5, jpeg:30-95 ")
    assert normal.spec == "blur:0.5,downscale:2,noise:gaussian:5,jpeg:30-95"
    second = parse_derive("second-order:2")
    assert second.spec == "second-order:2"
    assert [s.token for s in second.steps] == PRESETS["second-order"].format(S=2).split(",")


def test_chains_are_deterministic_given_the_generator():
    x = noise_image(side=32)
    d = parse_derive("rain:0.05-0.1,blur:0.5-2,downscale:2,noise:poisson:20-200,noise:gaussian:5-50,"
                     "noise:saltpepper:0.01-0.05,jpeg:30-95")
    torch.testing.assert_close(d(x, gen(3)), d(x, gen(3)), rtol=0, atol=0)
    assert not torch.equal(d(x, gen(3)), d(x, gen(4)))
    g = gen(5)
    first = d(x, g)
    assert not torch.equal(first, d(x, g))  # the generator advances


@pytest.mark.parametrize("spec, message", [
    ("jpeg:0", r"jpeg quality must be in 1\.\.100"), ("jpeg:50.5", "jpeg quality must be an integer"),
    ("jpeg:90-30", "LO <= HI"), ("blur:20", r"blur sigma must be in 0\.\.10"),
    ("noise:saltpepper:1.5", r"saltpepper amount must be in 0\.\.1"), ("noise:poisson:0", "poisson peak"),
    ("rain:0.9", r"rain density must be in 0\.\.0\.5"), ("downscale:2:nearest", "bicubic, bilinear, area"),
    ("downscale:2,downscale:3", "2 x 3 = 6; the total must be one of 2, 3, 4"), ("second-order:5", "second-order:S"),
    ("sharpen", r"unknown derive 'sharpen'.*noise:poisson.*jpeg, rain.*second-order"),
    ("noise:uniform:3", r"unknown derive 'noise:uniform'"), ("blur:1,,jpeg:50", "empty op"),
    ("blur:1,jpeg:0", r"'jpeg:0'.*in the chain 'blur:1,jpeg:0'")])
def test_errors_name_the_op_and_the_allowed_range(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_derive(spec)


def test_config_scale_check_reads_chains():
    assert resolve_config("srresnet-x4", {"data": {"derive": "blur:1,downscale:2,downscale:2:area,jpeg:50"}})
    assert resolve_config("srresnet-x4", {"data": {"derive": "second-order:4"}})
    assert resolve_config("denoise-25", {"data": {"derive": "blur:0.5-2,noise:gaussian:5-50,jpeg:30-95"}})
    with pytest.raises(ConfigError, match=r"data.derive='blur:1,downscale:2'.*2x smaller.*model.scale=4"):
        resolve_config("srresnet-x4", {"data": {"derive": "blur:1,downscale:2"}})
    with pytest.raises(ConfigError, match="model.scale=3"):
        resolve_config("denoise-25", {"data": {"derive": "rain:0.05,second-order:3"}})


def test_degraded_pairs_end_to_end(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        pixels = (np.random.default_rng(i).random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(Path(folder) / f"{i}.png")
    data = load_pairs(folder, 32, derive="blur:1,downscale:2,noise:gaussian:10,jpeg:50-90")
    batch = data.fetch(np.arange(3), gen(0), CPU)
    assert batch["input"].shape == (3, 3, 16, 16) and batch["target"].shape == (3, 3, 32, 32)
    assert data.scale == 2 and data.describe()["derive"] == "blur:1,downscale:2,noise:gaussian:10,jpeg:50-90"
    again = data.fetch(np.arange(3), gen(0), CPU)
    torch.testing.assert_close(batch["input"], again["input"], rtol=0, atol=0)


def test_side_channel_records_the_drawn_noise_level_without_changing_the_batch():
    x = torch.zeros(6, 3, 48, 48)  # mid-gray: no clipping at these levels
    d = parse_derive("noise:gaussian:5-30")
    info: dict[str, torch.Tensor] = {}
    y = d(x, gen(7), info)
    torch.testing.assert_close(y, d(x, gen(7)), rtol=0, atol=0)  # recording draws nothing
    assert d.reports == {"sigma"} and info["sigma"].shape == (6,) and info["sigma"].dtype == torch.float32
    measured = (y * 127.5).std(dim=(1, 2, 3))  # per image, 0..255 units
    assert ((measured / info["sigma"] - 1).abs() < 0.05).all(), (measured, info["sigma"])
    assert len(set(info["sigma"].tolist())) == 6 and ((info["sigma"] >= 5) & (info["sigma"] <= 30)).all()
    # Two independent noises add in quadrature; a chain without Gaussian noise records nothing.
    two: dict[str, torch.Tensor] = {}
    parse_derive("noise:gaussian:30,blur:0.5,noise:gaussian:40")(x, gen(), two)
    torch.testing.assert_close(two["sigma"], torch.full((6,), 50.0))
    none: dict[str, torch.Tensor] = {}
    parse_derive("blur:1,jpeg:50,rain:0.05")(x, gen(), none)
    assert none == {} and parse_derive("blur:1").reports == frozenset()
    assert parse_derive("second-order:2").reports == {"sigma"}


def test_recording_derive_keeps_the_latest_call_and_the_same_identity():
    d = parse_derive("blur:0.5,noise:gaussian:0-75")
    r = RecordingDerive.of(d)
    assert (r.spec, r.steps, r.scale) == (d.spec, d.steps, d.scale)
    x = noise_image(n=3)
    torch.testing.assert_close(r(x, gen(1)), d(x, gen(1)), rtol=0, atol=0)
    first = r.last["sigma"].clone()
    r(x, gen(2))
    assert r.last["sigma"].shape == (3,) and not torch.equal(first, r.last["sigma"])  # replaced, not appended
    data_info: dict[str, torch.Tensor] = {}
    r(x, gen(1), data_info)
    torch.testing.assert_close(data_info["sigma"], first)  # a caller's own dict is filled too
