"""Image-to-image translation measured (issue 15): colorization and edges -> photo against trivial baselines on
held-out photos, an unpaired two-domain task (KID to domain B, cycle error, content kept), and speed.

    python bench/translate.py all [--quick]
    python bench/translate.py paired|unpaired|speed|scenes [--quick] [--minutes M] [--model NAME=RUN] [--pictures]

Each section merges its record into bench/results/translate.json (``--quick``: translate-quick.json), with the
command, the time and the machine.

paired. Two pix2pix models trained here with the real loop (``ganforge.train``) on the training photos
(``python bench/photos.py fetch``: ~/.cache/ganforge/photos/train) for ``--minutes`` each, or given with
``--model colorize=RUN --model edges=RUN``: colorize-64 (Lab: L* -> colour) and pix2pix-64 with --pairs edges. They
are scored on centre crops (``--crop`` px) of the held-out photos, never trained on, through the translate pipeline
(whole-image, eval mode): PSNR/SSIM (RGB) against the photo and the project's perceptual distance (judge features on
native 32-px tiles, bench/restoration.py's protocol; not LPIPS). Baselines: the gray photo copied to RGB
(colorization) and the edge map itself (edges -> photo). No judge exists for photos, so no domain KID/FID here.

unpaired. CycleGAN (cyclegan-64's recipe at 28 px) between two Fashion-MNIST classes, Sandal (A) and Sneaker (B):
same pose and outline, different texture (straps vs solid uppers), a texture-change task like horse -> zebra that
needs no download and has a judge (the shipped Fashion-MNIST classifier). Trained on the train split for
``--minutes``, scored on the test split: KID (judge features) of G(A) to test B, against KID(A, B) for the
untranslated images; the judge's share of G(A) classified as Sneaker; the cycle error |F(G(A)) - A| (mean absolute,
0-255, and PSNR); content kept: SSIM(G(A), A) and the IoU of the silhouettes (pixels > 25), against a random B image
in place of G(A) (what an unrelated sneaker would score).

speed. One training step (all phases, forward + backward + Adam; the best of two) of each recipe at the paper's
batch 1 (and pix2pix at batch 4 too, the paper's for edges2shoes/handbags), at 128 and 256 px (``--quick``: 128
px, one step), pix2pix U-Net depth 7 / 8 and CycleGAN ResNet 6 / 9 blocks, 64 channels, channels_last as in the
loop: img/s, FLOPs counted with torch.utils.flop_counter, and the achieved FLOP/s as a fraction of this machine's
float32 matmul peak measured in the same run (target 40 %); inference megapixels/s of each generator
through the pipeline on a 1024x768 image.
"""

from __future__ import annotations  # noqa: I001  (ganforge before torch, below)

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import ganforge  # before torch, so that the CPU allocator default it sets (THP) applies here as in the CLI
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import restoration as rb  # noqa: E402  (held-out photos, scores, the perceptual tile distance)

SEED = 20261201
EDGES_SEED = 7
FMNIST_A, FMNIST_B = 5, 7  # Sandal -> Sneaker
Image = np.ndarray  # [H, W, C] uint8


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "loadavg": list(os.getloadavg())}


def train_run(preset: str, source: str | Path, minutes: float, out: Path, kimg: float | None = None,
              **over: dict[str, Any]) -> Path:
    """``ganforge.train`` of ``preset`` for ``kimg`` (the LR schedule follows it) or, without it, for a wall-clock
    budget (run.minutes, which also caps a kimg run); snapshot at the end."""
    sections = {"data": {"source": str(source)}, "run": {"kimg": kimg or 1e4, "minutes": minutes, "out": str(out),
                                                         "device": "cpu", "threads": torch.get_num_threads(),
                                                         "tick_kimg": 0.2, "snapshot_every_kimg": 1e4,
                                                         "checkpoint_every_kimg": 1e4, "sample_every_kimg": 1e4}}
    for k, v in over.items():
        sections[k] = sections.get(k, {}) | v
    cfg = ganforge.resolve_config(preset, **sections)
    t0 = time.perf_counter()
    run = Path(ganforge.train(cfg, progress=False))
    print(f"  trained {preset} for {time.perf_counter() - t0:.0f} s -> {run}", flush=True)
    return run


def run_record(run: Path) -> dict[str, Any]:
    from ganforge.core.snapshot import load_snapshot, snapshot_hash

    _, meta = load_snapshot(run)
    snap = run / "snapshots" / "latest" if run.is_dir() else run  # a run folder, or a snapshot (a shipped model)
    return {"run": str(run), "sha256": snapshot_hash(snap), "kimg": meta.get("kimg"),
            "step": meta.get("step"), "preset": meta.get("config", {}).get("preset"),
            "derive": meta.get("derive"), "G": meta.get("modules", {}).get("G", {}).get("config")}


# ---------------------------------------------------------------------------------------------------------
# paired: colorization and edges -> photo


def gray_of(img: Image) -> Image:
    """BT.601 luma as [H, W, 1] uint8 (what an old gray photo is)."""
    y = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)[:, :, None]


def section_paired(args: argparse.Namespace) -> dict[str, Any]:
    from ganforge.infer.pipelines import load_pipeline
    from ganforge.metrics.extractors import SHIPPED_JUDGE
    from ganforge.metrics.perceptual import PerceptualDistance

    photos, split = rb.heldout_photos(args)
    crops = [(name, rb.center_crop(p, args.crop)) for name, p in photos]
    models = dict(m.split("=", 1) for m in args.model)
    dist = PerceptualDistance(SHIPPED_JUDGE)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for key, preset, over in (("colorize", "colorize-64", {}), ("edges", "pix2pix-64",
                                                                     {"data": {"derive": "edges"}})):
            runs[key] = Path(models[key]) if key in models else \
                train_run(preset, args.photos / "train", args.minutes, Path(tmp), args.kimg, **over)
        record: dict[str, Any] = {"heldout": split, "crop": args.crop, "models": {}}

        def extra(label: str, out: Image, ref: Image) -> dict[str, float]:
            return {"perceptual": rb.judge_tiles_distance(out, ref, dist)}

        for key in ("colorize", "edges"):
            pipe = load_pipeline(runs[key])
            record["models"][key] = run_record(runs[key])
            if key == "colorize":
                cases = [(n, gray_of(c), c) for n, c in crops]
                methods: dict[str, Callable[[Image], Image]] = {
                    "baseline: gray copied to RGB": lambda g: np.repeat(g, 3, 2),
                    "colorize-64 (pix2pix, Lab)": lambda g, p=pipe: p(g)}
            else:
                cases = [(n, rb.degrade(c, "edges", EDGES_SEED), c) for n, c in crops]
                methods = {"baseline: the edge map": lambda e: e,
                           "pix2pix-64 edges -> photo": lambda e, p=pipe: p(e)}
            print(f" {key}:", flush=True)
            result, outputs = rb.evaluate_methods(methods, cases, 0, extra)
            record[key] = result
            if args.pictures:  # input | baseline | model | target on the first held-out photo
                i = 0
                inp = cases[i][1] if cases[i][1].shape[2] == 3 else np.repeat(cases[i][1], 3, 2)
                panels = [inp, *(outputs[label][i] for label in methods), cases[i][2]]
                labels = ["input", *(label.split(":")[0].split(" (")[0] for label in methods), "target"]
                record.setdefault("pictures", {})[key] = rb.save_strip(
                    panels, labels, args.pictures_dir / f"{key}.png", min(args.crop, 256))
        record["note"] = ("perceptual: judge-feature distance on native 32-px tiles (lower is closer); PSNR/SSIM on "
                          "RGB; no domain KID/FID for photos (no judge for them)")
    return record


# ---------------------------------------------------------------------------------------------------------
# unpaired: Fashion-MNIST Sandal <-> Sneaker


def _fmnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    from ganforge.data import load_dataset

    ds = load_dataset("fashion-mnist", 28, resize="pad", split=split)
    return ds.images, ds.labels  # uint8 [N, 1, 28, 28], int64 [N]


def _write_domain(images: np.ndarray, folder: Path) -> None:
    from PIL import Image as PILImage

    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        PILImage.fromarray(im[0]).save(folder / f"{i:05d}.png")


def section_unpaired(args: argparse.Namespace) -> dict[str, Any]:
    from ganforge.infer.pipelines import load_pipeline
    from ganforge.metrics.distribution import kernel_inception_distance
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.image import psnr, ssim

    n_train, n_test = (300, 200) if args.quick else (2000, 1000)
    train_x, train_y = _fmnist("train")
    test_x, test_y = _fmnist("test")
    a_test, b_test = test_x[test_y == FMNIST_A][:n_test], test_x[test_y == FMNIST_B][:n_test]
    models = dict(m.split("=", 1) for m in args.model)
    with tempfile.TemporaryDirectory() as tmp:
        if "cyclegan" in models:
            run = Path(models["cyclegan"])
        else:
            data = Path(tmp) / "sandal2sneaker"
            _write_domain(train_x[train_y == FMNIST_A][:n_train], data / "trainA")
            _write_domain(train_x[train_y == FMNIST_B][:n_train], data / "trainB")
            run = train_run("cyclegan-64", data, args.minutes, Path(tmp), args.kimg, data={"resolution": 28},
                            model={"d_layers": 2})
        pipe = load_pipeline(run)
        record: dict[str, Any] = {"domains": {"A": "Sandal", "B": "Sneaker"}, "n_train": n_train,
                                  "n_test": len(a_test), "model": run_record(run)}
        record_picture = None

        def translate(x: np.ndarray, direction: str) -> np.ndarray:  # [N, 1, 28, 28] -> same
            return np.stack([pipe(im[0], direction)[None, :, :, 0] for im in x])

        fake_b = translate(a_test, "AtoB")
        rec_a = translate(fake_b, "BtoA")
        if args.pictures:  # 8 test sandals: A | G(A) | F(G(A)), one triple per column, enlarged x4
            from PIL import Image as PILImage

            rows = [np.concatenate(list(x[:8, 0]), 1) for x in (a_test, fake_b, rec_a)]
            grid = np.concatenate(rows, 0).repeat(4, 0).repeat(4, 1)
            args.pictures_dir.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(grid).save(args.pictures_dir / "sandal2sneaker.png")
            record_picture = str(args.pictures_dir / "sandal2sneaker.png")
    judge = get_extractor("judge")
    f_a, _ = judge(a_test)
    f_b, logits_b = judge(b_test)
    f_fake, logits_fake = judge(fake_b)
    kid_fake, kid_fake_sd = kernel_inception_distance(f_fake, f_b, subsets=50, subset_size=len(f_b) // 2)
    kid_a, kid_a_sd = kernel_inception_distance(f_a, f_b, subsets=50, subset_size=len(f_b) // 2)
    hwc = lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # noqa: E731
    rng = np.random.default_rng(SEED)
    random_b = b_test[rng.integers(0, len(b_test), len(a_test))]

    def iou(x: np.ndarray, y: np.ndarray) -> float:
        mx, my = x > 25, y > 25
        return float(((mx & my).sum((1, 2, 3)) / np.maximum((mx | my).sum((1, 2, 3)), 1)).mean())

    def mean_ssim(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean([ssim(u, v).item() for u, v in zip(hwc(x), hwc(y), strict=True)]))

    record |= {
        "kid_fakeB_vs_B": round(kid_fake, 5), "kid_fakeB_sd": round(kid_fake_sd, 5),
        "kid_A_vs_B_untranslated": round(kid_a, 5), "kid_A_sd": round(kid_a_sd, 5),
        "judge_says_sneaker": round(float((logits_fake.argmax(1) == FMNIST_B).float().mean()), 4),
        "judge_says_sneaker_real_B": round(float((logits_b.argmax(1) == FMNIST_B).float().mean()), 4),
        "cycle_l1_0_255": round(float(np.abs(rec_a.astype(float) - a_test).mean()), 3),
        "cycle_psnr": round(float(np.mean([psnr(u, v).item() for u, v in zip(hwc(rec_a), hwc(a_test),
                                                                              strict=True)])), 3),
        "content_ssim_fakeB_A": round(mean_ssim(fake_b, a_test), 4),
        "content_ssim_randomB_A": round(mean_ssim(random_b, a_test), 4),
        "silhouette_iou_fakeB_A": round(iou(fake_b, a_test), 4),
        "silhouette_iou_randomB_A": round(iou(random_b, a_test), 4),
        "judge": judge.protocol(), "picture": record_picture,
    }
    print("  " + ", ".join(f"{k} {v}" for k, v in record.items() if isinstance(v, float)), flush=True)
    return record


# ---------------------------------------------------------------------------------------------------------
# speed


def _task(preset: str, res: int) -> Any:
    from ganforge.config import resolve_config
    from ganforge.tasks.translate import CycleGANTask, Pix2PixTask

    if preset.startswith("pix2pix"):
        cfg = resolve_config(preset, {"data": {"resolution": res}, "model": {"width": 64, "d_width": 64,
                                                                             "depth": 7 if res == 128 else 8}})
        return Pix2PixTask(cfg.model, cfg.loss, cfg.optim, 3, 3, None, "edges"), cfg
    cfg = resolve_config(preset, {"data": {"resolution": res}, "model": {"width": 64, "d_width": 64,
                                                                         "blocks": 6 if res == 128 else 9}})
    return CycleGANTask(cfg.model, cfg.loss, cfg.optim, 3), cfg


def train_step_speed(preset: str, res: int, steps: int, peak: float, batch_size: int = 1,
                     seconds: float = 8.0) -> dict[str, Any]:
    """One loop step of the task (its shared forward, then its phases: freeze the others, forward, backward, Adam),
    channels_last as in the loop: the best of at least ``steps`` timed steps, more (up to 12) while ``seconds``
    last, after two warm-ups."""
    from torch.utils.flop_counter import FlopCounterMode

    from ganforge.tasks.base import StepInputs
    from ganforge.training.loop import set_memory_format, train_only

    task, cfg = _task(preset, res)
    for m in task.modules.values():  # as the loop does (run.channels_last auto = on)
        set_memory_format(m, torch.channels_last)
    opts = task.optimizers(cfg.optim)
    x = lambda: (torch.rand(batch_size, 3, res, res) * 2 - 1).contiguous(  # noqa: E731
        memory_format=torch.channels_last)
    batch = {"input": x(), "target": x()} if preset.startswith("pix2pix") else {"A": x(), "B": x()}

    def step(i: int) -> None:
        inp = StepInputs(batch=batch, gen=torch.Generator().manual_seed(i), step=i)
        phases = task.phases()
        train_only(task, {phase.module for phase in phases})  # the loop's shared forward: G(A) once, for both
        inp.shared = task.shared(inp)
        for phase in phases:
            train_only(task, {phase.module})
            opts[phase.module].zero_grad(set_to_none=True)
            phase.loss(inp)["loss"].backward()
            opts[phase.module].step()

    fc = FlopCounterMode(display=False)
    with fc:
        step(0)
    flops = fc.get_total_flops()
    step(1)  # a second warm-up: the first steps still grow the heap (page faults), a steady-state step does not
    dt, timed, t_end = float("inf"), 0, time.perf_counter() + seconds
    while timed < steps or (timed < 12 and time.perf_counter() < t_end):  # the best of the timed steps
        t0 = time.perf_counter()
        step(2 + timed)
        dt = min(dt, time.perf_counter() - t0)
        timed += 1
    return {"preset": preset, "resolution": res, "batch": batch_size, "G": task.G.config
            if preset.startswith("pix2pix") else task.G.config["AtoB"], "img_per_s": round(batch_size / dt, 3),
            "s_per_step": round(dt, 3),
            "timed_steps": timed, "step_gflop": round(flops / 1e9, 2), "achieved_gflops": round(flops / dt / 1e9, 2),
            "fraction_of_peak": round(flops / dt / peak, 4)}


def inference_speed(preset: str, repeats: int) -> dict[str, Any]:
    from ganforge.infer.translate import TranslatePipeline

    task, _ = _task(preset, 256)
    g = task.G.eval()
    pipe = TranslatePipeline(g, {"task": task.name, "derive": None}, torch.device("cpu"))
    img = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    best = rb.best_seconds(lambda: pipe(img), repeats)
    return {"preset": preset, "input_px": [1024, 768], "mp_per_s": round(1024 * 768 / 1e6 / best, 3)}


def timed_against_adjacent_peak(preset: str, res: int, batch_size: int, steps: int, seconds: float,
                                peak_seconds: float) -> dict[str, Any]:
    """``train_step_speed`` between two matmul-peak measurements of its own; the row's fraction is against the
    higher of the two. On a shared machine both drift (2048^2 peaks of 113-196 GFLOP/s on one day), so a step timed
    in a slow minute against a peak measured in a fast one (or the reverse) says little."""
    near = rb.matmul_peak(peak_seconds)
    row = train_step_speed(preset, res, steps, near, batch_size, seconds)
    near = max(near, rb.matmul_peak(peak_seconds))
    row["adjacent_peak_gflops"] = round(near / 1e9, 1)
    row["fraction_of_peak"] = round(row["achieved_gflops"] * 1e9 / near, 4)
    return row


def section_speed(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    steps = 1 if quick else 2  # a CycleGAN 256 px step is ~2 TFLOP: tens of seconds on a 2-core CPU
    training = []
    for preset, batch_size in (("pix2pix-256", 1), ("pix2pix-256", 4), ("cyclegan-256", 1)):
        for res in (128,) if quick else (128, 256):
            training.append(timed_against_adjacent_peak(preset, res, batch_size, steps, 2.0 if quick else 20.0,
                                                        1.0 if quick else 3.0))
            print(f"  {training[-1]}", flush=True)
    inference = [inference_speed(p, 1 if quick else 3) for p in ("pix2pix-256", "cyclegan-256")]
    print(f"  {inference}", flush=True)
    # The row nearest the target again, five times: the spread says how firm one figure is.
    repeats = []
    for _ in range(args.speed_repeats if args.speed_repeats is not None else 0 if quick else 5):
        row = timed_against_adjacent_peak("pix2pix-256", 128, 1, 2, 6.0, 2.0)
        repeats.append({k: row[k] for k in ("s_per_step", "adjacent_peak_gflops", "fraction_of_peak")})
        print(f"  repeat {repeats[-1]}", flush=True)
    run_peak = max(r["adjacent_peak_gflops"] for r in training + repeats)
    for row in training:  # the conservative figure: against the best peak of the whole run
        row["fraction_of_run_peak"] = round(row["achieved_gflops"] / run_peak, 4)
    fractions = sorted(r["fraction_of_peak"] for r in repeats)
    return {"run_peak_gflops": run_peak, "target_fraction": 0.40, "training": training, "inference": inference,
            "flops_counted": "torch.utils.flop_counter: every phase's forward + backward (Adam not counted)",
            "peaks": "fraction_of_peak: against the higher of two matmul peaks measured just before and after the "
                     "row; fraction_of_run_peak: against the best of all of them",
            "pix2pix_128_b1_repeats": {"runs": repeats, "fraction_min": fractions[0] if fractions else None,
                                       "fraction_median": fractions[len(fractions) // 2] if fractions else None}}


def section_scenes(args: argparse.Namespace) -> dict[str, Any]:
    """The procedural label-map set (data/scenes.py): class frequencies over 200 scenes, and with --pictures four
    label maps (in the preview palette) over their renderings, docs/img/translation/scenes.png."""
    from ganforge.data.scenes import SCENE_CLASSES, render_scene
    from ganforge.tasks.translate import PALETTE

    counts = np.zeros(len(SCENE_CLASSES))
    columns = []
    for i in range(200):
        labels, photo = render_scene(np.random.default_rng([0, i]), 128)
        counts += np.bincount(labels.ravel(), minlength=len(SCENE_CLASSES))
        if i < 4:
            columns += [np.concatenate([PALETTE[labels], np.full((4, 128, 3), 255, np.uint8), photo], 0),
                        np.full((260, 4, 3), 255, np.uint8)]
    record: dict[str, Any] = {"classes": dict(zip(SCENE_CLASSES, np.round(counts / counts.sum(), 4).tolist(),
                                                  strict=True))}
    if args.pictures:
        from PIL import Image as PILImage

        args.pictures_dir.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.concatenate(columns[:-1], 1)).save(args.pictures_dir / "scenes.png", optimize=True)
        record["picture"] = str(args.pictures_dir / "scenes.png")
    print(f"  {record}", flush=True)
    return record


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "paired": section_paired, "unpaired": section_unpaired, "speed": section_speed, "scenes": section_scenes}


def write_section(out: Path, name: str, record: dict[str, Any]) -> None:
    data = json.loads(out.read_text()) if out.is_file() else {"bench": "translate", "sections": {}}
    data["sections"][name] = record
    data["updated"] = record["timestamp"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=[*SECTIONS, "all"])
    ap.add_argument("--quick", action="store_true", help="a small, fast version for development")
    ap.add_argument("--photos", type=Path, default=Path.home() / ".cache" / "ganforge" / "photos")
    ap.add_argument("--minutes", type=float, default=None, help="training budget per model [10; quick 0.5]")
    ap.add_argument("--kimg", type=float, default=None, help="training length per model (the LR decay follows it; "
                                                             "--minutes still caps it) [none: --minutes alone]")
    ap.add_argument("--model", action="append", default=[],
                    help="KEY=RUN: use this run instead of training (colorize, edges, cyclegan)")
    ap.add_argument("--crop", type=int, default=None, help="held-out centre crop side [256; quick 128]")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    ap.add_argument("--speed-repeats", type=int, default=None,
                    help="speed: time pix2pix 128 px batch 1 this many more times, each between its own two peak "
                         "measurements [5; quick 0]")
    ap.add_argument("--pictures", action="store_true", help="also write input/output/target strips")
    ap.add_argument("--pictures-dir", type=Path, default=HERE.parent / "docs" / "img" / "translation")
    ap.add_argument("--out", type=Path, default=None, help="results JSON [bench/results/translate.json]")
    args = ap.parse_args(argv)
    args.minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 10.0)
    args.crop = args.crop or (128 if args.quick else 256)
    torch.set_num_threads(args.threads)
    out = args.out or HERE / "results" / ("translate-quick.json" if args.quick else "translate.json")
    for name in (list(SECTIONS) if args.section == "all" else [args.section]):
        print(f"{name}:", flush=True)
        t0 = time.perf_counter()
        record = SECTIONS[name](args)
        record |= {"command": "python bench/translate.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   "seconds": round(time.perf_counter() - t0, 1), "machine": machine_info(),
                   "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_section(out, name, record)
        print(f" -> {out}", flush=True)


if __name__ == "__main__":
    main()
