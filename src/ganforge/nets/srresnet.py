"""MSRResNet: BasicSR's modified SRResNet (Wang et al. 2018, "ESRGAN", sec. 3.1; Ledig et al. 2017, "SRGAN",
fig. 4), a PSNR-oriented super-resolution network.

conv_first + LReLU, N residual blocks without BN (conv-ReLU-conv, residual scaling 1), pixel-shuffle upsampling
(x2 or x3 in one stage, x4 as two x2 stages, each conv + shuffle + LReLU), conv_hr + LReLU, conv_last; the
bilinearly upsampled input is added to the output, so the body learns the residual over bilinear upsampling.
Removing BN (ESRGAN sec. 3.1) keeps the network fully convolutional and exact under tiling.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

_SCALES = (2, 3, 4)
_INIT_SCALE = 0.1  # BasicSR's default_init_weights: Kaiming-normal weights scaled by 0.1, zero biases


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    nn.init.kaiming_normal_(conv.weight)
    conv.weight.data.mul_(_INIT_SCALE)
    nn.init.zeros_(conv.bias)
    return conv


class ResidualBlockNoBN(nn.Module):
    """x + conv(ReLU(conv(x))) (EDSR/ESRGAN: no BN; residual scaling 1)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.conv2 = _conv(width, width), _conv(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, blocks: int = 16, scale: int = 4):
        super().__init__()
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, _SCALES))}, got {scale}")
        self.config = dict(channels=channels, width=width, blocks=blocks, scale=scale)
        self.channels, self.scale = channels, scale
        stages = [2, 2] if scale == 4 else [scale]  # pixel-shuffle factors
        self.conv_first = _conv(channels, width)
        self.body = nn.Sequential(*[ResidualBlockNoBN(width) for _ in range(blocks)])
        self.upconvs = nn.ModuleList([_conv(width, width * r * r) for r in stages])
        self.shuffles = nn.ModuleList([nn.PixelShuffle(r) for r in stages])
        self.conv_hr = _conv(width, width)
        self.conv_last = _conv(width, channels)
        # Receptive-field radius in input pixels: a 3x3 conv at k-times resolution reaches 1/k input pixel.
        # conv_first 1, 2 per block, each upconv at the resolution it runs at, conv_hr and conv_last at scale;
        # the bilinear skip reaches 1 input pixel, less than all of these.
        radius, res = 1 + 2 * blocks, 1
        for r in stages:
            radius, res = radius + 1 / res, res * r
        radius += 2 / scale
        self.receptive_field = 2 * math.ceil(radius) + 1  # pixels; tiles must overlap by at least half of it

    def forward(self, x: Tensor) -> Tensor:
        """Low-resolution [N, C, h, w] in [-1, 1] -> [N, C, h*scale, w*scale] (not clamped)."""
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected [N, {self.channels}, h, w], got {list(x.shape)}"
        h, w = x.shape[-2:]
        feat = F.leaky_relu(self.conv_first(x), 0.1)                                       # [N, F, h, w]
        out = self.body(feat)
        for up, shuffle in zip(self.upconvs, self.shuffles, strict=True):
            out = F.leaky_relu(shuffle(up(out)), 0.1)                                      # [N, F, h*r, w*r]
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))                         # [N, C, h*s, w*s]
        base = F.interpolate(x, size=(h * self.scale, w * self.scale), mode="bilinear", align_corners=False)
        return out + base
