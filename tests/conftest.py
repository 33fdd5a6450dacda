from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

# Tests are small; two threads is the CI machine and keeps results reproducible.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


def make_class_folder(root: Path, n_per_class: int = 16, size: int = 20, classes=("disc", "square", "bar")) -> Path:
    """Tiny labelled dataset: one simple shape per class, random colours and positions."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 80, 3, dtype=np.uint8)
            cy, cx = rng.integers(6, size - 6, 2)
            yy, xx = np.mgrid[:size, :size]
            if k == 0:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
            elif k == 1:
                mask = (abs(yy - cy) < 4) & (abs(xx - cx) < 4)
            else:
                mask = abs(xx - cx) < 2
            img[mask] = rng.integers(150, 256, 3, dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "data")


def tiny_overrides(source: str, out: Path, kimg: float, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config small enough to train a few steps in about a second on CPU."""
    base = {
        "data": {"source": source, "resolution": 16},
        "model": {"z_dim": 16, "g_width": 8, "d_width": 8, "max_width": 32},
        "optim": {"batch": 8},
        "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.008, "sample_every_kimg": 0.032,
                "snapshot_every_kimg": 0.032, "checkpoint_every_kimg": 0.032, "grid_samples": 16},
    }
    for s, f in sections.items():
        base[s] = {**base.get(s, {}), **f}
    return base


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


PYTHON = sys.executable


def kill_after_checkpoints(cmd: list[str], out: Path, n: int = 2, timeout: float = 120) -> Path:
    """Start a `ganforge train` command writing to ``out``, SIGKILL it once ``n`` checkpoints exist (possibly
    in the middle of writing the next one) and return its run folder."""
    from ganforge.training import checkpoint as ckpt

    proc = subprocess.Popen(cmd + ["--out", str(out)], env=python_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = list(out.glob("0*"))
        if runs and len(ckpt.list_checkpoints(runs[0] / "checkpoints")) >= n:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return next(out.glob("0*"))


@pytest.fixture(scope="session")
def style_run(tmp_path_factory) -> Path:
    """A tiny class-conditional StyleGAN2 run (16 px, 4 steps), trained once for the tests that use it."""
    from ganforge.config import resolve_config
    from ganforge.training.loop import train

    root = tmp_path_factory.mktemp("style")
    data = make_class_folder(root / "data")
    cfg = resolve_config("stylegan2-32", tiny_overrides(str(data), root / "runs", 0.032, model={
        "w_dim": 16, "mapping_layers": 2, "cond": "projection"}))
    return train(cfg, progress=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models and float64 metric code: on a 2-core machine shared with other processes, a 2-thread pool
    waits on the busy core at every op (60 classifier steps took 32 s instead of 0.3 s). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
