"""Making and editing images with a snapshot: `ganforge generate`, `style-mix`, `arithmetic`, `project`,
`synthesize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app, parse_seeds


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
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output of --interpolate: .gif or .webp "
                                                                 "\\[default: walk.gif]")] = None,
    cols: Annotated[int | None, typer.Option(help="grid columns")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "cpu",
    trunc: Annotated[float, typer.Option(min=0.0, max=2.0, help="StyleGAN2 truncation psi (1 = off)")] = 1.0,
) -> None:
    """Make images from a snapshot: a grid, one file per seed, or a latent-walk GIF."""
    try:
        import numpy as np

        from ganforge.core.grid import check_animation_path, make_grid, save_gif, save_grid, save_image, to_uint8
        from ganforge.infer.snapshot import load_generator

        if interpolate is not None:
            check_animation_path(out or Path("walk.gif"))  # before any work: GIF data in a .mp4 plays nowhere
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
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Find the latents that make a StyleGAN2 snapshot reproduce a photo (Karras et al. 2020, sec. 5)."""
    try:
        from ganforge.infer.project import load_target, save_projection
        from ganforge.infer.project import project as run_projection
        from ganforge.infer.snapshot import load_generator
        from ganforge.metrics.judge import parse_features

        G = load_generator(snapshot, device=device)
        if not G.is_style:
            raise ValueError(f"projection needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
        G.check_labels(class_, 1)
        extractor = parse_features(features, G.device)
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

