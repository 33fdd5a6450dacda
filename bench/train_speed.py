"""Training efficiency of the real loop, as a fraction of this machine's own measured matmul peak.

In one run it:
  1. measures the machine's float32 matmul FLOP/s (best of several large matmuls) -> the peak;
  2. counts the FLOPs of one training step (all phases, forward + backward) with torch.utils.flop_counter;
  3. trains with the real loop (ganforge.train) and reads img/s and the data-pipeline share from stats.jsonl;
  4. reports achieved FLOP/s = FLOPs/step * steps/s and its ratio to the peak.

    python bench/train_speed.py                              # DCGAN 32x32, batch 64, shapes (RGB)
    python bench/train_speed.py --preset sngan-cond-32 --data fashion-mnist
Writes bench/results/train_speed-<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ganforge.config import resolve_config
from ganforge.data import load_dataset
from ganforge.tasks import GanTask, StepInputs
from ganforge.training.loop import train
from ganforge.training.rundir import read_jsonl


def matmul_peak(n: int = 2048, seconds: float = 4.0, device: str = "cpu", dtype=torch.float32) -> float:
    """Best FLOP/s over repeated n x n matmuls (float32 on CPU; the training step's AMP dtype on CUDA)."""
    if device == "cuda":
        n = 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks break autograd.grad
    (R1 and path length differentiate through D and G); only the global total is needed here."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def step_flops(cfg, data) -> int:
    task = GanTask(cfg.model, cfg.loss, cfg.optim, cfg.data.resolution, data.channels, data.num_classes)
    b = cfg.optim.batch
    x = torch.from_numpy(np.array(data.images[:b])).float().div(127.5).sub(1)
    c = torch.from_numpy(data.labels[:b]) if data.labels is not None and task.num_classes else None
    inp = StepInputs(batch={"image": x, **({"label": c} if c is not None else {})},
                     gen=torch.Generator().manual_seed(0), step=0)
    # Lazy phases (R1 every 16 steps, path length every 4) are amortised: each phase's FLOPs / its interval.
    total = 0.0
    for phase in task.phases():
        for name, m in task.modules.items():
            m.requires_grad_(name == phase.module)
        fc = FlopCounterMode(display=False)
        fc.mod_tracker = _GlobalOnly()
        with fc:
            phase.loss(inp)["loss"].backward()
        total += fc.get_total_flops() / phase.interval
    return int(total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dcgan-32")
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kimg", type=float, default=6.4, help="training length measured (after warm-up)")
    ap.add_argument("--set", action="append", default=[], help="extra overrides SECTION.FIELD=VALUE")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "off"], help="CUDA only")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from ganforge.config import deep_merge, parse_set

    tick = args.batch * 10 / 1000  # one stats record per 10 steps
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_config(args.preset, deep_merge({
            "data": {"source": args.data}, "optim": {"batch": args.batch},
            "run": {"kimg": args.kimg, "out": tmp, "tick_kimg": tick, "sample_every_kimg": 1e4,
                    "snapshot_every_kimg": 1e4, "checkpoint_every_kimg": 1e4, "device": args.device,
                    **({"amp": args.amp} if args.device == "cuda" else {})}}, parse_set(args.set)))
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp) if args.device == "cuda" else None
        dtype = dtype or torch.float32
        data = load_dataset(cfg.data.source, cfg.data.resolution, resize=cfg.data.resize)
        # The peak is measured before and after training and the higher value kept, so a burst of load
        # from another process on this shared machine cannot inflate the ratio.
        peak = matmul_peak(device=args.device, dtype=dtype)
        flops = step_flops(cfg, data)
        run = train(cfg, progress=False)
        peak = max(peak, matmul_peak(device=args.device, dtype=dtype))
        stats = read_jsonl(run / "stats.jsonl")[1:-1]  # drop the warm-up tick and the final (with saving) tick
    ips = statistics.median(r["timing/img_per_s"] for r in stats)
    data_share = statistics.median(r["timing/data_share"] for r in stats)
    achieved = flops * ips / args.batch
    result = {
        "bench": "train_speed", "preset": args.preset, "data": args.data, "batch": args.batch,
        "resolution": cfg.data.resolution, "channels": data.channels,
        "img_per_s": round(ips, 1), "step_gflop": round(flops / 1e9, 3),
        "achieved_gflops": round(achieved / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
        "fraction_of_peak": round(achieved / peak, 3), "data_share": round(data_share, 4),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "amp": args.amp if args.device == "cuda" else "off", "peak_dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor()
        or platform.machine(), "cpu_count": __import__("os").cpu_count(), "ticks": len(stats),
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-cuda" if args.device == "cuda" else ""
    (args.out / f"train_speed-{args.preset}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
