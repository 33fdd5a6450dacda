"""Training statistics: accumulate per-step losses, emit one record per tick, show progress.

Records go to stats.jsonl (the source of truth). The console display and the optional TensorBoard
writer only mirror those same numbers.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console


class StatsAccumulator:
    """Running means of scalar losses between ticks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: float) -> None:
        self.sums[name] += value
        self.counts[name] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressDisplay:
    """A rich progress bar on a terminal; one plain line per tick otherwise (CI logs, the studio)."""

    def __init__(self, total_kimg: float, enabled: bool = True, console: Console | None = None):
        self.total_kimg = total_kimg
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._progress = None
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.fields[kimg]:>9.3f}/{task.total:.3f} kimg"), BarColumn(),
                TextColumn("{task.fields[ips]:>7.1f} img/s"), TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"), console=self.console, transient=False)
            self._task = self._progress.add_task("train", total=total_kimg, kimg=0.0, ips=0.0, losses="")
            # Started by the first update, so that an error while the run is being set up leaves no live display.

    def update(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        losses = "  ".join(f"{k[5:]} {v:.3f}" for k, v in record.items() if k.startswith("loss/"))
        if self._progress is not None:
            self._progress.start()  # idempotent
            self._progress.update(self._task, completed=record["kimg"], kimg=record["kimg"],
                                  ips=record["timing/img_per_s"], losses=losses)
        else:
            eta = max(0.0, self.total_kimg - record["kimg"]) * record["timing/sec_per_kimg"]  # may end past it
            print(f"kimg {record['kimg']:9.3f}/{self.total_kimg:g}  {record['timing/img_per_s']:7.1f} img/s  "
                  f"ETA {_fmt_time(eta)}  {losses}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class TensorBoardMirror:
    """Writes the same tick records to TensorBoard event files in <run>/tensorboard (optional extra)."""

    def __init__(self, run: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError("run.tensorboard=true needs the tensorboard package: "
                               "pip install 'ganforge[tensorboard]'") from exc
        self.writer = SummaryWriter(str(Path(run) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["kimg"] * 1000)  # x axis in images, as NVlabs does
        for k, v in record.items():
            if "/" in k and isinstance(v, int | float):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
