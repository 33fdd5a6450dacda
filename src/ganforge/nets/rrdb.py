"""RRDBNet: the ESRGAN generator (Wang et al. 2018, "ESRGAN", sec. 3.1, fig. 4), a super-resolution network of
Residual-in-Residual Dense Blocks.

conv_first, N RRDBs (each 3 residual dense blocks of 5 convs with dense connections of ``growth`` channels,
LReLU 0.2, residual scaling 0.2), conv_body, a long skip from conv_first; upsampling by nearest x2 + conv + LReLU
(x2 once, x4 twice; x3 one nearest x3 stage), conv_hr + LReLU, conv_last. No BN (ESRGAN sec. 3.1), so the network
is fully convolutional and exact under tiling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_SCALES = (2, 3, 4)
_BETA = 0.2        # residual scaling (ESRGAN sec. 3.1)
_INIT_SCALE = 0.1  # BasicSR's default_init_weights for the dense blocks: Kaiming-normal x 0.1, zero biases


def _conv(c_in: int, c_out: int, init_scale: float | None = None) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    if init_scale is not None:
        nn.init.kaiming_normal_(conv.weight)
        conv.weight.data.mul_(init_scale)
        nn.init.zeros_(conv.bias)
    return conv


class ResidualDenseBlock(nn.Module):
    """5 densely connected convs (each sees x and all earlier outputs); x + 0.2 * conv5(...) (ESRGAN fig. 4)."""

    def __init__(self, width: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList([_conv(width + i * growth, growth if i < 4 else width, _INIT_SCALE)
                                    for i in range(5)])

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))                 # [N, G, H, W]
        return x + _BETA * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in residual: x + 0.2 * RDB(RDB(RDB(x))) (ESRGAN fig. 4)."""

    def __init__(self, width: int, growth: int):
        super().__init__()
        self.rdbs = nn.Sequential(*[ResidualDenseBlock(width, growth) for _ in range(3)])

    def forward(self, x: Tensor) -> Tensor:
        return x + _BETA * self.rdbs(x)


class RRDBNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, blocks: int = 23, growth: int = 32, scale: int = 4):
        super().__init__()
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, _SCALES))}, got {scale}")
        self.config = dict(channels=channels, width=width, blocks=blocks, growth=growth, scale=scale)
        self.channels, self.scale = channels, scale
        self.stages = [2, 2] if scale == 4 else [scale]  # nearest-neighbour factors
        self.conv_first = _conv(channels, width)
        self.body = nn.Sequential(*[RRDB(width, growth) for _ in range(blocks)])
        self.conv_body = _conv(width, width)
        self.upconvs = nn.ModuleList([_conv(width, width) for _ in self.stages])
        self.conv_hr = _conv(width, width)
        self.conv_last = _conv(width, channels)
        # Receptive-field radius in input pixels, an upper bound: conv_first 1, 5 per RDB along the longest dense
        # path (15 per RRDB), conv_body 1, each upconv 1 / (the resolution it runs at), conv_hr and conv_last
        # 1 / scale each; nearest upsampling adds nothing.
        radius, res = 2 + 15 * blocks, 1
        for r in self.stages:
            res *= r
            radius += 1 / res
        radius += 2 / scale
        self.receptive_field = 2 * math.ceil(radius) + 1  # pixels; tiles must overlap by at least half of it

    def forward(self, x: Tensor) -> Tensor:
        """Low-resolution [N, C, h, w] in [-1, 1] -> [N, C, h*scale, w*scale] (not clamped)."""
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected [N, {self.channels}, h, w], got {list(x.shape)}"
        feat = self.conv_first(x)                                                      # [N, F, h, w]
        feat = feat + self.conv_body(self.body(feat))
        for r, up in zip(self.stages, self.upconvs, strict=True):
            feat = F.leaky_relu(up(F.interpolate(feat, scale_factor=r, mode="nearest")), 0.2)  # [N, F, h*r, w*r]
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))                   # [N, C, h*s, w*s]
