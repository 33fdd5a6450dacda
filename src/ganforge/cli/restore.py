"""`ganforge upscale`, `denoise`, `derain` (a shipped model by default, or --model), `apply` (any image-to-image
snapshot) and `models` (the shipped models): run a restoration model over a file or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

if TYPE_CHECKING:
    from rich.progress import Progress

    from ganforge.infer.restore import RestorePipeline


# The options the commands share (one image-to-image path, one set of flags).
Source = Annotated[Path, typer.Argument(help="an image file, or a folder (searched recursively)")]
Out = Annotated[Path, typer.Option("--out", "-o", help="output file (format from its suffix: png, tif, jpg, webp), "
                                                       "or a folder for a folder input")]
Model = Annotated[str | None, typer.Option(help="a shipped model (see `ganforge models`), a snapshot or a run "
                                                "folder \\[default: the command's shipped model]")]
Tile = Annotated[int | None, typer.Option(min=32, max=8192, help="tile size in input pixels; memory follows the tile, "
                                                                 "not the image \\[default: 512; 256 for x3/x4 "
                                                                 "upscalers; at least twice the model's overlap]")]
Overlap = Annotated[int | None, typer.Option(min=0, max=1024, help="tile overlap \\[default: the model's receptive "
                                                                   "field]")]
Ext = Annotated[str | None, typer.Option(help="folder mode: output suffix, e.g. png \\[default: keep each input's]")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
Sigma = Annotated[float | None, typer.Option(min=0.0, max=255.0, help="noise level (standard deviation, 0-255 "
                                                                      "units) for a non-blind denoiser")]


@app.command()
def upscale(
    paths: Annotated[list[Path], typer.Argument(metavar="SRC", show_default=False,
                                                help="an image file, or a folder (searched recursively); the old form "
                                                     "`upscale SNAPSHOT SRC` still works")],
    out: Out,
    model: Model = None,
    scale: Annotated[int | None, typer.Option(min=2, max=4, help="the model's factor, checked: 2, 3 or 4 "
                                                                 "\\[default: the model's]")] = None,
    outscale: Annotated[float | None, typer.Option(min=0.01, max=16.0, help="final size = input x "
                                                   "this (e.g. 3.5), resampled from the model's output (Lanczos)")
                        ] = None,
    tile: Tile = None,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Upscale images x2/x3/x4 (the shipped x4 model sr-x4-psnr unless --model): 8/16-bit, gray/RGB, alpha
    enlarged, any size (tiled).

    ganforge upscale photo.jpg --scale 4 -o big.png

    ganforge upscale photos/ -o big/ --tile 256 --outscale 3.5

    ganforge upscale photo.jpg -o big.png --model sr-x4-gan        (or a run folder: --model runs/00003-...)
    """
    try:
        if len(paths) > 2:
            raise ValueError(f"expected one source (a file or a folder), got {len(paths)}: "
                             f"{' '.join(map(str, paths))}")
        if len(paths) == 2:  # the old form `upscale SNAPSHOT SRC`: unambiguous, since the new form takes one SRC
            if model is not None:
                raise ValueError("give the model once: `ganforge upscale SRC --model SNAPSHOT -o OUT`")
            model, paths = str(paths[0]), paths[1:]
        pipe = _load("upscale", model, device)
        if scale is not None and scale != pipe.scale:
            raise ValueError(f"--scale {scale}, but {_name(model)} upscales x{pipe.scale}: pass --outscale {scale} "
                             f"to resample its output to x{scale}, or --model an x{scale} snapshot")
        _process_paths(pipe, paths[0], out, tile=tile, overlap=overlap, ext=ext, outscale=outscale,
                       what="upscaling")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def denoise(
    source: Source,
    out: Out,
    model: Model = None,
    sigma: Sigma = None,
    tile: Tile = None,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Remove noise (the shipped blind denoiser denoise-blind unless --model; with --sigma, the non-blind
    denoise-nonblind): 8/16-bit, gray/RGB, alpha kept, any size (tiled).

    ganforge denoise noisy.png -o clean.png                       (blind: estimates the noise itself)

    ganforge denoise noisy_folder/ -o clean_folder/ --sigma 25    (non-blind: told the noise level, 0-255)

    --sigma needs a non-blind model and a non-blind model needs --sigma; either mismatch is an error, not a guess.
    """
    try:
        pipe = _load("denoise", model, device, sigma=sigma is not None)
        pipe.check_sigma(sigma)  # before any file: a missing or refused sigma is one error, not one per file
        _process_paths(pipe, source, out, tile=tile, overlap=overlap, ext=ext, sigma=sigma, what="denoising")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def derain(
    source: Source,
    out: Out,
    model: Model = None,
    tile: Tile = None,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Remove rain streaks (the shipped model derain unless --model): 8/16-bit, gray/RGB, alpha kept, any size.

    ganforge derain rainy.jpg -o clear.png

    ganforge derain rainy_folder/ -o clear_folder/ --tile 1024
    """
    try:
        pipe = _load("derain", model, device)
        _process_paths(pipe, source, out, tile=tile, overlap=overlap, ext=ext, sigma=None, what="de-raining")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def apply(
    snapshot: Annotated[str, typer.Argument(help="snapshot path, run folder or shipped model name of an "
                                                 "image-to-image model")],
    source: Source,
    out: Out,
    sigma: Sigma = None,
    tile: Tile = None,
    overlap: Overlap = None,
    ext: Ext = None,
    device: Device = "cpu",
) -> None:
    """Restore images with any image-to-image snapshot (denoiser, upscaler, de-rainer, your own): 8/16-bit,
    gray/RGB, alpha passed through, any size (tiled).

    ganforge apply runs/00002-photos-denoise-25 noisy.png -o clean.png

    ganforge apply runs/00002-photos-denoise-25 scans/ -o clean/ --tile 256

    ganforge apply runs/00006-photos-denoise-nonblind noisy.png -o clean.png --sigma 25
    """
    try:
        from ganforge.infer.pipelines import load_pipeline
        from ganforge.infer.restore import RestorePipeline
        from ganforge.pretrained import resolve_model

        pipe = load_pipeline(resolve_model(snapshot, "apply"), device=device)
        if not isinstance(pipe, RestorePipeline):
            use = {"generate": "ganforge generate (it makes images from noise)", "inpaint": "ganforge inpaint",
                   "translate": "ganforge translate"}.get(pipe.meta.get("pipeline"), "the command for its task")
            raise ValueError(f"{snapshot} is a {pipe.meta.get('task')!r} model, not a restoration one; use {use}")
        pipe.check_sigma(sigma)
        _process_paths(pipe, source, out, tile=tile, overlap=overlap, ext=ext, sigma=sigma, what="restoring")
    except _user_errors() as exc:
        _fail(str(exc), 1)


@app.command()
def models() -> None:
    """List the shipped restoration models: name, command, factor, installed or not, what each is for."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ganforge.pretrained import PRETRAINED

    table = Table("model", "used by", "x", "here", "what", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  caption="--model NAME picks one; training data, licences and commands: docs/pretrained.md")
    for p in PRETRAINED.values():
        table.add_row(p.name, p.default_for or f"--model {p.name}", str(p.scale), "yes" if p.installed else "no",
                      p.description)
    Console().print(table)


def _name(model: str | None) -> str:
    return model if model is not None else "the shipped model"


def _load(command: str, model: str | None, device: str, sigma: bool = False) -> RestorePipeline:
    """The pipeline for --model (None: the command's shipped model, the non-blind one when --sigma is given),
    checked to fit the command: upscale needs an upscaler, denoise and derain a same-size model."""
    from ganforge.pretrained import load_restorer

    pipe = load_restorer(model, command, device=device, sigma=sigma)
    if command == "upscale" and pipe.scale == 1:
        raise ValueError(f"{_name(model)} is not an upscaler (its output has the input's size): use ganforge "
                         "apply, denoise or derain")
    if command != "upscale" and pipe.scale != 1:
        raise ValueError(f"{_name(model)} is an upscaler (x{pipe.scale}): use ganforge upscale")
    return pipe


def _folder_progress() -> Progress:
    """A rich progress bar on stderr when it is a terminal; a disabled one (prints nothing) otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[file]}"), console=console, disable=not console.is_terminal,
                    transient=False)


def _process_paths(pipe: RestorePipeline, source: Path, out: Path, tile: int | None, overlap: int | None,
                   ext: str | None, sigma: float | None = None, outscale: float | None = None,
                   what: str = "restoring") -> None:
    """Run ``pipe.process_file`` on a file, or on every image under a folder (mirrored under ``out``, with a
    progress bar on a terminal); a folder's unreadable files are skipped and named at the end (exit code 1)."""
    from ganforge.data import IMAGE_EXTENSIONS

    if source.is_file():
        pipe.process_file(source, out, tile=tile, overlap=overlap, sigma=sigma, outscale=outscale)
        typer.echo(f"wrote {out}")
        return
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{source} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    failed = []
    with _folder_progress() as progress:
        task = progress.add_task(what, total=len(files), file="")
        for f in files:
            progress.update(task, file=str(f.relative_to(source)))
            dst = out / f.relative_to(source)
            dst = dst.with_suffix("." + ext.lstrip(".")) if ext else dst
            try:
                pipe.process_file(f, dst, tile=tile, overlap=overlap, sigma=sigma, outscale=outscale)
            except (ValueError, OSError) as exc:  # one bad file does not stop the folder; it is named at the end
                failed.append(str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}")
            progress.advance(task)
    typer.echo(f"wrote {len(files) - len(failed)} images to {out}")
    if failed:
        _fail(f"{len(failed)} of {len(files)} files were not processed:\n  " + "\n  ".join(failed[:20]), 1)
