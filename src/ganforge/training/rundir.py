"""The run folder: the contract between the library, the CLI, the studio and TensorBoard.

    runs/00012-<dataset>-<preset>/
      config.json     resolved TrainConfig
      log.txt         human-readable log
      stats.jsonl     one JSON object per tick (append-only; source of truth for curves)
      metrics.jsonl   one JSON object per metric evaluation
      samples/        fixed-seed grids: reals.png, fakes<kimg>.png
      snapshots/      <name>.safetensors + <name>.json for inference ("latest" is always the newest)
      checkpoints/    ckpt-<step>.pt full state for --resume
"""

from __future__ import annotations

import errno
import json
import re
import time
from pathlib import Path
from typing import Any

from ganforge.core.files import CheckpointError, atomic_write_text

RUN_RE = re.compile(r"^(\d{5})-")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "data"


def create_run_dir(out: Path, dataset: str, preset: str) -> Path:
    """Make ``out/NNNNN-dataset-preset`` with the next free number (safe against concurrent runs)."""
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    while True:
        ids = [int(m.group(1)) for p in out.iterdir() if (m := RUN_RE.match(p.name))]
        run = out / f"{max(ids, default=-1) + 1:05d}-{_slug(dataset)}-{_slug(preset)}"
        try:
            run.mkdir()
        except FileExistsError:
            continue  # another process took this number
        for sub in ("samples", "snapshots", "checkpoints"):
            (run / sub).mkdir()
        return run


class RunLog:
    """Appends to log.txt, stats.jsonl and metrics.jsonl. Lines are flushed immediately."""

    def __init__(self, run: Path):
        self.run = Path(run)

    def _append(self, name: str, line: str) -> None:
        try:
            with open(self.run / name, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CheckpointError(f"disk full while appending to {self.run / name}: the checkpoints in "
                                      f"{self.run / 'checkpoints'} are intact. Free some space and try again.") from exc
            raise

    def log(self, message: str) -> None:
        self._append("log.txt", f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")

    def stats(self, record: dict[str, Any]) -> None:
        self._append("stats.jsonl", json.dumps(record))

    def metric(self, record: dict[str, Any]) -> None:
        self._append("metrics.jsonl", json.dumps(record))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file, ignoring a torn last line left by a kill mid-append."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_stats(run: Path, step: int) -> None:
    """On resume, drop stats recorded after the checkpoint we continue from, so the file stays a
    faithful single history (those steps will be recomputed identically)."""
    path = Path(run) / "stats.jsonl"
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
