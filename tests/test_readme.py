"""The README's Python code runs as written: every ```python block, in a fresh interpreter, in a scratch folder
holding what the text assumes (`noisy.png`, a restoration run `runs/00004-photos-denoise-25`). The one line
rewritten is the `resolve_config(...)` call, to a tiny model trained for two steps, so the test takes seconds."""

from __future__ import annotations

import re
import subprocess

import numpy as np
from PIL import Image

from ganforge.config import resolve_config
from tests.conftest import PYTHON, REPO, make_class_folder, python_env, tiny_overrides

CONFIG_LINE = re.compile(r'^cfg = ganforge\.resolve_config\("dcgan-32", .*\)$', re.M)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path):
    from ganforge.training.loop import train

    blocks = python_blocks((REPO / "README.md").read_text())
    assert blocks, "the README has no ```python block"
    code = "\n".join(blocks)
    assert len(CONFIG_LINE.findall(code)) == 1, "the test rewrites exactly one resolve_config line"

    # What the README assumes exists: an image to denoise and a restoration run under that name.
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(tmp_path / "noisy.png")
    data = make_class_folder(tmp_path / "data", n_per_class=4, size=24)
    restore = resolve_config("denoise-25", {
        "data": {"source": str(data), "resolution": 16}, "model": {"width": 8, "depth": 3}, "optim": {"batch": 4},
        "run": {"kimg": 0.008, "out": str(tmp_path / "scratch"), "tick_kimg": 0.004, "snapshot_every_kimg": 0.008,
                "checkpoint_every_kimg": 0.008, "sample_every_kimg": 0.008, "grid_samples": 4}})
    (tmp_path / "runs").mkdir()
    train(restore, progress=False).rename(tmp_path / "runs" / "00004-photos-denoise-25")

    tiny = tiny_overrides(str(data), tmp_path / "runs", 0.016)  # 2 steps of batch 8 at 16 px, widths 8
    code = CONFIG_LINE.sub(lambda m: f'cfg = ganforge.resolve_config("dcgan-32", **{tiny!r})', code)
    code += ("\nassert images.shape[0] == 8 and len(walk) == 60\n"
             "assert clean.shape == noisy_pixels.shape and clean.dtype == noisy_pixels.dtype\n")
    res = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, env=python_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
