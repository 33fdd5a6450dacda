"""The GAN stage of the restore task: the relativistic average loss, the perceptual loss and its recorded feature
network, and a few ESRGAN steps (stats, checkpoint, snapshot, exact resume, --init-from a PSNR-oriented run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import ConfigError, resolve_config
from ganforge.core.snapshot import load_snapshot
from ganforge.losses import ragan_d, ragan_g
from ganforge.losses_perceptual import PerceptualLoss, vgg19_weights_path
from ganforge.training import checkpoint as ckpt
from ganforge.training.loop import train
from ganforge.training.rundir import read_jsonl

skdata = pytest.importorskip("skimage.data")


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(a))


def test_ragan_matches_the_formula_on_a_hand_example():
    real, fake = np.array([2.0, -1.0, 0.5]), np.array([0.0, 1.5, -2.0])
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    d_rf, d_fr = sig(real - fake.mean()), sig(fake - real.mean())  # D_Ra(x_r, x_f), D_Ra(x_f, x_r)
    want_d = 0.5 * (-np.log(d_rf).mean() - np.log(1 - d_fr).mean())
    want_g = 0.5 * (-np.log(1 - d_rf).mean() - np.log(d_fr).mean())
    r, f = torch.tensor(real), torch.tensor(fake)
    assert ragan_d(r, f).item() == pytest.approx(want_d, rel=1e-6)
    assert ragan_g(r, f).item() == pytest.approx(want_g, rel=1e-6)
    assert want_g == pytest.approx(0.5 * (_softplus(real - fake.mean()).mean() + _softplus(real.mean() - fake).mean()))
    # per-pixel score maps: the expectations run over every score
    assert ragan_d(r.view(1, 1, 1, 3), f.view(1, 1, 1, 3)).item() == pytest.approx(want_d, rel=1e-6)


def test_perceptual_loss_zero_for_identical_and_records_its_network():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    loss = PerceptualLoss("l1")
    assert loss(x, x).item() == 0.0
    assert loss(x, x.flip(-1)).item() > 0 and loss(x, (x + 0.1).clamp(-1, 1)).item() > 0
    gray = x[:, :1]
    assert loss(gray, gray.flip(-2)).item() > 0
    out = x.clone().requires_grad_(True)
    loss(out, x.flip(-1)).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())
    if vgg19_weights_path() is None:  # here: no torchvision, so the documented fallback
        assert loss.name == "random-vgg seed 0 (no VGG19 weights found locally)"
        again = PerceptualLoss("l1")  # fixed seed: the same network every time
        assert loss(x, x.flip(-1)).item() == again(x, x.flip(-1)).item()
    else:
        assert loss.name == "vgg19 (torchvision)"


def test_gan_weights_validate():
    with pytest.raises(ConfigError, match="pixel_weight"):
        resolve_config("esrgan-x4", {"loss": {"pixel_weight": 0, "perceptual_weight": 0, "adversarial_weight": 0}})
    cfg = resolve_config("srgan-x4", {})
    assert (cfg.loss.gan_type, cfg.loss.pixel_weight, cfg.loss.adversarial_weight) == ("vanilla", 0.0, 1e-3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gan") / "photos"
    root.mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        Image.fromarray(getattr(skdata, name)()[::4, ::4]).save(root / f"{name}.png")
    return root


_TINY = {"width": 8, "blocks": 1, "growth": 8}


def _cfg(preset: str, photos: Path, out: Path, kimg: float, loss: dict | None = None, model: dict | None = None,
         **run):
    return resolve_config(preset, {
        "data": {"source": str(photos), "resolution": 32},
        "model": model or _TINY,
        "loss": {"d_width": 8, **(loss or {})} if preset != "esrgan-psnr-x4" else {},
        "optim": {"batch": 4},
        "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.004, "threads": 2, "sample_every_kimg": 1.0,
                "snapshot_every_kimg": 0.016, "checkpoint_every_kimg": 0.008, "grid_samples": 4, **run}})


def _losses(run: Path) -> list[list[float]]:
    keys = ("loss/pixel", "loss/perceptual", "loss/adv", "loss/D_adv")
    return [[r["step"], *(r[k] for k in keys)] for r in read_jsonl(run / "stats.jsonl")]


def test_esrgan_stage_trains_checkpoints_and_resumes_exactly(photos, tmp_path):
    full = train(_cfg("esrgan-x4", photos, tmp_path / "a", 0.016), progress=False)
    stats = read_jsonl(full / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3, 4]
    for key in ("loss/pixel", "loss/perceptual", "loss/adv", "loss/D_adv", "loss/D_real", "loss/D_fake"):
        assert all(np.isfinite(r[key]) for r in stats), key
    state = ckpt.load_latest_checkpoint(full / "checkpoints")[1]
    assert set(state["modules"]) == {"net", "D"} and set(state["optimizers"]) == {"net", "D"}
    assert state["task"]["perceptual"].startswith(("random-vgg seed 0", "vgg19"))
    tensors, meta = load_snapshot(full / "snapshots" / "latest")
    assert set(meta["modules"]) == {"net"} and {k.split(".")[0] for k in tensors} == {"net"}
    assert meta["perceptual"] == state["task"]["perceptual"]
    assert f"perceptual loss features: {meta['perceptual']}" in (full / "log.txt").read_text()

    part = train(_cfg("esrgan-x4", photos, tmp_path / "b", 0.008), progress=False)
    resumed = train(_cfg("esrgan-x4", photos, tmp_path / "b", 0.016), resume=part, progress=False)
    assert _losses(resumed) == _losses(full)
    b = ckpt.load_latest_checkpoint(resumed / "checkpoints")[1]["modules"]
    for name in ("net", "D"):
        assert all(torch.equal(v, b[name][k]) for k, v in state["modules"][name].items()), name


def test_init_from_a_psnr_run_and_unet_d(photos, tmp_path):
    psnr = train(_cfg("esrgan-psnr-x4", photos, tmp_path / "psnr", 0.008), progress=False)
    run = train(_cfg("esrgan-x4", photos, tmp_path / "gan", 0.008, loss={"discriminator": "unet"},
                     init_from=str(psnr)), progress=False)
    log = (run / "log.txt").read_text()
    assert "initialised from" in log and "D fresh" in log and "net " in log
    src = ckpt.load_latest_checkpoint(psnr / "checkpoints")[1]["modules"]["net"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"]["discriminator"] == "unet"
    assert set(ckpt.load_latest_checkpoint(run / "checkpoints")[1]["modules"]) == {"net", "D"}
    # the GAN run started from the PSNR weights: after 2 small steps it is still close to them
    got = ckpt.load_latest_checkpoint(run / "checkpoints")[1]["modules"]["net"]
    close = [float((got[k] - v).abs().max()) for k, v in src.items() if v.is_floating_point()]
    assert max(close) < 0.01


def test_srgan_stage_vanilla_without_pixel_term(photos, tmp_path):
    run = train(_cfg("srgan-x4", photos, tmp_path, 0.008, model={"width": 8, "blocks": 1}), progress=False)
    stats = read_jsonl(run / "stats.jsonl")
    assert len(stats) == 2 and all(np.isfinite(r["loss/adv"]) and r["loss/perceptual"] > 0 for r in stats)
    assert set(ckpt.load_latest_checkpoint(run / "checkpoints")[1]["optimizers"]) == {"net", "D"}


def test_resume_with_another_perceptual_network_is_logged(photos, tmp_path):
    run = train(_cfg("esrgan-x4", photos, tmp_path, 0.008), progress=False)
    path, state = ckpt.load_latest_checkpoint(run / "checkpoints")
    state["task"]["perceptual"] = "vgg19 (torchvision)"  # as if the weights had been there before
    torch.save(state, path)
    train(_cfg("esrgan-x4", photos, tmp_path, 0.016), resume=run, progress=False)
    assert "trained with perceptual features 'vgg19 (torchvision)' and continues with" in (run / "log.txt").read_text()
