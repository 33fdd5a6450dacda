"""ganforge studio: a local web app and REST API over the library (train on your data, watch, use the models).

``create_app(StudioSettings(...))`` builds the FastAPI app; ``ganforge studio`` serves it with uvicorn. Nothing in
the library imports this package (it sits on the top layer with the CLI); it needs the ``studio`` extra
(fastapi, uvicorn, python-multipart). See docs/studio.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganforge.studio.settings import StudioSettings, StudioSettingsError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["StudioSettings", "StudioSettingsError", "create_app"]


def create_app(settings: StudioSettings) -> FastAPI | Any:
    """The studio's FastAPI app (imported on call, so ``import ganforge.studio`` needs no fastapi)."""
    from ganforge.studio.app import create_app as _create

    return _create(settings)
