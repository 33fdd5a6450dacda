"""What keeps a run safe: the finite-state check before anything is written, and a clean stop on Ctrl-C/SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType

import torch
from torch import nn


def first_nonfinite(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> str | None:
    """Name the first non-finite tensor of the training state (parameters, buffers such as BatchNorm statistics,
    optimizer moments), or None when all are finite. A checkpoint or snapshot is written only when this is None."""
    def tensors() -> Iterable[tuple[str, torch.Tensor]]:
        for name, m in modules.items():
            for key, t in m.state_dict().items():
                yield f"{name} {key}", t
        for name, opt in optimizers.items():
            for i, per_param in enumerate(opt.state_dict()["state"].values()):
                for key, t in per_param.items():
                    if isinstance(t, torch.Tensor):
                        yield f"optimizer {name} state {key} of parameter {i}", t

    for where, t in tensors():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return where
    return None


class StopRequest:
    """While active, the first SIGINT (Ctrl-C) or SIGTERM (the studio's stop button, a batch scheduler) only sets
    ``requested``: the loop finishes its step, writes a checkpoint and stops. A second one aborts at once
    (KeyboardInterrupt / the default SIGTERM action). Handlers are installed only in the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify=None):
        self.requested = False
        self.signal_name, self.signum = "", int(signal.SIGINT)
        self.notify = notify
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second signal: give up now
            self.restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.requested, self.signal_name, self.signum = True, signal.Signals(signum).name, signum
        if self.notify:
            self.notify(f"{self.signal_name}: finishing this step and writing a checkpoint; press Ctrl-C again to "
                        "abort at once")

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is signal.SIG_IGN:  # nohup or a background job: keep ignoring it
                    continue
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
