"""Paired-image math shared by the layers above: the one PSNR.

No other part of ganforge is imported here, so infer/ (projection) and metrics/ (restoration metrics, with
BasicSR's input conventions in ``metrics.image``) compute PSNR with the same formula.
"""

from __future__ import annotations

import torch
from torch import Tensor


# PSNR = 10 log10(MAX^2 / MSE); identical images give inf (no warning in torch), as BasicSR's calculate_psnr.
def psnr(a: Tensor, b: Tensor, data_range: float) -> Tensor:
    """Per-image PSNR in dB of two floating-point images ``[N, C, H, W]`` whose value range spans ``data_range``
    (255 for 0..255, 2 for [-1, 1]); shape ``[N]``, ``inf`` where the images are identical. The caller picks
    the precision (the MSE is taken in the inputs' dtype)."""
    assert a.ndim == 4 and a.shape == b.shape, f"expected equal [N, C, H, W], got {tuple(a.shape)}, {tuple(b.shape)}"
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))  # [N]
    return 10.0 * torch.log10(data_range**2 / mse)
