"""The root typer app and the helpers every verb group uses (errors without tracebacks, seed lists)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Train GANs on your own images and put them to work.")


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    # The message is plain text (paths may hold "[x]"): only the prefix is markup.
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a message for the user (not a bug): printed without a traceback."""
    from ganforge.config import ConfigError
    from ganforge.core.files import CheckpointError
    from ganforge.data import DatasetError
    from ganforge.training.loop import TrainingDiverged

    return (ConfigError, DatasetError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError)


def parse_seeds(text: str, hint: str = "--seeds") -> list[int]:
    """'0-63' -> 0..63, '1,5,9' -> [1, 5, 9], '0-3,10' -> [0, 1, 2, 3, 10]."""
    from ganforge.seeds import parse_seeds as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None
