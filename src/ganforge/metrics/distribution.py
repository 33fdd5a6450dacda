"""Distribution metrics on feature sets and classifier outputs.

Between two feature sets: FID (Heusel et al. 2017), KID (Binkowski et al. 2018), improved precision/recall
(Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020). From classifier logits: Inception Score
(Salimans et al. 2016), for any classifier. Features are [N, D] tensors (any extractor). Math is done in float64.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def _pair(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """Validate two [N, D] feature sets; return them in float64, centred on the real mean.

    Centring changes no distance but keeps ||a||^2 + ||b||^2 - 2ab from cancelling when features sit far
    from the origin.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.double(), fake.double()
    mu = real.mean(0)
    return real - mu, fake - mu


def _check_k(k: int, **sets: Tensor) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for name, f in sets.items():
        if len(f) <= k:
            raise ValueError(f"k-NN radii with k={k} need at least k + 1 = {k + 1} {name} samples, got {len(f)}")


def _sq_dist_chunks(a: Tensor, b: Tensor, chunk_size: int, exclude_self: bool = False) -> Iterator[tuple[int, Tensor]]:
    """Yield (start, D2) where D2[i, j] = ||a[start + i] - b[j]||^2 for chunk_size rows of a at a time.

    Memory stays at chunk_size x len(b). With exclude_self (a is b), the self-distances are set to +inf.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b_sq = (b * b).sum(1)
    for start in range(0, len(a), chunk_size):
        rows = a[start:start + chunk_size]
        d2 = ((rows * rows).sum(1, keepdim=True) + b_sq - 2 * rows @ b.T).clamp_min_(0)
        if exclude_self:
            i = torch.arange(len(rows))
            d2[i, start + i] = float("inf")
        yield start, d2


def _knn_radii_sq(f: Tensor, k: int, chunk_size: int = 1024) -> Tensor:
    """Squared distance from each row of f to its k-th nearest neighbour in f, itself excluded."""
    out = torch.empty(len(f), dtype=f.dtype)
    for start, d2 in _sq_dist_chunks(f, f, chunk_size, exclude_self=True):
        out[start:start + len(d2)] = d2.topk(k, dim=1, largest=False).values[:, -1]
    return out


def _ball_membership(points: Tensor, centres: Tensor, radii_sq: Tensor,
                     chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Closed balls B(centres[i], sqrt(radii_sq[i])) against points.

    Returns (count, hit): count[j] = number of balls containing points[j]; hit[i] = ball i contains any point.
    """
    count = torch.empty(len(points), dtype=torch.long)
    hit = torch.zeros(len(centres), dtype=torch.bool)
    for start, d2 in _sq_dist_chunks(points, centres, chunk_size):
        inside = d2 <= radii_sq
        count[start:start + len(d2)] = inside.sum(1)
        hit |= inside.any(0)
    return count, hit


# Improved precision and recall, Kynkaanniemi et al. 2019, eqs. 1-2: f(phi, Phi) = 1 if phi lies within
# ||phi' - NN_k(phi')|| of some phi' in Phi; precision = mean f(fake, real), recall = mean f(real, fake).
def precision_recall(real: Tensor, fake: Tensor, k: int = 3, *, chunk_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of fake features against real ones.

    Each set's manifold is the union of closed balls around its samples, each with radius equal to the
    distance to that sample's k-th nearest neighbour within the same set (itself excluded).

    Args:
        real: [N, D] features of real samples.
        fake: [M, D] features of generated samples.
        k: neighbourhood size for the radii (the paper uses 3). Each set needs at least k + 1 samples.
        chunk_size: rows of the pairwise distance matrix held in memory at once.

    Returns:
        (precision, recall): fraction of fake samples inside the real manifold (fidelity), and fraction of real
        samples inside the fake manifold (diversity), both in [0, 1].
    """
    real, fake = _pair(real, fake)
    _check_k(k, real=real, fake=fake)
    real_r2, fake_r2 = _knn_radii_sq(real, k, chunk_size), _knn_radii_sq(fake, k, chunk_size)
    fake_in_real, _ = _ball_membership(fake, real, real_r2, chunk_size)
    real_in_fake, _ = _ball_membership(real, fake, fake_r2, chunk_size)
    return float((fake_in_real > 0).double().mean()), float((real_in_fake > 0).double().mean())


# Density and coverage, Naeem et al. 2020, eqs. 3-4: density = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))],
# coverage = 1/N sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))], with X real and Y fake.
def density_coverage(real: Tensor, fake: Tensor, k: int = 5, *, chunk_size: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of fake features against real ones.

    Only the real set gets k-NN balls (radius = distance to the k-th nearest real neighbour, itself excluded).

    Args:
        real: [N, D] features of real samples; needs at least k + 1 of them.
        fake: [M, D] features of generated samples; at least 1.
        k: neighbourhood size (the paper uses 5).
        chunk_size: rows of the pairwise distance matrix held in memory at once.

    Returns:
        (density, coverage): density is the mean number of real balls containing a fake sample divided by k
        (about 1 when the distributions match; unbounded above), coverage the fraction of real balls that
        contain at least one fake sample, in [0, 1].
    """
    real, fake = _pair(real, fake)
    _check_k(k, real=real)
    if len(fake) == 0:
        raise ValueError("density_coverage needs at least 1 fake sample")
    count, hit = _ball_membership(fake, real, _knn_radii_sq(real, k, chunk_size), chunk_size)
    return float(count.sum().double() / (k * len(fake))), float(hit.double().mean())


# Inception Score, Salimans et al. 2016, sec. 4: IS = exp(E_x KL(p(y|x) || p(y))), p(y) the split's mean of p(y|x);
# reported as mean and std over splits.
def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) from classifier logits; any classifier works, not only Inception.

    The N samples are cut, in order, into ``splits`` contiguous parts (part i = rows [i*N//splits,
    (i+1)*N//splits), as in the authors' code); each part gets exp(mean KL(p(y|x) || p(y))) with p(y) the part's
    mean prediction. The softmax is taken in float64. Shuffle beforehand if the order is not random.

    Args:
        logits: [N, C] unnormalised class scores.
        splits: number of parts; needs N >= splits.

    Returns:
        (mean, std) of the per-part scores; std is the population std (ddof=0, as in the authors' code). The
        score lies in [1, C]: 1 for identical predictions, C for confident predictions spread evenly over C classes.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, C], got {tuple(logits.shape)}")
    n = len(logits)
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score needs splits >= 1 and at least `splits` samples, got N={n}, splits={splits}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        log_py = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(len(part)), dtype=torch.float64))
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(kl.exp())
    t = torch.stack(scores)
    return float(t.mean()), float(t.std(correction=0))
