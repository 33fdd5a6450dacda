"""`ganforge dataset inspect`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

dataset_app = typer.Typer(no_args_is_help=True, help="Look at a dataset before training on it.")
app.add_typer(dataset_app, name="dataset")


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
