"""Paired-image math shared by the layers above: the one PSNR and the one SSIM map.

No other part of ganforge is imported here, so infer/ (projection) and metrics/ (restoration metrics, with
BasicSR's input conventions in ``metrics.image``) compute PSNR with the same formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, as BasicSR's _ssim.
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


# PSNR = 10 log10(MAX^2 / MSE); identical images give inf (no warning in torch), as BasicSR's calculate_psnr.
def psnr(a: Tensor, b: Tensor, data_range: float) -> Tensor:
    """Per-image PSNR in dB of two floating-point images ``[N, C, H, W]`` whose value range spans ``data_range``
    (255 for 0..255, 2 for [-1, 1]); shape ``[N]``, ``inf`` where the images are identical. The caller picks
    the precision (the MSE is taken in the inputs' dtype)."""
    assert a.ndim == 4 and a.shape == b.shape, f"expected equal [N, C, H, W], got {tuple(a.shape)}, {tuple(b.shape)}"
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))  # [N]
    return 10.0 * torch.log10(data_range**2 / mse)


def _gauss(x: Tensor) -> Tensor:
    # Same taps as cv2.getGaussianKernel(11, 1.5) and scipy's gaussian_filter(sigma=1.5, truncate=3.5).
    r = torch.arange(SSIM_WINDOW, dtype=x.dtype, device=x.device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def ssim_maps(ta: Tensor, tb: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """(SSIM map, contrast-structure map) of images [N, C, H, W] on the 0..data_range scale: [N, C, H-10, W-10]
    each, over the 'valid' positions of the 11x11 window (position (i, j) is centred on pixel (i + 5, j + 5)).
    Differentiable; metrics.image (SSIM, MS-SSIM) uses it in float64 on 0..255, the inpainting loss
    (tasks/inpaint.py) in the training dtype on 0..1."""
    n, c, h, w = ta.shape
    g = _gauss(ta)
    # Filter a, b, a^2, b^2, ab in one separable 'valid' pass; channels become batch entries.
    stack = torch.cat([ta, tb, ta * ta, tb * tb, ta * tb]).reshape(5 * n * c, 1, h, w)
    out = F.conv2d(F.conv2d(stack, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    mu_a, mu_b, e_aa, e_bb, e_ab = out.reshape(5, n, c, *out.shape[-2:])  # [N, C, H-10, W-10] each
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    # Biased (population) moments, as BasicSR and the reference MATLAB code; no clamping of the variances.
    cs = (2 * (e_ab - mu_a * mu_b) + c2) / (e_aa - mu_a**2 + e_bb - mu_b**2 + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return lum * cs, cs
