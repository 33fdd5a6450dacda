"""Evaluation speed on this machine: extractor throughput, a 10k-vs-10k FID from scratch, and the same with
cached features.

    python bench/eval_speed.py

Real Fashion-MNIST: 10,000 training images (a fixed subset, seed 0) against the 10,000 test images, through the
shipped judge. "cold" computes both feature sets into an empty cache folder, "warm" repeats with that cache.
Inception throughput needs NVlabs' inception-2015-12-05.pt, which is measured only when the file is present.
Writes bench/results/eval-speed.json.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ganforge.data import load_dataset
from ganforge.metrics.distribution import (
    density_coverage,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from ganforge.metrics.extractors import default_inception_path, get_extractor
from ganforge.metrics.features import dataset_features

HERE = Path(__file__).resolve().parent


def throughput(spec: str, images) -> float:
    ex = get_extractor(spec)
    ex(images[:256])  # warm-up
    t0 = time.perf_counter()
    ex(images)
    return len(images) / (time.perf_counter() - t0)


def main() -> None:
    test = load_dataset("fashion-mnist", 28, split="test")
    result: dict = {"bench": "eval_speed", "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    result["judge_images_per_s"] = round(throughput("judge", test.images), 1)
    if default_inception_path().exists():
        result["inception_images_per_s"] = round(throughput("inception", test.images[:2000]), 1)
    else:
        result["inception_images_per_s"] = f"not measured: {default_inception_path()} is not on this machine"
    ex = get_extractor("judge")
    with tempfile.TemporaryDirectory() as cache:
        times = {}
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            real = dataset_features(ex, "fashion-mnist", "train", num=10_000, cache_dir=cache, log=lambda m: None)
            fake = dataset_features(ex, "fashion-mnist", "test", cache_dir=cache, log=lambda m: None)
            fid = frechet_distance(real.features, fake.features)
            times[run] = time.perf_counter() - t0
        t0 = time.perf_counter()
        kid = kernel_inception_distance(real.features, fake.features)[0]
        t_kid = time.perf_counter() - t0
        t0 = time.perf_counter()
        precision_recall(real.features, fake.features)
        density_coverage(real.features, fake.features)
        t_prdc = time.perf_counter() - t0
    result |= {"fid_10k_vs_10k": round(fid, 4), "kid_x1000": round(kid * 1000, 3),
               "fid_wall_s_cold": round(times["cold"], 2), "fid_wall_s_warm": round(times["warm"], 3),
               "cache_speedup": round(times["cold"] / times["warm"], 1), "kid_100x1000_s": round(t_kid, 2),
               "pr_and_dc_10k_s": round(t_prdc, 2),
               "protocol": "shipped judge (pad 28->32); 10k train subset (seed 0) vs 10k test; cold = load, "
                           "extract, FID; warm = same with the feature cache"}
    (HERE / "results" / "eval-speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
