"""Train the shipped models (src/ganforge/pretrained/) reproducibly, and measure them on held-out crops.

    python bench/photos.py fetch                                                  # the photo set, once
    python bench/pretrained.py train denoise-blind --photos ~/.cache/ganforge/photos
    python bench/pretrained.py train sr-x4-psnr    --photos ~/.cache/ganforge/photos
    python bench/pretrained.py train derain        --photos ~/.cache/ganforge/photos
    python bench/pretrained.py train sr-x4-gan     --photos ~/.cache/ganforge/photos  # starts from sr-x4-psnr
    python bench/pretrained.py train denoise-nonblind --photos ~/.cache/ganforge/photos
    python bench/pretrained.py train inpaint       --photos ~/.cache/ganforge/photos --threads 1
    python bench/pretrained.py train inpaint-deepfill --photos ~/.cache/ganforge/photos --threads 1
    python bench/pretrained.py train colorize      --photos ~/.cache/ganforge/photos --threads 1
    python bench/pretrained.py train edges2photo   --photos ~/.cache/ganforge/photos --threads 1
    python bench/pretrained.py eval sr-x4-psnr [--snapshot RUN_OR_SNAPSHOT]       # quick held-out numbers
    python bench/pretrained.py list
    python bench/pretrained.py tables                                             # docs/pretrained.md tables

`train NAME` runs the library's own training, exactly what a user gets (`python -m ganforge train --data
<photos>/train --preset P --kimg K --seed S ...`, the recipe in `RECIPES`), in a subprocess, into
`bench/results/runs/pretrained/<NAME>/` (not committed). Its length is a fixed number of training images (kimg) and
its randomness a fixed seed, never a wall-clock budget, so the result does not depend on how fast the machine is.
It then copies the run's `snapshots/latest` pair into `src/ganforge/pretrained/<NAME>.safetensors` + `.json`,
floating-point tensors stored as float16 (the loader copies them into the float32 network, which casts; the
PSNR change is below 0.01 dB, `eval` measures the shipped file), and adds a `pretrained` record to the snapshot
metadata: the reproduce command, the photo manifest's SHA-256, kimg, seed, wall time, threads, the torch version.

`eval NAME` restores fixed crops of the held-out photos (`<photos>/heldout/`, never trained on) through the
inference pipeline (`ganforge.load`) and prints PSNR against the classical baseline: bicubic x4 for SR (Y channel,
4 px border cropped, as the SR literature), the noisy input at sigma 15/25/50 for denoising (fixed noise seed,
input rounded to 8 bits as in a real file), the rainy input for de-raining (the library's rain op, fixed seed),
the gray photo for colorization, the edge map for edges -> photo, and a flat fill with the known pixels' mean colour
inside one free-form hole for inpainting. It is a quick check while training; the full benchmarks are
bench/restoration.py, bench/inpaint.py and bench/translate.py.

Training runs on whatever device `--device` picks (auto: CUDA when present). On a GPU, pass `--kimg` larger (for
example 10x) for better models: the recipe's kimg is sized for about 12-15 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PRETRAINED_DIR = REPO / "src" / "ganforge" / "pretrained"
RUNS = REPO / "bench" / "results" / "runs" / "pretrained"
DEFAULT_PHOTOS = Path("~/.cache/ganforge/photos")


@dataclass(frozen=True)
class Recipe:
    """How one shipped model is trained: the library preset plus fixed length, seed and overrides."""

    name: str                 # the registry name (ganforge.pretrained.PRETRAINED) and file stem
    preset: str
    kimg: float               # fixed length in thousands of training patches
    seed: int
    sets: tuple[str, ...] = ()          # --set SECTION.FIELD=VALUE overrides of the preset
    degrade: str | None = None          # --degrade chain, when it differs from the preset's
    init_from: str | None = None        # another recipe's shipped model to start from (a GAN stage)
    kind: str = "sr"                    # what `eval` measures: sr | denoise | derain | inpaint | colorize | edges
    int8: bool = False                  # ship large weights as int8 + per-channel scales (core/snapshot.py)
    why: str = ""                       # why these choices (docs/pretrained.md repeats it)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("denoise-blind", "unet-denoise-25", kimg=62.144, seed=1, kind="denoise", degrade="noise:gaussian:0-55",
           why="the U-Net denoising autoencoder of the unet-denoise-25 preset trained blind on sigma 0-55 (the "
               "denoise-blind preset's range). The denoise-blind preset's residual CNN (DnCNN-B style) was tried "
               "first: BatchNorm's running statistics made it worse than its noisy input in a 3-minute probe, and "
               "without BN (32 x 10 layers) 8 kimg (500 steps, 19 min) reached only 29.0/25.3/20.2 dB at sigma "
               "15/25/50 on the held-out crops, 3.6-4.1 dB below NL-means; the U-Net's downsampling makes a "
               "pixel cheaper and its receptive field far larger, which is what a short run needs (3 kimg: "
               "29.3/27.9/23.7 dB)"),
    Recipe("sr-x4-psnr", "srresnet-x4", kimg=12.0, seed=1, kind="sr", sets=("optim.g_lr=5e-4",),
           why="the srresnet-x4 preset (MSRResNet width 32, 6 blocks, L1, bicubic x4 inputs) with Adam lr 5e-4 "
               "instead of BasicSR's 2e-4, which is tuned for runs 100x longer; srresnet rather than the RRDBNet "
               "of esrgan-psnr-x4, several times slower per step in a CPU probe (SRResNet: 30 steps in 42 s; "
               "RRDBNet: 20 steps not done after 5 min, under a heavier shared load, so no exact ratio)"),
    Recipe("derain", "derain", kimg=4.0, seed=1, kind="derain",
           why="the derain preset (U-Net, L1, synthetic streaks on 1-6 % of the pixels)"),
    Recipe("sr-x4-gan", "srgan-x4", kimg=4.0, seed=1, init_from="sr-x4-psnr", kind="sr",
           sets=("loss.pixel=l1", "loss.pixel_weight=0.01", "loss.perceptual=l1", "loss.adversarial_weight=0.005",
                 "loss.gan_type=ragan"),
           why="the srgan-x4 preset's MSRResNet and VGG-style D with ESRGAN's losses (Wang et al. 2018: relativistic "
               "average D, 0.01 x L1 pixel + L1 feature loss + 0.005 x adversarial), from the shipped sr-x4-psnr. "
               "SRGAN's own losses (feature MSE + 1e-3 non-saturating adversarial, no pixel term) for 4 kimg ended "
               "behind the PSNR model on the perceptual distance (0.1047 vs 0.1038), and 10 kimg further behind "
               "(0.1091); ESRGAN's keep a small pixel term and reach 0.1031"),
    Recipe("inpaint", "context-encoder-64", kimg=35.2, seed=0, kind="inpaint",
           sets=("data.resolution=128", "data.masks=free-form+box", "optim.batch=8", "model.width=32",
                 "model.bottleneck=256", "loss.d_width=32"),
           why="the Context Encoder (context-encoder-64's losses: L2 on the hole x 0.999 + 0.001 adversarial) at "
               "128 px with free-form + box holes (its centre box would never teach it a free-form hole), width 32, "
               "bottleneck 256, batch 8: 35.2 kimg in 22 minutes on one thread. It was the default until the "
               "push-pull DeepFill (inpaint-deepfill) measured ahead of it on every benchmark measure"),
    Recipe("inpaint-deepfill", "deepfill-128", kimg=8.0, seed=0, kind="inpaint",
           sets=("optim.batch=8", "model.width=16", "loss.adversarial_weight=0", "optim.g_lr=2e-4",
                 "optim.beta1=0.9", "model.prefill=smooth", "loss.ssim_weight=1", "run.snapshot_every_kimg=2"),
           why="DeepFill v2's generator (deepfill-128: coarse and refinement nets of gated convolutions, contextual "
               "attention, free-form + box holes) on 128 px crops, narrowed for a CPU (16 channels, batch 8, Adam "
               "2e-4, beta1 0.9), with model.prefill=smooth (both stages correct the mean of the exact membrane and "
               "thin-plate interpolations of the hole, core/fill.py, inside the hole only) and L1 + 1 x (1 - hole "
               "SSIM) on both outputs: 8 kimg in 57 minutes on one thread. The SN-PatchGAN is off: at weights that "
               "kept training stable (0.01) it changed nothing measurable in CPU-length runs. Ahead of OpenCV's "
               "cv2.inpaint on hole SSIM and the perceptual distance at both benchmark bands, but by the smooth "
               "fill's lead: the net's correction moves the scores by at most 0.0003 in SSIM (docs/inpainting.md). "
               "The push-pull DeepFill it replaces (14 kimg) was ahead of its own start but behind OpenCV"),
    Recipe("colorize", "colorize-64", kimg=54.5, seed=0, kind="colorize", sets=("run.channels_last=off",), int8=True,
           why="the colorize-64 preset as is (pix2pix U-Net depth 6, width 32, on CIE L* -> colour, L1 x 100 + "
               "adversarial, 64 px crops, batch 4)"),
    Recipe("edges2photo", "pix2pix-64", kimg=38.0, seed=0, kind="edges", sets=("data.derive=edges",), int8=True,
           why="the pix2pix-64 preset as is, on derived pairs (--pairs edges: soft Sobel edge map -> photo)"),
    Recipe("denoise-nonblind", "denoise-nonblind", kimg=4.0, seed=1, kind="denoise",
           sets=("model.width=32", "model.depth=10", "model.batch_norm=false"),
           why="the denoise-nonblind preset (the residual CNN with an FFDNet-style noise-level map, sigma 0-75), "
               "with the narrower, BatchNorm-free body first tried for denoise-blind (BN's running statistics lag "
               "in a short run)"),
)}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reproduce_command(recipe: Recipe) -> str:
    return f"python bench/pretrained.py train {recipe.name} --photos ~/.cache/ganforge/photos"


def train_args(recipe: Recipe, photos: Path, out: Path, kimg: float, threads: int | None,
               device: str) -> list[str]:
    """The `ganforge train` command line of a recipe (what a user would type)."""
    args = ["train", "--data", str(photos / "train"), "--preset", recipe.preset, "--kimg", f"{kimg:g}",
            "--seed", str(recipe.seed), "--out", str(out), "--device", device, "--no-progress"]
    if threads:
        args += ["--threads", str(threads)]
    if recipe.degrade:
        args += ["--degrade", recipe.degrade]
    for s in recipe.sets:
        args += ["--set", s]
    if recipe.init_from:
        src = PRETRAINED_DIR / f"{recipe.init_from}.safetensors"
        if not src.is_file():
            raise FileNotFoundError(f"{recipe.name} starts from the shipped {recipe.init_from} ({src}), which is "
                                    f"missing: run `python bench/pretrained.py train {recipe.init_from}` first")
        args += ["--init-from", str(src)]
    return args


def newest_run(out: Path) -> Path:
    runs = sorted((p for p in out.iterdir() if p.is_dir() and p.name[:5].isdigit()), key=lambda p: p.name)
    if not runs:
        raise FileNotFoundError(f"no run folder was written under {out}")
    return runs[-1]


def check_photos(photos: Path) -> Path:
    manifest = photos / "manifest.json"
    if not manifest.is_file() or not (photos / "train").is_dir():
        raise FileNotFoundError(f"{photos} is not a photo set (no manifest.json or train/): run "
                                f"`python bench/photos.py fetch --out {photos}` first")
    return manifest


# Exit codes of `ganforge train` stopped by SIGINT / SIGTERM: it finished the step and wrote a snapshot first.
STOPPED_CODES = (130, 143)


def train(recipe: Recipe, photos: Path, kimg: float | None, threads: int | None, device: str,
          resume: bool = False) -> Path:
    """Run the recipe's training (``resume``: continue its newest run), then ship its snapshot. Returns the shipped
    .safetensors path."""
    check_photos(photos)
    out = RUNS / recipe.name
    out.mkdir(parents=True, exist_ok=True)
    kimg = recipe.kimg if kimg is None else kimg
    args = train_args(recipe, photos, out, kimg, threads, device)
    if resume:
        # Continue the newest run of this recipe to `kimg`: the loop's resume is exact (same losses and weights as
        # one uninterrupted run, docs/design.md "Resume"), so the result is that of the fresh command above.
        args = ["train", "--resume", str(newest_run(out)), "--kimg", f"{kimg:g}", "--no-progress"]
    print("$ ganforge " + shlex.join(args), flush=True)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=REPO)
    wall = time.monotonic() - t0
    if done.returncode not in (0, *STOPPED_CODES):
        raise subprocess.CalledProcessError(done.returncode, "ganforge train")
    return ship_run(recipe, newest_run(out), photos, threads, device, None if resume else wall)


def ship_run(recipe: Recipe, run: Path, photos: Path, threads: int | None, device: str,
             wall: float | None = None) -> Path:
    """Ship ``run`` (a run of ``recipe``, finished or stopped by a signal) with its provenance record.

    The record's kimg is what the snapshot reached. The restore task has a constant learning rate and every random
    number is a function of (seed, step), so a run stopped at step N has exactly the weights of a run trained to
    N x batch images: the reproduce command names that kimg, and the result does not depend on when it stopped."""
    manifest = check_photos(photos)
    snap = json.loads((run / "snapshots" / "latest.json").read_text(encoding="utf-8"))
    reached = float(snap["kimg"])
    stats = (run / "stats.jsonl").read_text(encoding="utf-8").splitlines()
    train_s = json.loads(stats[-1])["time_s"] if stats else None
    args = train_args(recipe, photos, run.parent, reached, threads, device)
    command = reproduce_command(recipe) + ("" if reached == recipe.kimg else f" --kimg {reached:g}")
    record = {
        "name": recipe.name, "reproduce": command,
        "ganforge_train": "ganforge " + shlex.join(args).replace(str(photos), "PHOTOS").replace(str(REPO) + "/", ""),
        "preset": recipe.preset, "kimg": reached, "step": snap.get("step"), "seed": recipe.seed,
        "sets": list(recipe.sets), "degrade": recipe.degrade, "init_from": recipe.init_from,
        "why": recipe.why, "photos_manifest_sha256": sha256(manifest),
        "wall_time_s": round(wall if wall is not None else train_s or 0.0, 1),
        "train_time_s": None if train_s is None else round(train_s, 1),
        "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "threads": threads, "machine": f"{platform.machine()}, {_cpus()} CPUs shared with other jobs",
        "torch": torch.__version__, "run_folder": run.name,
    }
    return ship(run, recipe.name, record, recipe.int8)


def _cpus() -> int:
    import os
    return os.cpu_count() or 0


def ship(run: Path, name: str, record: dict[str, object], int8: bool = False) -> Path:
    """Copy ``run``'s snapshots/latest into PRETRAINED_DIR/<name> with float16 tensors (``int8``: large weights as
    int8 with per-channel scales, core/snapshot.py quantize_int8) and the record."""
    from ganforge.core.snapshot import load_snapshot, quantize_int8, save_snapshot

    tensors, meta = load_snapshot(run / "snapshots" / "latest")
    if int8:
        small = {m: quantize_int8(sd) for m, sd in tensors.items()}
    else:
        small = {m: {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in sd.items()}
                 for m, sd in tensors.items()}
    meta = {k: v for k, v in meta.items() if k != "format"} | {"pretrained": record,
                                                                "tensor_dtype": "int8" if int8 else "float16"}
    PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
    path = save_snapshot(PRETRAINED_DIR, name, small, meta)
    print(f"shipped {path} ({path.stat().st_size / 1e6:.2f} MB) from {run}, "
          f"{record['wall_time_s']} s", flush=True)
    return path


# ---------------------------------------------------------------------------------------------------------
# Quick held-out evaluation
# ---------------------------------------------------------------------------------------------------------

EVAL_CROP = 256          # HR crop side (a multiple of 4)
EVAL_SEED = 0


def heldout_crops(photos: Path) -> list[tuple[str, np.ndarray]]:
    """The centre EVAL_CROP x EVAL_CROP crop of every held-out photo, [H, W, 3] uint8, in name order."""
    from PIL import Image

    crops = []
    for p in sorted((photos / "heldout").glob("*.png")):
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        h, w = arr.shape[:2]
        s = min(EVAL_CROP, h - h % 4, w - w % 4)
        top, left = (h - s) // 2, (w - s) // 2
        crops.append((p.stem, np.ascontiguousarray(arr[top:top + s, left:left + s])))
    if not crops:
        raise FileNotFoundError(f"no held-out photos in {photos / 'heldout'}: run bench/photos.py fetch")
    return crops


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [1, 3, H, W] in [-1, 1]


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def evaluate(kind: str, snapshot: Path, photos: Path) -> dict[str, float]:
    """Mean PSNR of the model and of the classical baseline on the held-out crops (see the module docstring)."""
    import torch.nn.functional as F

    import ganforge
    from ganforge.data.derive import downscale, parse_derive
    from ganforge.metrics.image import psnr

    pipe = ganforge.load(str(snapshot))
    crops = heldout_crops(photos)
    out: dict[str, list[float]] = {}

    def add(key: str, value: torch.Tensor) -> None:
        out.setdefault(key, []).append(float(value.mean()))

    gen = torch.Generator().manual_seed(EVAL_SEED)
    for _name, hr in crops:
        if kind == "sr":
            lr = _to_uint8(downscale(_to_tensor(hr), gen, 4))  # the training degradation, rounded to 8 bits
            bic = _to_uint8(F.interpolate(_to_tensor(lr), scale_factor=4, mode="bicubic", align_corners=False))
            sr = pipe(lr)
            add("bicubic_y", psnr(bic, hr, crop_border=4, y_channel=True))
            add("model_y", psnr(sr, hr, crop_border=4, y_channel=True))
            add("bicubic_rgb", psnr(bic, hr, crop_border=4))
            add("model_rgb", psnr(sr, hr, crop_border=4))
        elif kind == "denoise":
            rng = np.random.default_rng(EVAL_SEED)
            for sigma in (15, 25, 50):
                noisy = np.clip(np.rint(hr + rng.normal(0.0, sigma, hr.shape)), 0, 255).astype(np.uint8)
                den = pipe(noisy, sigma=sigma) if pipe.noise_map else pipe(noisy)
                add(f"noisy_{sigma}", psnr(noisy, hr))
                add(f"model_{sigma}", psnr(den, hr))
        elif kind == "colorize":
            gray = np.repeat(np.rint(hr @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[..., None],
                             3, 2)
            add("gray_rgb", psnr(gray, hr))
            add("model_rgb", psnr(pipe(gray[..., 0]), hr))
        elif kind == "edges":
            edges = _to_uint8(parse_derive("edges")(_to_tensor(hr), gen))
            add("edge_map_rgb", psnr(edges, hr))
            add("model_rgb", psnr(pipe(edges), hr))
        elif kind == "inpaint":
            from ganforge.data.masks import free_form_masks

            hole = free_form_masks(1, hr.shape[0], gen)[0, 0].numpy() > 0.5
            flat = hr.copy()
            flat[hole] = hr[~hole].mean(0).round().astype(np.uint8)  # the known pixels' mean colour
            for key, filled in (("mean_fill_hole", flat), ("model_hole", pipe(hr, hole))):
                mse = float(((filled[hole].astype(np.float64) - hr[hole]) ** 2).mean())
                add(key, torch.tensor(10 * np.log10(255.0 ** 2 / mse)))
        else:
            derive = parse_derive("rain:0.03")
            rainy = _to_uint8(derive(_to_tensor(hr), gen))
            add("rainy", psnr(rainy, hr))
            add("model_derained", psnr(pipe(rainy), hr))
    return {k: round(float(np.mean(v)), 3) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------
# Tables for docs/pretrained.md
# ---------------------------------------------------------------------------------------------------------

def photo_table(photos: Path) -> str:
    """Markdown: every photo of the set with its split, source, original path, licence and author."""
    manifest = json.loads(check_photos(photos).read_text(encoding="utf-8"))
    rows = ["| file | split | source | original path | licence | author / copyright | size |",
            "|---|---|---|---|---|---|---|"]
    for e in manifest["images"]:
        who = e.get("author") or e.get("copyright", "")
        lic = e["licence"] + (f" (upstream metadata: {e['upstream_licence']})" if e.get("upstream_licence") else "")
        rows.append(f"| `{e['file']}` | {e['split']} | {e['source']} {e['source_version']} | `{e['original_path']}` "
                    f"| {lic} | {who} | {e['size'][0]}x{e['size'][1]} |")
    return "\n".join(rows)


def model_table() -> str:
    """Markdown: the shipped models' recipes and the numbers recorded in their metadata."""
    rows = ["| model | preset | kimg | seed | overrides | training time | size | photo manifest sha256 |",
            "|---|---|---|---|---|---|---|---|"]
    for r in RECIPES.values():
        meta_path = PRETRAINED_DIR / f"{r.name}.json"
        if not meta_path.is_file():
            rows.append(f"| {r.name} | {r.preset} | {r.kimg:g} | {r.seed} | not shipped | | | |")
            continue
        rec = json.loads(meta_path.read_text(encoding="utf-8"))["pretrained"]
        size = (PRETRAINED_DIR / f"{r.name}.safetensors").stat().st_size / 1e6
        over = " ".join([*(f"--set {s}" for s in rec["sets"]), *(["--degrade " + rec["degrade"]] if rec["degrade"]
                                                                 else []),
                         *(["--init-from " + rec["init_from"]] if rec["init_from"] else [])]) or "none"
        rows.append(f"| {r.name} | {rec['preset']} | {rec['kimg']:g} | {rec['seed']} | {over} | "
                    f"{rec['wall_time_s'] / 60:.1f} min | {size:.2f} MB | `{rec['photos_manifest_sha256'][:16]}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one shipped model and copy it into src/ganforge/pretrained/")
    t.add_argument("name", choices=list(RECIPES))
    t.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    t.add_argument("--kimg", type=float, default=None, help="override the recipe's length (e.g. longer on a GPU)")
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads (the shipped models: 2)")
    t.add_argument("--device", default="cpu", help="cpu (as shipped), cuda or auto")
    t.add_argument("--resume", action="store_true", help="continue the newest run of this recipe to its kimg "
                   "(exact: the same weights as one uninterrupted run)")
    e = sub.add_parser("eval", help="PSNR on held-out crops against the classical baseline")
    e.add_argument("name", choices=list(RECIPES))
    e.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    e.add_argument("--snapshot", type=Path, default=None, help="a run folder or snapshot (default: the shipped one)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    h = sub.add_parser("ship", help="ship an existing run of a recipe (e.g. one stopped with SIGTERM)")
    h.add_argument("name", choices=list(RECIPES))
    h.add_argument("run", type=Path)
    h.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    h.add_argument("--threads", type=int, default=2)
    h.add_argument("--device", default="cpu")
    sub.add_parser("list", help="the recipes")
    d = sub.add_parser("tables", help="print the markdown tables of docs/pretrained.md (photos, models)")
    d.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "tables":
            print(model_table() + "\n\n" + photo_table(args.photos.expanduser()))
            return 0
        if args.cmd == "list":
            for r in RECIPES.values():
                print(f"{r.name:17s} preset {r.preset:17s} kimg {r.kimg:<5g} seed {r.seed}  {reproduce_command(r)}")
            return 0
        photos = args.photos.expanduser()
        recipe = RECIPES[args.name]
        if args.cmd == "train":
            train(recipe, photos, args.kimg, args.threads, args.device, args.resume)
            return 0
        if args.cmd == "ship":
            ship_run(recipe, args.run, photos, args.threads, args.device)
            return 0
        snapshot = args.snapshot or PRETRAINED_DIR / recipe.name
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps({"model": recipe.name, "snapshot": str(snapshot),
                          **evaluate(recipe.kind, snapshot, photos)}))
        return 0
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
