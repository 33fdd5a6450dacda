"""The CLI as a user drives it: dry runs, config errors that name the field, dataset inspection, the
train -> generate -> resume flow and the resume rules (training/resume.py). Startup time: test_cli_startup.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.cli.base import parse_seeds
from ganforge.config import ConfigError, resolve_config
from ganforge.training import resume
from ganforge.training.rundir import read_jsonl

runner = CliRunner()

TINY = ["--resolution", "16", "--batch", "8", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "model.max_width=32", "--set", "model.z_dim=16", "--set", "run.tick_kimg=0.008",
        "--set", "run.snapshot_every_kimg=0.032", "--set", "run.checkpoint_every_kimg=0.032",
        "--set", "run.sample_every_kimg=0.032", "--no-progress"]


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


# ---------------------------------------------------------------------------------------------------------
# config: --dry-run and errors that name the field
# ---------------------------------------------------------------------------------------------------------

def test_dry_run_prints_resolved_config():
    code, out = cli("train", "--data", "fashion-mnist", "--preset", "sngan-cond-32", "--kimg", "500",
                    "--batch", "32", "--set", "optim.d_steps=2", "--dry-run")
    assert code == 0, out
    cfg = json.loads(out)
    assert cfg["preset"] == "sngan-cond-32"
    assert cfg["model"]["arch"] == "sngan" and cfg["model"]["cond"] == "projection"
    assert cfg["loss"]["adversarial"] == "hinge"
    assert cfg["optim"]["batch"] == 32 and cfg["optim"]["d_steps"] == 2 and cfg["run"]["kimg"] == 500


@pytest.mark.parametrize("args,field,hint", [
    (["--batch", "0"], "optim.batch", "greater than or equal to 1"),
    (["--set", "optim.g_lr=abc"], "optim.g_lr", "valid number"),
    (["--set", "model.nope=1"], "model.nope (arch dcgan)", "not permitted"),
    (["--resolution", "30"], "data.resolution", "r0*2^n"),
    (["--loss", "l2"], "loss.adversarial", "'ns', 'hinge', 'wgan' or 'lsgan'"),
    (["--set", "optim.batch"], "optim.batch", "SECTION.FIELD=VALUE"),
    (["--preset", "dcgan-256"], "dcgan-256", "valid presets: dcgan-32"),
])
def test_invalid_values_fail_before_training_naming_the_field(tmp_path, args, field, hint):
    code, out = cli("train", "--data", "shapes", "--out", tmp_path, *args)
    assert code == 1, out
    assert field in out and hint in out
    assert "Traceback" not in out
    assert not list(tmp_path.iterdir())  # nothing was started


def test_data_is_required():
    code, out = cli("train", "--preset", "dcgan-32", "--dry-run")
    assert code == 1 and "--data is required" in out


def test_presets_lists_the_table():
    code, out = cli("presets")
    assert code == 0
    for name in ("dcgan-32", "dcgan-64", "sngan-cond-32", "acgan-32", "wgan-gp-32"):
        assert name in out


def test_parse_seeds():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds("7") == [7]
    for bad in ("3-1", "a", ""):
        with pytest.raises(typer.BadParameter):
            parse_seeds(bad)


# ---------------------------------------------------------------------------------------------------------
# dataset inspect
# ---------------------------------------------------------------------------------------------------------

def test_inspect_reports_classes_sizes_and_bad_files(class_folder):
    (class_folder / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = class_folder / "square" / "000.png"
    (class_folder / "square" / "truncated.png").write_bytes(good.read_bytes()[:60])
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(class_folder / "bar" / "gray.png")
    code, out = cli("dataset", "inspect", class_folder)
    assert code == 0, out
    assert "51 found, 49 loaded, 2 skipped" in out
    assert "classes: 3 (bar: 17, disc: 16, square: 16)" in out
    assert "broken.png" in out and "truncated.png" in out
    code, out = cli("dataset", "inspect", class_folder, "--json")
    report = json.loads(out)
    assert report["files_loaded"] == 49 and report["sizes"] == {"20x20": 48, "30x40": 1}
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == ["broken.png", "truncated.png"]


def test_inspect_empty_or_missing_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    code, out = cli("dataset", "inspect", empty)
    assert code == 1 and "no usable images" in out and "among 1 other files" in out
    code, out = cli("dataset", "inspect", tmp_path / "nowhere")
    assert code == 1 and "nowhere" in out and "Traceback" not in out


def test_inspect_builtin():
    code, out = cli("dataset", "inspect", "shapes", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["files_loaded"] > 0 and len(report["class_counts"]) >= 2


# ---------------------------------------------------------------------------------------------------------
# train -> generate -> resume, through the CLI
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cond_run(tmp_path_factory) -> Path:
    from tests.conftest import make_class_folder

    root = tmp_path_factory.mktemp("cli")
    data = make_class_folder(root / "data")
    code, out = cli("train", "--data", data, "--preset", "sngan-cond-32", "--kimg", "0.032", "--seed", "7",
                    "--out", root / "runs", *TINY)
    assert code == 0, out
    return next((root / "runs").glob("00000-*"))


def test_generate_grid_outdir_and_walk(cond_run, tmp_path):
    snap = cond_run / "snapshots" / "latest"
    code, out = cli("generate", snap, "--seeds", "0-5", "--class", "2", "--grid", tmp_path / "g.png", "--cols", "3",
                    "--outdir", tmp_path / "imgs")
    assert code == 0, out
    assert Image.open(tmp_path / "g.png").size == (3 * 16 + 2 * 2, 2 * 16 + 1 * 2)  # 3 x 2 tiles, 2 px gutters
    files = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    assert files == [f"seed{s:06d}.png" for s in range(6)]
    # Same seed, same class -> the same image, whether the snapshot is named with or without its suffix.
    code, _ = cli("generate", f"{snap}.safetensors", "--seeds", "3", "--class", "2", "--outdir", tmp_path / "again")
    assert code == 0
    a = np.asarray(Image.open(tmp_path / "imgs" / "seed000003.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "again" / "seed000003.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    code, out = cli("generate", snap, "--interpolate", "0,7", "--frames", "6", "--class", "1",
                    "--out", tmp_path / "walk.gif")
    assert code == 0, out
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 6 and gif.size == (16, 16)


def test_generate_errors_are_clear(cond_run, tmp_path):
    snap = cond_run / "snapshots" / "latest"
    code, out = cli("generate", snap, "--seeds", "0-3", "--grid", tmp_path / "g.png")
    assert code == 1 and "--class N with N in 0..2" in out and "0=bar" in out
    code, out = cli("generate", snap, "--class", "5", "--grid", tmp_path / "g.png")
    assert code == 1 and "class 5 out of range" in out
    code, out = cli("generate", snap, "--class", "0")
    assert code == 1 and "--grid" in out
    code, out = cli("generate", cond_run / "snapshots" / "nope", "--class", "0", "--grid", tmp_path / "g.png")
    assert code == 1 and "nope" in out and "Traceback" not in out


def test_resume_extends_and_refuses_changes(cond_run):
    code, out = cli("train", "--resume", cond_run, "--batch", "16")
    assert code == 1 and "cannot change optim.batch" in out
    code, out = cli("train", "--resume", cond_run, "--kimg", "0.048", "--no-progress")
    assert code == 0, out
    steps = [r["step"] for r in read_jsonl(cond_run / "stats.jsonl")]
    assert steps == list(range(1, 7))  # 0.032 kimg = 4 steps of 8, extended to 6
    assert json.loads((cond_run / "config.json").read_text())["run"]["kimg"] == 0.048
    assert "resumed" in (cond_run / "log.txt").read_text()


def test_resume_config_allows_only_the_listed_fields(tmp_path, monkeypatch):
    run = tmp_path / "00000-shapes-dcgan-32"
    run.mkdir()
    base = resolve_config("dcgan-32", {"data": {"source": "shapes"}, "run": {"kimg": 1}})
    (run / "config.json").write_text(base.to_json())
    cfg = resume.resume_config(run, {"run": {"kimg": 2.5, "threads": 1}, "optim": {}})
    assert (cfg.run.kimg, cfg.run.threads) == (2.5, 1) and cfg.model == base.model and cfg.optim == base.optim
    with pytest.raises(ConfigError, match=r"cannot change optim\.batch, loss\.adversarial \(only --kimg, --minutes, "
                                          r"--threads, --device, run\.channels_last, optim\.g_lr, optim\.d_lr, "
                                          r"loss\.r1_gamma.*\)\. Start"):
        resume.resume_config(run, {"optim": {"batch": 16}, "loss": {"adversarial": "hinge"}, "run": {"kimg": 2}})
    with pytest.raises(ConfigError, match="cannot change --preset"):
        resume.resume_config(run, {}, preset="dcgan-64")
    with pytest.raises(ConfigError, match="run.kimg"):  # an allowed field is still validated
        resume.resume_config(run, {"run": {"kimg": -1}})
    with pytest.raises(FileNotFoundError, match="--resume takes a run folder"):
        resume.resume_config(tmp_path / "nowhere", {})
    # The rule is data: one more entry in the table allows one more field.
    with pytest.raises(ConfigError, match="cannot change optim.beta1"):
        resume.resume_config(run, {"optim": {"beta1": 0.1}})
    monkeypatch.setattr(resume, "RESUME_CHANGEABLE", (*resume.RESUME_CHANGEABLE, "optim.beta1"))
    assert resume.resume_config(run, {"optim": {"beta1": 0.1}}).optim.beta1 == 0.1
    with pytest.raises(ConfigError, match=r"loss\.coarse_weight, optim\.beta1\)"):
        resume.resume_config(run, {"optim": {"beta2": 0.5}})
    with pytest.raises(ConfigError, match="l1_weight"):  # a weight this task does not have is refused by name
        resume.resume_config(run, {"loss": {"l1_weight": 50.0}})
    p2p = tmp_path / "00001-photos-pix2pix-64"
    p2p.mkdir()
    (p2p / "config.json").write_text(resolve_config("pix2pix-64", {"data": {"source": "shapes", "derive": "edges"}})
                                     .to_json())
    assert resume.resume_config(p2p, {"loss": {"l1_weight": 50.0}}).loss.l1_weight == 50.0


def test_error_messages_are_plain_text_not_markup(tmp_path):
    odd = tmp_path / "a[red]b[/x]"
    code, out = cli("generate", odd / "snapshots" / "latest", "--grid", tmp_path / "g.png")
    assert code == 1 and "a[red]b[/x]" in out and "Traceback" not in out
