"""`ganforge eval sets | snapshot | pairs | cas`: folders, a snapshot against a dataset (metrics.jsonl, feature
cache), paired image metrics, CAS, and the errors a user sees."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.metrics.image import psnr
from ganforge.metrics.judge import save_judge
from ganforge.nets.classifier import Classifier
from tests.conftest import make_class_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    torch.manual_seed(0)
    net = Classifier(resolution=16, channels=3, num_classes=3, width=4).eval()
    return str(save_judge(net, tmp_path_factory.mktemp("judge"), "j", {"input_fit": "resize"}).with_suffix(""))


def run(*args):
    res = CliRunner().invoke(app, ["eval", *map(str, args)])
    return res.exit_code, res.output


def test_two_folders_json_with_protocol(judge, tmp_path):
    a = make_class_folder(tmp_path / "a", n_per_class=12)
    b = make_class_folder(tmp_path / "b", n_per_class=12, classes=("disc", "bar", "square"))
    code, out = run("sets", a, b, "--metrics", "fid,kid,pr,dc,is", "--extractor", f"judge:{judge}", "--json",
                    "--cache-dir", tmp_path / "cache")
    assert code == 0, out
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["kind"] == "sets" and {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
                                      "is", "is_std"} <= set(rec["metrics"])
    p = rec["protocol"]
    assert p["extractor"]["extractor"] == "judge" and len(p["extractor"]["sha256"]) == 64
    assert p["real"]["count"] == 36 and p["settings"]["kid"]["subset_size"] == 36  # adapts to the small set
    code, out = run("sets", a, a, "--metrics", "fid", "--extractor", f"judge:{judge}", "--json",
                    "--cache-dir", tmp_path / "cache")
    assert code == 0 and abs(json.loads(out.strip().splitlines()[-1])["metrics"]["fid"]) < 1e-6


def test_snapshot_against_dataset_writes_metrics_jsonl_and_reuses_cache(style_run, judge, tmp_path):
    data = make_class_folder(tmp_path / "data")
    args = ["snapshot", style_run / "snapshots" / "latest", "--data", data, "--num", 48, "--metrics", "fid,kid,ppl",
            "--extractor", f"judge:{judge}", "--cache-dir", tmp_path / "cache", "--json"]
    code, out = run(*args)
    assert code == 0, out
    rec = json.loads(out.strip().splitlines()[-1])
    assert {"fid", "kid", "ppl"} <= set(rec["metrics"]) and rec["metrics"]["ppl"] >= 0
    assert rec["protocol"]["samples"] == "seeds 0..47, class = seed % 3"
    assert len(rec["protocol"]["snapshot_sha256"]) == 64
    lines = (style_run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["metrics"] == rec["metrics"]
    cached = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert len(cached) == 2  # the dataset's features and the snapshot's samples
    mtimes = [f.stat().st_mtime_ns for f in cached]
    code, out = run(*args)
    assert code == 0 and [f.stat().st_mtime_ns for f in cached] == mtimes  # served from the cache
    assert json.loads(out.strip().splitlines()[-1])["metrics"]["fid"] == rec["metrics"]["fid"]


def test_pairs_psnr_ssim_and_errors(judge, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "out").mkdir()
    refs, outs = [], []
    for i in range(3):
        ref = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        out = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(tmp_path / "ref" / f"im{i}.png")
        Image.fromarray(out).save(tmp_path / "out" / f"im{i}.png")
        refs.append(ref)
        outs.append(out)
    code, out = run("pairs", tmp_path / "out", tmp_path / "ref", "--metrics", "psnr,ssim,perceptual",
                    "--extractor", f"judge:{judge}", "--json")
    assert code == 0, out
    rec = json.loads(out.strip().splitlines()[-1])
    expected = np.mean([float(psnr(o, r)[0]) for o, r in zip(outs, refs, strict=True)])
    assert rec["metrics"]["psnr"] == pytest.approx(expected, rel=1e-9) and 0 < rec["metrics"]["ssim"] < 1
    assert rec["protocol"]["pairs"] == 3 and rec["metrics"]["perceptual"] > 0
    Image.fromarray(refs[0][:20]).save(tmp_path / "out" / "im0.png")
    code, out = run("pairs", tmp_path / "out", tmp_path / "ref")
    assert code == 1 and "im0.png is 24x20" in out and "equal sizes" in out
    code, out = run("pairs", tmp_path / "out", tmp_path / "judge-nowhere")
    assert code == 1 and "no file names in common" in out


def test_cas_from_the_cli(style_run, tmp_path):
    root = tmp_path / "labelled"
    make_class_folder(root / "train", n_per_class=10)
    make_class_folder(root / "test", n_per_class=4)
    code, out = run("cas", style_run / "snapshots" / "latest", "--data", root, "--real-per-class", "2,5",
                    "--synthetic-per-class", 4, "--seeds", "0-1", "--steps", 10, "--json")
    assert code == 0, out
    rep = json.loads(out.strip().splitlines()[-1])
    assert {r["arm"] for r in rep["results"]} == {"real", "real+synthetic", "synthetic", "real+classical"}


def test_eval_errors_name_the_problem(style_run, tmp_path):
    code, out = run("sets", tmp_path, tmp_path, "--metrics", "fid,lpips")
    assert code == 1 and "unknown metric(s) lpips" in out and "fid, kid, pr, dc, is" in out
    code, out = run("snapshot", style_run / "snapshots" / "latest")
    assert code == 2 and "eval snapshot needs --data" in out and "eval sets REAL FAKE" in out
    code, out = run("cas", style_run / "snapshots" / "latest")
    assert code == 2 and "Missing option" in out and "--data" in out
    code, out = run("sets", tmp_path, tmp_path, "--extractor", f"inception:{tmp_path / 'none.pt'}")
    assert code == 1 and "inception-2015-12-05.pt" in out
    code, out = run("sets", "a", "b", "c")
    assert code == 2 and "unexpected extra argument" in out
    code, out = run("cas", style_run, "--data", tmp_path, "--real-per-class", "10,many")
    assert code == 2 and "'10,many' is not a comma list" in out
    # Each mode takes only its own options, and the mode is a subcommand, never guessed from the paths.
    code, out = run("pairs", tmp_path, tmp_path, "--num", 5)
    assert code == 2 and "No such option" in out and "--num" in out
    code, out = run(tmp_path, tmp_path)
    assert code == 2 and "No such command" in out
