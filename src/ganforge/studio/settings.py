"""The studio's settings: where its data lives, who may talk to it, and how big an upload may be.

One frozen dataclass, built by `ganforge studio` from its flags (or by a test), handed to `create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ganforge.data.decode import DEFAULT_MAX_PIXELS

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class StudioSettingsError(ValueError):
    """A studio setting is unusable; the message names the flag and what to do."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': addresses no other machine can reach."""
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StudioSettings:
    """Everything the app needs to know; every path the studio touches lies under ``data_dir``."""

    data_dir: Path = field(default_factory=lambda: Path("~/.ganforge").expanduser())
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required for any non-loopback host; then every /api request must carry it
    max_jobs: int = 1  # training workers running at once; the rest wait in a FIFO queue
    max_upload_mb: float = 512.0  # one request's body (a zip or a batch of images)
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image: larger ones (decompression bombs) are refused from the header
    max_files: int = 100_000  # members of one zip / files of one upload (inode exhaustion)
    # Total uncompressed size of one zip (zip bombs). Image files barely compress, so a real dataset unpacks to about
    # its zip's size: 8x the upload limit leaves room and still stops a bomb (they inflate 1000x and more).
    max_unpacked_mb: float = 4096.0
    stop_timeout_s: float = 120.0  # after SIGTERM, how long a worker may take to checkpoint before SIGKILL
    poll_s: float = 0.5  # how often the scheduler reaps workers and starts queued jobs, and streams poll files

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.token is not None and not self.token.strip():
            object.__setattr__(self, "token", None)
        if self.max_jobs < 1:
            raise StudioSettingsError(f"--max-jobs must be at least 1 (got {self.max_jobs})")
        if self.max_upload_mb <= 0 or self.max_unpacked_mb <= 0:
            raise StudioSettingsError("--max-upload-mb and the unpacked-size limit must be positive")
        if self.max_pixels < 1:
            raise StudioSettingsError(f"--max-pixels must be at least 1 (got {self.max_pixels})")
        if not is_loopback(self.host) and not self.token:
            raise StudioSettingsError(
                f"--host {self.host} is reachable from other machines: set a token with --token or the "
                "GANFORGE_TOKEN environment variable (every /api request must then carry it), or bind to 127.0.0.1")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_unpacked_bytes(self) -> int:
        return int(self.max_unpacked_mb * 2**20)

    # The folders of the data dir (created by `ensure_dirs`).
    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.datasets_dir, self.runs_dir, self.tmp_dir, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)



class DataDirLock:
    """One server per data dir: two would each take the other's workers for orphans and stop them. An exclusive
    ``flock`` on ``<data-dir>/studio.lock``, released by the kernel when the holder dies (even by SIGKILL)."""

    def __init__(self, settings: StudioSettings):
        self.path = settings.data_dir / "studio.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Raises StudioSettingsError naming the other server's pid when the data dir is taken."""
        import fcntl

        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the server's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise StudioSettingsError(f"--data-dir {self.path.parent} is in use by another ganforge studio (pid "
                                      f"{holder}); stop it, or give this one another --data-dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
