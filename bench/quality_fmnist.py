"""Fashion-MNIST quality under a fixed CPU wall-clock budget, scored by a domain classifier ("judge").

Stages (run them in order; each writes JSON into bench/results/ and pictures into docs/img/):

    python bench/quality_fmnist.py judge                 # train the judge (into src/ganforge/metrics/assets/)
    python bench/quality_fmnist.py domain                # only refit its domain statistics (eval warnings)
    python bench/quality_fmnist.py train dcgan --minutes 15
    python bench/quality_fmnist.py train sngan-cond --minutes 15
    python bench/quality_fmnist.py floors                # judge-FID of real train vs test, and noise vs test
    python bench/quality_fmnist.py small-data --images 2000 --arms none,ada --minutes 20
    python bench/quality_fmnist.py small-data --images 200 --arms none,ada,diffaug --minutes 20
    python bench/quality_fmnist.py curve --run RUN_A --run RUN_B    # FID over a run's snapshots (overfitting)

small-data trains StyleGAN2 on a fixed subset of the training split (`data.max_images` with `data.subset_seed`
0: the same images for every arm) once per augmentation arm. The arms run at the same time, one process and
one thread each, for the same wall-clock minutes, so they share the machine equally (and share any outside
load equally too).

Protocol: 32x32 (28x28 zero-padded; models trained at 28x28 are padded the same way), 1 channel.
Features = the judge's penultimate layer (128-d).
FID/KID compare 10,000 generated images (1,000 per class for conditional models) with the 10,000 test images.
KID: 100 subsets of 1,000, unbiased polynomial-kernel MMD, reported x1000.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ganforge.config import deep_merge, parse_set, resolve_config
from ganforge.core.grid import save_grid, to_uint8
from ganforge.data import load_dataset
from ganforge.infer.snapshot import load_generator
from ganforge.metrics.distribution import frechet_distance, kernel_inception_distance
from ganforge.metrics.evaluate import generated_images
from ganforge.metrics.extractors import SHIPPED_JUDGE
from ganforge.metrics.judge import load_judge, save_judge, to_float, train_judge
from ganforge.training.loop import train

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
IMG = HERE.parent / "docs" / "img"
JUDGE = SHIPPED_JUDGE  # package data: src/ganforge/metrics/assets/ (`stage judge` rewrites it)
JUDGE_OUT = JUDGE.parent
RUNS = RESULTS / "runs"
RES = 32

MODELS = {
    # DCGAN at the preset's widths.
    "dcgan": ("dcgan-32", {}),
    # Conditional ResNet SNGAN (projection D + conditional BN), narrowed and at the native 28x28 (7 -> 14 -> 28)
    # so that a 15-minute CPU budget buys enough steps; batch 8, D lr 4e-4, G EMA half-life 2 kimg.
    # These were chosen by the pilots listed in docs/benchmarks.md (same kimg, on a GPU).
    "sngan-cond": ("sngan-cond-32", {"data": {"resolution": 28},
                                     "model": {"g_width": 32, "d_width": 32, "max_width": 128},
                                     "optim": {"batch": 8, "d_lr": 4e-4, "ema_kimg": 2}}),
    # StyleGAN2 at 32x32, narrowed (16 -> 32 -> 64 -> 128 channels from 32x32 down to 4x4) so that CPU minutes
    # buy ~100 kimg: at one thread this trains at ~80 img/s, width 32 at ~37 img/s.
    "stylegan2": ("stylegan2-32", {"model": {"g_width": 16, "d_width": 16, "max_width": 128},
                                   "optim": {"batch": 16}}),
}

# Augmentation arms of the small-data benchmark. ADA's p may move 0 -> 1 in 20 kimg (NVlabs: 500 kimg for
# runs 100x longer), so that it can react within a CPU budget.
ARMS = {
    "none": {},
    "ada": {"loss": {"ada": "bgc", "ada_kimg": 20}},
    "diffaug": {"loss": {"diffaugment": "color,translation,cutout"}},
}


def fmnist(split: str):
    return load_dataset("fashion-mnist", RES, resize="pad", split=split)


def features(judge, x: torch.Tensor) -> torch.Tensor:
    return judge.predict(x)[0]


def write(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result |= {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def stage_judge(epochs: int) -> None:
    # The same library call as `ganforge judge train --data fashion-mnist --epochs N` (which reproduces it).
    t0 = time.perf_counter()
    net, meta = train_judge("fashion-mnist", RES, "pad", epochs=epochs, seed=0)
    secs = time.perf_counter() - t0
    save_judge(net, JUDGE_OUT, JUDGE.name, meta)
    write("judge-quality", {"bench": "judge", "test_accuracy": round(meta["test_accuracy"], 4), "epochs": epochs,
                            "train_seconds": round(secs, 1), "params": sum(p.numel() for p in net.parameters())})


def stage_domain() -> None:
    # The statistics `ganforge judge train` now saves with every judge (train_judge), refitted for the shipped
    # judge without retraining it: training features for the Gaussians, test features for the threshold.
    from ganforge.core.files import file_sha256
    from ganforge.metrics.domain import fit_domain, save_domain
    from ganforge.metrics.judge import judge_features_of

    judge = load_judge(JUDGE)
    train_set, test = fmnist("train"), fmnist("test")
    stats = fit_domain(judge_features_of(judge, train_set.images), train_set.labels,
                       judge_features_of(judge, test.images), f"fashion-mnist training images ({len(train_set)})",
                       f"test split ({len(test)} images)")
    weights = JUDGE.with_suffix(".safetensors")
    path = save_domain(dataclasses.replace(stats, judge_sha256=file_sha256(weights)), weights)
    print(f"wrote {path}: threshold {stats.threshold:.3f}")


def stage_floors() -> None:
    judge = load_judge(JUDGE)
    train_set, test = fmnist("train"), fmnist("test")
    f_test = features(judge, to_float(test.images))
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(len(train_set), 10_000, replace=False))
    f_train = features(judge, to_float(train_set.images[sub]))
    noise = torch.rand(10_000, 1, RES, RES, generator=torch.Generator().manual_seed(0)) * 2 - 1
    f_noise = features(judge, noise)
    out = {"bench": "judge_floors", "protocol": "judge features, 10k vs 10k test, KID 100x1000"}
    for name, f in (("train_vs_test", f_train), ("noise_vs_test", f_noise)):
        kid, kid_std = kernel_inception_distance(f, f_test)
        out[name] = {"fid": round(frechet_distance(f, f_test), 3), "kid_x1000": round(kid * 1000, 3),
                     "kid_std_x1000": round(kid_std * 1000, 3)}
    write("judge-floors", out)


def stage_train(model: str, minutes: float | None, seed: int, kimg: float | None = None,
                sets: list[str] | None = None, device: str = "cpu", tag: str = "", images: int | None = None,
                arm: str = "none") -> None:
    preset, extra = MODELS[model]
    out = RUNS
    extra = deep_merge(extra, ARMS[arm])
    if images:
        extra = deep_merge(extra, {"data": {"max_images": images, "subset_seed": 0}})
    cfg = resolve_config(preset, deep_merge(deep_merge({
        "data": {"source": "fashion-mnist", "resize": "pad", "resolution": RES},
        "run": {"kimg": kimg or 100_000, "minutes": None if kimg else minutes, "seed": seed, "out": str(out),
                "tick_kimg": 2, "sample_every_kimg": 20, "snapshot_every_kimg": 20, "checkpoint_every_kimg": 20,
                "grid_samples": 100, "device": device}}, extra), parse_set(sets or [])))
    run = train(cfg, progress=False)
    evaluate(model, run, minutes, tag=tag, overrides=sets or [], images=images, arm=arm)


def stage_small_data(images: int, arms: list[str], minutes: float, seed: int, kimg: float | None,
                     sets: list[str], device: str, results: Path | None, suffix: str = "") -> None:
    """Runs one `train stylegan2` process per arm, all at once, one thread each."""
    procs = []
    for arm in arms:
        cmd = [sys.executable, __file__, "train", "stylegan2", "--images", str(images), "--arm", arm,
               "--minutes", str(minutes), "--seed", str(seed), "--device", device, "--threads", "1",
               f"--tag=-{images}-{arm}{suffix}", *(["--kimg", str(kimg)] if kimg else []),
               *(["--results", str(results)] if results else []), *[f"--set={x}" for x in sets]]
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"small-data arms failed with exit codes {dict(zip(arms, codes, strict=True))}")


def evaluate(model: str, run: Path, minutes: float | None, tag: str = "", overrides: list[str] = (),
             images: int | None = None, arm: str = "none") -> None:
    judge = load_judge(JUDGE)
    test = fmnist("test")
    f_test = features(judge, to_float(test.images))
    G = load_generator(run / "snapshots" / "latest")
    # The samples `ganforge eval` scores: seeds 0..9999, class = seed % 10, clamped and quantised to uint8 as
    # saved images are (StyleGAN2's output layer is linear, so its raw samples leave [-1, 1]).
    labels = torch.arange(10_000) % 10 if G.num_classes else None
    fakes = to_float(generated_images(G, 10_000, batch=1000)[0])
    if fakes.shape[-1] < RES:  # a 28x28 model: zero-pad (black, -1) exactly as the real images were
        p = (RES - fakes.shape[-1]) // 2
        fakes = torch.nn.functional.pad(fakes, (p, p, p, p), value=-1.0)
    feats, logits = judge.predict(fakes)
    kid, kid_std = kernel_inception_distance(feats, f_test)
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    result = {"bench": "quality_fmnist", "model": model, "preset": G.meta["config"]["preset"],
              "run": run.name, "budget_minutes": minutes, "kimg": G.meta["kimg"], "overrides": list(overrides),
              "img_per_s": round(G.meta["kimg"] * 1000 / stats[-1]["time_s"], 1),
              "fid_judge": round(frechet_distance(feats, f_test), 3),
              "kid_judge_x1000": round(kid * 1000, 3), "kid_std_x1000": round(kid_std * 1000, 3),
              "train_images": images or 60_000, "arm": arm,
              "protocol": "judge features; 10k generated (G_ema) vs 10k test; KID 100x1000"}
    last = stats[-1]
    if "aug/p" in last:
        result["ada_p_final"] = round(last["aug/p"], 3)
    if labels is not None:
        pred = logits.argmax(1)
        result["class_accuracy"] = round(float((pred == labels).float().mean()), 4)
        result["per_class_accuracy"] = [round(float((pred[labels == k] == k).float().mean()), 3) for k in range(10)]
    IMG.mkdir(parents=True, exist_ok=True)
    # 10 x 10 grid: conditional -> column k is class k; unconditional -> the first 100 seeds.
    save_grid(to_uint8(fakes[:100]), IMG / f"fmnist-{model}{tag}.png", 10)
    save_grid(test.images[:100], IMG / "fmnist-real.png", 10)
    write(f"quality-fmnist-{model}{tag}", result)


def train_subset(n: int) -> torch.Tensor:
    """The small-data arms' training images (``data.max_images=n``, ``data.subset_seed=0``), as floats."""
    return to_float(load_dataset("fashion-mnist", RES, resize="pad", split="train", max_images=n, seed=0).images)


def copying(fakes: torch.Tensor, train_x: torch.Tensor, test_x: torch.Tensor) -> dict[str, float]:
    """Does G copy its training images ``train_x``? Pixel L2 from each sample to its nearest training image and
    to its nearest among as many test images ``test_x``; a median ratio well below 1 means samples sit on
    training images."""
    d_train = torch.cdist(fakes.flatten(1), train_x.flatten(1)).min(1).values
    d_test = torch.cdist(fakes.flatten(1), test_x.flatten(1)).min(1).values
    return {"nn_l2_train": round(float(d_train.median()), 3), "nn_l2_test": round(float(d_test.median()), 3),
            "nn_ratio": round(float((d_train / d_test).median()), 3)}


def plot_curves(curves: dict[str, list[tuple[float, float]]], path: Path, ylabel: str = "judge-FID") -> None:
    """A small line chart (PIL only): one polyline per named curve of (kimg, value) points."""
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 640, 360, 60, 110, 20, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [x for c in curves.values() for x, _ in c]
    ys = [y for c in curves.values() for _, y in c]
    x0, x1, y0, y1 = 0.0, max(xs), 0.0, max(ys) * 1.05

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(6):  # ticks
        xv, yv = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        px, _ = at(xv, 0)
        _, py = at(0, yv)
        d.line([px, h - bottom, px, h - bottom + 4], fill="black")
        d.text((px - 10, h - bottom + 6), f"{xv:.0f}", fill="black")
        d.line([left - 4, py, left, py], fill="black")
        d.text((left - 40, py - 6), f"{yv:.1f}", fill="black")
    d.text(((w - right + left) / 2 - 15, h - 16), "kimg", fill="black")
    d.text((4, top - 14), ylabel, fill="black")
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for k, (name, pts) in enumerate(curves.items()):
        col = colors[k % len(colors)]
        d.line([at(x, y) for x, y in pts], fill=col, width=2)
        for x, y in pts:
            cx, cy = at(x, y)
            d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=col)
        d.line([w - right + 8, top + 12 + 16 * k, w - right + 28, top + 12 + 16 * k], fill=col, width=2)
        d.text((w - right + 32, top + 6 + 16 * k), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def curve_label(r: dict) -> str:
    aug = r["aug"]
    return f"{'no aug.' if aug == 'none' else ('ADA ' + aug if set(aug) <= set('bgcfno') else aug)} " \
           f"({r['train_images']})"


def stage_curve(runs: list[Path], every_kimg: float, num: int, name: str) -> None:
    """Judge-FID/KID of every run's snapshots, one every ``every_kimg``: the training curve of the small-data arms
    (does the un-augmented D overfit and its FID turn back up?), with `copying` on the first 2,000 samples. Also
    the "copy floor": the scores of the training subset itself, i.e. of a generator that reproduces its training
    images exactly."""
    judge = load_judge(JUDGE)
    test_x = to_float(fmnist("test").images)
    f_test = features(judge, test_x)
    subsets: dict[int, torch.Tensor] = {}  # training images per subset size
    out: dict = {"bench": "quality_fmnist-curve", "num_generated": num,
                 "protocol": f"judge features; {num} generated (G_ema, seeds 0..{num - 1}) vs 10k test", "runs": {}}
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        n = cfg["data"]["max_images"]
        if n not in subsets:
            subsets[n] = train_subset(n)
        rows, last = [], -1e9
        snaps = sorted((run / "snapshots").glob("step*.safetensors"))
        for snap in snaps:
            kimg = json.loads(snap.with_suffix(".json").read_text())["kimg"]  # the sidecar: no weights loaded
            if kimg - last < every_kimg and snap != snaps[-1]:  # the final snapshot is always scored
                continue
            last = kimg
            G = load_generator(snap.with_suffix(""))
            fakes = to_float(generated_images(G, num, batch=1000)[0])
            f = features(judge, fakes)
            kid, kid_std = kernel_inception_distance(f, f_test)
            rows.append({"kimg": kimg, "fid_judge": round(frechet_distance(f, f_test), 3),
                         "kid_judge_x1000": round(kid * 1000, 3), "kid_std_x1000": round(kid_std * 1000, 3),
                         **copying(fakes[:2000], subsets[n], test_x[:n])})
            print(run.name, rows[-1], flush=True)
        out["runs"][run.name] = {"aug": cfg["loss"]["ada"] or cfg["loss"]["diffaugment"] or "none",
                                 "train_images": cfg["data"]["max_images"], "curve": rows}
    for n, train_x in sorted(subsets.items()):
        f = features(judge, train_x)
        kid, _ = kernel_inception_distance(f, f_test)
        out[f"copy_floor_{n}"] = {"fid_judge": round(frechet_distance(f, f_test), 3),
                                  "kid_judge_x1000": round(kid * 1000, 3)}
    plot_curves({curve_label(r): [(row["kimg"], row["fid_judge"]) for row in r["curve"]]
                 for r in out["runs"].values()}, IMG / f"{name.removeprefix('quality-')}.png")
    write(name, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["judge", "domain", "train", "eval", "floors", "small-data", "curve"])
    ap.add_argument("model", nargs="?", choices=list(MODELS))
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", type=Path, action="append", help="for eval: the run folder; for curve: repeatable")
    ap.add_argument("--every-kimg", type=float, default=50.0, help="curve: score one snapshot per this many kimg")
    ap.add_argument("--num", type=int, default=10_000, help="curve: generated images per snapshot")
    ap.add_argument("--kimg", type=float, help="train a fixed length instead of --minutes (pilots)")
    ap.add_argument("--set", action="append", default=[], help="extra overrides SECTION.FIELD=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tag", default="", help="suffix for the result and picture names (pilots)")
    ap.add_argument("--results", type=Path, help="write JSON and pictures here instead of bench/results, docs/img")
    ap.add_argument("--images", type=int, help="train on a fixed subset of this many training images")
    ap.add_argument("--arm", default="none", choices=list(ARMS), help="augmentation arm (train)")
    ap.add_argument("--arms", default="none,ada", help="small-data: comma list of arms run side by side")
    ap.add_argument("--threads", type=int, help="torch threads for this process")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.results:
        global RESULTS, IMG, RUNS, JUDGE_OUT
        RESULTS = IMG = JUDGE_OUT = args.results
        RUNS = Path("/tmp/ganforge-bench-runs")
    if args.stage == "judge":
        stage_judge(args.epochs)
    elif args.stage == "domain":
        stage_domain()
    elif args.stage == "floors":
        stage_floors()
    elif args.stage == "train":
        stage_train(args.model, args.minutes, args.seed, args.kimg, args.set, args.device, args.tag, args.images,
                    args.arm)
    elif args.stage == "small-data":
        stage_small_data(args.images or 2000, args.arms.split(","), args.minutes, args.seed, args.kimg, args.set,
                         args.device, args.results, args.tag)
    elif args.stage == "curve":
        stage_curve(args.run, args.every_kimg, args.num, f"quality-fmnist-stylegan2-curve{args.tag}")
    else:
        evaluate(args.model, args.run[0], args.minutes, tag=args.tag, overrides=args.set, images=args.images,
                 arm=args.arm)


if __name__ == "__main__":
    main()
