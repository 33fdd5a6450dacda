"""Progress lines for evaluation steps that can take more than a few seconds (features of 10k images through
Inception on a CPU, generating 10k samples, PPL): nothing for a step that finishes quickly, then one line at most
every ``EVERY_S`` seconds, and a closing line for any step that took that long."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 5.0  # seconds between lines (and before the first)


class Progress:
    """``update(done)`` after each chunk of ``total`` units; ``close()`` at the end."""

    def __init__(self, log: Callable[[str], None], what: str, total: int, unit: str = "images"):
        self.log, self.what, self.total, self.unit = log, what, total, unit
        self.t0 = self.last = time.perf_counter()
        self.said = False

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= EVERY_S and done < self.total:
            self.last, self.said = now, True
            rate = done / max(now - self.t0, 1e-9)
            eta = (self.total - done) / max(rate, 1e-9)
            self.log(f"{self.what}: {done}/{self.total} {self.unit} ({now - self.t0:.0f} s, about {eta:.0f} s left)")

    def close(self) -> None:
        if self.said or time.perf_counter() - self.t0 >= EVERY_S:
            self.log(f"{self.what}: {self.total}/{self.total} {self.unit} in {time.perf_counter() - self.t0:.0f} s")
