"""Full-reference image metrics for restoration and translation: PSNR, SSIM, MS-SSIM.

Conventions follow the super-resolution literature as implemented in BasicSR / Real-ESRGAN (`basicsr/metrics`):
data range 255, optional border crop, optional BT.601 Y channel, 11x11 Gaussian window (sigma 1.5) with 'valid'
filtering. Inputs are uint8 numpy images ([H, W], [H, W, C] or [N, C, H, W]) or torch tensors [N, C, H, W]
(floating point in [0, 1], or uint8). All math is float64 torch; every metric returns one value per image, [N].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.core import imagemath

_L = 255.0
_WIN = imagemath.SSIM_WINDOW
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# 'valid' filtering needs an 11-px side at the coarsest of 5 scales; 2x2 pooling floors, so side // 16 >= 11.
MS_SSIM_MIN_SIDE = _WIN * 2 ** (len(MS_SSIM_WEIGHTS) - 1)  # 176


# The one normaliser: any accepted input -> float64 torch [N, C, H, W] on the 0..255 scale.
def _to_nchw255(x) -> Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            # Float numpy images come in both 0..1 and 0..255 conventions; refuse to guess.
            raise ValueError(f"numpy images must be uint8 (got {x.dtype}); pass floats as a torch tensor in [0, 1]")
        t = torch.from_numpy(x.astype(np.float64))  # a copy: read-only arrays (PIL, skimage.data) are fine
        if t.ndim == 2:  # [H, W]
            t = t[None, None]
        elif t.ndim == 3:  # [H, W, C]
            t = t.permute(2, 0, 1)[None]
        elif t.ndim != 4:  # [N, C, H, W] passes through
            raise ValueError(f"numpy image must be [H, W], [H, W, C] or [N, C, H, W], got shape {tuple(x.shape)}")
    elif isinstance(x, Tensor):
        if x.ndim != 4:
            raise ValueError(f"torch image must be [N, C, H, W], got shape {tuple(x.shape)}")
        t = x.detach().to(torch.float64)
        if x.is_floating_point():
            t = t * 255.0
    else:
        raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    if t.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(x.shape)} ({t.shape[1]} channels)")
    return t


def _y(x: Tensor) -> Tensor:
    # [N, 3, H, W] on 0..255 -> [N, 1, H, W]; the BT.601 coefficients are defined for RGB in [0, 1].
    w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return 16.0 + (x * w).sum(1, keepdim=True) / 255.0


def rgb_to_y(x) -> Tensor:
    """Luma Y of ITU-R BT.601 as in MATLAB's rgb2ycbcr / BasicSR: Y = 16 + 65.481 R + 128.553 G + 24.966 B.

    R, G, B are taken in [0, 1]; Y is on the 0..255 scale (16 for black, 235 for white), not rounded.
    Accepts the same inputs as the metrics and returns float64 [N, 1, H, W]; gray input is returned unchanged.
    """
    x = _to_nchw255(x)
    return _y(x) if x.shape[1] == 3 else x


def _prepare(a, b, crop_border: int, y_channel: bool, min_side: int, what: str) -> tuple[Tensor, Tensor]:
    ta, tb = _to_nchw255(a), _to_nchw255(b)
    if ta.shape != tb.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)} "
                         f"(as [N, C, H, W]: {tuple(ta.shape)} vs {tuple(tb.shape)})")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        ta = ta[..., crop_border:-crop_border, crop_border:-crop_border]
        tb = tb[..., crop_border:-crop_border, crop_border:-crop_border]
    h, w = ta.shape[-2:]
    if min(h, w) < min_side:
        raise ValueError(f"{what} needs images of at least {min_side}x{min_side} px; got {tuple(a.shape)}, "
                         f"{max(h, 0)}x{max(w, 0)} after crop_border={crop_border}")
    if y_channel and ta.shape[1] == 3:  # BasicSR's to_y_channel also leaves gray images alone
        ta, tb = _y(ta), _y(tb)
    return ta, tb


# PSNR with MAX = 255 on the float64 0..255 scale; the formula is core.imagemath.psnr (shared with projection).
def psnr(a, b, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Per-image PSNR in dB (data range 255), shape [N]. `inf` where the images are identical."""
    ta, tb = _prepare(a, b, crop_border, y_channel, 1, "PSNR")
    return imagemath.psnr(ta, tb, data_range=_L)


def _ssim_cs(ta: Tensor, tb: Tensor) -> tuple[Tensor, Tensor]:
    # Per-image means over channels and 'valid' positions of the SSIM map and of the contrast-structure map, [N] each.
    s, cs = imagemath.ssim_maps(ta, tb, _L)
    return s.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


# SSIM, Wang et al. 2004 eq. 13, 11x11 Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03, as BasicSR's _ssim.
def ssim(a, b, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Per-image SSIM, shape [N]: the SSIM map over 'valid' window positions, averaged over them and over channels."""
    ta, tb = _prepare(a, b, crop_border, y_channel, _WIN, "SSIM with an 11x11 window")
    return _ssim_cs(ta, tb)[0]


# MS-SSIM, Wang et al. 2003 eq. 7: l_M^b5 * prod_j cs_j^b_j over 5 scales, 2x2 average pooling between scales.
def ms_ssim(a, b, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Per-image multi-scale SSIM, shape [N], with the standard 5 weights and the SSIM window.

    Each scale's cs (and the last scale's full SSIM, luminance * cs) is averaged over 'valid' positions and
    channels before the weighted product. Needs a side of at least 176 px after the border crop.
    """
    ta, tb = _prepare(a, b, crop_border, y_channel, MS_SSIM_MIN_SIDE, "MS-SSIM (5 scales, 11x11 window)")
    out = torch.ones(ta.shape[0], dtype=ta.dtype, device=ta.device)
    for j, beta in enumerate(MS_SSIM_WEIGHTS):
        sim, cs = _ssim_cs(ta, tb)
        last = j == len(MS_SSIM_WEIGHTS) - 1
        # A negative mean cs raised to a fractional power is NaN; clamp at 0 as torchmetrics' normalize="relu" does.
        out = out * torch.relu(sim if last else cs) ** beta
        if not last:
            ta, tb = F.avg_pool2d(ta, 2), F.avg_pool2d(tb, 2)
    return out

