"""`ganforge export`: write a snapshot's network (restoration net, generator, inpainting net, translation
generator) as an ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

FORMATS = ("onnx",)  # the one explicit table of export formats


@app.command()
def export(
    snapshot: Annotated[str, typer.Argument(help="snapshot path or run folder (restoration, generator, inpainting "
                                                 "or translation model), or a shipped model's name")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the file to write, e.g. model.onnx")],
    fmt: Annotated[str, typer.Option("--format", help="export format: onnx")] = "onnx",
    opset: Annotated[int, typer.Option(help="ONNX opset (18-23)")] = 18,
    tile: Annotated[int, typer.Option(min=8, max=4096, help="side of the random image the export is traced and "
                                                            "checked on (restoration, inpainting: rounded up to the "
                                                            "net's stride, translation; H and W stay dynamic)")] = 64,
    direction: Annotated[str | None, typer.Option(help="translation: AtoB or BtoA (a CycleGAN's second generator); "
                                                       "one file per direction \\[default: AtoB]")] = None,
    check: Annotated[bool | None, typer.Option("--check/--no-check", help="run onnxruntime on a random input and "
                                               "compare with PyTorch \\[default: on when onnxruntime is installed]")
                     ] = None,
    atol: Annotated[float, typer.Option(min=0.0, help="largest accepted max abs error of the check")] = 1e-4,
) -> None:
    """Export a snapshot to ONNX (eval mode), with its metadata; then check it against PyTorch in onnxruntime.

    ganforge export runs/00003-photos-srresnet-x4 -o upscale.onnx

    ganforge export runs/00001-shapes-sngan-cond-32 --format onnx -o generator.onnx --no-check

    ganforge export runs/00004-photos-deepfill-64 -o fill.onnx

    ganforge export runs/00007-horse2zebra-cyclegan-64 --direction BtoA -o zebra2horse.onnx

    ganforge export sr-x4-psnr -o upscale.onnx        (a shipped model: ganforge models)
    """
    if fmt.lower() not in FORMATS:
        _fail(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}", 2)
    try:
        from ganforge.infer.export import check_onnx, export_onnx, onnxruntime_available
        from ganforge.pretrained import PRETRAINED, resolve_model

        if snapshot in PRETRAINED:
            snapshot = str(resolve_model(snapshot, PRETRAINED[snapshot].command))
        path = export_onnx(snapshot, out, opset=opset, tile=tile, direction=direction)
        typer.echo(f"wrote {path}")
        if check is None and not onnxruntime_available():
            typer.echo("onnxruntime is not installed: the export was not checked (pip install 'ganforge[onnx]')")
            return
        if check or check is None:
            err = check_onnx(path, snapshot, tile=tile, direction=direction)
            typer.echo(f"onnxruntime vs PyTorch: max abs error {err:.3g}")
            if err > atol:
                _fail(f"{path}: onnxruntime differs from PyTorch by {err:.3g} (> --atol {atol:g}); the file is "
                      "written but does not reproduce the model: please report it with the snapshot's arch", 1)
    except _user_errors() as exc:
        _fail(str(exc), 1)
