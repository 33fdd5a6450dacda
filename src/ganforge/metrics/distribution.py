"""Distribution distances between two feature sets: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018).

Features are [N, D] tensors (any extractor). Math is done in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _stats(f: Tensor) -> tuple[Tensor, Tensor]:
    f = f.double()
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


# FID, Heusel et al. 2017 eq. 6: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
def frechet_distance(f1: Tensor, f2: Tensor) -> float:
    assert f1.ndim == 2 and f2.ndim == 2 and f1.shape[1] == f2.shape[1], "features must be [N, D] with equal D"
    if min(len(f1), len(f2)) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    mu1, s1 = _stats(f1)
    mu2, s2 = _stats(f2)
    # Tr((S1 S2)^(1/2)) = sum of sqrt(eig(S1^(1/2) S2 S1^(1/2))), a symmetric PSD matrix.
    w, v = torch.linalg.eigh(s1)
    s1_half = (v * w.clamp_min(0).sqrt()) @ v.T
    eig = torch.linalg.eigvalsh(s1_half @ s2 @ s1_half).clamp_min(0)
    return float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * eig.sqrt().sum())


# KID, Binkowski et al. 2018: unbiased MMD^2 with the cubic polynomial kernel k(x,y) = (x.y/D + 1)^3,
# averaged over random subsets. The subset size shrinks to fit small sets instead of failing.
def kernel_inception_distance(f1: Tensor, f2: Tensor, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    n = min(len(f1), len(f2), subset_size)
    if n < 2:
        raise ValueError("KID needs at least 2 samples per set")
    f1, f2 = f1.double(), f2.double()
    d = f1.shape[1]
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        x = f1[torch.randperm(len(f1), generator=g)[:n]]
        y = f2[torch.randperm(len(f2), generator=g)[:n]]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        mmd = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (n * (n - 1)) \
            - 2 * kxy.mean()
        vals.append(float(mmd))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0
