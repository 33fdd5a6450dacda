"""Projection of images into W / W+ of a StyleGAN2 snapshot: it recovers an image the generator made, leaves the
snapshot untouched, saves a latent that reproduces the projection, and the CLI reports bad inputs clearly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import resolve_config
from ganforge.core.grid import save_image, to_uint8
from ganforge.infer.project import (
    load_projection,
    load_target,
    project,
    psnr,
    save_projection,
    synthesize_projection,
)
from ganforge.metrics.judge import parse_features
from ganforge.training.loop import train
from tests.conftest import make_class_folder, tiny_overrides


@pytest.fixture(scope="module")
def G(style_run):
    return ganforge.load(style_run)


@pytest.fixture(scope="module")
def target(G):
    # What a PNG of the generator's seed-5 image holds: const noise, clamped to [-1, 1].
    return G.generate([5], 1)[0].clamp(-1, 1)


@pytest.fixture(scope="module")
def result_wplus(G, target):
    return project(G, target, steps=200, space="w+", label=1, seed=0)


def test_projection_recovers_generated_image(G, target, result_wplus):
    r = result_wplus
    assert r.ws.shape == (1, G.net.num_ws, G.net.w_dim) and r.image.shape == target.shape
    # Starting point: the mean w (with the snapshot's noise). Measured: about 13.7 dB -> 20 dB after 200 steps.
    assert r.psnr > r.start_psnr + 3.0, (r.start_psnr, r.psnr)
    assert r.psnr == pytest.approx(psnr(r.image.clamp(-1, 1), target))
    pixel = [h["pixel"] for h in r.history]
    loss = [h["loss"] for h in r.history]
    assert len(r.history) == 200 and all(math.isfinite(v) for v in loss)
    assert np.mean(pixel[-10:]) < 0.5 * np.mean(pixel[:10]) and np.mean(loss[-10:]) < np.mean(loss[:10])
    assert 20 <= len(r.frames) <= 40 and r.frames[-1][0] == 200
    # Noise images stay normalised (zero mean, unit variance), as NVlabs renormalises them each step.
    for v in r.noise.values():
        assert abs(float(v.mean())) < 1e-4 and float(v.square().mean()) == pytest.approx(1.0, abs=1e-3)


def test_space_w_shares_one_latent_and_snapshot_is_unchanged(G, target):
    before = G.generate([3, 7], 1)
    buffers = {k: v.clone() for k, v in G.net.state_dict().items()}
    r = project(G, target, steps=20, space="w", label=1)
    assert r.ws.shape == (1, G.net.num_ws, G.net.w_dim)
    assert torch.equal(r.ws, r.ws[:, :1].expand_as(r.ws))  # identical rows across layers
    assert torch.equal(G.generate([3, 7], 1), before)
    for k, v in G.net.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    assert not any(p.requires_grad for p in G.net.parameters())
    with pytest.raises(ValueError, match="space must be"):
        project(G, target, steps=2, space="z", label=1)
    with pytest.raises(ValueError, match="target must be"):
        project(G, target[:, :8], steps=2, label=1)


def test_save_projection_round_trip(G, style_run, result_wplus, tmp_path):
    out = save_projection(result_wplus, tmp_path / "p", snapshot=style_run)
    for name in ("latent.safetensors", "latent.json", "projected.png", "target.png", "progress.gif"):
        assert (out / name).is_file(), name
    ws, noise, meta = load_projection(out)
    assert torch.equal(ws, result_wplus.ws) and set(noise) == set(result_wplus.noise)
    assert meta["space"] == "w+" and meta["steps"] == 200 and meta["label"] == 1
    assert meta["psnr_db"] == pytest.approx(result_wplus.psnr, abs=1e-3) and len(meta["snapshot_sha256"]) == 64
    assert set(meta["final_losses"]) == {"loss", "pixel", "feature", "noise_reg"}
    again = to_uint8(synthesize_projection(G, ws, noise))[0].astype(int)
    saved = np.asarray(Image.open(out / "projected.png")).transpose(2, 0, 1).astype(int)
    assert np.abs(again - saved).max() <= 1
    gif = Image.open(out / "progress.gif")
    assert gif.n_frames >= 20 and gif.size == (2 * 16 + 2, 16)  # target | projection


def test_feature_extractor_is_used(G, target):
    calls = []

    def stub(x):
        calls.append(tuple(x.shape))
        return x.mean(dim=(2, 3))  # [N, C]: differentiable

    r = project(G, target, steps=5, label=1, features=stub, feature_weight=2.0)
    assert len(calls) == 1 + 5  # the target once, then every step
    assert any(h["feature"] > 0 for h in r.history)
    with pytest.raises(ValueError, match="judge:PATH"):
        parse_features("vgg", G.device)
    with pytest.raises(ValueError, match="missing"):
        parse_features("judge:/nonexistent/judge", G.device)
    assert parse_features("none", G.device) is None


def test_load_target_converts_crops_and_resizes(tmp_path):
    img = np.zeros((40, 60, 4), np.uint8)
    img[:, 10:50] = (255, 0, 0, 255)  # the centred 40x40 square is opaque red; the side bands transparent
    Image.fromarray(img, "RGBA").save(tmp_path / "a.png")
    x = load_target(tmp_path / "a.png", 3, 16)
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    # Centre-cropped to the red square (Lanczos reads a little past the crop box, so the border rings slightly).
    assert torch.allclose(x[0, 1:-1, 1:-1], torch.ones(14, 14), atol=0.02) and float(x[0].min()) > 0.8
    assert float(x[1:].max()) < -0.98
    assert load_target(tmp_path / "a.png", 1, 8).shape == (1, 8, 8)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        load_target(tmp_path / "bad.png", 3, 16)


def test_cli_project(G, style_run, tmp_path):
    save_image(to_uint8(G.generate([5], 1))[0].transpose(1, 2, 0), tmp_path / "photo.png")
    out = tmp_path / "proj"
    res = CliRunner().invoke(app, ["project", str(style_run), str(tmp_path / "photo.png"), "--steps", "30",
                                   "-o", str(out), "--space", "w+", "--class", "1", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.output and str(out) in res.output
    for name in ("latent.safetensors", "latent.json", "projected.png", "target.png", "progress.gif"):
        assert (out / name).is_file(), name
    assert json.loads((out / "latent.json").read_text())["space"] == "w+"

    # A judge snapshot as the feature extractor: gray 8 px judge on RGB 16 px images (converted and resized).
    from ganforge.metrics.judge import save_judge
    from ganforge.nets.classifier import Classifier

    torch.manual_seed(0)
    judge = save_judge(Classifier(resolution=8, channels=1, num_classes=3, width=4), tmp_path / "j", "judge", {})
    res = CliRunner().invoke(app, ["project", str(style_run), str(tmp_path / "photo.png"), "--steps", "5",
                                   "-o", str(tmp_path / "pj"), "--class", "1", "--features", f"judge:{judge}"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "pj" / "latent.json").read_text())["final_losses"]["feature"] >= 0

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    res = CliRunner().invoke(app, ["project", str(style_run), str(tmp_path / "broken.jpg"), "--steps", "5",
                                   "-o", str(tmp_path / "x"), "--class", "1"])
    assert res.exit_code == 1 and "broken.jpg" in res.output
    res = CliRunner().invoke(app, ["project", str(style_run), str(tmp_path / "photo.png"), "--steps", "5",
                                   "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "class-conditional" in res.output
    res = CliRunner().invoke(app, ["project", str(style_run), str(tmp_path / "photo.png"), "--steps", "5",
                                   "-o", str(tmp_path / "x"), "--class", "1", "--features", "judge:/nope/j"])
    assert res.exit_code == 1 and "missing" in res.output


def test_cli_project_needs_stylegan(tmp_path):
    data = make_class_folder(tmp_path / "data", n_per_class=4)
    run = train(resolve_config("dcgan-32", tiny_overrides(str(data), tmp_path / "d", 0.008)), progress=False)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    res = CliRunner().invoke(app, ["project", str(run), str(tmp_path / "photo.png"), "--steps", "5",
                                   "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "needs a StyleGAN2 snapshot" in res.output
    with pytest.raises(ValueError, match="needs a StyleGAN2 snapshot"):
        project(ganforge.load(run), torch.zeros(3, 16, 16), steps=2)


# ---- editing: seeds and projections through the same latent specs ----------------------------------------------

@pytest.fixture(scope="module")
def proj_dir(G, style_run, result_wplus, tmp_path_factory):
    return save_projection(result_wplus, tmp_path_factory.mktemp("edit") / "proj", snapshot=style_run)


def test_latent_specs_mix_seeds_and_projections(G, proj_dir, result_wplus):
    from ganforge.infer.style import draw, latents, seed_ws

    lat = latents(G, f"2-3,{proj_dir}", labels=1)
    assert lat.names == ["seed 2", "seed 3", str(proj_dir)] and lat.seeds == [2, 3, None]
    assert torch.equal(lat.ws[:2], seed_ws(G, [2, 3], 1)) and torch.equal(lat.ws[2:], result_wplus.ws)
    imgs = draw(G, lat.ws, lat.noise)
    assert torch.allclose(imgs[:2], G.generate([2, 3], 1), atol=1e-5)  # seeds: the snapshot's const noise
    assert torch.allclose(imgs[2], result_wplus.image, atol=1e-5)     # projection: its own noise
    for bad, message in [("x-y", "not a seed"), (str(proj_dir.parent), "no latent.safetensors")]:
        with pytest.raises(ValueError, match=message):
            latents(G, bad, labels=1)


def test_style_mix_edits_a_projected_photo(G, style_run, proj_dir, result_wplus, tmp_path):
    from ganforge.infer.style import style_mix

    grid = style_mix(G, str(proj_dir), "3-4", "middle", labels=1)  # the photo's coarse styles, seeds' finer ones
    assert grid.shape[:2] == (2 * 16 + 2, 3 * 16 + 4)
    cell = lambda r, c: grid[r * 18:r * 18 + 16, c * 18:c * 18 + 16]  # noqa: E731
    assert np.abs(cell(1, 0).astype(int) - to_uint8(result_wplus.image[None])[0].transpose(1, 2, 0)).max() <= 1
    assert not np.array_equal(cell(1, 1), cell(1, 0)) and not np.array_equal(cell(1, 1), cell(1, 2))
    res = CliRunner().invoke(app, ["style-mix", str(style_run), "--rows", f"{proj_dir},0", "--cols", "3-4",
                                   "--class", "1", "-o", str(tmp_path / "m.png")])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "m.png")).shape[:2] == (3 * 16 + 4, 3 * 16 + 4)
    res = CliRunner().invoke(app, ["style-mix", str(style_run), "--rows", "0", "--cols", str(tmp_path), "--class", "1"])
    assert res.exit_code == 1 and "no latent.safetensors" in res.output


def test_latent_arithmetic(G, proj_dir):
    from ganforge.infer.style import arithmetic, latents

    grid, direction = arithmetic(G, "0-3", "4-7", f"8,{proj_dir}", scales=[0, 1], labels=1)
    lat = latents(G, "0-7", labels=1)
    assert torch.allclose(direction, lat.ws[:4].mean(0) - lat.ws[4:].mean(0), atol=1e-6)
    assert grid.shape[:2] == (2 * 16 + 2, 2 * 16 + 2)  # one row per C, one column per scale
    # Scale 0 is C unchanged; A - A is no edit at all.
    assert np.abs(grid[:16, :16].astype(int) - to_uint8(G.generate([8], 1))[0].transpose(1, 2, 0)).max() <= 1
    zero_grid, zero = arithmetic(G, "0-3", "0-3", "8", scales=[0, 2], labels=1)
    assert float(zero.abs().max()) == 0 and np.array_equal(zero_grid[:, :16], zero_grid[:, 18:])


def test_interpolation_in_w_and_z(G, proj_dir, result_wplus, tmp_path):
    from ganforge.infer.style import interpolate

    w_walk = interpolate(G, "2", "9", 5, "w", labels=1)
    z_walk = interpolate(G, "2", "9", 5, "z", labels=1)
    ends = G.generate([2, 9], 1)
    for walk in (w_walk, z_walk):  # both start and end on the seeds' images, and differ in between
        assert torch.allclose(walk[0], ends[0], atol=1e-5) and torch.allclose(walk[-1], ends[1], atol=1e-5)
    assert not torch.allclose(w_walk[2], z_walk[2], atol=1e-3)
    photo = interpolate(G, str(proj_dir), "9", 4, "w", labels=1)  # its noise fades into the const noise
    assert torch.allclose(photo[0], result_wplus.image, atol=1e-5) and torch.allclose(photo[-1], ends[1], atol=1e-5)
    with pytest.raises(ValueError, match="no z"):
        interpolate(G, str(proj_dir), "9", 4, "z", labels=1)
    res = CliRunner().invoke(app, ["generate", str(proj_dir.parent.parent), "--class", "1"])  # not a snapshot
    assert res.exit_code == 1
