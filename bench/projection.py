"""Projection of held-out real images into a StyleGAN2 snapshot: reconstruction quality against baselines.

    python bench/projection.py --snapshot bench/results/runs/<run> [--num 20 --steps 300 --space w+]

Targets: the first ``--num`` images of the Fashion-MNIST *test* split (never seen in training), 32x32 padded as in
quality_fmnist.py. Each is projected (pixel MSE + the judge's feature distance, NVlabs schedule) and compared
with its target by
  * PSNR (dB, on [0, 255]);
  * judge-feature distance: L2 between the judge's 128-d penultimate features (the space of the judge FID),
    computed with the shipped judge. The projection's own feature term is a cosine distance on the same
    features, so this is the quantity it optimises in part; PSNR is the independent check.
Baselines: the mean image of the training split (the best constant guess for PSNR) and the mean-w image (where
the projection starts). Writes bench/results/projection.json and docs/img/projection.png (rows: target,
projection, mean-w start; first 10 images).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ganforge.core.grid import save_grid, to_uint8
from ganforge.data import load_dataset
from ganforge.infer.project import project, psnr, synthesize_projection, w_stats
from ganforge.infer.snapshot import load_generator
from ganforge.metrics.extractors import SHIPPED_JUDGE
from ganforge.metrics.judge import judge_features, load_judge, to_float

HERE = Path(__file__).resolve().parent
JUDGE = SHIPPED_JUDGE  # package data: src/ganforge/metrics/assets/


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", required=True, help="StyleGAN2 snapshot or run folder (Fashion-MNIST, 32x32)")
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--space", default="w+", choices=["w", "w+"])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--img", type=Path, default=HERE.parent / "docs" / "img")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_generator(args.snapshot)
    judge = load_judge(JUDGE)
    extract = judge_features(JUDGE)
    test = load_dataset("fashion-mnist", 32, resize="pad", split="test")
    train_mean = to_float(load_dataset("fashion-mnist", 32, resize="pad", split="train").images).mean(0)
    targets = to_float(test.images[:args.num])  # [N, 1, 32, 32] in [-1, 1]
    w_avg, _ = w_stats(G)
    start = synthesize_projection(G, w_avg[None, None].repeat(1, G.net.num_ws, 1))[0].clamp(-1, 1)

    def feat(x: torch.Tensor) -> torch.Tensor:
        return judge.predict(x.clamp(-1, 1))[0]

    rows, t0 = [], time.perf_counter()
    projections = []
    for i, target in enumerate(targets):
        r = project(G, target, steps=args.steps, space=args.space, features=extract, seed=0)
        img = r.image.clamp(-1, 1)
        projections.append(img)
        f = feat(torch.stack([target, img, train_mean, start]))
        rows.append({"index": i, "label": int(test.labels[i]),
                     "psnr_projection": psnr(img, target), "psnr_train_mean": psnr(train_mean, target),
                     "psnr_mean_w": psnr(start, target),
                     "feat_projection": float((f[1] - f[0]).norm()), "feat_train_mean": float((f[2] - f[0]).norm()),
                     "feat_mean_w": float((f[3] - f[0]).norm())})
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    secs = time.perf_counter() - t0
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k not in ("index", "label")}
    result = {"bench": "projection", "snapshot": str(args.snapshot), "kimg": G.meta.get("kimg"),
              "space": args.space, "steps": args.steps, "images": args.num, "features": "judge (not LPIPS)",
              "mean": mean, "seconds_per_image": round(secs / args.num, 1),
              "per_image": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
              "protocol": "first N Fashion-MNIST test images, 32x32 padded; PSNR on [0,255]; judge-feature L2",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "date": time.strftime("%Y-%m-%d")}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "projection.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=2))
    n = min(10, args.num)
    grid = torch.cat([targets[:n], torch.stack(projections[:n]), start[None].repeat(n, 1, 1, 1)])
    args.img.mkdir(parents=True, exist_ok=True)
    save_grid(to_uint8(grid), args.img / "projection.png", n)


if __name__ == "__main__":
    main()
