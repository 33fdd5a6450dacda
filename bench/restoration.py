"""Restoration against the classical methods, on held-out photos: super-resolution x4, denoising, de-raining,
speed and memory, and face super-resolution (issue 13, "Measured").

    python bench/restoration.py all                 # every section (about 20 minutes on a 2-core CPU)
    python bench/restoration.py sr|denoise|derain|speed|face [--quick] [--pictures]

Each section runs on its own and merges its record into bench/results/restoration.json (``sections.<name>``), with
the command, the time and the machine. ``--quick`` runs a small version for development (2 photos, small crops,
short training; the JSON then goes to restoration-quick.json unless --out is given).

Data. The held-out split of the photo set (``python bench/photos.py fetch``: ``~/.cache/ganforge/photos/heldout/``
and ``manifest.json``; ``--photos`` to move it): photos the shipped models never saw in training. Each photo gives
one fixed centre crop of ``--crop`` px (a multiple of 4). Every degradation is the training one from
``ganforge.data.derive`` (bicubic antialiased downscale, Gaussian noise, rain streaks) with a fixed seed per photo,
and the degraded image is rounded to 8 bits, as a saved file would be; every method gets the same uint8 input and
its output is rounded to 8 bits before scoring.

Models. The shipped checkpoints in ``src/ganforge/pretrained/`` (sr-x4-psnr, sr-x4-gan, denoise-blind,
denoise-nonblind, derain), loaded as snapshots through the one inference path (``load_pipeline``, tiled);
``--models DIR`` or ``--model NAME=PATH`` point elsewhere. A missing model is skipped and recorded as missing.

Metrics. ``ganforge.metrics.image`` (BasicSR conventions; checked against scikit-image on the first crop, the
difference is recorded): PSNR/SSIM on the BT.601 luma Y and on RGB; x4 SR crops a 4-px border. The perceptual
distance is the project's judge-feature distance (``metrics/perceptual.py``, not LPIPS) with the shipped judge,
computed on the 32-px tiles of each crop at their native resolution (the judge's input size, so nothing is resized
away; ``ganforge eval pairs`` would shrink the whole crop to 32 px, where x4 detail no longer shows).

Speed (``speed``): megapixels/s of the input through the pipeline at tiles 128, 256, 512, as a ratio to torch's
bicubic x4 interpolation of the same image and of the model FLOP/s to the machine's float32 matmul peak, all in
this run; peak RSS of a 4000x3000 x4 upscale written to a PNG, in a child process; SRResNet (the srresnet-x4
preset net) training at batch 16 on 96 px patches, counted FLOP/s against the matmul peak. ``--speed-parts``
reruns some of these and keeps the others from the results file.

Faces (``face``): x4 on scikit-image's lfw_subset, trained by this script: faces 0-74 for training, 75-99 for
testing (images 100-199 of lfw_subset are not faces; see ``section_face``).

Threads: one by default (``--threads``). On a shared, loaded 2-core machine two threads of small convolutions spin
against each other (a faces training step: 17 steps/s with 1 thread, 0.5-0.7 with 2, measured back to back).
The classical denoisers' outputs are cached under ``--cache`` (keyed by input hash and settings), so a rerun after
a model changes costs minutes, not the half hour BM3D takes on a loaded core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL_NAMES = ("sr-x4-psnr", "sr-x4-gan", "denoise-blind", "denoise-nonblind", "derain")
SIGMAS = (15, 25, 50)  # Gaussian noise levels on the 0-255 scale (the DnCNN / FFDNet benchmark levels)
SEED = 20261201  # base of every degradation seed: photo i at setting s uses SEED + 1000 * s + i
SR_SCALE = 4
JUDGE_TILE = 32  # the shipped judge's input size: perceptual distance on native-resolution tiles of this size
PICTURE_MAX_BYTES = 300_000
MiB = 2**20

Image = np.ndarray  # [H, W, C] uint8
Method = Callable[[Image], Image]


# ---------------------------------------------------------------------------------------------------------
# Machine, models, photos


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (speed is also reported as ratios, since the machines are shared)."""
    return {"platform": platform.platform(), "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg": list(os.getloadavg())}


def model_paths(args: argparse.Namespace) -> dict[str, Path]:
    """Snapshot stem per model name: ``--models DIR/<name>`` unless ``--model NAME=PATH`` says otherwise."""
    paths = {name: args.models / name for name in MODEL_NAMES}
    for item in args.model:
        name, _, path = item.partition("=")
        if name not in MODEL_NAMES or not path:
            raise SystemExit(f"--model {item!r}: write NAME=PATH with NAME one of {', '.join(MODEL_NAMES)}")
        paths[name] = Path(path)
    return paths


def load_model(name: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(pipeline or None, a record naming the snapshot: path, SHA-256, architecture, training length)."""
    from ganforge.core.snapshot import load_snapshot, snapshot_hash
    from ganforge.infer.pipelines import load_pipeline

    path = model_paths(args)[name]
    if not path.with_suffix(".safetensors").is_file() and not path.is_dir():
        return None, {"name": name, "path": str(path), "missing": True}
    _, meta = load_snapshot(path)
    pipe = load_pipeline(path)
    cfg = meta.get("config", {})
    return pipe, {"name": name, "path": _rel(path), "sha256": snapshot_hash(path), "arch": meta.get("arch"),
                  "net": meta.get("modules", {}).get("net", {}).get("config"), "step": meta.get("step"),
                  "kimg": meta.get("kimg"), "derive": cfg.get("data", {}).get("derive"),
                  "preset": cfg.get("preset"), "receptive_field": meta.get("receptive_field")}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def heldout_photos(args: argparse.Namespace) -> tuple[list[tuple[str, Image]], dict[str, Any]]:
    """The held-out photos as [H, W, 3] uint8 (gray ones replicated), sorted by name, and a record of the split."""
    from ganforge.core.files import file_sha256
    from ganforge.core.imageio import read_image

    folder = args.photos / "heldout"
    manifest = args.photos / "manifest.json"
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no held-out photos; run `python bench/photos.py fetch` or pass --photos DIR")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
    photos = []
    for f in files:
        px = read_image(f).pixels
        px = px[:, :, None] if px.ndim == 2 else px
        if px.dtype != np.uint8:
            px = (px.astype(np.float64) / 257).round().astype(np.uint8)
        photos.append((f.name, np.ascontiguousarray(np.repeat(px, 3, 2) if px.shape[2] == 1 else px[:, :, :3])))
    if args.quick:
        photos = photos[:2]
    record = {"folder": str(folder), "manifest": str(manifest),
              "manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
              "photos": [{"file": n, "size": [int(p.shape[1]), int(p.shape[0])]} for n, p in photos]}
    return photos, record


def photo_crops(photos: Sequence[tuple[str, Image]], size: int, per_photo: int) -> list[tuple[str, Image]]:
    """``per_photo`` fixed crops of ``size`` px per photo, centred on the short axis and spread evenly along the long
    one (centres at (j + 0.5) / per_photo of its length, clamped inside the photo), named ``<file>#<j>``."""
    out = []
    for name, img in photos:
        h, w = img.shape[:2]
        s = min(size, h - h % SR_SCALE, w - w % SR_SCALE)
        for j in range(per_photo):
            c = (j + 0.5) / per_photo
            top = (h - s) // 2 if w >= h else min(max(round(c * h - s / 2), 0), h - s)
            left = (w - s) // 2 if w < h else min(max(round(c * w - s / 2), 0), w - s)
            out.append((f"{name}#{j}", np.ascontiguousarray(img[top:top + s, left:left + s])))
    return out


def center_crop(img: Image, size: int) -> Image:
    """The centre ``size`` x ``size`` crop (the whole image, cut down to a multiple of 4, if smaller)."""
    h, w = img.shape[:2]
    ch, cw = min(size, h - h % SR_SCALE), min(size, w - w % SR_SCALE)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top:top + ch, left:left + cw])


def to_unit(img: Image) -> torch.Tensor:
    """[H, W, C] uint8 -> [1, C, H, W] float32 in [-1, 1] (the derive ops' range)."""
    return torch.from_numpy(img).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def to_u8(x: torch.Tensor) -> Image:
    """[1, C, H, W] in [-1, 1] -> [H, W, C] uint8, rounded and clipped as a saved file."""
    return ((x[0].permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def degrade(img: Image, spec: str, seed: int) -> Image:
    """``img`` through the training degradation ``spec`` (data/derive.py) with its own seed, rounded to 8 bits."""
    from ganforge.data.derive import parse_derive

    return to_u8(parse_derive(spec)(to_unit(img), torch.Generator().manual_seed(seed)))


def bicubic_up(img: Image, scale: int = SR_SCALE) -> Image:
    """torch bicubic interpolation (a = -0.75, as PyTorch/OpenCV), rounded to 8 bits: the SR baseline."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def run_pipe(pipe: Any, img: Image, tile: int = 512, sigma: float | None = None) -> Image:
    """The pipeline on uint8 pixels; ``sigma`` (0-255 units) goes only to a non-blind model."""
    if sigma is not None and pipe.net.config.get("noise_map"):
        return pipe(img, tile=tile, sigma=sigma)
    return pipe(img, tile=tile)


# ---------------------------------------------------------------------------------------------------------
# Scores


def scores(out: Image, ref: Image, crop_border: int = 0) -> dict[str, float]:
    """PSNR (dB) and SSIM on Y (BT.601) and on RGB, BasicSR conventions."""
    from ganforge.metrics.image import psnr, ssim

    return {"psnr_y": psnr(out, ref, crop_border, y_channel=True).item(),
            "ssim_y": ssim(out, ref, crop_border, y_channel=True).item(),
            "psnr_rgb": psnr(out, ref, crop_border).item(), "ssim_rgb": ssim(out, ref, crop_border).item()}


def skimage_check(out: Image, ref: Image, crop_border: int) -> dict[str, float]:
    """|ours - scikit-image| for PSNR/SSIM on RGB and on Y with the border crop (the tests check 1e-10 / 1e-12)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from ganforge.metrics.image import psnr, rgb_to_y, ssim

    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    b = crop_border
    ya, yb = (rgb_to_y(v)[0, 0].numpy()[b:-b, b:-b] for v in (out, ref))
    return {"psnr_rgb": abs(psnr(out, ref).item() - peak_signal_noise_ratio(ref, out, data_range=255)),
            "ssim_rgb": abs(ssim(out, ref).item() - structural_similarity(ref, out, channel_axis=-1, **kw)),
            "psnr_y_crop": abs(psnr(out, ref, b, True).item() - peak_signal_noise_ratio(yb, ya, data_range=255)),
            "ssim_y_crop": abs(ssim(out, ref, b, True).item() - structural_similarity(yb, ya, **kw))}


def judge_tiles_distance(out: Image, ref: Image, dist: Any) -> float:
    """Mean judge-feature distance over the non-overlapping JUDGE_TILE-px tiles of two images (native pixels)."""
    from ganforge.metrics.perceptual import image_distance

    t = JUDGE_TILE
    h, w = (out.shape[0] // t) * t, (out.shape[1] // t) * t

    def tiles(img: Image) -> np.ndarray:  # [N, C, t, t]
        c = img.shape[2]
        return img[:h, :w].reshape(h // t, t, w // t, t, c).transpose(0, 2, 4, 1, 3).reshape(-1, c, t, t)

    return image_distance(np.ascontiguousarray(tiles(out)), np.ascontiguousarray(tiles(ref)), dist).mean().item()


def mean_scores(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def timed(fn: Callable[[], Image]) -> tuple[Image, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class Cached:
    """A slow classical method whose outputs are kept on disk (``--cache``), keyed by the SHA-256 of its input
    pixels and its settings (``key``), with the seconds the computation took; a later run with the same inputs and
    settings reads the output and reports those seconds. The inputs are fixed by the seeds, so only the expensive
    baselines (BM3D takes ~7 s per 256 px crop on an idle core) need not be recomputed when a model changes."""

    def __init__(self, fn: Method, key: str, folder: Path | None):
        self.fn, self.key, self.folder = fn, key, folder
        self.hits = 0

    def __call__(self, img: Image) -> tuple[Image, float]:
        import hashlib

        if self.folder is None:
            return timed(lambda: self.fn(img))
        digest = hashlib.sha256(f"{self.key}|{img.shape}|".encode() + img.tobytes()).hexdigest()
        path = self.folder / f"{digest}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                self.hits += 1
                return f["out"], float(f["seconds"])
        out, seconds = timed(lambda: self.fn(img))
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, out=out, seconds=np.float64(seconds))
        tmp.replace(path)
        return out, seconds


def evaluate_methods(methods: dict[str, Method | Cached], cases: Sequence[tuple[str, Image, Image]],
                     crop_border: int = 0, extra: Callable[[str, Image, Image], dict[str, float]] | None = None,
                     ) -> tuple[dict[str, Any], dict[str, list[Image]]]:
    """Each method on every (name, degraded, clean) case: mean scores, per-photo scores, seconds per megapixel;
    also returns the outputs (for the pictures)."""
    result: dict[str, Any] = {}
    outputs: dict[str, list[Image]] = {}
    for label, method in methods.items():
        rows, seconds, mp, outs = [], 0.0, 0.0, []
        for name, degraded, clean in cases:
            if isinstance(method, Cached):
                out, dt = method(degraded)
            else:
                out, dt = timed(lambda m=method, d=degraded: m(d))
            seconds, mp = seconds + dt, mp + degraded.shape[0] * degraded.shape[1] / 1e6
            row = scores(out, clean, crop_border)
            if extra is not None:
                row |= extra(label, out, clean)
            rows.append(row | {"photo": name})
            outs.append(out)
        numeric = [{k: v for k, v in r.items() if k != "photo"} for r in rows]
        result[label] = {"mean": mean_scores(numeric), "s_per_input_mp": round(seconds / mp, 3),
                         "per_photo": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                       for r in rows]}
        if isinstance(method, Cached) and method.hits:
            result[label]["from_cache"] = f"{method.hits} of {len(cases)} outputs (and their timings) from --cache"
        outputs[label] = outs
        m = result[label]["mean"]
        print(f"  {label:28s} PSNR-Y {m['psnr_y']:6.2f}  SSIM-Y {m['ssim_y']:.4f}  PSNR-RGB {m['psnr_rgb']:6.2f}"
              + (f"  perceptual {m['perceptual']:.4f}" if "perceptual" in m else ""), flush=True)
    return result, outputs


# ---------------------------------------------------------------------------------------------------------
# Pictures


def save_strip(panels: Sequence[Image], labels: Sequence[str], path: Path, region: int) -> dict[str, Any]:
    """Side-by-side centre ``region``-px crops of same-size panels with a caption under each, as a PNG; the region
    shrinks in steps of 32 px until the file is under PICTURE_MAX_BYTES."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    path.parent.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    gap, caption = 4, 16
    while True:
        crops = [center_crop(p, region) for p in panels]
        side = crops[0].shape[0]
        canvas = PILImage.new("RGB", (len(crops) * side + (len(crops) - 1) * gap, side + caption), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (crop, label) in enumerate(zip(crops, labels, strict=True)):
            canvas.paste(PILImage.fromarray(crop), (i * (side + gap), 0))
            draw.text((i * (side + gap) + 3, side + 2), label, fill="black", font=font)
        canvas.save(path, optimize=True)
        size = path.stat().st_size
        if size <= PICTURE_MAX_BYTES or region <= 64:
            return {"file": _rel(path), "bytes": size, "region_px": side, "panels": list(labels)}
        region -= 32


# ---------------------------------------------------------------------------------------------------------
# Sections


def section_sr(args: argparse.Namespace) -> dict[str, Any]:
    """x4 SR on held-out crops: bicubic vs sr-x4-psnr vs sr-x4-gan; PSNR/SSIM Y (border 4) and RGB, perceptual."""
    from ganforge.metrics.extractors import SHIPPED_JUDGE
    from ganforge.metrics.perceptual import PerceptualDistance

    photos, split = heldout_photos(args)
    cases = [(name, degrade(hr, f"downscale:{SR_SCALE}", SEED + i), hr)
             for i, (name, hr) in enumerate(photo_crops(photos, args.crop, args.crops_per_photo))]
    models = {n: load_model(n, args) for n in ("sr-x4-psnr", "sr-x4-gan")}
    methods: dict[str, Method] = {"bicubic": bicubic_up}
    for n, (pipe, _) in models.items():
        if pipe is not None:
            methods[n] = lambda x, p=pipe: run_pipe(p, x)
    dist = PerceptualDistance(SHIPPED_JUDGE)
    result, outs = evaluate_methods(methods, cases, crop_border=SR_SCALE,
                                    extra=lambda _, o, c: {"perceptual": judge_tiles_distance(o, c, dist)})
    rec: dict[str, Any] = {
        "protocol": {"crop_px": args.crop, "crops_per_photo": args.crops_per_photo,
                     "degradation": f"data.derive downscale:{SR_SCALE} (bicubic, "
                     "antialiased, torch), rounded to uint8", "seed": f"{SEED} + crop index",
                     "bicubic": "torch F.interpolate bicubic x4, align_corners=False, rounded",
                     "psnr_ssim": "metrics.image: Y = BT.601 luma, 4-px border crop; RGB also with the crop",
                     "perceptual": f"{dist.protocol}; on {JUDGE_TILE}-px tiles at native resolution, averaged",
                     "skimage_check": skimage_check(outs["bicubic"][0], cases[0][2], SR_SCALE)},
        "split": split, "models": [info for _, info in models.values()], "methods": result}
    if "sr-x4-psnr" in result:
        rec["gain_psnr_y_db"] = round(result["sr-x4-psnr"]["mean"]["psnr_y"] - result["bicubic"]["mean"]["psnr_y"], 3)
    if args.pictures and len(methods) == 3:
        i = _picture_index(args, photos)
        rec["picture"] = save_strip(
            [outs["bicubic"][i], outs["sr-x4-psnr"][i], outs["sr-x4-gan"][i], cases[i][2]],
            ["bicubic", "ours (PSNR)", "ours (GAN)", "ground truth"], args.pictures_dir / "sr-x4.png", 192)
    return rec


def _picture_index(args: argparse.Namespace, photos: Sequence[tuple[str, Image]]) -> int:
    """Index of the crop shown in the pictures: ``--picture-photo FILE[#J]`` (default: the first crop)."""
    names = [n for n, _ in photo_crops(photos, args.crop, args.crops_per_photo)]
    if args.picture_photo is None:
        return 0
    key = args.picture_photo if "#" in args.picture_photo else f"{args.picture_photo}#0"
    if key not in names:
        raise SystemExit(f"--picture-photo {args.picture_photo!r} is not a held-out crop: {', '.join(names)}")
    return names.index(key)


def nl_means(sigma: float, with_sigma: bool) -> Method:
    """scikit-image non-local means at the true sigma (0-255), as its gallery example does with an estimate:
    fast mode, 5x5 patches, search distance 6; h = 0.8 sigma without ``sigma=``, 0.6 sigma with it."""
    from skimage.restoration import denoise_nl_means

    s = sigma / 255.0

    def run(noisy: Image) -> Image:
        x = noisy.astype(np.float64) / 255.0
        kw = dict(h=0.6 * s, sigma=s) if with_sigma else dict(h=0.8 * s)
        y = denoise_nl_means(x, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1, **kw)
        return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)

    return run


def bm3d_method(sigma: float) -> Method | None:
    """BM3D (Dabov et al. 2007) from the ``bm3d`` package, colour version (``bm3d_rgb``, opponent colour space)
    at the true sigma; None when the package is not installed."""
    try:
        import bm3d
    except ImportError:
        return None

    def run(noisy: Image) -> Image:
        y = bm3d.bm3d_rgb(noisy.astype(np.float64) / 255.0, sigma / 255.0)
        return np.clip(np.round(np.asarray(y) * 255.0), 0, 255).astype(np.uint8)

    return run


def section_denoise(args: argparse.Namespace) -> dict[str, Any]:
    """Gaussian sigma 15/25/50: noisy, NL-means, BM3D, denoise-blind, denoise-nonblind (true sigma)."""
    photos, split = heldout_photos(args)
    models = {n: load_model(n, args) for n in ("denoise-blind", "denoise-nonblind")}
    crops = photo_crops(photos, args.crop, args.crops_per_photo)
    per_sigma: dict[str, Any] = {}
    pictures = {}
    from importlib.metadata import PackageNotFoundError, version

    skimage_version = version("scikit-image")
    try:
        bm3d_version: str | None = version("bm3d")
    except PackageNotFoundError:
        bm3d_version = None
    for sigma in SIGMAS:
        print(f" sigma {sigma}", flush=True)
        cases = [(name, degrade(clean, f"noise:gaussian:{sigma}", SEED + 1000 * sigma + i), clean)
                 for i, (name, clean) in enumerate(crops)]
        methods: dict[str, Method | Cached] = {
            "noisy input": lambda x: x,
            "nl-means h=0.8s": Cached(nl_means(sigma, False), f"nlm-0.8|{sigma}|{skimage_version}", args.cache),
            "nl-means h=0.6s, sigma given": Cached(nl_means(sigma, True), f"nlm-0.6|{sigma}|{skimage_version}",
                                                   args.cache)}
        bm = bm3d_method(sigma)
        if bm is not None:
            methods["bm3d"] = Cached(bm, f"bm3d_rgb|{sigma}|{bm3d_version}", args.cache)
        for n, (pipe, _) in models.items():
            if pipe is not None:
                methods[n] = lambda x, p=pipe, s=sigma: run_pipe(p, x, sigma=s)
        result, outs = evaluate_methods(methods, cases)
        # The better of the two documented NL-means settings at this sigma (on these photos) is "nl-means".
        nlm = max(("nl-means h=0.8s", "nl-means h=0.6s, sigma given"), key=lambda k: result[k]["mean"]["psnr_rgb"])
        per_sigma[str(sigma)] = {"methods": result, "nl_means_best": nlm}
        if args.pictures and sigma == 25 and "denoise-blind" in outs:
            i = _picture_index(args, photos)
            pictures = save_strip([cases[i][1], outs[nlm][i], outs["denoise-blind"][i], cases[i][2]],
                                  ["noisy, sigma 25", "NL-means", "ours (blind)", "clean"],
                                  args.pictures_dir / "denoise-25.png", 192)
    rec: dict[str, Any] = {
        "protocol": {"crop_px": args.crop, "crops_per_photo": args.crops_per_photo, "sigmas": list(SIGMAS),
                     "degradation": "data.derive noise:gaussian:SIGMA on the clean crop (clipped), rounded to uint8",
                     "seed": f"{SEED} + 1000 * sigma + crop index",
                     "nl_means": "skimage.restoration.denoise_nl_means, fast_mode=True, patch_size=5, "
                                 "patch_distance=6, true sigma: h=0.8*sigma (sigma not passed) and h=0.6*sigma with "
                                 "sigma passed (the two fast settings of scikit-image's gallery example); "
                                 "nl_means_best names the better one per sigma (by mean RGB PSNR)",
                     "bm3d": f"bm3d.bm3d_rgb(noisy, sigma/255), package {bm3d_version}" if bm3d_version else
                             "not installed",
                     "nonblind": "denoise-nonblind is given the true sigma", "psnr_ssim": "metrics.image, no crop",
                     "cache": "NL-means and BM3D outputs with the seconds they took are kept under --cache, keyed by "
                              "the input's SHA-256 and the settings; 'from_cache' marks reused ones"},
        "split": split, "models": [info for _, info in models.values()], "sigma": per_sigma}
    if pictures:
        rec["picture"] = pictures
    return rec


def guided_filter(radius: int, eps: float) -> Method:
    """The guided filter (He, Sun & Tang 2010, eq. 5-8) with each channel as its own guide: an edge-preserving
    smoother; ``radius`` in px, ``eps`` on the [0, 1] scale."""
    from scipy.ndimage import uniform_filter

    def run(img: Image) -> Image:
        p = img.astype(np.float64) / 255.0
        size = (2 * radius + 1, 2 * radius + 1, 1)
        mean = uniform_filter(p, size, mode="reflect")
        var = uniform_filter(p * p, size, mode="reflect") - mean**2
        a = var / (var + eps)
        b = mean - a * mean
        q = uniform_filter(a, size, mode="reflect") * p + uniform_filter(b, size, mode="reflect")
        return np.clip(np.round(q * 255.0), 0, 255).astype(np.uint8)

    return run


def median_filter(size: int) -> Method:
    """A size x size median per channel (scipy.ndimage, reflect borders)."""
    from scipy.ndimage import median_filter as median

    return lambda img: median(img, size=(size, size, 1), mode="reflect")


def rain_densities(spec: str | None) -> list[float]:
    """Low, middle and high density of the model's training range ``rain:LO-HI`` (the one value if fixed)."""
    from ganforge.data.derive import parse_derive

    for step in parse_derive(spec or "rain:0.02-0.08").steps:
        if "density" in step.kwargs:
            lo, hi = step.kwargs["density"]
            return sorted({round(lo, 4), round((lo + hi) / 2, 4), round(hi, 4)})
    raise SystemExit(f"the derain model was not trained with a rain derive (data.derive = {spec!r})")


def section_derain(args: argparse.Namespace) -> dict[str, Any]:
    """Synthetic rain at fixed seeds: rainy input, the classical filters (the best one named), the shipped derain."""
    photos, split = heldout_photos(args)
    pipe, info = load_model("derain", args)
    densities = rain_densities(info.get("derive"))
    crops = photo_crops(photos, args.crop, args.crops_per_photo)
    classical = {"median 3x3": median_filter(3), "median 5x5": median_filter(5),
                 "guided r=2 eps=0.01": guided_filter(2, 0.01), "guided r=4 eps=0.01": guided_filter(4, 0.01)}
    per_density: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for k, density in enumerate(densities):
        print(f" rain density {density}", flush=True)
        cases = [(name, degrade(clean, f"rain:{density}", SEED + 1000 * (k + 1) + i), clean)
                 for i, (name, clean) in enumerate(crops)]
        methods: dict[str, Method] = {"rainy input": lambda x: x, **classical}
        if pipe is not None:
            methods["derain"] = lambda x: run_pipe(pipe, x)
        result, outs = evaluate_methods(methods, cases)
        per_density[str(density)] = {"methods": result}
        outputs[str(density)] = (cases, outs)
    # One classical filter for all densities: the best mean RGB PSNR over every density and photo.
    best = max(classical, key=lambda m: np.mean([d["methods"][m]["mean"]["psnr_rgb"] for d in per_density.values()]))
    rec: dict[str, Any] = {
        "protocol": {"crop_px": args.crop, "crops_per_photo": args.crops_per_photo, "densities": densities,
                     "degradation": "data.derive rain:DENSITY (the training model of the streaks) on the clean crop, "
                                    "rounded to uint8; densities = low, middle, high of the model's training range",
                     "seed": f"{SEED} + 1000 * (density index + 1) + crop index",
                     "classical": "median 3x3 and 5x5 per channel (scipy.ndimage), self-guided filter r=2 and r=4, "
                                  "eps=0.01; classical_best = the best mean RGB PSNR over all densities",
                     "psnr_ssim": "metrics.image, no crop"},
        "split": split, "models": [info], "classical_best": best, "density": per_density}
    if args.pictures and pipe is not None:
        i = _picture_index(args, photos)
        cases, outs = outputs[str(densities[len(densities) // 2])]
        rec["picture"] = save_strip([cases[i][1], outs[best][i], outs["derain"][i], cases[i][2]],
                                    ["rainy", best.split(" eps")[0], "ours", "clean"],
                                    args.pictures_dir / "derain.png", 192)
    return rec


# ---------------------------------------------------------------------------------------------------------
# Speed and memory


def matmul_peak(seconds: float) -> float:
    """Best float32 FLOP/s over repeated 2048^2 matmuls (as bench/train_speed.py)."""
    from train_speed import matmul_peak as peak

    return peak(seconds=seconds)


def model_flops_per_pixel(net: torch.nn.Module, sigma: float | None) -> float:
    """Forward FLOPs of the network per input pixel, counted on a 64x64 input (fully convolutional: linear in area)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, net.config["channels"], 64, 64)
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        net(x, sigma) if sigma is not None else net(x)
    return fc.get_total_flops() / (64 * 64)


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def synthetic_photo(args: argparse.Namespace, width: int, height: int) -> Image:
    """A held-out photo resized (PIL bicubic) to width x height: photo-like content at any size."""
    from PIL import Image as PILImage

    photos, _ = heldout_photos(args)
    return np.asarray(PILImage.fromarray(photos[0][1]).resize((width, height), PILImage.BICUBIC))


def speed_one(pipe: Any, img: Image, peak: float, repeats: int) -> list[dict[str, Any]]:
    """One model's input MP/s at tiles 128/256/512 on ``img``. For each tile the model call and a bicubic x4 of the
    same image alternate, ``repeats`` times each, best time kept, so their ratio compares the two under the same
    load of this shared machine."""
    mp = img.shape[0] * img.shape[1] / 1e6
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()  # [1, 3, H, W] on 0..255
    sigma = 25.0 if pipe.net.config.get("noise_map") else None
    fpp = model_flops_per_pixel(pipe.net, sigma)
    run_pipe(pipe, img[:64, :64], tile=512, sigma=sigma)  # warm-up
    rows = []
    for tile in (128, 256, 512):
        model_s = bicubic_s = float("inf")
        try:
            for _ in range(repeats):
                t0 = time.perf_counter()
                F.interpolate(x, scale_factor=SR_SCALE, mode="bicubic", align_corners=False).round_().clamp_(0, 255)
                t1 = time.perf_counter()
                run_pipe(pipe, img, tile=tile, sigma=sigma)
                t2 = time.perf_counter()
                bicubic_s, model_s = min(bicubic_s, t1 - t0), min(model_s, t2 - t1)
        except ValueError as exc:  # a tile too small for the model's receptive field
            rows.append({"tile": tile, "error": str(exc)})
            continue
        mps = mp / model_s
        rows.append({"tile": tile, "input_mp_per_s": round(mps, 4), "output_mp_per_s": round(mps * pipe.scale**2, 4),
                     "bicubic_x4_input_mp_per_s": round(mp / bicubic_s, 3),
                     "ratio_to_bicubic_x4": round(bicubic_s / model_s, 5),
                     "model_gflops_per_s": round(fpp * mps * 1e6 / 1e9, 2),
                     "fraction_of_matmul_peak": round(fpp * mps * 1e6 / peak, 4)})
        print(f"  tile {tile}: {mps:.4f} input MP/s, {bicubic_s / model_s:.5f} x bicubic", flush=True)
    return rows


def speed_models(args: argparse.Namespace, peak: float) -> dict[str, Any]:
    """MP/s (input pixels) of x4 upscaling and denoising at tiles 128/256/512, vs bicubic x4 and the matmul peak."""
    side_sr, side_dn = (128, 256) if args.quick else (512, 1024)
    repeats = 1 if args.quick else 3
    out: dict[str, Any] = {}
    for name, side in (("sr-x4-psnr", side_sr), ("denoise-blind", side_dn)):
        pipe, info = load_model(name, args)
        if pipe is None:
            out[name] = info
            continue
        print(f"  {name}, {side}x{side} input", flush=True)
        sigma = 25.0 if pipe.net.config.get("noise_map") else None
        out[name] = {"model": info, "input_px": [side, side], "repeats": repeats,
                     "model_gflop_per_input_mp": round(model_flops_per_pixel(pipe.net, sigma) * 1e6 / 1e9, 3),
                     "flops": "forward FLOPs per input pixel (FlopCounterMode on 64x64) x input MP/s: tile overlap "
                              "recomputation is not counted as useful work",
                     "tiles": speed_one(pipe, synthetic_photo(args, side, side), peak, repeats)}
    return out


def rss_child(model: str, src: str, dst: str, tile: int, threads: int) -> None:
    """(Child process) upscale ``src`` to ``dst`` as ``ganforge upscale`` does (read, tiled pipeline, write) and print
    its own peak RSS after each stage as JSON (ru_maxrss only grows, so each is the peak up to that point)."""
    from ganforge.core.imageio import read_image, write_image
    from ganforge.infer.pipelines import load_pipeline

    def peak() -> float:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux -> MiB

    torch.set_num_threads(threads)
    pipe = load_pipeline(model)
    image = read_image(src)
    after_read = peak()
    t0 = time.perf_counter()
    pixels = pipe(image.pixels, tile=tile)
    t1 = time.perf_counter()
    after_upscale = peak()
    write_image(dst, pixels)
    t2 = time.perf_counter()
    print(json.dumps({"maxrss_after_load_and_read_mib": after_read, "maxrss_after_upscale_mib": after_upscale,
                      "maxrss_after_write_mib": peak(), "upscale_s": round(t1 - t0, 1), "write_s": round(t2 - t1, 1)}))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk: Pillow refuses to open a 192 MP file (its decompression-bomb
    limit is 179 MP), and only the header is needed."""
    import struct

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def speed_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a 4000x3000 RGB x4 upscale written to a 16000x12000 PNG, in one child process per tile size
    (the parent's RUSAGE_CHILDREN ru_maxrss, and the child's own per-stage peaks)."""
    from PIL import Image as PILImage

    path = model_paths(args)["sr-x4-psnr"]
    if not path.with_suffix(".safetensors").is_file():
        return {"missing": str(path)}
    w, h = (1000, 750) if args.quick else (4000, 3000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.png", Path(tmp) / "out.png"
        PILImage.fromarray(synthetic_photo(args, w, h)).save(src)
        for tile in args.rss_tiles:
            # Each child is waited for before the next starts; RUSAGE_CHILDREN is the largest so far, so the tiles
            # run in decreasing size order and a smaller tile's own peak comes from its child's report.
            cmd = [sys.executable, str(Path(__file__).resolve()), "_rss", str(path), str(src), str(dst), str(tile),
                   str(torch.get_num_threads())]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(f"the RSS child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            size = png_size(dst)
            peak_mib = child["maxrss_after_write_mib"]
            rows.append({"tile": tile, "peak_rss_mib": peak_mib, **child, "process_s": round(wall, 1),
                         "rusage_children_maxrss_mib": round(
                             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                         "output_px": list(size), "output_png_mib": round(dst.stat().st_size / MiB, 1),
                         "meets_target": peak_mib < 2048})
            print(f"  tile {tile}: {rows[-1]}", flush=True)
    return {"input_px": [w, h], "output_uint8_array_mib": round(w * h * 3 * SR_SCALE**2 / MiB, 1),
            "target_mib": 2048, "stages": "read_image -> pipeline(tile) into a uint8 array -> write_image PNG",
            "runs": rows}


def speed_train(args: argparse.Namespace, peak_fn: Callable[[], float],
                net: dict[str, int] | None = None) -> dict[str, Any]:
    """SRResNet training through the real loop (channels_last as the loop's default), batch 16, 96 px HR patches:
    counted FLOP/s / matmul peak. ``net``: model overrides of the srresnet-x4 preset (None: the preset's CPU net,
    width 32 x 6 blocks; the paper's SRResNet is width 64 x 16 blocks)."""
    import statistics

    from torch.utils.flop_counter import FlopCounterMode

    import ganforge
    from ganforge.tasks import StepInputs
    from ganforge.tasks.restore import RestoreTask
    from ganforge.training.rundir import read_jsonl

    batch, res = 16, 96
    kimg = (0.64 if args.quick else 1.6) / (1 if net is None else 2)  # 40 / 100 steps (the paper's net: half)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.photos / "train"
        if not source.is_dir():
            raise SystemExit(f"{source}: the training photos are needed for the training-speed run")
        cfg = ganforge.resolve_config("srresnet-x4", data={"source": str(source), "resolution": res},
                                      model=net or {}, optim={"batch": batch},
                                      run={"kimg": kimg, "out": tmp, "tick_kimg": batch * 10 / 1000, "device": "cpu",
                                           "sample_every_kimg": 1e4, "snapshot_every_kimg": 1e4,
                                           "checkpoint_every_kimg": 1e4, "threads": torch.get_num_threads()})
        task = RestoreTask(cfg.model, cfg.loss, cfg.optim, 3)
        inp = StepInputs(batch={"input": torch.rand(batch, 3, res // 4, res // 4) * 2 - 1,
                                "target": torch.rand(batch, 3, res, res) * 2 - 1},  # FLOPs: format-independent
                         gen=torch.Generator().manual_seed(0), step=0)
        fc = FlopCounterMode(display=False)
        with fc:
            task.net_main(inp)["loss"].backward()
        flops = fc.get_total_flops()
        peak = peak_fn()
        run = Path(ganforge.train(cfg, progress=False))
        peak = max(peak, peak_fn())
        stats = read_jsonl(run / "stats.jsonl")[1:-1]  # drop the warm-up tick and the final (saving) tick
    ips = statistics.median(r["timing/img_per_s"] for r in stats)
    achieved = flops * ips / batch
    return {"preset": "srresnet-x4", "net": task.net.config, "batch": batch, "hr_patch": res, "kimg": kimg,
            "ticks": len(stats), "img_per_s": round(ips, 2), "step_gflop": round(flops / 1e9, 3),
            "achieved_gflops": round(achieved / 1e9, 2), "matmul_peak_gflops": round(peak / 1e9, 1),
            "fraction_of_peak": round(achieved / peak, 4), "target": 0.40,
            "data_share": round(statistics.median(r["timing/data_share"] for r in stats), 4),
            "flops_counted": "torch.utils.flop_counter, net forward + backward of one step (optimizer not counted)"}


SPEED_PARTS = ("pipeline", "rss", "train")


def section_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline MP/s per tile, peak RSS of a 16000x12000 output, SRResNet training FLOP/s vs the matmul peak.

    ``--speed-parts`` runs some of the three; the others are carried over from the results file (each part has its
    own time and load average)."""
    seconds = 1.0 if args.quick else 4.0
    out = args.out_path
    previous = json.loads(out.read_text())["sections"].get("speed", {}) if out.is_file() else {}
    rec: dict[str, Any] = {"threads": torch.get_num_threads()}

    def stamp() -> dict[str, Any]:
        return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "loadavg": [round(v, 2) for v in os.getloadavg()]}

    for part in SPEED_PARTS:
        if part not in args.speed_parts:
            for key in (part, "train_paper") if part == "train" else (part,):
                if key in previous:
                    rec[key] = previous[key]
            continue
        start = stamp()
        if part == "pipeline":
            peak = matmul_peak(seconds)
            print(f" matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
            models = speed_models(args, peak)
            peak = max(peak, matmul_peak(seconds))
            for r in models.values():  # against the higher of the two peaks, as the training part
                for t in r.get("tiles", []):
                    if "model_gflops_per_s" in t:
                        t["fraction_of_matmul_peak"] = round(t["model_gflops_per_s"] * 1e9 / peak, 4)
            rec[part] = {"matmul_peak_gflops": round(peak / 1e9, 1), "models": models,
                         "matmul": "float32 2048x2048, best of repeated runs before and after the model runs"}
        elif part == "rss":
            print(" peak RSS of a x4 upscale ...", flush=True)
            rec[part] = speed_rss(args)
        else:
            print(" SRResNet training step ...", flush=True)
            rec[part] = speed_train(args, lambda: matmul_peak(seconds))
            print(f"  fraction of peak {rec[part]['fraction_of_peak']}", flush=True)
            rec[part] |= {"started": start, "ended": stamp()}
            print(" SRResNet (the paper's 64 x 16 blocks) training step ...", flush=True)
            start = stamp()
            part = "train_paper"
            rec[part] = speed_train(args, lambda: matmul_peak(seconds), {"width": 64, "blocks": 16})
            print(f"  fraction of peak {rec[part]['fraction_of_peak']}", flush=True)
        rec[part] |= {"started": start, "ended": stamp()}
    return rec


# ---------------------------------------------------------------------------------------------------------
# Face super-resolution


FACES_TRAIN = 75  # lfw_subset holds 100 faces (0-99) then 100 non-face background patches (100-199)


def section_face(args: argparse.Namespace) -> dict[str, Any]:
    """x4 SR of the scikit-image lfw_subset faces against bicubic: train on faces 0-74, test on faces 75-99.

    The issue's split (first 150 / other 50) assumes 200 faces, but lfw_subset's images 100-199 are background
    patches ("100 first images are faces and subsequent 100 are non-faces", its docstring): that split would test on
    non-faces only. This keeps its 3:1 ratio on the 100 faces."""
    import skimage.data
    from PIL import Image as PILImage

    import ganforge
    from ganforge.infer.pipelines import load_pipeline

    faces = skimage.data.lfw_subset()[:100]  # [100, 25, 25] float in [0, 1]
    faces = np.round(faces[:, :24, :24] * 255).astype(np.uint8)  # rows/cols 0-23: a side divisible by 4
    kimg = 4.0 if args.quick else args.face_kimg
    with tempfile.TemporaryDirectory() as tmp:
        train_dir = Path(tmp) / "faces-train"
        train_dir.mkdir()
        for i, face in enumerate(faces[:FACES_TRAIN]):
            PILImage.fromarray(face).save(train_dir / f"{i:03d}.png")
        cfg = ganforge.resolve_config("srresnet-x4", data={"source": str(train_dir), "resolution": 24, "channels": 1},
                                      optim={"batch": 16},
                                      run={"kimg": kimg, "out": str(Path(tmp) / "runs"), "tick_kimg": kimg / 4,
                                           "sample_every_kimg": 1e4, "snapshot_every_kimg": 1e4, "device": "cpu",
                                           "checkpoint_every_kimg": 1e4, "threads": torch.get_num_threads()})
        t0 = time.perf_counter()
        run = Path(ganforge.train(cfg, progress=False))
        train_s = time.perf_counter() - t0
        pipe = load_pipeline(run)
    cases = [(f"lfw_subset[{i}]", degrade(faces[i][:, :, None], f"downscale:{SR_SCALE}", SEED + i),
              faces[i][:, :, None]) for i in range(FACES_TRAIN, len(faces))]
    methods: dict[str, Method] = {"bicubic": bicubic_up, "srresnet-x4 (faces)": lambda x: run_pipe(pipe, x)}
    result, outs = evaluate_methods(methods, cases, crop_border=SR_SCALE)
    for r in result.values():  # gray: Y and RGB are the same numbers; keep one
        r["mean"] = {"psnr": r["mean"]["psnr_y"], "ssim": r["mean"]["ssim_y"]}
        r["per_photo"] = [{"face": p["photo"], "psnr": p["psnr_y"], "ssim": p["ssim_y"]} for p in r["per_photo"]]
    rec = {"protocol": {"data": "skimage.data.lfw_subset(): its 100 faces (images 0-99; 100-199 are non-faces), "
                                "25x25 gray, rows/cols 0-23 kept, uint8; train = faces 0-74, test = faces 75-99 "
                                "(the issue's 150/50 split would test on non-faces)",
                        "degradation": f"data.derive downscale:{SR_SCALE} (6x6 inputs), rounded to uint8",
                        "psnr_ssim": "metrics.image, gray, 4-px border crop (16x16 scored)",
                        "training": f"preset srresnet-x4, data.resolution 24, data.channels 1, batch 16, "
                                    f"kimg {kimg}, seed 0, CPU, {torch.get_num_threads()} thread(s)"},
           "train_s": round(train_s, 1), "net": pipe.net.config, "methods": result,
           "gain_psnr_db": round(result["srresnet-x4 (faces)"]["mean"]["psnr"] - result["bicubic"]["mean"]["psnr"], 3),
           "gain_ssim": round(result["srresnet-x4 (faces)"]["mean"]["ssim"] - result["bicubic"]["mean"]["ssim"], 4)}
    if args.pictures:
        panels = [np.repeat(np.kron(np.concatenate(list(x), axis=1), np.ones((4, 4, 1), np.uint8)), 3, 2)
                  for x in ([np.kron(c[1], np.ones((4, 4, 1), np.uint8)) for c in cases[:8]],
                            [bicubic_up(c[1]) for c in cases[:8]], outs["srresnet-x4 (faces)"][:8],
                            [c[2] for c in cases[:8]])]
        rec["picture"] = _save_rows(panels, ["input (6x6, nearest)", "bicubic", "ours", "ground truth"],
                                    args.pictures_dir / "faces-x4.png")
    return rec


def _save_rows(rows: Sequence[Image], labels: Sequence[str], path: Path) -> dict[str, Any]:
    """Rows of same-width images stacked vertically with a caption above each, as a PNG."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    path.parent.mkdir(parents=True, exist_ok=True)
    caption = 14
    w, h = rows[0].shape[1], rows[0].shape[0] + caption
    canvas = PILImage.new("RGB", (w, h * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        draw.text((3, i * h + 1), label, fill="black", font=ImageFont.load_default())
        canvas.paste(PILImage.fromarray(row), (0, i * h + caption))
    canvas.save(path, optimize=True)
    return {"file": _rel(path), "bytes": path.stat().st_size, "rows": list(labels)}


# ---------------------------------------------------------------------------------------------------------
# Main

SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "sr": section_sr, "denoise": section_denoise, "derain": section_derain, "speed": section_speed,
    "face": section_face}


def markdown_tables(path: Path) -> str:
    """The results JSON as the markdown tables of docs/restoration.md (RGB PSNR/SSIM for denoising and de-raining,
    Y for SR), so the docs are pasted from the file rather than typed."""
    sec = json.loads(path.read_text())["sections"]
    out: list[str] = []

    def cell(m: dict[str, float], p: str = "psnr_rgb", q: str = "ssim_rgb") -> str:
        return f"{m[p]:.2f} / {m[q]:.4f}"

    if "sr" in sec:
        out += ["| x4 SR | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) | SSIM-RGB | judge-feature distance | s per input MP |",
                "|---|---|---|---|---|---|---|"]
        for name, r in sec["sr"]["methods"].items():
            m = r["mean"]
            out.append(f"| {name} | {m['psnr_y']:.2f} | {m['ssim_y']:.4f} | {m['psnr_rgb']:.2f} | {m['ssim_rgb']:.4f} "
                       f"| {m['perceptual']:.4f} | {r['s_per_input_mp']:.2f} |")
        out.append("")
    if "denoise" in sec:
        sigmas = list(sec["denoise"]["sigma"])
        out += ["| denoising, PSNR-RGB (dB) / SSIM-RGB | " + " | ".join(f"sigma {s}" for s in sigmas)
                + " | s per MP (sigma 25) |", "|---" * (len(sigmas) + 2) + "|"]
        for name in sec["denoise"]["sigma"][sigmas[0]]["methods"]:
            cells = [cell(sec["denoise"]["sigma"][s]["methods"][name]["mean"]) for s in sigmas]
            spm = sec["denoise"]["sigma"][sigmas[len(sigmas) // 2]]["methods"][name]["s_per_input_mp"]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {spm:.2f} |")
        out.append("")
    if "derain" in sec:
        dens = list(sec["derain"]["density"])
        out += ["| de-raining, PSNR-RGB (dB) / SSIM-RGB | " + " | ".join(f"density {d}" for d in dens) + " |",
                "|---" * (len(dens) + 1) + "|"]
        for name in sec["derain"]["density"][dens[0]]["methods"]:
            out.append(f"| {name} | " + " | ".join(cell(sec["derain"]["density"][d]["methods"][name]["mean"])
                                                   for d in dens) + " |")
        out.append("")
    if "speed" in sec:
        sp = sec["speed"]
        if "pipeline" in sp:
            pl = sp["pipeline"]
            out += [f"matmul peak {pl['matmul_peak_gflops']} GFLOP/s ({sp['threads']} thread(s))", "",
                    "| model | input | tile | input MP/s | x bicubic x4 | model FLOP/s / matmul peak |",
                    "|---|---|---|---|---|---|"]
            for name, r in pl["models"].items():
                for t in r.get("tiles", []):
                    size = f"{r['input_px'][0]}x{r['input_px'][1]}"
                    if "error" in t:
                        rf = r["model"].get("receptive_field")
                        out.append(f"| {name} | {size} | {t['tile']} | refused: its {rf}-px receptive field needs "
                                   f"a {4 * (rf // 2)}-px overlap | | |")
                    else:
                        out.append(f"| {name} | {size} | {t['tile']} | {t['input_mp_per_s']:.4f} | "
                                   f"{t['ratio_to_bicubic_x4']:.4f} | {100 * t['fraction_of_matmul_peak']:.1f} % |")
        if "rss" in sp:
            out += ["", "| peak RSS, x4 | tile | after load + read | after upscale | after writing the PNG | "
                    "upscale s | write s |", "|---|---|---|---|---|---|---|"]
            rss = sp["rss"]
            for r in rss.get("runs", []):
                out.append(f"| {rss['input_px'][0]}x{rss['input_px'][1]} -> {r['output_px'][0]}x{r['output_px'][1]} "
                           f"| {r['tile']} | {r['maxrss_after_load_and_read_mib']} MiB | "
                           f"{r['maxrss_after_upscale_mib']} MiB | **{r['maxrss_after_write_mib']} MiB** | "
                           f"{r['upscale_s']} | {r['write_s']} |")
        for key in ("train", "train_paper"):
            if key in sp:
                t = sp[key]
                out += ["", f"training step, SRResNet width {t['net']['width']} x {t['net']['blocks']} blocks: "
                        f"{t['img_per_s']} img/s x {t['step_gflop']} GFLOP / {t['batch']} = "
                        f"{t['achieved_gflops']} GFLOP/s = **{100 * t['fraction_of_peak']:.1f} %** of "
                        f"{t['matmul_peak_gflops']} GFLOP/s"]
        out.append("")
    if "face" in sec:
        out += ["| faces x4 (25 test faces) | PSNR (dB) | SSIM |", "|---|---|---|"]
        for name, r in sec["face"]["methods"].items():
            out.append(f"| {name} | {r['mean']['psnr']:.2f} | {r['mean']['ssim']:.4f} |")
    return "\n".join(out)


def write_section(out: Path, name: str, record: dict[str, Any]) -> None:
    """Merge one section's record into the results JSON (other sections' records are kept)."""
    data = json.loads(out.read_text()) if out.is_file() else {"bench": "restoration", "sections": {}}
    data["sections"][name] = record
    data["updated"] = record["timestamp"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tables"]:  # python bench/restoration.py tables [JSON]: markdown for docs/restoration.md
        print(markdown_tables(Path(argv[1]) if len(argv) > 1 else HERE / "results" / "restoration.json"))
        return
    if argv[:1] == ["_rss"]:  # the child process of the peak-RSS measurement
        _, model, src, dst, tile, threads = argv
        rss_child(model, src, dst, int(tile), int(threads))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=[*SECTIONS, "all"])
    ap.add_argument("--quick", action="store_true", help="a small, fast version for development")
    ap.add_argument("--pictures", action="store_true", help="also write before/after crops (docs/img/restoration/)")
    ap.add_argument("--photos", type=Path, default=Path.home() / ".cache" / "ganforge" / "photos",
                    help="the photo set: heldout/ (scored), train/ (training-speed run) and manifest.json")
    ap.add_argument("--models", type=Path, default=REPO / "src" / "ganforge" / "pretrained",
                    help="folder of the shipped snapshots <name>.safetensors + <name>.json")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH: another snapshot for one model")
    ap.add_argument("--crop", type=int, default=256, help="crop side in px (a multiple of 4)")
    ap.add_argument("--crops-per-photo", type=int, default=2, help="fixed crops per held-out photo")
    ap.add_argument("--rss-tiles", type=lambda v: sorted({int(t) for t in v.split(",")}, reverse=True),
                    default=[512], help="tile sizes of the peak-RSS runs, comma-separated [512]")
    ap.add_argument("--speed-parts", type=lambda v: v.split(","), default=list(SPEED_PARTS),
                    help="speed: which of pipeline,rss,train to run (the others are kept from the results file)")
    ap.add_argument("--face-kimg", type=float, default=48.0, help="face SR training length")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads [1: on a shared, loaded machine two "
                    "threads of small convolutions spin against each other, see docs/restoration.md]")
    ap.add_argument("--picture-photo", default=None, help="held-out crop for the pictures, FILE or FILE#J [the first]")
    ap.add_argument("--pictures-dir", type=Path, default=REPO / "docs" / "img" / "restoration")
    ap.add_argument("--out", type=Path, default=None, help="results JSON [bench/results/restoration.json]")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ganforge" / "bench-restoration",
                    help="outputs of the classical denoisers, keyed by input hash ('none' to recompute)")
    args = ap.parse_args(argv)
    if args.crop % SR_SCALE or args.crop < 64:
        ap.error("--crop must be a multiple of 4 and at least 64")
    if args.quick:
        args.crop = min(args.crop, 128)
    args.cache = None if str(args.cache) == "none" else args.cache
    out = args.out or HERE / "results" / ("restoration-quick.json" if args.quick else "restoration.json")
    args.out_path = out
    bad = set(args.speed_parts) - set(SPEED_PARTS)
    if bad:
        ap.error(f"--speed-parts: unknown {', '.join(sorted(bad))}; valid: {', '.join(SPEED_PARTS)}")
    torch.set_num_threads(args.threads)
    command = "python bench/restoration.py " + " ".join(argv)
    for name in (list(SECTIONS) if args.section == "all" else [args.section]):
        print(f"[{name}]", flush=True)
        info = machine_info()
        t0 = time.perf_counter()
        record = SECTIONS[name](args)
        record = {"command": command, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "wall_s": round(time.perf_counter() - t0, 1), "quick": args.quick, "machine": info,
                  "loadavg_after": list(os.getloadavg()), **record}
        write_section(out, name, record)
        print(f"[{name}] {record['wall_s']} s -> {_rel(out)}", flush=True)


if __name__ == "__main__":
    main()
