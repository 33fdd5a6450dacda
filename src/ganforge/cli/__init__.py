"""The ganforge command line: a thin, validated translation from flags to library calls.

One module per verb group: ``train`` (train, presets), ``generate`` (generate, style-mix, arithmetic, project,
synthesize), ``restore`` (apply), ``evaluate`` (eval sets|snapshot|pairs|cas, judge train), ``dataset``
(dataset inspect). Each registers its commands on ``cli.base.app`` (or on a sub-app it adds to it) when imported
here. torch and the library modules are imported inside the commands so that ``ganforge --help`` is instant.
"""
# ruff: noqa: I001  (the group imports are in --help order, not alphabetical)

from __future__ import annotations

import sys

# The verb groups, registered on the root app in the order of `ganforge --help` (explicit: no discovery).
from ganforge.cli import train  # noqa: F401
from ganforge.cli import generate  # noqa: F401
from ganforge.cli import restore  # noqa: F401
from ganforge.cli import inpaint  # noqa: F401
from ganforge.cli import translate  # noqa: F401
from ganforge.cli import evaluate  # noqa: F401
from ganforge.cli import dataset  # noqa: F401
from ganforge.cli import studio  # noqa: F401
from ganforge.cli import export  # noqa: F401
from ganforge.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt as exc:  # TrainingStopped (a clean stop with a checkpoint) or a hard interrupt
        print(str(exc) or "interrupted; the last checkpoint is intact (continue with --resume RUN)", file=sys.stderr)
        sys.exit(128 + getattr(exc, "signum", 2))


