"""StyleGAN2 through the one training loop: ADA strength, path length and style mixing, exact resume (also
after a SIGKILL) with p, the step count and G_ema continuing identically, gradient accumulation, truncation."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import ConfigError, resolve_config
from ganforge.core import snapshot as snap
from ganforge.training import checkpoint as ckpt
from ganforge.training.loop import train
from ganforge.training.rundir import read_jsonl
from tests.conftest import PYTHON, kill_after_checkpoints, python_env, tiny_overrides

# ADA target below any reachable r_t so that p must rise by batch * interval / (ada_kimg * 1000) = 0.16 per update.
STYLE = {"model": {"w_dim": 16, "mapping_layers": 2},
         "loss": {"ada": "bgc", "ada_target": -0.95, "ada_kimg": 0.1, "ada_interval": 2,
                  "r1_every_steps": 3, "pl_every_steps": 2}}


def _cfg(source, out, kimg, **extra):
    sections = {k: {**STYLE.get(k, {}), **extra.get(k, {})} for k in {*STYLE, *extra}}
    return resolve_config("stylegan2-32", tiny_overrides(str(source), out, kimg, **sections))


def _trace(run):
    return [{k: v for k, v in r.items() if k.startswith(("loss/", "aug/")) or k in ("step", "kimg")}
            for r in read_jsonl(run / "stats.jsonl")]


def test_stylegan2_ada_trains_and_resumes_exactly(class_folder, tmp_path):
    full = train(_cfg(class_folder, tmp_path / "a", 0.096), progress=False)
    trace = _trace(full)
    assert {"loss/D_r1", "loss/G_pl", "loss/pl_mean", "aug/p", "aug/r_t"} <= set().union(*trace)
    p = [r["aug/p"] for r in trace]
    assert p[0] == 0 and p[-1] == pytest.approx(0.96) and p == sorted(p)  # 6 updates of +0.16
    part = train(_cfg(class_folder, tmp_path / "b", 0.048), progress=False)
    resumed = train(_cfg(class_folder, tmp_path / "b", 0.096), resume=part, progress=False)
    assert _trace(resumed) == trace
    a = ckpt.load_latest_checkpoint(full / "checkpoints")[1]
    b = ckpt.load_latest_checkpoint(resumed / "checkpoints")[1]
    assert a["step"] == b["step"] == 12 and a["task"] == b["task"]
    assert a["task"]["ada"]["p"] == pytest.approx(0.96) and a["task"]["ada"]["step"] == 12
    a, b = a["modules"], b["modules"]
    for k, v in a["G_ema"].items():
        assert torch.equal(v, b["G_ema"][k]), k
    assert a["G_ema"]["mapping.w_avg"].abs().sum() > 0  # the mean w is tracked (for truncation)


def test_stylegan2_ada_kill_and_resume(class_folder, tmp_path):
    """SIGKILL mid-run (possibly mid-write); --resume continues p, step and G_ema as if never stopped."""
    sets = ["model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2", "model.g_width=8", "model.d_width=8",
            "model.max_width=32", "loss.ada_target=-0.95", "loss.ada_kimg=0.2", "loss.ada_interval=2",
            "loss.pl_every_steps=2", "run.tick_kimg=0.008", "run.checkpoint_every_kimg=0.008",
            "run.snapshot_every_kimg=0.008", "run.sample_every_kimg=1"]
    cmd = [PYTHON, "-m", "ganforge", "train", "--data", str(class_folder), "--preset", "stylegan2-32",
           "--resolution", "16", "--batch", "8", "--aug", "ada", "--kimg", "0.24", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    ref = subprocess.run(cmd + ["--out", str(tmp_path / "ref")], env=python_env(), capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr
    run = kill_after_checkpoints(cmd, tmp_path / "k")
    killed_at = ckpt.load_latest_checkpoint(run / "checkpoints")[1]["step"]
    assert killed_at < 30  # it really was interrupted
    done = subprocess.run([PYTHON, "-m", "ganforge", "train", "--resume", str(run), "--no-progress"],
                          env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref_run = next((tmp_path / "ref").glob("0*"))
    assert _trace(run) == _trace(ref_run)
    a = ckpt.load_latest_checkpoint(ref_run / "checkpoints")[1]
    b = ckpt.load_latest_checkpoint(run / "checkpoints")[1]
    assert a["step"] == b["step"] == 30 and a["task"] == b["task"] and a["task"]["ada"]["p"] > 0
    a, b = a["modules"], b["modules"]
    for k, v in a["G_ema"].items():
        assert torch.equal(v, b["G_ema"][k]), k


def test_gradient_accumulation(class_folder, tmp_path):
    """batch 8 as 4 micro-batches of 2: same number of steps and images, finite losses."""
    run = train(_cfg(class_folder, tmp_path, 0.032, optim={"batch_per_device": 2}), progress=False)
    stats = read_jsonl(run / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3, 4] and stats[-1]["kimg"] == 0.032
    assert all(torch.isfinite(torch.tensor(v)) for r in stats for k, v in r.items() if k.startswith("loss/"))
    with pytest.raises(ConfigError, match="multiple of optim.batch_per_device"):
        _cfg(class_folder, tmp_path, 0.032, optim={"batch_per_device": 3})


def test_snapshot_truncation_and_const_noise(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    G = ganforge.load(run)
    assert G.is_style
    a = G.generate([0, 1, 2])
    assert torch.equal(G.generate([1]), a[1:2]) or torch.allclose(G.generate([1]), a[1:2], atol=1e-5)
    same = G.generate([0, 1, 2], psi=0.0)  # every latent collapses onto the tracked mean w
    assert torch.allclose(same[0], same[1], atol=1e-5) and torch.allclose(same[0], same[2], atol=1e-5)
    half = G.generate([0, 1], psi=0.5)
    assert not torch.allclose(half, a[:2], atol=1e-4)
    dcgan = ganforge.load(train(resolve_config("dcgan-32", tiny_overrides(str(class_folder), tmp_path / "d", 0.008)),
                                progress=False))
    with pytest.raises(ValueError, match="needs a StyleGAN2 snapshot"):
        dcgan.generate([0], psi=0.7)


def test_stylegan2_config_rules(tmp_path):
    cfg = resolve_config("stylegan2-64")
    assert cfg.r1_gamma_value() == pytest.approx(0.0002 * 64**2 / 64)
    for overrides, message in [
        ({"model": {"cond": "acgan"}}, r"model.cond \(arch stylegan2\): Input should be 'none' or 'projection'"),
        ({"loss": {"ada": "bgx"}}, "unknown ADA op group"),
        ({"loss": {"r1_gamma": "big"}}, "loss.r1_gamma"),
        ({"loss": {"ada": "bgc", "diffaugment": "color"}}, "alternatives"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_config("stylegan2-32", overrides)
    with pytest.raises(ConfigError, match="need model.arch='stylegan2'"):
        resolve_config("dcgan-32", {"loss": {"pl_weight": 2.0}})
    with pytest.raises(ConfigError, match="freeze_d=4 is more than D's 3 blocks"):
        resolve_config("stylegan2-32", {"model": {"freeze_d": 4}})
    with pytest.raises(ConfigError, match=r"model.freeze_d \(arch dcgan\): Extra inputs are not permitted"):
        resolve_config("dcgan-32", {"model": {"freeze_d": 1}})
    res = CliRunner().invoke(app, ["train", "--data", "shapes", "--preset", "stylegan2-32", "--aug", "ada",
                                   "--dry-run"])
    assert res.exit_code == 0, res.output
    loss = json.loads(res.output)["loss"]
    assert loss["ada"] == "bgc" and loss["diffaugment"] == "" and loss["r1_gamma"] == "auto"


def test_style_mix_grid(style_run, tmp_path):
    from PIL import Image

    from ganforge.infer.style import style_layers

    G = ganforge.load(style_run)
    assert G.net.num_ws == 6  # 16 px: 4 (1 conv) -> 8 (2) -> 16 (2), + the last toRGB
    assert list(style_layers(6, "coarse")) == [0, 1, 2, 3] and list(style_layers(6, "middle")) == [4, 5]
    assert list(style_layers(14, "fine")) == list(range(8, 14)) and list(style_layers(6, "2-5")) == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="outside 0-5"):
        style_layers(6, "3-9")
    res = CliRunner().invoke(app, ["style-mix", str(style_run), "--rows", "0-2", "--cols", "3-4", "--class", "1",
                                   "--styles", "coarse", "-o", str(tmp_path / "mix.png")])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(tmp_path / "mix.png"))
    assert grid.shape[:2] == (4 * 16 + 3 * 2, 3 * 16 + 2 * 2)  # header row + 3 rows, header column + 2 columns
    # A cell with all styles from the column seed is the column seed's image.
    from ganforge.infer.style import seed_ws, synthesize_ws

    rows, cols = seed_ws(G, [0], 1), seed_ws(G, [3], 1)
    assert torch.allclose(synthesize_ws(G, cols), G.generate([3], 1), atol=1e-5)
    mixed = rows.clone()
    mixed[:, :4] = cols[:, :4]
    assert not torch.allclose(synthesize_ws(G, mixed), synthesize_ws(G, rows), atol=1e-4)


def test_synthesize_writes_labelled_folder_and_manifest(style_run, tmp_path):
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["synthesize", str(style_run), "--per-class", "4", "--trunc", "0.7",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {r["class_name"] for r in records} == {"bar", "disc", "square"}
    assert len({r["snapshot_sha256"] for r in records}) == 1 and all(r["psi"] == 0.7 for r in records)
    # Any image can be regenerated from its manifest line.
    from PIL import Image

    G = ganforge.load(style_run)
    r = records[5]
    again = ((G.generate([r["seed"]], r["class"], psi=r["psi"])[0] + 1) * 127.5).round().clamp(0, 255)
    saved = torch.from_numpy(np.asarray(Image.open(out / r["file"]))).permute(2, 0, 1).float()
    assert (again - saved).abs().max() <= 1
    # The written folder is a labelled dataset ganforge can train on.
    from ganforge.data import load_dataset

    assert load_dataset(str(out), 16).num_classes == 3
    res = CliRunner().invoke(app, ["synthesize", str(style_run), "--per-class", "2", "--out", str(out)])
    assert res.exit_code == 1 and "not empty" in res.output


def test_transfer_learning_with_freeze_d(class_folder, tmp_path):
    source = train(_cfg(class_folder, tmp_path / "a", 0.032), progress=False)
    src = ckpt.load_latest_checkpoint(source / "checkpoints")[1]
    # A new run starts from the source's weights (step 0, fresh optimizers) and keeps D's first block fixed.
    cfg = _cfg(class_folder, tmp_path / "b", 0.032, model={"freeze_d": 1}, run={"init_from": str(source), "seed": 5})
    run = train(cfg, progress=False)
    assert "initialised from" in (run / "log.txt").read_text()
    new = ckpt.load_latest_checkpoint(run / "checkpoints")[1]
    assert new["step"] == 4 and len(new["optimizers"]["D"]["state"]) < len(src["optimizers"]["D"]["state"])
    src, new = src["modules"], new["modules"]
    frozen = [k for k in src["D"] if k.startswith("blocks.0.")]
    assert frozen and all(torch.equal(src["D"][k], new["D"][k]) for k in frozen)
    trained = [k for k in src["D"] if k.startswith("blocks.1.") and k.endswith("weight")]
    assert trained and not all(torch.equal(src["D"][k], new["D"][k]) for k in trained)
    # The transferred G moved a little from the source's; a fresh run with the same seed is far from both.
    fresh = ckpt.load_latest_checkpoint(train(_cfg(class_folder, tmp_path / "c", 0.032, run={"seed": 5}),
                                              progress=False) / "checkpoints")[1]["modules"]
    key = "synthesis.blocks.0.conv1.weight"
    assert 0 < (new["G"][key] - src["G"][key]).abs().max() < 0.1 < (fresh["G"][key] - src["G"][key]).abs().max()


def test_init_from_snapshot_and_mismatch_errors(class_folder, tmp_path):
    from ganforge.tasks import GanTask

    source = train(_cfg(class_folder, tmp_path / "a", 0.032), progress=False)
    cfg = _cfg(class_folder, tmp_path / "b", 0.032)
    task = GanTask(cfg.model, cfg.loss, cfg.optim, cfg.data.resolution, channels=3)
    note = ckpt.init_weights(source / "snapshots" / "latest", "stylegan2", task.modules, task.snapshot_modules,
                             task.ema)
    assert "D fresh" in note
    weights = snap.load_snapshot(source / "snapshots" / "latest")[0]["G"]
    assert all(torch.equal(v, weights[k]) for k, v in task.G.state_dict().items())
    assert all(torch.equal(v, weights[k]) for k, v in task.G_ema.state_dict().items())
    with pytest.raises(ckpt.CheckpointError, match="holds a stylegan2 model; this run trains dcgan"):
        ckpt.init_weights(source, "dcgan", {"G": task.G}, {"G": "G"}, {})
    wcfg = _cfg(class_folder, tmp_path / "c", 0.032, model={"g_width": 16, "max_width": 64})
    wide = GanTask(wcfg.model, wcfg.loss, wcfg.optim, wcfg.data.resolution, 3)
    with pytest.raises(ckpt.CheckpointError, match="G tensors match this run's shapes"):
        ckpt.init_weights(source, "stylegan2", {"G": wide.G}, {"G": "G"}, {})
