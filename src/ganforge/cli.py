"""The ganforge command line: a thin, validated translation from flags to library calls.

torch and the library modules are imported inside the commands so that ``ganforge --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Train GANs on your own images and put them to work.")
dataset_app = typer.Typer(no_args_is_help=True, help="Look at a dataset before training on it.")
app.add_typer(dataset_app, name="dataset")
judge_app = typer.Typer(no_args_is_help=True, help="The judge: a small domain classifier for offline FID/KID.")
app.add_typer(judge_app, name="judge")


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a message for the user (not a bug): printed without a traceback."""
    from ganforge.config import ConfigError
    from ganforge.core.files import CheckpointError
    from ganforge.data import DatasetError
    from ganforge.train.loop import TrainingDiverged

    return (ConfigError, DatasetError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError)


def _aug_fields(aug: str | None) -> dict[str, str]:
    """--aug ada | bgc-style ADA groups | DiffAugment op list -> the loss config fields it sets."""
    if aug is None:
        return {}
    if aug == "ada":
        return {"ada": "bgc"}
    if aug and set(aug) <= set("bgcfno"):
        return {"ada": aug}
    return {"diffaugment": aug}


def parse_seeds(text: str, hint: str = "--seeds") -> list[int]:
    """'0-63' -> 0..63, '1,5,9' -> [1, 5, 9], '0-3,10' -> [0, 1, 2, 3, 10]."""
    from ganforge.seeds import parse_seeds as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


# ---------------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------------

@app.command()
def train(
    data: Annotated[str | None, typer.Option(help="folder, .zip, or built-in: fashion-mnist, digits, shapes")] = None,
    preset: Annotated[str | None, typer.Option(help="named preset; see `ganforge presets`")] = None,
    kimg: Annotated[float | None, typer.Option(help="train until this many thousand real images (total)")] = None,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget; stops cleanly when reached")] = None,
    out: Annotated[Path | None, typer.Option(help="parent folder for the run folder [default: runs]")] = None,
    batch: Annotated[int | None, typer.Option(help="global batch size")] = None,
    seed: Annotated[int | None, typer.Option(help="fixes all randomness")] = None,
    resolution: Annotated[int | None, typer.Option(help="training resolution, e.g. 32, 64, 128")] = None,
    cond: Annotated[str | None, typer.Option(help="none | projection | acgan")] = None,
    loss: Annotated[str | None, typer.Option(help="ns | hinge | wgan | lsgan")] = None,
    aug: Annotated[str | None, typer.Option(help="ada (adaptive, StyleGAN2-ADA 'bgc'), ADA groups like bg or "
                                                  "bgcfnc, or "
                                                  "DiffAugment ops like color,translation,cutout")] = None,
    r1_gamma: Annotated[float | None, typer.Option(help="R1 penalty weight (0 = off)")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate for both G and D")] = None,
    ema_kimg: Annotated[float | None, typer.Option(help="G EMA half-life in kimg (0 = off)")] = None,
    max_images: Annotated[int | None, typer.Option(help="use a fixed random subset of this size")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any field: optim.g_lr=1e-4 (repeatable)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue this run folder (with --kimg to extend it)")] = None,
    init_from: Annotated[str | None, typer.Option(help="transfer learning: start from this run folder, checkpoint "
                                                       "or snapshot (weights only)")] = None,
    freeze_d: Annotated[int | None, typer.Option(help="StyleGAN2 FreezeD: keep D's first N blocks fixed")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the resolved config and exit")] = False,
    progress: Annotated[bool, typer.Option(help="show progress")] = True,
) -> None:
    """Train a GAN. Example: ganforge train --data shapes --preset dcgan-32 --kimg 0.256 --out /tmp/r"""
    from ganforge.config import ConfigError, deep_merge, parse_set, resolve_config

    try:
        flags: dict[str, dict[str, Any]] = {
            "data": {"source": data, "resolution": resolution, "max_images": max_images},
            "model": {"cond": cond, "freeze_d": freeze_d},
            "loss": {"adversarial": loss, "r1_gamma": r1_gamma, **_aug_fields(aug)},
            "optim": {"batch": batch, "g_lr": lr, "d_lr": lr, "ema_kimg": ema_kimg},
            "run": {"kimg": kimg, "minutes": minutes, "seed": seed, "out": str(out) if out else None, "device": device,
                    "threads": threads, "init_from": init_from},
        }
        overrides = {s: {k: v for k, v in f.items() if v is not None} for s, f in flags.items()}
        overrides = deep_merge({s: f for s, f in overrides.items() if f}, parse_set(set_ or []))
        if resume is not None:
            from ganforge.train.loop import load_run_config

            base = load_run_config(resume)
            # Only what does not change the math may differ on resume; kimg extends the run.
            allowed = {("run", "kimg"), ("run", "minutes"), ("run", "threads"), ("run", "device")}
            changed = [f"{s}.{k}" for s, f in overrides.items() for k in f if (s, k) not in allowed]
            if preset or changed:
                raise ConfigError(f"--resume continues a run with its own config; cannot change "
                                  f"{', '.join(changed) or '--preset'} (only --kimg, --minutes, --threads, --device). "
                                  "Start a new run to change them.")
            cfg = resolve_config(None, deep_merge(base.model_dump(mode="json"), overrides))
        else:
            if data is None and not (overrides.get("data", {}).get("source")):
                raise ConfigError("--data is required: an image folder, a .zip, or fashion-mnist / digits / shapes")
            cfg = resolve_config(preset or "dcgan-32", overrides)
        if dry_run:
            typer.echo(cfg.to_json())
            return
        from ganforge.train.loop import train as run_training

        run_training(cfg, resume=resume, progress=progress)
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def presets() -> None:
    """List the named presets (the table lives in ganforge/config.py)."""
    from rich.console import Console
    from rich.table import Column, Table

    from ganforge.config import PRESETS, resolve_config

    table = Table("arch", "res", "cond", "loss", "lr G/D", "betas", "batch")
    table.columns.insert(0, Column("preset", no_wrap=True, min_width=max(map(len, PRESETS))))
    for name in PRESETS:
        c = resolve_config(name)
        table.add_row(name, c.model.arch, str(c.data.resolution), c.model.cond, c.loss.adversarial,
                      f"{c.optim.g_lr:g}/{c.optim.d_lr:g}", f"{c.optim.beta1:g},{c.optim.beta2:g}",
                      str(c.optim.batch))
    Console().print(table)


# ---------------------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------------------

@app.command()
def generate(
    snapshot: Annotated[str, typer.Argument(help="snapshot path (with or without .safetensors) or run folder")],
    seeds: Annotated[str, typer.Option(help="seeds, e.g. 0-63 or 1,5,9")] = "0-15",
    class_: Annotated[int | None, typer.Option("--class", help="class index for conditional snapshots")] = None,
    grid: Annotated[Path | None, typer.Option(help="write all images as one grid PNG here")] = None,
    outdir: Annotated[Path | None, typer.Option(help="write one PNG per seed into this folder")] = None,
    interpolate: Annotated[str | None, typer.Option(help="latent walk between two seeds, e.g. 0,7 (StyleGAN2: "
                                                          "or projection folders, e.g. proj/,7)")] = None,
    space: Annotated[str, typer.Option(help="walk in z (spherical) or w (linear; StyleGAN2)")] = "z",
    strip: Annotated[Path | None, typer.Option(help="also write 8 frames of the walk side by side as a PNG")] = None,
    frames: Annotated[int, typer.Option(min=2, max=2000, help="frames of the latent walk")] = 60,
    fps: Annotated[float, typer.Option(min=1, max=60, help="frames per second of the walk")] = 20,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget; stops cleanly when reached")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output of --interpolate (.gif or .webp)")] = None,
    cols: Annotated[int | None, typer.Option(help="grid columns")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="StyleGAN2 truncation psi (1 = off)")] = 1.0,
) -> None:
    """Make images from a snapshot: a grid, one file per seed, or a latent-walk GIF."""
    try:
        import numpy as np

        from ganforge.core.grid import make_grid, save_gif, save_grid, save_image, to_uint8
        from ganforge.infer.snapshot import load_generator

        G = load_generator(snapshot, device=device)
        if G.num_classes and class_ is None:
            raise ValueError(f"this snapshot is class-conditional: add --class N with N in 0..{G.num_classes - 1} "
                             f"({', '.join(f'{i}={n}' for i, n in enumerate(G.class_names))})")
        if interpolate is not None:
            ends = [e.strip() for e in interpolate.split(",")]
            if len(ends) != 2:
                raise typer.BadParameter("give exactly two ends, e.g. 0,7", param_hint="--interpolate")
            out = out or Path("walk.gif")
            if G.is_style:
                from ganforge.infer.style import interpolate as walk

                imgs = to_uint8(walk(G, ends[0], ends[1], frames, space, class_, psi=trunc))
            elif space != "z":
                raise ValueError(f"--space w needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
            else:
                a, b = (parse_seeds(e, "--interpolate")[0] for e in ends)
                imgs = to_uint8(G.interpolate(a, b, frames, class_))
            save_gif([make_grid(imgs[i:i + 1], 1, 0) for i in range(len(imgs))], out, fps)
            if strip is not None:
                save_grid(imgs[np.linspace(0, len(imgs) - 1, min(8, len(imgs))).round().astype(int)], strip, 8)
            typer.echo(f"wrote {out} ({frames} frames, {space} space)" + (f" and {strip}" if strip else ""))
            return
        if grid is None and outdir is None:
            raise ValueError("say where to write: --grid out.png and/or --outdir folder/")
        seed_list = parse_seeds(seeds)
        imgs = to_uint8(G.generate(seed_list, class_, psi=trunc))
        if grid is not None:
            save_grid(imgs, grid, cols)
            typer.echo(f"wrote {grid} ({len(seed_list)} images)")
        if outdir is not None:
            for s, im in zip(seed_list, imgs, strict=True):
                save_image(im.transpose(1, 2, 0), Path(outdir) / f"seed{s:06d}.png")
            typer.echo(f"wrote {len(seed_list)} images to {outdir}")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command("style-mix")
def style_mix(
    snapshot: Annotated[str, typer.Argument(help="StyleGAN2 snapshot path or run folder")],
    rows: Annotated[str, typer.Option(help="latents restyled: seeds like 0-2 and/or projection folders")] = "0-2",
    cols: Annotated[str, typer.Option(help="latents that lend their styles: seeds like 3-5 and/or projection "
                                           "folders")] = "3-5",
    styles: Annotated[str, typer.Option(help="coarse | middle | fine | a layer range like 0-3")] = "coarse",
    out: Annotated[Path, typer.Option("--out", "-o", help="grid PNG to write")] = Path("mix.png"),
    class_: Annotated[int | None, typer.Option("--class", help="class index for conditional snapshots")] = None,
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="truncation psi (1 = off)")] = 1.0,
) -> None:
    """Style mixing: each row with the coarse/middle/fine styles of each column (a grid). Rows and columns are
    seeds or photos projected with `ganforge project`, e.g. --rows proj/ --cols 3-5 --styles fine."""
    try:
        from ganforge.core.grid import save_image
        from ganforge.infer.snapshot import load_generator
        from ganforge.infer.style import style_mix as mix

        G = load_generator(snapshot)
        save_image(mix(G, rows, cols, styles, class_, trunc), out)
        typer.echo(f"wrote {out}")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def arithmetic(
    snapshot: Annotated[str, typer.Argument(help="StyleGAN2 snapshot path or run folder")],
    a: Annotated[str, typer.Option("--a", help="latents that have the attribute: seeds and/or projections")],
    b: Annotated[str, typer.Option("--b", help="latents that lack it")],
    c: Annotated[str, typer.Option("--c", help="latents to edit: seeds and/or projection folders")],
    scales: Annotated[str, typer.Option(help="comma list of steps along mean(A) - mean(B)")] = "0,0.5,1,1.5",
    out: Annotated[Path, typer.Option("--out", "-o", help="grid PNG: one row per C, one column per scale")] =
    Path("arithmetic.png"),
    class_: Annotated[int | None, typer.Option("--class", help="class index for conditional snapshots")] = None,
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="truncation psi for seeds (1 = off)")] = 1.0,
) -> None:
    """Latent arithmetic in W: each C plus scale * (mean w of A - mean w of B), e.g. to add an attribute."""
    try:
        from ganforge.core.grid import save_image
        from ganforge.infer.snapshot import load_generator
        from ganforge.infer.style import arithmetic as edit

        try:
            steps = [float(v) for v in scales.split(",")]
        except ValueError:
            raise typer.BadParameter(f"{scales!r} is not a comma list of numbers", param_hint="--scales") from None
        G = load_generator(snapshot)
        grid, direction = edit(G, a, b, c, steps, class_, trunc)
        save_image(grid, out)
        typer.echo(f"wrote {out} (direction norm {float(direction[0].norm()):.3f} per layer)")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def project(
    snapshot: Annotated[str, typer.Argument(help="StyleGAN2 snapshot path or run folder")],
    image: Annotated[Path, typer.Argument(help="the photo to project (any format Pillow reads)")],
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="optimisation steps")] = 500,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for latent.safetensors/.json, projected.png, "
                                                           "target.png, progress.gif")] = Path("projection"),
    space: Annotated[str, typer.Option(help="w (one latent for all layers) | w+ (one per layer)")] = "w",
    class_: Annotated[int | None, typer.Option("--class", help="class index for conditional snapshots")] = None,
    features: Annotated[str, typer.Option(help="none (pixel loss only) | judge:PATH (add a judge snapshot's "
                                                "feature distance; not LPIPS)")] = "none",
    seed: Annotated[int, typer.Option(help="fixes the initial noise images and the latent exploration noise")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
) -> None:
    """Find the latents that make a StyleGAN2 snapshot reproduce a photo (Karras et al. 2020, sec. 5)."""
    try:
        from ganforge.infer.project import load_target, parse_features, save_projection
        from ganforge.infer.project import project as run_projection
        from ganforge.infer.snapshot import load_generator

        G = load_generator(snapshot, device=device)
        if not G.is_style:
            raise ValueError(f"projection needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
        G.check_labels(class_, 1)
        extractor = parse_features(features, G)
        target = load_target(image, G.net.channels, G.net.resolution)
        result = run_projection(G, target, steps=steps, space=space, label=class_, features=extractor, seed=seed,
                                log=typer.echo)
        folder = save_projection(result, out, snapshot=snapshot)
        typer.echo(f"PSNR {result.psnr:.2f} dB (mean-w start {result.start_psnr:.2f} dB); wrote latent.safetensors, "
                   f"latent.json, projected.png, target.png, progress.gif to {folder}")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def synthesize(
    snapshot: Annotated[str, typer.Argument(help="snapshot path or run folder")],
    per_class: Annotated[int, typer.Option(min=1, max=1_000_000, help="images per class (or in all, "
                                                                         "for an unconditional model)")] = 100,
    out: Annotated[Path, typer.Option("--out", "-o", help="new folder: one subfolder per class + manifest")] =
    Path("synthetic"),
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="StyleGAN2 truncation psi (1 = off)")] = 1.0,
    first_seed: Annotated[int, typer.Option(min=0, help="class k uses seeds first_seed + k*per_class ...")] = 0,
) -> None:
    """Write a labelled synthetic dataset plus manifest.jsonl (seed, class, truncation, snapshot hash per file)."""
    try:
        from ganforge.infer.snapshot import load_generator
        from ganforge.infer.style import synthesize_dataset

        G = load_generator(snapshot)
        if trunc != 1.0 and not G.is_style:
            raise ValueError(f"--trunc needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
        folder = synthesize_dataset(G, snapshot, out, per_class, psi=trunc, first_seed=first_seed)
        n = per_class * max(1, G.num_classes)
        typer.echo(f"wrote {n} images and manifest.jsonl to {folder}")
    except _user_errors() as exc:
        _fail(str(exc), 1)


# ---------------------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------------------

def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(record))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ganforge eval ({record['kind']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in record["metrics"].items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    Console().print(table)
    p = record["protocol"]
    ex = p.get("extractor")
    if ex:
        typer.echo(f"extractor {ex['extractor']} sha256 {ex['sha256'][:16]}..., real {p['real'].get('count')} "
                   f"images ({p['real'].get('split')}), fake {p['fake'].get('count')}; --json for the full protocol")
    if p.get("written_to"):
        typer.echo(f"appended to {p['written_to']}")


@app.command("eval")
def eval_(
    sources: Annotated[list[str], typer.Argument(help="REAL FAKE (two folders / built-ins), or SNAPSHOT with "
                                                      "--data, or `cas SNAPSHOT`, or `pairs OUTPUTS REFERENCES`")],
    metrics: Annotated[str | None, typer.Option(help="comma list: fid,kid,pr,dc,is (+ ppl for snapshots); pairs: "
                                                     "psnr,ssim,ms-ssim,perceptual [default: fid,kid / psnr,ssim]")]
    = None,
    extractor: Annotated[str, typer.Option(help="judge (shipped Fashion-MNIST judge), judge:PATH, inception, "
                                                "inception:clean, inception:PATH")] = "judge",
    data: Annotated[str | None, typer.Option(help="reference dataset for a snapshot (or cas)")] = None,
    split: Annotated[str | None, typer.Option(help="reference split [default: test for built-ins]")] = None,
    num: Annotated[int | None, typer.Option(min=2, help="generated samples (snapshot, default 10000) or images "
                                                        "per folder (default all)")] = None,
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="StyleGAN2 truncation psi")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="KID subsets, folder subsets, PPL sampling")] = 0,
    resolution: Annotated[int | None, typer.Option(help="load folders at this size [default: extractor's]")] = None,
    resize: Annotated[str, typer.Option(help="crop | pad | stretch for folders")] = "crop",
    crop_border: Annotated[int, typer.Option(min=0, help="pairs: pixels cropped from each border")] = 0,
    y_channel: Annotated[bool, typer.Option("--y-channel", help="pairs: PSNR/SSIM on BT.601 luma")] = False,
    real_per_class: Annotated[str, typer.Option(help="cas: N real images per class, comma list")] = "10,50,200",
    synthetic_per_class: Annotated[int, typer.Option(min=1, help="cas: M synthetic images per class")] = 500,
    seeds: Annotated[str, typer.Option(help="cas: classifier training seeds")] = "0-2",
    steps: Annotated[int, typer.Option(min=1, help="cas: optimizer steps per classifier (every arm)")] = 2000,
    cache_dir: Annotated[Path | None, typer.Option(help="feature cache [default: ~/.cache/ganforge/features]")]
    = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object: values and protocol")] = False,
) -> None:
    """Evaluate with a stated protocol. Examples:

    ganforge eval real/ fake/ --metrics fid,kid,pr --extractor judge:judges/judge-logos --json

    ganforge eval runs/00003-x/snapshots/latest --data fashion-mnist --num 10000 --metrics fid,kid,is

    ganforge eval cas runs/00005-x/snapshots/latest --data fashion-mnist --real-per-class 10,50,200

    ganforge eval pairs restored/ originals/ --metrics psnr,ssim --y-channel --crop-border 4
    """
    try:
        from ganforge.metrics import evaluate as ev

        log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
        mode = sources[0] if sources[0] in ("cas", "pairs") else ("snapshot" if len(sources) == 1 else "sets")
        args = sources[1:] if mode in ("cas", "pairs") else sources
        want = {"cas": 1, "pairs": 2, "snapshot": 1, "sets": 2}[mode]
        if len(args) != want:
            raise typer.BadParameter(f"{mode} takes {want} path(s), got {len(args)}: {' '.join(args)}",
                                     param_hint="SOURCES")
        if mode == "cas":
            _eval_cas(args[0], data, real_per_class, synthetic_per_class, seeds, steps, trunc, device, as_json,
                      log)
            return
        if mode == "pairs":
            judge = extractor.split(":", 1)[1] if extractor.startswith("judge:") else None
            record = ev.evaluate_pairs(args[0], args[1], metrics or "psnr,ssim", crop_border, y_channel, judge,
                                       device)
        elif mode == "snapshot":
            if data is None:
                raise typer.BadParameter("a snapshot is compared with a dataset: add --data (e.g. fashion-mnist)",
                                         param_hint="--data")
            record = ev.evaluate_snapshot(args[0], data, metrics or "fid,kid", extractor, num or 10_000, split,
                                          trunc, seed, cache_dir=cache_dir, device=device, log=log)
        else:
            record = ev.evaluate_sets(args[0], args[1], metrics or "fid,kid", extractor, resolution, resize, num,
                                      seed, cache_dir, device, log=log)
        _print_record(record.to_dict(), as_json)
    except _user_errors() as exc:
        _fail(str(exc), 1)


def _eval_cas(snapshot: str, data: str | None, real_per_class: str, synthetic_per_class: int, seeds: str,
              steps: int, trunc: float, device: str, as_json: bool, log) -> None:
    from ganforge.data import load_dataset
    from ganforge.infer.snapshot import load_generator
    from ganforge.metrics.cas import CasConfig, run_cas

    if data is None:
        raise typer.BadParameter("cas needs the labelled dataset: --data (e.g. fashion-mnist)", param_hint="--data")
    try:
        ns = [int(n) for n in real_per_class.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{real_per_class!r} is not a comma list like 10,50,200",
                                 param_hint="--real-per-class") from None
    G = load_generator(snapshot, device=device)
    # The fixed classifier needs a multiple of 8: smaller images are padded on black (real and synthetic alike).
    res = -(-G.net.resolution // 8) * 8
    train_set = load_dataset(data, res, resize="pad", use_labels=True)
    test_set = load_dataset(data, res, resize="pad", use_labels=True, split="test")
    report = run_cas(train_set.images, train_set.labels, test_set.images, test_set.labels, G, ns,
                     synthetic_per_class, parse_seeds(seeds, "--seeds"),
                     CasConfig(steps=steps, trunc=trunc, device=device, fit="pad"),
                     class_names=train_set.class_names, snapshot=snapshot, log=log)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        for line in report.summary_lines():
            typer.echo(line)


# ---------------------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------------------

@judge_app.command("train")
def judge_train(
    data: Annotated[str, typer.Option(help="labelled data: fashion-mnist, digits, or a folder of class "
                                           "subfolders (with train/ and test/ for a test split)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for <name>.safetensors + <name>.json")] =
    Path("judges"),
    name: Annotated[str | None, typer.Option(help="snapshot name [default: judge-<dataset>]")] = None,
    resolution: Annotated[int, typer.Option(help="input size; a multiple of 8")] = 32,
    resize: Annotated[str, typer.Option(help="pad | crop | stretch (how images reach the resolution)")] = "pad",
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 6,
    width: Annotated[int, typer.Option(min=4, max=512, help="channels of the first level (x2, x4 after)")] = 32,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Train a judge on a labelled dataset and save it as a snapshot; use it as --extractor judge:PATH."""
    try:
        from ganforge.metrics.judge import save_judge, train_judge

        net, meta = train_judge(data, resolution, resize, epochs, width, seed, log=typer.echo)
        stem = name or "judge-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(data).name)
        path = save_judge(net, out, stem, meta)
        typer.echo(f"accuracy {meta['test_accuracy']:.4f} on the {meta['accuracy_measured_on']}; wrote {path}")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@dataset_app.command("inspect")
def dataset_inspect(
    source: Annotated[str, typer.Argument(help="image folder, .zip, or built-in name")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Count images, sizes, channels and classes; list unreadable files."""
    try:
        from ganforge.data import inspect_source

        report = inspect_source(source)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            for line in report.summary_lines():
                typer.echo(line)
        if report.files_loaded == 0:
            what = (f"{report.files_found} image files, none readable" if report.files_found else
                    f"no image files (png, jpg, jpeg, webp, bmp, tif, tiff) among {report.other_files} other files")
            _fail(f"{source} has no usable images ({what}); training on it would fail", 1)
    except _user_errors() as exc:
        _fail(str(exc), 1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (continue with --resume RUN)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
