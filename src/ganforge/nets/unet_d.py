"""The U-Net discriminator with spectral normalization of Real-ESRGAN (Wang et al. 2021, "Real-ESRGAN", sec. 3.3,
fig. 6): a real/fake score per pixel.

conv0 3x3 + LReLU; three SN conv4x4 stride-2 downsamplings (x2, x4, x8 width); three bilinear x2 upsamplings, each
followed by an SN conv3x3 + LReLU and a skip addition from the encoder; two SN conv3x3 + LReLU; conv 3x3 -> 1.
Spectral norm (Miyato et al. 2018) via torch.nn.utils.parametrizations.spectral_norm.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

_SLOPE = 0.2


def _sn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=False))


class UNetDiscriminator(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, skip: bool = True):
        super().__init__()
        self.config = dict(channels=channels, width=width, skip=skip)
        self.channels, self.skip = channels, skip
        w = width
        self.conv0 = nn.Conv2d(channels, w, 3, 1, 1)
        self.down = nn.ModuleList([_sn(w, 2 * w, 4, 2), _sn(2 * w, 4 * w, 4, 2), _sn(4 * w, 8 * w, 4, 2)])
        self.up = nn.ModuleList([_sn(8 * w, 4 * w, 3, 1), _sn(4 * w, 2 * w, 3, 1), _sn(2 * w, w, 3, 1)])
        self.extra = nn.ModuleList([_sn(w, w, 3, 1), _sn(w, w, 3, 1)])
        self.conv_last = nn.Conv2d(w, 1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Images [N, C, H, W] in [-1, 1], H and W multiples of 8 -> per-pixel scores [N, 1, H, W] (logits)."""
        assert x.ndim == 4 and x.shape[1] == self.channels and x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0, \
            f"expected [N, {self.channels}, H, W] with H, W multiples of 8, got {list(x.shape)}"
        feats = [F.leaky_relu(self.conv0(x), _SLOPE)]                                  # [N, w, H, W]
        for conv in self.down:
            feats.append(F.leaky_relu(conv(feats[-1]), _SLOPE))                        # [N, 2^k w, H/2^k, W/2^k]
        h = feats.pop()                                                                # [N, 8w, H/8, W/8]
        for conv in self.up:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = F.leaky_relu(conv(h), _SLOPE)
            skip = feats.pop()
            if self.skip:
                h = h + skip                                                           # [N, 2^k w, H/2^k, W/2^k]
        for conv in self.extra:
            h = F.leaky_relu(conv(h), _SLOPE)
        return self.conv_last(h)                                                       # [N, 1, H, W]
