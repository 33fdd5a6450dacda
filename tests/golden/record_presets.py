"""Record the first 50 steps' losses of every preset (tiny widths, 16 px, batch 8, CPU, seed 0) as golden values.

Run from the repository root: ``python tests/golden/record_presets.py`` writes tests/golden/preset_losses.json.
It was first run on the code before the task-protocol refactor; test_golden.py checks today's code against it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

STEPS = 50
BATCH = 8
# Variants beyond the presets that exercise code paths the presets leave off by default.
VARIANTS: dict[str, tuple[str, dict]] = {
    "stylegan2-32+ada": ("stylegan2-32", {"loss": {"ada": "bgcfnc", "ada_interval": 2, "ada_kimg": 0.1}}),
    "dcgan-32+diffaug+r1": ("dcgan-32", {"loss": {"diffaugment": "color,translation,cutout", "r1_gamma": 1.0,
                                                  "r1_every_steps": 3}}),
    "sngan-cond-32+accum": ("sngan-cond-32", {"optim": {"batch_per_device": 4}}),
}


def make_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) // (k + 1)
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    return root


def overrides(data: Path, out: Path, preset: str) -> dict:
    model = {"g_width": 8, "d_width": 8, "max_width": 32}
    if "stylegan2" in preset:
        model |= {"z_dim": 16, "w_dim": 16}
    else:
        model |= {"z_dim": 16}
    if "stylegan2" in preset and preset != "stylegan2-32":
        model |= {"cond": "projection"}  # the conditional StyleGAN2 path too
    # Each preset at its own resolution up to 64 px (widths are tiny, so this stays fast); larger ones at 16.
    res = int(preset.rsplit("-", 1)[1])
    return {"data": {"source": str(data), "resolution": res if res <= 64 else 16},
            "model": model,
            # Adam's per-tensor loop as when recorded: the fused kernel rounds in another order, the same update.
            "optim": {"batch": BATCH, "fused_adam": False},
            "run": {"kimg": STEPS * BATCH / 1000, "out": str(out), "tick_kimg": BATCH / 1000, "seed": 3,
                    "sample_every_kimg": 1, "snapshot_every_kimg": 1, "checkpoint_every_kimg": 1,
                    # NCHW as when recorded: the memory format changes the kernels' summation order, not the math.
                    "grid_samples": 4, "device": "cpu", "channels_last": "off"}}


def cases() -> dict[str, tuple[str, dict]]:
    from ganforge.config import PRESETS

    # The GAN presets (every preset when the file was recorded); restoration presets have their own tests.
    out = {name: (name, {}) for name in PRESETS if PRESETS[name].get("task", "gan") == "gan"}
    return out | VARIANTS


def run_case(name: str, root: Path) -> list[dict]:
    from ganforge.config import deep_merge, resolve_config
    from ganforge.training.loop import train

    preset, extra = cases()[name]
    data = root / "data"
    if not data.exists():
        make_data(data)
    cfg = resolve_config(preset, deep_merge(overrides(data, root / name, preset), extra))
    run = train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("loss/") or k.startswith("aug/") or k == "step"}
            for r in rows]


def main() -> None:
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases():
            results[name] = run_case(name, Path(tmp))
            print(name, results[name][-1], file=sys.stderr)
    path = Path(__file__).with_name("preset_losses.json")
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
