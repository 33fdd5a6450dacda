"""`ganforge apply` and `ganforge upscale`: run an image-to-image snapshot (restoration, super-resolution) over a
file or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

if TYPE_CHECKING:
    from ganforge.infer.restore import RestorePipeline


# The options apply and upscale share (one image-to-image path, one set of flags).
Source = Annotated[Path, typer.Argument(help="an image file, or a folder (searched recursively)")]
Out = Annotated[Path, typer.Option("--out", "-o", help="output file (format from its suffix: png, tif, jpg, webp), "
                                                       "or a folder for a folder input")]
Tile = Annotated[int, typer.Option(min=32, max=8192, help="tile size in input pixels; memory follows the tile, not "
                                                          "the image")]
Overlap = Annotated[int | None, typer.Option(min=0, max=1024, help="tile overlap \\[default: the model's receptive "
                                                                   "field]")]
Ext = Annotated[str | None, typer.Option(help="folder mode: output suffix, e.g. png \\[default: keep each input's]")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]


@app.command()
def apply(
    snapshot: Annotated[str, typer.Argument(help="snapshot path or run folder of an image-to-image model")],
    source: Source,
    out: Out,
    tile: Tile = 512,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Restore images with a trained snapshot: 8/16-bit, gray/RGB, alpha passed through, any size (tiled).

    ganforge apply runs/00002-photos-denoise-25 noisy.png -o clean.png

    ganforge apply runs/00002-photos-denoise-25 scans/ -o clean/ --tile 256
    """
    try:
        from ganforge.infer.pipelines import load_pipeline
        from ganforge.infer.snapshot import LoadedGenerator

        pipe = load_pipeline(snapshot, device=device)
        if isinstance(pipe, LoadedGenerator):
            raise ValueError(f"{snapshot} is a generator (it makes images from noise); use `ganforge generate`")
        _process_paths(pipe, source, out, tile=tile, overlap=overlap, ext=ext)
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def upscale(
    snapshot: Annotated[str, typer.Argument(help="snapshot path or run folder of a super-resolution model")],
    source: Source,
    out: Out,
    tile: Tile = 512,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Upscale images by the snapshot's factor (x2/x3/x4): 8/16-bit, gray/RGB, alpha enlarged, any size (tiled).

    ganforge upscale runs/00003-photos-srresnet-x4 photo.png -o big.png

    ganforge upscale runs/00003-photos-srresnet-x4 photos/ -o big/ --tile 256
    """
    try:
        from ganforge.infer.pipelines import load_pipeline
        from ganforge.infer.restore import RestorePipeline

        pipe = load_pipeline(snapshot, device=device)
        if not isinstance(pipe, RestorePipeline) or pipe.scale == 1:
            raise ValueError(f"{snapshot} is not an upscaler (its output has the input's size): use ganforge apply")
        _process_paths(pipe, source, out, tile=tile, overlap=overlap, ext=ext)
    except _user_errors() as exc:
        _fail(str(exc), 1)


def _process_paths(pipe: RestorePipeline, source: Path, out: Path, tile: int, overlap: int | None,
                   ext: str | None) -> None:
    """Run ``pipe.process_file`` on a file, or on every image under a folder (mirrored under ``out``); a folder's
    unreadable files are skipped and named at the end (exit code 1)."""
    from ganforge.data import IMAGE_EXTENSIONS

    if source.is_file():
        pipe.process_file(source, out, tile=tile, overlap=overlap)
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
        dst = dst.with_suffix("." + ext.lstrip(".")) if ext else dst
        try:
            pipe.process_file(f, dst, tile=tile, overlap=overlap)
        except ValueError as exc:  # one bad file does not stop the folder; it is named at the end
            failed.append(str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}")
    typer.echo(f"wrote {len(files) - len(failed)} images to {out}")
    if failed:
        _fail(f"{len(failed)} of {len(files)} files were not processed:\n  " + "\n  ".join(failed[:20]), 1)
