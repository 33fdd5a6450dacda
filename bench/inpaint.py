"""Inpainting against OpenCV on held-out photos (issue 14, "Measured"), and the picture of generated masks.

    python bench/inpaint.py masks                      # docs/img/inpaint-masks.png (the mask kinds, with coverage)
    python bench/inpaint.py compare [--quick] [--deepfill SNAP] [--context-encoder SNAP] [--train-minutes M]
    python bench/inpaint.py classical --split train    # the classical fills alone on the training photos

``compare`` fills fixed-seed free-form holes in centre crops of the held-out photos (``python bench/photos.py
fetch``: ``~/.cache/ganforge/photos/heldout/``, never trained on) at two coverage bands, 10-20 % and 30-40 %, with
OpenCV's ``cv2.inpaint`` (Telea, Navier-Stokes; opencv-python-headless is a bench-only install, ``pip install
opencv-python-headless``), the push-pull interpolation that DeepFill's model.prefill=pushpull starts from, the smooth
fill (core/fill.py) that model.prefill=smooth starts from, a Context Encoder and DeepFill v2, and scores PSNR and
SSIM inside the hole and over the whole image, and the project's perceptual distance (judge features,
``metrics/perceptual.py``; not LPIPS) on the 32-px tiles that the hole touches. Speed: images per second through
the DeepFill pipeline at 256 x 256.

Masks: for photo i and band b the generator is seeded with SEED + 1000 b + i; free-form masks (data/masks.py, the
DeepFill v2 algorithm at the crop size) are united until the coverage reaches the band's lower end; a union that
overshoots the upper end is dropped and the next one drawn (the seed fixes the whole sequence).

Models: ``--deepfill`` / ``--context-encoder`` take snapshots or run folders. Without them the models are trained
here on ``<photos>/train`` for ``--train-minutes`` each (wall clock, ``run.minutes``) with the deepfill-128 /
context-encoder-64 recipes at ``--train-res`` px (quick: 64 px, narrower nets), the free-form+box masks for both
(Context Encoder's centre box would never see a free-form hole), and the run folders are recorded. ``--quick``: 2
photos, 128 px crops, 1 minute of training each (a pipeline check, not a result); the JSON goes to
bench/results/inpaint-compare-quick.json and the grid next to the run folders.

Hole SSIM is the mean of the SSIM map (11x11 Gaussian window, as ``metrics.image.ssim``) over the window positions
whose centre pixel is in the hole; hole PSNR uses the MSE over the hole's pixels.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = 20261214
BANDS = {"10-20": (0.10, 0.20), "30-40": (0.30, 0.40)}
JUDGE_TILE = 32

Image = np.ndarray  # [H, W, 3] uint8


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg": list(os.getloadavg())}


# ---------------------------------------------------------------------------------------------------------
# The mask picture


def masks_picture(out: Path, size: int = 128, per_row: int = 6) -> dict[str, Any]:
    """One row per generated kind (free-form, box, free-form+box, center), ``per_row`` masks each, seed 0; white =
    hole. Returns the coverage of 512 masks per kind at ``size`` px (seed 1)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from ganforge.data.dataset import mask_coverage_stats
    from ganforge.data.masks import GENERATED, coverage, mask_source

    kinds = ("free-form", "box", "free-form+box", "center")
    assert set(kinds) == set(GENERATED)
    label_w, pad = 120, 4
    canvas = PILImage.new("L", (label_w + per_row * (size + pad), len(kinds) * (size + pad)), 64)
    draw = ImageDraw.Draw(canvas)
    stats = {}
    for r, kind in enumerate(kinds):
        src = mask_source(kind, size)
        masks = src(per_row, torch.Generator().manual_seed(0))
        for c in range(per_row):
            tile = PILImage.fromarray((masks[c, 0].numpy() * 255).astype(np.uint8))
            canvas.paste(tile, (label_w + c * (size + pad), r * (size + pad)))
        s = mask_coverage_stats(coverage(src(512, torch.Generator().manual_seed(1))))
        stats[kind] = {k: round(v, 4) for k, v in s.items()}
        draw.text((6, r * (size + pad) + size // 2 - 12), f"{kind}\nmean {s['mean']:.0%}", fill=255)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return {"picture": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out), "size": size,
            "coverage_512_seed1": stats}


# ---------------------------------------------------------------------------------------------------------
# Data, masks, metrics


def heldout(photos: Path, n: int | None, crop: int, split: str = "heldout") -> list[tuple[str, Image]]:
    """Centre crops of side ``crop`` of the photos in ``photos/split`` (smaller photos are skipped)."""
    from ganforge.core.imageio import read_image

    folder = photos / split
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"{folder}: no photos; run `python bench/photos.py fetch` first")
    out = []
    for p in files[:n]:
        px = read_image(p).pixels
        px = np.repeat(px, 3, 2) if px.shape[2] == 1 else px
        px = px.astype(np.uint8) if px.dtype == np.uint8 else (px // 257).astype(np.uint8)
        h, w = px.shape[:2]
        if min(h, w) < crop:
            continue
        t, left = (h - crop) // 2, (w - crop) // 2
        out.append((p.stem, np.ascontiguousarray(px[t:t + crop, left:left + crop])))
    return out


def band_mask(size: int, band: tuple[float, float], seed: int) -> np.ndarray:
    """bool [size, size]: free-form masks united until the coverage is in ``band`` (see the module docstring)."""
    from ganforge.data.masks import free_form_masks

    gen = torch.Generator().manual_seed(seed)
    lo, hi = band
    for _ in range(1000):
        m = torch.zeros(1, 1, size, size)
        while m.mean() < lo:
            m = torch.maximum(m, free_form_masks(1, size, gen))
        if m.mean() < hi:
            return m[0, 0].numpy() > 0.5
    raise RuntimeError(f"no mask in band {band} after 1000 tries")


def _ssim_map(a: Image, b: Image) -> np.ndarray:
    """The SSIM map over 'valid' 11x11 positions, averaged over channels: [H-10, W-10]."""
    from ganforge.core.imagemath import ssim_maps

    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    return ssim_maps(ta, tb, 255.0)[0][0].mean(0).numpy()


def scores(out: Image, ref: Image, hole: np.ndarray, dist: Any) -> dict[str, float]:
    from ganforge.metrics.image import psnr, ssim
    from ganforge.metrics.perceptual import image_distance

    diff2 = (out.astype(np.float64) - ref.astype(np.float64)) ** 2
    mse_hole = diff2[hole].mean()
    smap = _ssim_map(out, ref)
    r = 5  # the map's position (i, j) is centred on pixel (i + 5, j + 5)
    hole_c = hole[r:-r, r:-r]
    t = JUDGE_TILE
    tiles = [(i, j) for i in range(0, out.shape[0] - t + 1, t) for j in range(0, out.shape[1] - t + 1, t)
             if hole[i:i + t, j:j + t].any()]

    def stack(img: Image) -> np.ndarray:
        return np.stack([img[i:i + t, j:j + t].transpose(2, 0, 1) for i, j in tiles])

    return {"psnr_hole": float(10 * np.log10(255**2 / max(mse_hole, 1e-10))),
            "ssim_hole": float(smap[hole_c].mean()),
            "psnr": float(psnr(out, ref).item()), "ssim": float(ssim(out, ref).item()),
            "perceptual": float(image_distance(stack(out), stack(ref), dist).mean())}


# ---------------------------------------------------------------------------------------------------------
# Methods and models


def opencv_methods() -> dict[str, Any]:
    try:
        import cv2
    except ImportError:
        raise SystemExit("opencv is a bench-only install: pip install opencv-python-headless") from None

    def method(flag: int):
        def fill(img: Image, hole: np.ndarray) -> Image:
            bgr = np.ascontiguousarray(img[:, :, ::-1])
            out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, 3, flag)[:, :, ::-1]
            res = img.copy()
            res[hole] = out[hole]
            return res
        return fill

    return {"opencv-telea": method(cv2.INPAINT_TELEA), "opencv-ns": method(cv2.INPAINT_NS), "_cv2": cv2.__version__}


def pushpull_method(img: Image, hole: np.ndarray) -> Image:
    """The push-pull interpolation alone (nets/deepfill.py pushpull_fill): what a model with model.prefill=pushpull
    starts from, so its row shows what the network adds."""
    from ganforge.nets.deepfill import pushpull_fill

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    m = torch.from_numpy(hole)[None, None].float()
    out = pushpull_fill(x, m)[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    res = img.copy()
    res[hole] = out[hole]
    return res


def smooth_method(img: Image, hole: np.ndarray, plate_weight: float | None = None) -> Image:
    """The smooth fill alone (core/fill.py smooth_fill: the mean of the exact membrane and thin-plate
    interpolations): what a model with model.prefill=smooth starts from, so its row shows what the network adds.
    ``plate_weight``: another mix (0 = the membrane alone, 1 = the thin plate alone)."""
    from ganforge.core.fill import PLATE_WEIGHT, smooth_fill_array

    w = PLATE_WEIGHT if plate_weight is None else plate_weight
    out = smooth_fill_array(img.transpose(2, 0, 1).astype(np.float64), hole, w).transpose(1, 2, 0)
    res = img.copy()
    res[hole] = np.clip(np.round(out[hole]), 0, 255).astype(np.uint8)
    return res


def classical_methods(extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The classical fills that compare and classical score, in their table order: OpenCV Telea and Navier-Stokes,
    push-pull, ``extra``, the smooth fill; and OpenCV's version."""
    methods = opencv_methods()
    cv2_version = methods.pop("_cv2")
    return {**methods, "push-pull": pushpull_method, **(extra or {}), "smooth-fill": smooth_method}, cv2_version


def classical(args: argparse.Namespace) -> dict[str, Any]:
    """The classical fills alone (OpenCV Telea and Navier-Stokes, push-pull, the membrane, the thin plate and their
    mean, the smooth fill) on ``--split`` photos, with compare's crops, bands and mask seeds: run on the training
    photos it checks that the smooth fill's lead over OpenCV is not a property of the 6 held-out photos alone."""
    from ganforge.metrics.extractors import SHIPPED_JUDGE
    from ganforge.metrics.perceptual import PerceptualDistance

    crop = args.crop or 256
    photos = heldout(args.photos, None, crop, args.split)
    methods, cv2_version = classical_methods({"membrane": functools.partial(smooth_method, plate_weight=0.0),
                                              "thin-plate": functools.partial(smooth_method, plate_weight=1.0)})
    dist = PerceptualDistance(SHIPPED_JUDGE)
    results: dict[str, Any] = {}
    for b, (band, rng) in enumerate(BANDS.items()):
        per_method: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        for i, (_name, img) in enumerate(photos):
            hole = band_mask(crop, rng, SEED + 1000 * b + i)
            for m, fn in methods.items():
                per_method[m].append(scores(fn(img, hole), img, hole, dist))
        results[band] = {m: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
                         for m, rows in per_method.items()}
        print(f"band {band}: " + "; ".join(f"{m} hole-SSIM {v['ssim_hole']:.4f} perceptual {v['perceptual']:.4f}"
                                         for m, v in results[band].items()), flush=True)
    return {"split": args.split, "photos": [n for n, _ in photos], "crop": crop, "bands": results,
            "opencv": cv2_version, "perceptual": dist.protocol}


def train_model(preset: str, photos: Path, out: Path, minutes: float, res: int, quick: bool) -> Path:
    from ganforge.config import resolve_config
    from ganforge.training.loop import train

    over: dict[str, Any] = {"data": {"source": str(photos / "train"), "resolution": res, "masks": "free-form+box"},
                            "run": {"kimg": 100000.0, "minutes": minutes, "out": str(out),
                                    "tick_kimg": 0.04 if quick else 0.16,  # the budget is checked every tick
                                    "sample_every_kimg": 2.0, "snapshot_every_kimg": 5.0,
                                    "checkpoint_every_kimg": 5.0}}
    if preset.startswith("deepfill"):
        over["model"] = {"width": 8 if quick else 16, "dilations": [2, 4, 8] if res <= 64 else [2, 4, 8, 16]}
        over["loss"] = {"d_layers": max(1, int(np.log2(res)) - 2), "d_width": 32}
        over["optim"] = {"batch": 8}
    else:
        over["model"] = {"width": 16 if quick else 32, "levels": 4, "bottleneck": 128 if quick else 256}
        over["loss"] = {"d_layers": 4, "d_width": 32}
        over["optim"] = {"batch": 8}
    return train(resolve_config(preset, over), progress=False)


def model_record(path: Path) -> dict[str, Any]:
    from ganforge.core.snapshot import load_snapshot, snapshot_hash

    _, meta = load_snapshot(path)
    return {"path": str(path), "sha256": snapshot_hash(path), "arch": meta.get("arch"),
            "G": meta.get("modules", {}).get("G", {}).get("config"), "step": meta.get("step"),
            "kimg": meta.get("kimg"), "resolution": meta.get("resolution"), "masks": meta.get("masks"),
            "preset": meta.get("config", {}).get("preset")}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from ganforge.infer.pipelines import load_pipeline
    from ganforge.metrics.extractors import SHIPPED_JUDGE
    from ganforge.metrics.perceptual import PerceptualDistance

    quick = args.quick
    crop = args.crop or (128 if quick else 256)
    photos = heldout(args.photos, 2 if quick else None, crop)
    methods, cv2_version = classical_methods()
    models: dict[str, dict[str, Any]] = {}
    work = Path(args.work).expanduser()
    minutes = args.train_minutes if args.train_minutes is not None else (1.0 if quick else 20.0)
    res = args.train_res or (64 if quick else 128)
    for name, preset, given in (("context-encoder", "context-encoder-64", args.context_encoder),
                                ("deepfill-v2", "deepfill-128", args.deepfill)):
        t0 = time.perf_counter()
        path = Path(given) if given else train_model(preset, args.photos, work, minutes, res, quick)
        pipe = load_pipeline(path)
        if name == "deepfill-v2":
            pipe.max_side = pipe.check_max_side(args.max_side)
        models[name] = model_record(path if not path.is_dir() else path / "snapshots" / "latest")
        models[name]["max_side"] = pipe.max_side
        models[name]["trained_here_s"] = None if given else round(time.perf_counter() - t0, 1)
        methods[name] = lambda img, hole, p=pipe: p(img, hole)
    dist = PerceptualDistance(SHIPPED_JUDGE)
    results: dict[str, Any] = {}
    grid_rows = []
    for b, (band, rng) in enumerate(BANDS.items()):
        per_method: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        coverages = []
        for i, (_name, img) in enumerate(photos):
            hole = band_mask(crop, rng, SEED + 1000 * b + i)
            coverages.append(float(hole.mean()))
            row = [np.where(hole[:, :, None], 255, img).astype(np.uint8)]
            for m, fn in methods.items():
                out = fn(img, hole)
                assert np.array_equal(out[~hole], img[~hole]), f"{m} changed pixels outside the hole"
                per_method[m].append(scores(out, img, hole, dist))
                row.append(out)
            row.append(img)
            if i < 2:
                grid_rows.append(row)
        results[band] = {"coverage": [round(c, 4) for c in coverages],
                         "methods": {m: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
                                     for m, rows in per_method.items()}}
        print(f"band {band}: " + "; ".join(f"{m} hole-SSIM {v['ssim_hole']:.4f} perceptual {v['perceptual']:.4f}"
                                         for m, v in results[band]["methods"].items()), flush=True)
    # Speed at 256 x 256: a full-image hole of the 30-40 % band, through the DeepFill pipeline (after a warm-up).
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    hole = band_mask(256, BANDS["30-40"], SEED)
    pipe = load_pipeline(Path(models["deepfill-v2"]["path"]))
    pipe.max_side = pipe.check_max_side(args.max_side)
    pipe(img, hole)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 5.0:
        pipe(img, hole)
        n += 1
    speed = n / (time.perf_counter() - t0)
    # The before/after grid: docs/img for a full run; a quick run's stays with its run folders.
    picture = save_grid(grid_rows, args.picture or (work / "inpaint-compare-quick.png" if quick
                                                    else REPO / "docs" / "img" / "inpaint-compare.png"))
    verdict = {band: {m: bool(r["methods"]["deepfill-v2"]["ssim_hole"] > r["methods"][m]["ssim_hole"]
                              and r["methods"]["deepfill-v2"]["perceptual"] < r["methods"][m]["perceptual"])
                      for m in ("opencv-telea", "opencv-ns")} for band, r in results.items()}
    return {"photos": [n for n, _ in photos], "crop": crop, "bands": results, "models": models,
            "deepfill_beats_opencv": verdict, "speed_img_per_s_256": round(speed, 2), "opencv": cv2_version,
            "picture": str(picture), "perceptual": dist.protocol}


def save_grid(rows: list[list[Image]], path: Path) -> Path:
    """Rows of masked | telea | ns | push-pull | smooth fill | context encoder | deepfill | real, 2-px gutters."""
    from PIL import Image as PILImage

    h, w = rows[0][0].shape[:2]
    pad = 2
    canvas = np.zeros((len(rows) * (h + pad), len(rows[0]) * (w + pad), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(canvas).save(path, optimize=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("section", choices=("masks", "compare", "classical"))
    ap.add_argument("--split", default="heldout", help="classical: the photo folder under --photos (heldout, train)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--photos", type=Path, default=Path("~/.cache/ganforge/photos").expanduser())
    ap.add_argument("--deepfill", help="DeepFill v2 snapshot or run folder (default: train one here)")
    ap.add_argument("--context-encoder", help="Context Encoder snapshot or run folder (default: train one here)")
    ap.add_argument("--train-minutes", type=float, help="training budget per model (default 20; quick 1)")
    ap.add_argument("--train-res", type=int, help="training resolution (default 128; quick 64)")
    ap.add_argument("--crop", type=int, help="held-out crop side (default 256; quick 128)")
    ap.add_argument("--work", default="~/.cache/ganforge/bench-inpaint", help="run folders of models trained here")
    ap.add_argument("--max-side", type=int, help="DeepFill pipeline's max_side (default: the pipeline's)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads [1: on this shared 2-core machine one "
                    "thread runs small convolutions faster than two, docs/restoration.md]")
    ap.add_argument("--picture", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.section == "masks":
        record = masks_picture(args.picture or REPO / "docs" / "img" / "inpaint-masks.png")
    elif args.split != "heldout" and args.section == "compare":
        raise SystemExit("--split is for the classical section; compare always scores the held-out photos")
    elif args.section == "classical":
        record = classical(args)
    else:
        record = compare(args)
    record |= {"section": args.section, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "seconds": round(time.time() - t0, 1), "machine": machine_info()}
    name = f"inpaint-{args.section}" + (f"-{args.split}" if args.section == "classical" else "")
    out = args.out or HERE / "results" / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("bands",)}, indent=2)[:3000])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
