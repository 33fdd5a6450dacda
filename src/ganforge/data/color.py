"""sRGB <-> CIE L*a*b* (D65) in torch, for colorization: the `lab` derive op feeds a model the lightness L*, and
the translate pipeline puts the input's own L* back under the model's colours (infer/translate.py).

Images are float [N, C, H, W] in [-1, 1] as everywhere in ganforge; Lab values are in their usual units (L* in
0..100, a* and b* roughly -128..127). Formulas: IEC 61966-2-1 (sRGB transfer curve), the sRGB/D65 XYZ matrix,
and CIE 1976 L*a*b* with the linear segment below (6/29)^3. Gray input (1 channel) is taken as R = G = B.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_XYZ_TO_RGB = tuple(map(tuple, np.linalg.inv(np.array(_RGB_TO_XYZ)).tolist()))  # a constant: exportable graphs
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0


def _rgb3(x: Tensor) -> Tensor:
    # [N, C, H, W] in [-1, 1] -> [N, 3, H, W] in [0, 1]: gray replicated, alpha dropped.
    x = (x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)).float()
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def _linear(u: Tensor) -> Tensor:  # sRGB transfer curve, inverted (IEC 61966-2-1)
    return torch.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055) ** 2.4)


def _gamma(v: Tensor) -> Tensor:  # linear -> sRGB
    v = v.clamp(min=0.0)
    return torch.where(v <= 0.0031308, 12.92 * v, 1.055 * v.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _f(t: Tensor) -> Tensor:  # CIE 1976: t^(1/3) above (6/29)^3, linear below
    return torch.where(t > _DELTA**3, t.clamp(min=_DELTA**3) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)


def _f_inv(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4 / 29))


def rgb_to_lab(x: Tensor) -> Tensor:
    """[N, C, H, W] in [-1, 1] (C = 1, 3 or 4) -> Lab [N, 3, H, W]: L* in 0..100, a*, b*."""
    m = torch.tensor(_RGB_TO_XYZ, dtype=torch.float32, device=x.device)
    xyz = torch.einsum("rc,nchw->nrhw", m, _linear(_rgb3(x)))
    white = torch.tensor(_WHITE_D65, dtype=torch.float32, device=x.device)[None, :, None, None]
    fx, fy, fz = _f(xyz / white).unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Lab [N, 3, H, W] -> sRGB [N, 3, H, W] in [-1, 1], out-of-gamut colours clipped."""
    lightness, a, b = lab.float().unbind(1)
    fy = (lightness + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    white = torch.tensor(_WHITE_D65, dtype=torch.float32, device=lab.device)[None, :, None, None]
    xyz = _f_inv(f) * white
    m_inv = torch.tensor(_XYZ_TO_RGB, dtype=torch.float32, device=lab.device)
    rgb = _gamma(torch.einsum("rc,nchw->nrhw", m_inv, xyz)).clamp(0.0, 1.0)
    return rgb * 2.0 - 1.0


def lightness(x: Tensor) -> Tensor:
    """L* of [N, C, H, W] in [-1, 1] as one channel [N, 1, H, W] in [-1, 1] (L* / 50 - 1)."""
    return (rgb_to_lab(x)[:, :1] / 50.0 - 1.0).to(x.dtype)


def keep_lightness(source: Tensor, colored: Tensor) -> Tensor:
    """``colored``'s a*b* under ``source``'s L*: [N, 3, H, W] in [-1, 1]. A colorizer's output then never
    changes the photo's tones, only adds colour (the L -> ab formulation of Zhang et al. 2016 at inference)."""
    lab = rgb_to_lab(colored)
    return lab_to_rgb(torch.cat([rgb_to_lab(source)[:, :1], lab[:, 1:]], 1))
