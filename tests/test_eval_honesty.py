"""`ganforge eval` says what it knows and fails early: a bad --device or a metric the snapshot cannot give stops
before any work with one `error:` line; a reference set the judge was not trained for, and unreadable files, are
warnings in the output and in the record; PPL follows --num and reports progress; help and the presets table are
readable at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.metrics import domain, progress
from ganforge.metrics.evaluate import evaluate_sets, evaluate_snapshot
from ganforge.metrics.judge import save_judge, train_judge
from ganforge.nets.classifier import Classifier
from tests.conftest import make_class_folder, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return res.exit_code, res.output


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def noise_folder(root: Path, n: int = 12, size: int = 32, channels: int = 1, bad: int = 0) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = (size, size) if channels == 1 else (size, size, channels)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"{i:03d}.png")
    for i in range(bad):
        (root / f"broken{i}.png").write_bytes(b"not an image at all")
    return root


@pytest.fixture(scope="module")
def dcgan_snapshot(tmp_path_factory) -> Path:
    from ganforge.config import resolve_config
    from ganforge.training.loop import train

    root = tmp_path_factory.mktemp("dcgan")
    cfg = resolve_config("dcgan-32", tiny_overrides(str(make_class_folder(root / "data", n_per_class=4)),
                                                    root / "runs", 0.016))
    return train(cfg, progress=False) / "snapshots" / "latest"


@pytest.fixture(scope="module")
def digits_judge(tmp_path_factory) -> Path:
    """A judge trained by `judge train`'s library call, so it carries domain statistics."""
    pytest.importorskip("sklearn")
    net, meta = train_judge("digits", 8, "pad", epochs=6, width=8, seed=0, log=lambda m: None)  # ~60 % accurate
    return save_judge(net, tmp_path_factory.mktemp("digits-judge"), "judge-digits", meta).with_suffix("")


# ---------------------------------------------------------------------------------------------------------
# --device is checked first (item 8)


@pytest.mark.parametrize("mode", ["sets", "snapshot", "pairs", "cas"])
def test_bad_device_is_one_error_line_before_any_work(mode, tmp_path):
    # The paths do not exist: the device error must come first, as one line, without a traceback.
    missing = tmp_path / "nowhere"
    args = {"sets": ["sets", missing, missing], "snapshot": ["snapshot", missing, "--data", missing],
            "pairs": ["pairs", missing, missing], "cas": ["cas", missing, "--data", missing]}[mode]
    devices = ["foo"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        code, out = run("eval", *args, "--device", device)
        assert code == 1, out
        assert out.startswith("error: --device") and out.count("\n") == 1 and "Traceback" not in out, out
        assert "cpu" in out


# ---------------------------------------------------------------------------------------------------------
# The domain check (item 12)


def test_shipped_judge_warns_on_colour_images_unlike_fashion_mnist(tmp_path):
    real = make_class_folder(tmp_path / "real", n_per_class=8, size=32)   # colour shapes, nothing like clothing
    fake = noise_folder(tmp_path / "fake")
    code, out = run("eval", "sets", real, fake, "--json", "--cache-dir", tmp_path / "c")
    assert code == 0, out
    rec = last_json(out)
    warnings = rec["protocol"]["warnings"]
    assert len(warnings) == 2 and "in colour" in warnings[0] and "outside the judge's domain" in warnings[1]
    assert "ganforge judge train --data" in warnings[-1] and "--extractor inception" in warnings[-1]
    check = rec["protocol"]["domain_check"]
    assert check["checked"] and check["out_of_domain_fraction"] > domain.OUT_FRACTION
    assert check["colour_spread"] > domain.COLOUR_SPREAD
    assert out.count("warning:") >= 2  # printed too (stderr), not only recorded
    # The shipped judge's statistics ship with it and belong to it.
    from ganforge.metrics.extractors import SHIPPED_JUDGE, get_extractor

    stats, note = domain.load_domain(SHIPPED_JUDGE, get_extractor("judge").sha256)
    assert stats is not None and stats.class_means.shape == (10, 128) and 10 < stats.threshold < 30, note


def test_judge_train_saves_domain_statistics_and_in_domain_data_passes(digits_judge, tmp_path):
    meta = json.loads(digits_judge.with_suffix(".json").read_text())
    assert meta["domain_check"]["classes"] == 10 and domain.domain_path(digits_judge).is_file()
    logs: list[str] = []
    ok = evaluate_sets("digits", "digits", ["fid"], f"judge:{digits_judge}", cache_dir=tmp_path / "c", log=logs.append)
    assert ok.protocol["warnings"] == [] and ok.protocol["domain_check"]["out_of_domain_fraction"] < 0.1
    # Blank pages: gray like the digits, but far from them in feature space.
    pages = tmp_path / "pages"
    pages.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(225, 256, (8, 8), dtype=np.uint8)).save(pages / f"{i:02d}.png")
    bad = evaluate_sets(pages, "digits", ["fid"], f"judge:{digits_judge}", cache_dir=tmp_path / "c", log=logs.append)
    assert len(bad.protocol["warnings"]) == 1, bad.protocol["domain_check"]
    assert "outside the judge's domain" in bad.protocol["warnings"][0]
    assert any(m.startswith("warning: the reference set REAL") for m in logs)
    # A judge without statistics (older ones) gets the colour rule only, and the record says why.
    domain.domain_path(digits_judge).rename(tmp_path / "moved.safetensors")
    try:
        old = evaluate_sets(pages, "digits", ["fid"], f"judge:{digits_judge}", cache_dir=tmp_path / "c",
                            log=logs.append)
    finally:
        (tmp_path / "moved.safetensors").rename(domain.domain_path(digits_judge))
    assert old.protocol["warnings"] == [] and "no domain statistics" in old.protocol["domain_check"]["statistics"]


def test_mahalanobis_domain_statistics():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    y = torch.arange(400) % 2
    train = centres[y] + torch.randn(400, 3, generator=g)
    held = centres[torch.arange(200) % 2] + torch.randn(200, 3, generator=g)
    stats = domain.fit_domain(train, y, held, "train", "held")
    assert (stats.scores(held) > stats.threshold).double().mean() == pytest.approx(0.01, abs=0.011)
    far = torch.randn(50, 3, generator=g) + torch.tensor([3.0, 8.0, 0.0])  # between the classes, off-axis
    assert (stats.scores(far) > stats.threshold).all()


# ---------------------------------------------------------------------------------------------------------
# Metric lists checked against the snapshot first; PPL follows --num and shows progress (item 13)


def test_ppl_on_a_non_stylegan_snapshot_fails_before_any_work(dcgan_snapshot, tmp_path):
    data = make_class_folder(tmp_path / "data", n_per_class=4)
    code, out = run("eval", "snapshot", dcgan_snapshot, "--data", data, "--num", 8, "--metrics", "fid,kid,is,ppl",
                    "--cache-dir", tmp_path / "cache")
    assert code == 1 and "ppl" in out and "StyleGAN2" in out and "--metrics fid,kid,is" in out, out
    assert not (tmp_path / "cache").exists()  # no features were computed (and thrown away) first
    assert not (dcgan_snapshot.parent.parent / "metrics.jsonl").exists()


def test_ppl_follows_num_and_reports_progress(style_run, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # every step reports, however quick
    data = make_class_folder(tmp_path / "data", n_per_class=4)
    judge = save_judge(Classifier(resolution=16, channels=3, num_classes=3, width=4), tmp_path / "j", "j",
                       {}).with_suffix("")
    logs: list[str] = []
    rec = evaluate_snapshot(style_run / "snapshots" / "latest", str(data), ["fid", "ppl"], f"judge:{judge}", num=12,
                            cache_dir=tmp_path / "c", write=False, log=logs.append)
    assert rec.protocol["settings"]["ppl"]["num_samples"] == 12
    assert any(m.startswith("ppl (w space): ") for m in logs) and any(m.startswith("generating samples") for m in logs)
    assert any(m.startswith("judge features of") for m in logs)
    rec = evaluate_snapshot(style_run / "snapshots" / "latest", str(data), ["ppl"], f"judge:{judge}", num=12,
                            ppl_samples=5, cache_dir=tmp_path / "c", write=False, log=logs.append)
    assert rec.protocol["settings"]["ppl"]["num_samples"] == 5


# ---------------------------------------------------------------------------------------------------------
# One folder given, and unreadable files (item 15)


def test_one_folder_suggests_the_two_set_command(style_run, tmp_path):
    folder = noise_folder(tmp_path / "imgs", n=3)
    code, out = run("eval", "sets", folder)
    assert code == 2 and "ganforge eval sets REAL FAKE" in out and "Traceback" not in out
    code, out = run("eval", "snapshot", folder, "--data", folder)
    assert code == 1 and "folder of images, not a snapshot" in out and "ganforge eval sets REAL FAKE" in out


def test_unreadable_files_are_counted_and_named(tmp_path):
    real = noise_folder(tmp_path / "real", n=10, bad=7)
    code, out = run("eval", "sets", real, noise_folder(tmp_path / "fake", n=10), "--metrics", "fid", "--json",
                    "--cache-dir", tmp_path / "c")
    assert code == 0, out
    rec = last_json(out)
    skipped = rec["protocol"]["real"]["skipped"]
    assert skipped["count"] == 7 and len(skipped["first"]) == 5 and skipped["first"][0].startswith("broken0.png")
    assert rec["protocol"]["fake"]["skipped"]["count"] == 0
    line = [w for w in rec["protocol"]["warnings"] if "unreadable image file" in w]
    assert len(line) == 1 and "7 unreadable image files skipped: broken0.png" in line[0] and "and 2 more" in line[0]
    assert "warning:" in out.split(rec["kind"])[0]  # said on stderr before the JSON too

    outs, refs = noise_folder(tmp_path / "outs", n=3, channels=3), noise_folder(tmp_path / "refs", n=3, channels=3)
    (outs / "001.png").write_bytes(b"truncated")
    code, out = run("eval", "pairs", outs, refs, "--json")
    assert code == 0, out
    p = last_json(out)["protocol"]
    assert p["pairs"] == 2 and p["skipped"]["count"] == 1 and p["skipped"]["first"][0].startswith("001")


# ---------------------------------------------------------------------------------------------------------
# 80 columns (item 16)


@pytest.mark.parametrize("args", [["presets"], ["eval", "--help"], ["eval", "sets", "--help"],
                                  ["eval", "snapshot", "--help"], ["judge", "train", "--help"]])
def test_readable_at_80_columns(args):
    code, out = run(*args, env={"COLUMNS": "80"})
    assert code == 0, out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
    if args == ["presets"]:
        assert "2e-4" in out and "2.5e-3" in out and "stylegan2-512" in out and "0.5,0.999" in out
    if args[-2:] == ["snapshot", "--help"]:  # literal brackets are shown, not eaten as markup
        assert "~/.cache/ganforge/features]" in out and "[default: --num]" in out
        assert "auto | cpu | cuda" in out
