"""Tiled inference through the restore pipeline: peak memory against image size, speed and exactness against
whole-image inference.

    python bench/tiles.py                 # trains a tiny denoiser first (a few seconds)
    python bench/tiles.py --run RUN       # or uses a restoration run folder you already have

The model is a small residual CNN denoiser (`denoise-25`, width 16, depth 5, so a receptive field of 11 px) trained
for 0.8 kimg at 32x32 on three scikit-image photos. What it measures, on synthetic noisy uint8 RGB images (smooth
colour patterns plus Gaussian noise, sigma 25 levels):

- memory: one fresh subprocess per case, so peaks do not mix. Each loads the pipeline, warms it up on a 64x64
  image, builds its input, resets its peak RSS (/proc/self/clear_refs; importing torch peaks higher than the
  process's later RSS), reads its current RSS, calls ``pipe(noisy, tile=...)`` once and reads ru_maxrss.
  peak extra RSS = ru_maxrss - RSS just before the call; the input is already resident then, so the working memory
  is peak extra RSS - output bytes (the output array is allocated by the call). Tiled at tile 512 at 1 MP
  (1000x1000), 4 MP (2000x2000) and 16 MP (4000x4000); whole image (tile >= image side) at 1 MP and 4 MP.
- speed: tiled (tile 512) and whole-image inference at 1 MP, interleaved in this process, best of `--repeats`
  each; megapixels/s and their ratio.
- exactness: max |tiled - whole| in uint8 levels at 1 MP with tile 256 (and with tile 512).

Writes bench/results/tiles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MiB = 2**20


def noisy_image(side: int, seed: int = 0) -> np.ndarray:
    """[side, side, 3] uint8: smooth colour waves plus Gaussian noise (sigma 25 levels), built in row blocks so
    that no full-size float temporary is ever held."""
    out = np.empty((side, side, 3), np.uint8)
    x = np.arange(side, dtype=np.float32)
    rng = np.random.default_rng(seed)
    for y0 in range(0, side, 256):
        y = np.arange(y0, min(y0 + 256, side), dtype=np.float32)[:, None, None]
        phase = np.array([0.0, 2.1, 4.2], np.float32)  # one per channel
        clean = 128 + 70 * np.sin(x[None, :, None] / 37 + phase) * np.cos(y / 53 + phase)  # [rows, side, 3]
        noise = rng.standard_normal(clean.shape, dtype=np.float32) * 25
        out[y0:y0 + len(y)] = np.clip(np.rint(clean + noise), 0, 255)
    return out


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (ru_maxrss, VmHWM) to its current RSS; Linux >= 4.0. False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def train_denoiser(out: Path) -> Path:
    """The tiny denoiser of tests/test_restore.py, trained on astronaut, coffee and rocket (quarter size)."""
    import skimage.data
    from PIL import Image

    import ganforge

    photos = out / "photos"
    photos.mkdir(parents=True)
    for name in ("astronaut", "coffee", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()[::4, ::4]).save(photos / f"{name}.png")
    cfg = ganforge.resolve_config("denoise-25", data={"source": str(photos), "resolution": 32},
                                  model={"width": 16, "depth": 5}, optim={"batch": 8},
                                  run={"kimg": 0.8, "out": str(out / "runs"), "tick_kimg": 0.4,
                                       "sample_every_kimg": 100, "snapshot_every_kimg": 100,
                                       "checkpoint_every_kimg": 100})
    return Path(ganforge.train(cfg, progress=False))


def measure_memory(run: str, side: int, tile: int) -> dict:
    """One pipeline call in this (fresh) process; byte counts for its peak memory."""
    import ganforge

    pipe = ganforge.load(run)
    pipe(noisy_image(64, seed=1), tile=tile)  # warm-up: lazy library state (thread pool, kernels) is not counted
    noisy = noisy_image(side)
    before_peak = maxrss_bytes()  # import and load peaked above today's RSS: reset the peak so the call's shows
    reset = reset_peak_rss()
    before_rss = rss_bytes()
    t0 = time.perf_counter()
    out = pipe(noisy, tile=tile)
    wall = time.perf_counter() - t0
    peak = maxrss_bytes()
    extra = peak - before_rss
    return {"side": side, "megapixels": side * side / 1e6, "tile": tile, "whole_image": tile >= side,
            "rss_before_call_mib": round(before_rss / MiB, 1), "maxrss_before_reset_mib": round(before_peak / MiB, 1),
            "peak_reset_before_call": reset,
            "maxrss_after_call_mib": round(peak / MiB, 1), "call_set_the_peak": reset or peak > before_peak,
            "peak_extra_rss_mib": round(extra / MiB, 1), "input_mib": round(noisy.nbytes / MiB, 1),
            "output_mib": round(out.nbytes / MiB, 1), "working_mib": round((extra - out.nbytes) / MiB, 1),
            "wall_s": round(wall, 2)}


def memory_case(run: str, side: int, tile: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run", run, "--measure-memory", str(side), str(tile)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed_and_exactness(run: str, side: int, tile: int, exact_tiles: list[int], repeats: int) -> dict:
    import ganforge

    pipe = ganforge.load(run)
    noisy = noisy_image(side)
    pipe(noisy_image(64, seed=1))  # warm-up
    times: dict[str, list[float]] = {"tiled": [], "whole": []}
    for _ in range(repeats):  # interleaved, so drifting load on a shared machine hits both alike
        for name, t in (("tiled", tile), ("whole", side)):
            t0 = time.perf_counter()
            pipe(noisy, tile=t)
            times[name].append(time.perf_counter() - t0)
    mp = side * side / 1e6
    best = {k: min(v) for k, v in times.items()}
    whole = pipe(noisy, tile=side).astype(np.int16)
    diffs = {}
    for t in exact_tiles:
        d = np.abs(pipe(noisy, tile=t).astype(np.int16) - whole)
        diffs[str(t)] = {"max_abs_levels": int(d.max()), "pixels_differing": int((d > 0).any(axis=2).sum()),
                         "mean_abs_levels": float(d.mean())}
    return {"side": side, "tile": tile, "repeats": repeats, "wall_s": {k: [round(x, 3) for x in v]
                                                                       for k, v in times.items()},
            "tiled_mp_per_s": round(mp / best["tiled"], 3), "whole_mp_per_s": round(mp / best["whole"], 3),
            "tiled_over_whole_speed": round(best["whole"] / best["tiled"], 3),
            "exactness_vs_whole_uint8": diffs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a restoration run folder (default: train a tiny denoiser into a temp folder)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--tiled-sides", default="1000,2000,4000", help="image sides for the tiled memory cases")
    ap.add_argument("--whole-sides", default="1000,2000", help="image sides for the whole-image memory cases")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of each kind for the speed ratio")
    ap.add_argument("--measure-memory", nargs=2, type=int, metavar=("SIDE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_memory:  # the child process of memory_case
        print(json.dumps(measure_memory(args.run, *args.measure_memory)))
        return

    import torch

    result: dict = {"bench": "tiles", "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d"),
                    "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = args.run or str(train_denoiser(Path(tmp)))
        meta = json.loads((Path(run) / "snapshots" / "latest.json").read_text())
        result["model"] = {"run": run if args.run else "trained in a temp folder", "arch": meta["arch"],
                           "config": meta["modules"]["net"]["config"],
                           "receptive_field_px": meta.get("receptive_field"),
                           "train_s": None if args.run else round(time.perf_counter() - t0, 1)}
        result["memory"] = ([memory_case(run, int(s), args.tile) for s in args.tiled_sides.split(",")]
                            + [memory_case(run, int(s), int(s)) for s in args.whole_sides.split(",")])
        result["speed"] = speed_and_exactness(run, 1000, args.tile, [256, args.tile], args.repeats)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "tiles.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"{result['platform']}, torch {result['torch']}, {result['threads']} threads")
    print(f"{'case':<22}{'extra RSS MiB':>14}{'output MiB':>12}{'working MiB':>13}{'wall s':>8}")
    for m in result["memory"]:
        case = f"{m['side']}^2 " + ("whole" if m["whole_image"] else f"tile {m['tile']}")
        print(f"{case:<22}{m['peak_extra_rss_mib']:>14}{m['output_mib']:>12}{m['working_mib']:>13}{m['wall_s']:>8}")
    s = result["speed"]
    print(f"1 MP: tiled {s['tiled_mp_per_s']} MP/s, whole {s['whole_mp_per_s']} MP/s, "
          f"ratio {s['tiled_over_whole_speed']}; max |tiled - whole| "
          + ", ".join(f"tile {t}: {d['max_abs_levels']}" for t, d in s["exactness_vs_whole_uint8"].items()))


if __name__ == "__main__":
    main()
