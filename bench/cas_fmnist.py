"""Augmentation uplift on Fashion-MNIST (Classification Accuracy Score, Ravuri & Vinyals 2019).

    python bench/cas_fmnist.py [--snapshot bench/results/runs/00005-fashion-mnist-sngan-cond-32]

The same library call as `ganforge eval cas`: N = 10, 50, 200 real images per class, M = 500 synthetic per class
from the conditional SNGAN of docs/benchmarks.md (81.0 % judge class accuracy), training seeds 0-2, 500 steps of
batch 128 per classifier (every arm) with the judge's CNN at width 16, 32x32 (28x28 padded; synthetic 28x28
padded the same way). Equivalent CLI: `ganforge eval cas <snapshot> --data fashion-mnist --steps 500` (width 32
there). Writes
bench/results/cas-fmnist.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ganforge.data import load_dataset
from ganforge.infer.snapshot import load_generator
from ganforge.metrics.cas import CasConfig, run_cas

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", default=str(HERE / "results" / "runs" / "00005-fashion-mnist-sngan-cond-32"))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    G = load_generator(args.snapshot)
    train = load_dataset("fashion-mnist", 32, resize="pad", use_labels=True)
    test = load_dataset("fashion-mnist", 32, resize="pad", use_labels=True, split="test")
    t0 = time.perf_counter()
    report = run_cas(train.images, train.labels, test.images, test.labels, G, [10, 50, 200], 500,
                     [int(s) for s in args.seeds.split(",")], CasConfig(steps=args.steps, width=args.width, fit="pad"),
                     class_names=train.class_names, snapshot=args.snapshot)
    out = report.to_dict() | {"bench": "cas_fmnist", "seconds": round(time.perf_counter() - t0, 1),
                              "threads": torch.get_num_threads(), "torch": torch.__version__,
                              "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    (HERE / "results" / "cas-fmnist.json").write_text(json.dumps(out, indent=2) + "\n")
    for line in report.summary_lines():
        print(line)


if __name__ == "__main__":
    main()
