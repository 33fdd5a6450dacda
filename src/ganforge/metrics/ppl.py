"""Perceptual Path Length of a StyleGAN2 snapshot (Karras et al. 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks", sec. 4.1, eq. 2 and 3, and appendix).

How much the image changes, perceptually, for a small step along a latent interpolation path:

    l_Z = E[ d(G(slerp(z0, z1; t)), G(slerp(z0, z1; t + eps))) / eps^2 ]      space="z"  (eq. 2)
    l_W = E[ d(g(lerp(f(z0), f(z1); t)), g(lerp(f(z0), f(z1); t + eps))) / eps^2 ]   space="w"  (eq. 3)

with f the mapping and g the synthesis network, t ~ U(0, 1) (sampling="full") or t = 0 (sampling="end": the
paper's t in {0, 1}, the same distribution since z0 and z1 are exchangeable; NVlabs uses t = 0), eps = 1e-4. d was
LPIPS in the paper; here it is any ``distance(a, b) -> [N]``, typically
:class:`ganforge.metrics.perceptual.PerceptualDistance` (which is **not LPIPS**, so the numbers are not comparable
with published PPL values). Lower is smoother. Since d is quadratic in the image difference for small differences,
dividing by eps^2 makes the value independent of eps.

Semantics follow NVlabs ``metrics/perceptual_path_length.py`` (stylegan2-ada-pytorch), rewritten here: batched
slerp returning unit vectors (the mapping normalises z anyway); both ends of a pair share the class; the two
images of a pair are drawn with the same constant noise; values outside the 1st ("lower") and 99th ("higher")
percentiles are dropped before the mean. Differences from NVlabs: the snapshot's own constant noise images are
used for every pair (NVlabs redraws them per batch), which makes the result independent of ``batch``; classes of
a conditional snapshot are drawn uniformly (NVlabs draws dataset labels); no 256 px downsampling (a distance
resizes to what it needs). ``crop=True`` is NVlabs's face crop (rows 3/8..7/8, columns 2/8..6/8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.core.latent import slerp
from ganforge.infer.snapshot import LoadedGenerator
from ganforge.metrics.progress import Progress

SPACES = ("z", "w")
SAMPLINGS = ("full", "end")

# distance(a, b) -> [N] for images a, b [N, C, H, W] in [-1, 1].
Distance = Callable[[Tensor, Tensor], Tensor]


def unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _check(G: LoadedGenerator, num_samples: int, epsilon: float, space: str, sampling: str, batch: int) -> None:
    if not G.is_style:
        raise ValueError(f"perceptual path length needs a StyleGAN2 snapshot (a mapping network from z to w); "
                         f"this one is {G.meta.get('arch')}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")


@torch.no_grad()
def path_distances(G: LoadedGenerator, distance: Distance, num_samples: int = 10_000, epsilon: float = 1e-4,
                   space: str = "w", sampling: str = "end", crop: bool = False, batch: int = 64, seed: int = 0,
                   labels: Tensor | Sequence[int] | int | None = None,
                   log: Callable[[str], None] | None = None) -> Tensor:
    """The per-pair values ``d(image(t), image(t + eps)) / eps^2``, float64 ``[num_samples]`` on the CPU, before
    the percentile filter of :func:`perceptual_path_length` (same arguments). All draws are made up front from one
    CPU generator seeded with ``seed``, in this order: z0 ``[S, z_dim]``, z1 ``[S, z_dim]``, t ``[S, 1]`` (drawn
    for "end" too, then zeroed), classes ``[S]`` (conditional snapshots without ``labels``); so the values do not
    depend on ``batch``. ``log`` receives progress lines when this takes more than a few seconds."""
    _check(G, num_samples, epsilon, space, sampling, batch)
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(num_samples, G.z_dim, generator=g)  # [S, z_dim]
    z1 = torch.randn(num_samples, G.z_dim, generator=g)
    t = torch.rand(num_samples, 1, generator=g) * (1.0 if sampling == "full" else 0.0)  # [S, 1]
    if G.num_classes and labels is None:
        labels = torch.randint(G.num_classes, (num_samples,), generator=g)
    c = G.check_labels(labels, num_samples)  # [S] on G.device, or None

    out = []
    progress = Progress(log or (lambda m: None), f"ppl ({space} space)", num_samples, "pairs")
    for i in range(0, num_samples, batch):
        a, b, ti = z0[i:i + batch].to(G.device), z1[i:i + batch].to(G.device), t[i:i + batch].to(G.device)
        ci = None if c is None else c[i:i + batch].repeat(2)  # both ends of a pair: the same class
        if space == "w":
            w0, w1 = G.net.mapping(torch.cat([a, b]), ci).chunk(2)  # [n, num_ws, w_dim] each
            wt0 = w0.lerp(w1, ti[:, :, None])
            wt1 = w0.lerp(w1, ti[:, :, None] + epsilon)
        else:
            zt0, zt1 = unit(slerp(unit(a), unit(b), ti)), unit(slerp(unit(a), unit(b), ti + epsilon))
            wt0, wt1 = G.net.mapping(torch.cat([zt0, zt1]), ci).chunk(2)
        img = G.net.synthesis(torch.cat([wt0, wt1]), noise_mode="const").float()  # [2n, C, H, W]
        if crop:
            assert img.shape[2] == img.shape[3], f"crop needs square images, got {list(img.shape)}"
            k = img.shape[2] // 8
            img = img[:, :, k * 3:k * 7, k * 2:k * 6]
        img0, img1 = img.chunk(2)
        d = distance(img0, img1)
        assert d.shape == (len(img0),), f"distance must return [N] = [{len(img0)}], got {list(d.shape)}"
        out.append(d.detach().double().cpu() / epsilon**2)
        progress.update(min(num_samples, i + batch))
    progress.close()
    return torch.cat(out)


def filtered_mean(values: Tensor | np.ndarray) -> tuple[float, float, int]:
    """NVlabs's outlier filter on ``[S]`` values: keep ``lo <= v <= hi`` with lo the 1st percentile rounded down to
    a sample ("lower") and hi the 99th rounded up ("higher"); returns (mean, std (ddof 0), kept count)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("no values to average")
    s = v.sort().values
    n = len(s)
    # numpy's percentile position is q/100 * (n - 1); "lower"/"higher" take the sample below/above it.
    lo = s[int(np.floor(0.01 * (n - 1)))]
    hi = s[int(np.ceil(0.99 * (n - 1)))]
    kept = v[(v >= lo) & (v <= hi)]
    return float(kept.mean()), float(kept.std(correction=0)), int(kept.numel())


def _describe(distance: Distance) -> tuple[str, str | None]:
    name = getattr(distance, "name", None) or getattr(distance, "__name__", None) or type(distance).__name__
    return str(name), getattr(distance, "protocol", None)


# Karras et al. 2019, sec. 4.1, eq. 2 (space "z") and eq. 3 (space "w").
def perceptual_path_length(G: LoadedGenerator, distance: Distance, num_samples: int = 10_000,
                           epsilon: float = 1e-4, space: str = "w", sampling: str = "end", crop: bool = False,
                           batch: int = 64, seed: int = 0, labels: Tensor | Sequence[int] | int | None = None,
                           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """PPL of a StyleGAN2 snapshot under ``distance`` (see the module docstring).

    ``space``: "z" (slerp between latents) or "w" (lerp between mapped latents); ``sampling``: "end" (t = 0) or
    "full" (t ~ U(0, 1)); ``epsilon``: the step; ``crop``: NVlabs's face crop; ``labels``: for a conditional
    snapshot one class or ``num_samples`` classes (None: uniform random classes from ``seed``); ``log``: progress
    lines when it takes more than a few seconds.
    Returns ``{"ppl", "std", "count" (values kept by the 1%/99% filter), "protocol": {...}}``.
    """
    values = path_distances(G, distance, num_samples, epsilon, space, sampling, crop, batch, seed, labels, log)
    mean, std, count = filtered_mean(values)
    name, dist_protocol = _describe(distance)
    if not G.num_classes:
        classes = None
    elif labels is None:
        classes = "uniform random (seeded), the same for both ends of a pair"
    else:
        classes = "given, the same for both ends of a pair"
    protocol = {
        "metric": "perceptual path length (Karras et al. 2019, sec. 4.1)",
        "space": space, "sampling": sampling, "epsilon": epsilon, "num_samples": num_samples, "crop": crop,
        "seed": seed, "distance": name, "distance_protocol": dist_protocol, "classes": classes,
        "noise": "the snapshot's constant noise, the same for both images of a pair",
        "filter": "values outside the 1st (lower) and 99th (higher) percentiles dropped, then the mean",
    }
    return {"ppl": mean, "std": std, "count": count, "protocol": protocol}
