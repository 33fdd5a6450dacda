"""`ganforge train` and `ganforge presets`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ganforge.cli.base import _fail, _user_errors, app


def _aug_fields(aug: str | None) -> dict[str, str]:
    """--aug ada | bgc-style ADA groups | DiffAugment op list -> the loss config fields it sets."""
    if aug is None:
        return {}
    if aug == "ada":
        return {"ada": "bgc"}
    if aug and set(aug) <= set("bgcfno"):
        return {"ada": aug}
    return {"diffaugment": aug}


@app.command()
def train(
    data: Annotated[str | None, typer.Option(help="folder, .zip, or built-in: fashion-mnist, digits, shapes")] = None,
    preset: Annotated[str | None, typer.Option(help="named preset; see `ganforge presets`")] = None,
    kimg: Annotated[float | None, typer.Option(help="train until this many thousand real images (total)")] = None,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget; stops cleanly when reached")] = None,
    out: Annotated[Path | None, typer.Option(help="parent folder for the run folder \\[default: runs]")] = None,
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
    degrade: Annotated[str | None, typer.Option(help="restore: make inputs from each target with this chain "
                                                     "(sets data.derive), ops joined by commas: "
                                                     "noise:gaussian:SIGMA, noise:poisson:PEAK, "
                                                     "noise:saltpepper:AMOUNT, blur:SIGMA, jpeg:Q, rain:DENSITY "
                                                     "(each also LO-HI), gray[:1], edges[:1], "
                                                     "downscale:S[:bicubic|bilinear|area], second-order:S; e.g. "
                                                     "blur:0.5-2,downscale:4,noise:gaussian:5-50,jpeg:30-95")
                       ] = None,
    masks: Annotated[str | None, typer.Option(help="inpaint: free-form, box, center, free-form+box, or a folder of "
                                                   "mask images (white = hole); sets data.masks")] = None,
    pairs: Annotated[str | None, typer.Option(help="pix2pix: derived pairs from single photos, edges | gray | lab | "
                                                   "degraded, or a derive chain (sets data.derive)")] = None,
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
    """Train a model of any task (the preset picks it: GAN, restoration, inpainting, translation).

    ganforge train --data shapes --preset dcgan-32 --kimg 0.256 --out /tmp/r

    ganforge train --data ~/photos --preset deepfill-128 --masks free-form --kimg 500
    """
    from ganforge.config import PAIRS, ConfigError, deep_merge, parse_set, resolve_config

    try:
        if pairs is not None and degrade is not None:
            raise ConfigError("--pairs and --degrade both set data.derive: give one of them")
        degrade = PAIRS.get(pairs, pairs) if pairs is not None else degrade
        flags: dict[str, dict[str, Any]] = {
            "data": {"source": data, "resolution": resolution, "max_images": max_images, "derive": degrade,
                     "masks": masks},
            "model": {"cond": cond, "freeze_d": freeze_d},
            "loss": {"adversarial": loss, "r1_gamma": r1_gamma, **_aug_fields(aug)},
            "optim": {"batch": batch, "g_lr": lr, "d_lr": lr, "ema_kimg": ema_kimg},
            "run": {"kimg": kimg, "minutes": minutes, "seed": seed, "out": str(out) if out else None, "device": device,
                    "threads": threads, "init_from": init_from},
        }
        overrides = {s: {k: v for k, v in f.items() if v is not None} for s, f in flags.items()}
        overrides = deep_merge({s: f for s, f in overrides.items() if f}, parse_set(set_ or []))
        if resume is not None:
            from ganforge.training.resume import resume_config

            cfg = resume_config(resume, overrides, preset)
        else:
            if data is None and not (overrides.get("data", {}).get("source")):
                raise ConfigError("--data is required: an image folder, a .zip, or fashion-mnist / digits / shapes")
            cfg = resolve_config(preset or "dcgan-32", overrides)
        if dry_run:
            typer.echo(cfg.to_json())
            return
        from ganforge.training.loop import TrainingStopped
        from ganforge.training.loop import train as run_training

        try:
            run_training(cfg, resume=resume, progress=progress)
        except TrainingStopped as exc:  # Ctrl-C / SIGTERM after a final checkpoint: not an error, not a success
            typer.echo(str(exc), err=True)
            raise typer.Exit(128 + exc.signum) from None
    except _user_errors() as exc:
        _fail(str(exc), 1)


def _short(x: float) -> str:
    """Learning rates as 2e-4, 2.5e-3 (not 0.0002): the presets table must fit 80 columns."""
    if x == 0 or abs(x) >= 0.01:
        return f"{x:g}"
    mantissa, exponent = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


@app.command()
def presets() -> None:
    """List the named presets (the table lives in ganforge/config.py)."""
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table

    from ganforge.config import PRESETS, resolve_config

    # Fits 80 columns: one-space gaps, short numbers; only "cond/data" may wrap, nothing is cut with an ellipsis.
    names = ("preset", "task", "arch", "res", "cond/data", "loss", "lr", "betas", "batch")
    table = Table(*(Column(n, no_wrap=n != "cond/data", overflow="fold") for n in names), box=box.SIMPLE_HEAD,
                  padding=(0, 0), pad_edge=False, show_edge=False,
                  caption="lr: G/D when they differ; cond/data: class conditioning (GANs) or derived inputs")
    for name in PRESETS:
        c = resolve_config(name)
        if c.task == "gan":
            what, loss = c.model.cond, c.loss.adversarial
            g, d = _short(c.optim.g_lr), _short(c.optim.d_lr)
            lr = g if g == d else f"{g}/{d}"
        elif c.task == "inpaint":  # holes from data.masks; G and D learning rates
            what, loss = c.data.masks, c.loss.adversarial
            g, d = _short(c.optim.g_lr), _short(c.optim.d_lr)
            lr = g if g == d else f"{g}/{d}"
        elif c.task in ("pix2pix", "cyclegan"):  # translation: derived pairs, pairs or unpaired domains
            what = c.data.derive or ("unpaired" if c.task == "cyclegan" else "pairs")
            g, d = _short(c.optim.g_lr), _short(c.optim.d_lr)
            loss, lr = c.loss.adversarial, g if g == d else f"{g}/{d}"
        else:  # one network: the G learning rate is its
            what, loss, lr = c.data.derive or "pairs", c.loss.pixel, _short(c.optim.g_lr)
        table.add_row(name, c.task, c.model.arch, str(c.data.resolution), what, loss, lr,
                      f"{c.optim.beta1:g},{c.optim.beta2:g}", str(c.optim.batch))
    Console().print(table)
