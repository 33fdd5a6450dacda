"""The ganforge command line: a thin, validated translation from flags to library calls.

One module per verb group: ``train`` (train, presets), ``generate`` (generate, style-mix, arithmetic, project,
synthesize), ``evaluate`` (eval sets|snapshot|pairs|cas, judge train), ``dataset`` (dataset inspect). Each
registers its commands on ``app`` (or on a sub-app it adds to ``app``) when it is imported at the end of this
file. torch and the library modules are imported inside the commands so that ``ganforge --help`` is instant.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Train GANs on your own images and put them to work.")


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


def parse_seeds(text: str, hint: str = "--seeds") -> list[int]:
    """'0-63' -> 0..63, '1,5,9' -> [1, 5, 9], '0-3,10' -> [0, 1, 2, 3, 10]."""
    from ganforge.seeds import parse_seeds as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (continue with --resume RUN)", file=sys.stderr)
        sys.exit(130)


# The verb groups, in the order of `ganforge --help`. They use the helpers above, hence imported last.
from ganforge.cli import train, generate, evaluate, dataset  # noqa: E402, F401, I001
