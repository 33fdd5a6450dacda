"""`ganforge translate` (any pix2pix or CycleGAN snapshot, either direction) and `ganforge colorize` (gray photos to
colour with a colorization model): run a translation model over a file or a folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

if TYPE_CHECKING:
    from ganforge.infer.translate import TranslatePipeline

Source = Annotated[Path, typer.Argument(help="an image file, or a folder (searched recursively)")]
Out = Annotated[Path, typer.Option("--out", "-o", help="output file (format from its suffix: png, tif, jpg, webp), "
                                                       "or a folder for a folder input")]
Tile = Annotated[int, typer.Option(min=64, max=8192, help="tile size for images over 4 MP (smaller ones run "
                                                          "whole)")]
Overlap = Annotated[int, typer.Option(min=0, max=4096, help="tile overlap in pixels")]
Ext = Annotated[str | None, typer.Option(help="folder mode: output suffix, e.g. png \\[default: keep each input's]")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]


@app.command()
def translate(
    snapshot: Annotated[str, typer.Argument(help="a pix2pix or CycleGAN snapshot, its run folder, or a "
                                                        "shipped name (edges2photo; ganforge models)")],
    source: Source,
    out: Out,
    direction: Annotated[str, typer.Option(help="AtoB, or BtoA (CycleGAN models only)")] = "AtoB",
    tile: Tile = 1024,
    overlap: Overlap = 128,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Translate images from domain A to B (or B to A with a CycleGAN): edges to photos, label maps to scenes,
    one style to another. 8/16-bit, gray/RGB, alpha kept; inference runs in eval mode (docs/translation.md).

    ganforge translate runs/00004-photos-pix2pix-64 edges/ -o photos/

    ganforge translate runs/00007-horse2zebra-cyclegan-64 zebra.jpg -o horse.png --direction BtoA
    """
    try:
        pipe = _load(snapshot, device)
        pipe.net(direction)  # a bad or one-way direction is one error, before any file
        _process(lambda src, dst: pipe.process_file(src, dst, direction, tile=tile, overlap=overlap), source, out,
                 ext, "translating")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def colorize(
    source: Source,
    out: Out,
    model: Annotated[str | None, typer.Option(help="a colorization snapshot or run folder (trained with --pairs lab "
                                                   "or gray) \\[default: the shipped one, if installed]")] = None,
    tile: Tile = 1024,
    overlap: Overlap = 128,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Colour gray photos (colour photos are taken by their lightness). A Lab model keeps each photo's own
    lightness exactly and adds only colour.

    ganforge colorize old_photos/ -o color/ --model runs/00005-photos-colorize-64
    """
    try:
        pipe = _load(_colorize_model(model), device)
        if not pipe.is_colorizer:
            raise ValueError(f"{model} is not a colorization model (it was trained on {pipe.derive or 'pairs'}, not "
                             "--pairs lab or gray); use `ganforge translate` for it")
        _process(lambda src, dst: pipe.process_file(src, dst, "AtoB", tile=tile, overlap=overlap), source, out,
                 ext, "colorizing")
    except _user_errors() as exc:
        _fail(str(exc), 1)


def _colorize_model(model: str | None) -> str:
    """--model, or the shipped colorization model (ganforge.pretrained, command "colorize"); a copy without its
    files gets PretrainedMissing, which says how to train one."""
    from ganforge import pretrained

    return str(pretrained.resolve_model(model, "colorize"))


def _load(snapshot: str, device: str) -> TranslatePipeline:
    from ganforge import pretrained
    from ganforge.infer.pipelines import load_pipeline
    from ganforge.infer.translate import TranslatePipeline

    path = pretrained.resolve_model(snapshot, "translate")  # a shipped name (edges2photo) or a path
    pipe = load_pipeline(Path(path).expanduser(), device=device)
    if not isinstance(pipe, TranslatePipeline):
        raise ValueError(f"{snapshot} is a {pipe.meta.get('task')!r} model, not a translation one (pix2pix or "
                         "cyclegan): use `ganforge generate` for generators and `ganforge apply` for restoration")
    return pipe


def _process(run: Callable[[Path, Path], Path], source: Path, out: Path, ext: str | None, what: str) -> None:
    """``run(src, dst)`` on a file, or on every image under a folder (mirrored under ``out``); a folder's failed
    files are skipped and named at the end (exit code 1)."""
    from ganforge.data import IMAGE_EXTENSIONS

    if source.is_file():
        run(source, out)
        typer.echo(f"wrote {out}")
        return
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{source} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    failed = []
    for f in files:
        dst = out / f.relative_to(source)
        try:
            run(f, dst.with_suffix("." + ext.lstrip(".")) if ext else dst)
        except (ValueError, OSError) as exc:  # one bad file does not stop the folder; it is named at the end
            failed.append(str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}")
    typer.echo(f"{what}: wrote {len(files) - len(failed)} images to {out}")
    if failed:
        _fail(f"{len(failed)} of {len(files)} files were not processed:\n  " + "\n  ".join(failed[:20]), 1)
