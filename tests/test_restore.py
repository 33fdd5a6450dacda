"""The restore task end to end: derived pairs, one L1 phase, exact resume, SIGKILL safety, the tiled pipeline on a
real photo, and `ganforge apply`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import resolve_config
from ganforge.core.imageio import read_image, write_image
from ganforge.infer.restore import RestorePipeline
from ganforge.training import checkpoint as ckpt
from ganforge.training.loop import train
from ganforge.training.rundir import read_jsonl
from tests.conftest import PYTHON, kill_after_checkpoints, python_env

skdata = pytest.importorskip("skimage.data")


def photo_folder(root: Path) -> Path:
    """Three real photos (scikit-image's, public domain / CC0) at different sizes and aspects."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(root / "astronaut.png")                  # 128 x 128
    Image.fromarray(skdata.coffee()[::4, ::4]).save(root / "coffee.jpg", quality=95)             # 100 x 150
    Image.fromarray(skdata.rocket()[::4, ::4]).save(root / "rocket.png")                         # 107 x 160
    return root


def _cfg(source: Path, out: Path, kimg: float, **run):
    return resolve_config("denoise-25", {
        "data": {"source": str(source), "resolution": 24},
        "model": {"width": 8, "depth": 3},
        "optim": {"batch": 4},
        "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.004, "sample_every_kimg": 0.016,
                "snapshot_every_kimg": 0.016, "checkpoint_every_kimg": 0.012, "grid_samples": 4, **run}})


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos") / "photos")


def test_restore_run_folder_contract(photos, tmp_path):
    run = train(_cfg(photos, tmp_path / "runs", 0.032), progress=False)
    assert run.name == "00000-photos-denoise-25"
    stats = read_jsonl(run / "stats.jsonl")
    assert [r["step"] for r in stats] == list(range(1, 9)) and all("loss/pixel" in r for r in stats)
    meta = json.loads((run / "snapshots" / "latest.json").read_text())
    assert (meta["task"], meta["pipeline"], meta["arch"]) == ("restore", "restore", "rescnn")
    assert meta["modules"] == {"net": {"net": "rescnn", "config": {"channels": 3, "width": 8, "depth": 3,
                                                                  "batch_norm": False}}}
    state = ckpt.load_latest_checkpoint(run / "checkpoints")[1]
    assert set(state["modules"]) == {"net"} and set(state["optimizers"]) == {"net"}  # no D, no EMA
    grid = np.asarray(Image.open(run / "samples" / "fakes000000008.png"))
    assert grid.shape[1] == 3 * 24 + 2 * 2  # input | output | target
    assert isinstance(ganforge.load(str(run)), RestorePipeline)


def test_restore_resume_is_exact(photos, tmp_path):
    full = train(_cfg(photos, tmp_path / "a", 0.048), progress=False)
    part = train(_cfg(photos, tmp_path / "b", 0.024), progress=False)
    resumed = train(_cfg(photos, tmp_path / "b", 0.048), resume=part, progress=False)
    losses = [[r["step"], r["loss/pixel"]] for r in read_jsonl(full / "stats.jsonl")]
    assert [[r["step"], r["loss/pixel"]] for r in read_jsonl(resumed / "stats.jsonl")] == losses
    a = ckpt.load_latest_checkpoint(full / "checkpoints")[1]["modules"]["net"]
    b = ckpt.load_latest_checkpoint(resumed / "checkpoints")[1]["modules"]["net"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_restore_kill_mid_run_then_resume(photos, tmp_path):
    args = ["--data", str(photos), "--preset", "denoise-25", "--resolution", "24", "--batch", "4",
            "--set", "model.width=8", "--set", "model.depth=3", "--set", "run.tick_kimg=0.004",
            "--set", "run.checkpoint_every_kimg=0.004", "--set", "run.snapshot_every_kimg=0.004",
            "--set", "run.sample_every_kimg=1", "--no-progress"]
    cmd = [PYTHON, "-m", "ganforge", "train", *args]
    ref = subprocess.run(cmd + ["--kimg", "0.2", "--out", str(tmp_path / "ref")], env=python_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    run = kill_after_checkpoints(cmd + ["--kimg", "0.2"], tmp_path / "killed", n=2)
    done = subprocess.run([PYTHON, "-m", "ganforge", "train", "--resume", str(run), "--no-progress"],
                          env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref_run = next((tmp_path / "ref").glob("0*"))
    want = [(r["step"], r["loss/pixel"]) for r in read_jsonl(ref_run / "stats.jsonl")]
    got = [(r["step"], r["loss/pixel"]) for r in read_jsonl(run / "stats.jsonl")]
    assert got == want and len(got) == 50


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def denoiser(photos, tmp_path_factory) -> Path:
    """A small denoiser trained for ~15 s on the three photos (not the test photo)."""
    cfg = resolve_config("denoise-25", {
        "data": {"source": str(photos), "resolution": 32},
        "model": {"width": 16, "depth": 5},
        "optim": {"batch": 8, "g_lr": 2e-3},
        "run": {"kimg": 2.4, "out": str(tmp_path_factory.mktemp("den")), "tick_kimg": 0.8, "threads": 2,
                "sample_every_kimg": 100, "snapshot_every_kimg": 100, "checkpoint_every_kimg": 100}})
    return train(cfg, progress=False)


def test_denoiser_beats_the_noisy_input_on_a_held_out_photo_tiled(denoiser, tmp_path):
    """Gaussian noise sigma 25 on a photo the model never saw (scikit-image's chelsea, 300 x 451): the tiled
    output is several dB better than the input, and tiling changes nothing but float rounding."""
    clean = skdata.chelsea()
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)
    pipe = ganforge.load(str(denoiser))
    out = pipe(noisy, tile=96)
    whole = pipe(noisy, tile=1024)
    assert out.shape == clean.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1
    gain = _psnr(out, clean) - _psnr(noisy, clean)
    print(f"PSNR gain {gain:.2f} dB")
    assert gain > 3.0, f"denoised {_psnr(out, clean):.2f} dB vs noisy {_psnr(noisy, clean):.2f} dB"


def test_pipeline_round_trips_depths_gray_and_alpha(denoiser, tmp_path):
    pipe = ganforge.load(str(denoiser))
    rgba16 = (np.random.default_rng(1).random((40, 50, 4)) * 65535).astype(np.uint16)
    write_image(tmp_path / "in.png", rgba16)
    pipe.process_file(tmp_path / "in.png", tmp_path / "out.tif")
    back = read_image(tmp_path / "out.tif")
    assert back.bit_depth == 16 and back.pixels.shape == (40, 50, 3)
    assert np.array_equal(back.alpha, rgba16[:, :, 3])  # alpha untouched
    gray = (np.random.default_rng(2).random((33, 47)) * 255).astype(np.uint8)
    assert pipe(gray).shape == (33, 47) and pipe(gray).dtype == np.uint8
    with pytest.raises(ValueError, match="expected"):
        pipe(np.zeros((8, 8, 2), np.uint8))


def test_apply_cli_file_and_folder(denoiser, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(skdata.chelsea()[:64, :80]).save(src / "cat.jpg")
    Image.fromarray(skdata.camera()[:50, :60]).save(src / "sub.png")
    (src / "broken.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["apply", str(denoiser), str(src / "cat.jpg"), "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "c.png")).shape == (64, 80, 3)
    res = CliRunner().invoke(app, ["apply", str(denoiser), str(src), "-o", str(tmp_path / "out"), "--ext", "png"])
    assert res.exit_code == 1 and "broken.png" in res.output and "1 of 3 files" in res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat.png", "sub.png"]
    assert np.asarray(Image.open(tmp_path / "out" / "sub.png")).shape == (50, 60)
    res = CliRunner().invoke(app, ["apply", str(denoiser), str(tmp_path / "nothing"), "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "no such file or folder" in res.output


def test_restore_refuses_inputs_with_other_channels(photos, tmp_path):
    cfg = resolve_config("denoise-25", {"data": {"source": str(photos), "resolution": 24, "derive": "gray:1"},
                                        "model": {"width": 8, "depth": 3}, "run": {"out": str(tmp_path)}})
    with pytest.raises(ValueError, match="inputs have 1 channel"):
        train(cfg, progress=False)


def test_restore_preview_does_not_touch_batchnorm_statistics(photos, tmp_path):
    from ganforge.tasks.restore import RestoreTask

    cfg = resolve_config("denoise-25", {"data": {"source": str(photos), "resolution": 24},
                                        "model": {"width": 8, "depth": 3, "batch_norm": True}})
    data = RestoreTask.load_data(cfg.data, torch.device("cpu"))
    task = RestoreTask.from_data(cfg.model, cfg.loss, cfg.optim, 24, data)
    before = {k: v.clone() for k, v in task.net.state_dict().items()}
    task.preview(4, torch.device("cpu"))
    assert all(torch.equal(v, task.net.state_dict()[k]) for k, v in before.items()) and task.net.training
