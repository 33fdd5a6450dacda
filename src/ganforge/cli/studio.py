"""`ganforge studio`: serve the web studio and its REST API (needs the `studio` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganforge.cli.base import _fail, app


@app.command()
def studio(
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="datasets, runs and the job database live here")] = Path("~/.ganforge"),
    token: Annotated[str | None, typer.Option(envvar="GANFORGE_TOKEN", show_envvar=True, show_default=False,
                                              help="require this token on every /api request")] = None,
    max_jobs: Annotated[int, typer.Option(help="training jobs running at once; more wait in a queue")] = 1,
    max_upload_mb: Annotated[float, typer.Option(help="largest request body (an upload) in MB")] = 512.0,
    max_pixels: Annotated[int, typer.Option(help="largest image, in pixels (checked from the header)")] = 40_000_000,
) -> None:
    """Open the studio: upload data, train, watch, and try the models in the browser at http://HOST:PORT/."""
    try:
        import uvicorn

        from ganforge.studio import StudioSettings, StudioSettingsError, create_app
        from ganforge.studio.settings import DataDirLock
    except ImportError as exc:
        _fail(f"the studio needs its extra ({exc.name} is missing): pip install 'ganforge[studio]'", 1)
    try:
        settings = StudioSettings(data_dir=data_dir, host=host, port=port, token=token or None,
                                  max_jobs=max_jobs, max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    except StudioSettingsError as exc:
        _fail(str(exc), 2)
    try:
        settings.ensure_dirs()
        probe = DataDirLock(settings)  # a clean message here rather than a traceback from the app's startup
        probe.acquire()
        probe.release()
    except OSError as exc:
        _fail(f"--data-dir {data_dir}: cannot create it ({exc.strerror}); pick a writable folder", 1)
    except StudioSettingsError as exc:
        _fail(str(exc), 1)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"ganforge studio: http://{shown}:{port}/  (data in {settings.data_dir}"
               f"{'; token required' if settings.token else ''})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
