"""Classical hole fills, solved exactly: what DeepFill's ``prefill="smooth"`` starts from (nets/deepfill.py).

``smooth_fill(x, hole)`` fills each image's hole with the mean of two interpolations of the known pixels:

    membrane  (harmonic)     the hole's pixels minimise the sum of squared differences between 4-neighbours:
                             the discrete Laplace equation L u = 0 inside the hole, the known pixels fixed
    thin plate (biharmonic)  they minimise the squared discrete Laplacian instead: L^2 u = 0, so the known pixels'
                             gradients also continue into the hole (skimage.restoration.inpaint_biharmonic's model)

L is the 5-point graph Laplacian of the H x W pixel grid (degree minus adjacency, so a pixel on the image border has
fewer neighbours: no padding). For the hole pixels u and known pixels k, each fill solves A[u, u] x_u = -A[u, k] x_k
(A = L or L @ L) by a sparse LU factorisation (scipy's SuperLU), all channels at once. Every connected part of a hole
touches a known pixel unless the whole image is hole, so both systems are non-singular; an image with no known pixel
gets 0 everywhere (mid-gray for images in [-1, 1], as ``pushpull_fill``).

Why the mean (docs/inpainting.md): the membrane is smooth but flat, the plate carries edges and shading into the
hole but overshoots on wide holes; their unweighted mean scored better than either on hole SSIM, and better than
OpenCV's ``cv2.inpaint`` on hole SSIM and the perceptual distance at both coverage bands, on the held-out benchmark
photos and on the training photos (``python bench/inpaint.py classical --split train``).

Both fills are linear in the known pixels and keep constants, so fill(a * x + b) = a * fill(x) + b: the fill of
an image in [0, 1] maps to the fill of the same image in [-1, 1] by 2 * fill - 1.

Cost: one factorisation per fill and image; a 256 x 256 image takes 0.15 s with a 15 % hole, 0.4 s with 34 %, on one
core (512 px: 1.5 s, 1024 px: 12 s and 2 GB), on the CPU whatever device the net runs on.
Not differentiable and not traceable (a sparse solve): the ONNX graph of a ``prefill="smooth"`` model takes the fill
as an input (infer/export.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

PLATE_WEIGHT = 0.5  # smooth fill = (1 - PLATE_WEIGHT) * membrane + PLATE_WEIGHT * thin plate


@lru_cache(maxsize=2)  # a training run uses one size; the pipeline's crops vary, and 1024 px costs ~0.3 GB
def grid_operators(h: int, w: int) -> tuple[Any, Any]:
    """(L, L @ L) for the h x w pixel grid, CSR, float64; L = 5-point graph Laplacian (row-major pixel order)."""
    import scipy.sparse as sp

    idx = np.arange(h * w).reshape(h, w)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])                 # each edge once: right, down
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    n = h * w
    adj = sp.coo_matrix((np.ones(2 * a.size), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
    adj = adj.tocsr()
    lap = (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()
    return lap, (lap @ lap).tocsr()


def smooth_fill_array(x: np.ndarray, hole: np.ndarray, plate_weight: float = PLATE_WEIGHT) -> np.ndarray:
    """x float [C, H, W], hole bool [H, W] -> float64 [C, H, W]: x with the hole filled (module docstring)."""
    from scipy.sparse.linalg import splu

    c, h, w = x.shape
    flat = x.reshape(c, h * w).T.astype(np.float64)                                 # [H*W, C]
    u = hole.reshape(-1)
    out = flat.copy()
    if not u.any():
        return out.T.reshape(c, h, w)
    if u.all():
        return np.zeros((c, h, w))
    k = ~u
    filled = np.zeros((int(u.sum()), c))
    for weight, op in zip((1.0 - plate_weight, plate_weight), grid_operators(h, w), strict=True):
        if weight == 0:
            continue
        rows = op[u]
        filled += weight * splu(rows[:, u].tocsc()).solve(-(rows[:, k] @ flat[k]))
    out[u] = filled
    return out.T.reshape(c, h, w)


def smooth_fill(x: Tensor, hole: Tensor, plate_weight: float = PLATE_WEIGHT) -> Tensor:
    """x [N, C, H, W], hole [N, 1, H, W] (> 0.5 is hole) -> x with each image's hole filled by the mean of its
    membrane and thin-plate interpolations (module docstring), same dtype and device; no gradient."""
    assert x.ndim == 4 and hole.shape == (x.shape[0], 1, *x.shape[2:]), \
        f"expected x [N, C, H, W] and hole [N, 1, H, W], got {list(x.shape)}, {list(hole.shape)}"
    xs = x.detach().to("cpu", torch.float64).numpy()
    hs = (hole.detach() > 0.5).cpu().numpy()
    out = np.stack([smooth_fill_array(xs[i], hs[i, 0], plate_weight) for i in range(x.shape[0])])
    return torch.from_numpy(out).to(x.device, x.dtype)
