"""A U-Net denoising autoencoder (Ronneberger et al. 2015, "U-Net", fig. 1), a same-size restorer.

``levels`` max-pool downsamplings; each level is (conv3x3-ReLU-conv3x3-ReLU) at width * 2**level channels; the
decoder upsamples bilinearly, concatenates the encoder's skip and applies the level's double conv; a 1x1 conv
predicts the residual v and the output is y - v (residual learning as DnCNN, so an untrained net is near the
identity). Inputs are padded (replicate) to a multiple of 2**levels and cropped back, so any size works.
Max pooling is not shift-equivariant: tiled output matches the whole-image output only approximately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_OUT_INIT_SCALE = 0.1  # the 1x1 output conv starts small: the net starts near the identity


class DoubleConv(nn.Module):
    """conv3x3-ReLU-conv3x3-ReLU (U-Net fig. 1; padded convs so sizes are kept)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, levels: int = 4):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.config = dict(channels=channels, width=width, levels=levels)
        self.channels, self.levels = channels, levels
        widths = [width * 2**k for k in range(levels + 1)]
        self.down = nn.ModuleList([DoubleConv(channels, widths[0])] +
                                  [DoubleConv(widths[k - 1], widths[k]) for k in range(1, levels + 1)])
        self.up = nn.ModuleList([DoubleConv(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(levels))])
        self.out = nn.Conv2d(widths[0], channels, 1)
        self.out.weight.data.mul_(_OUT_INIT_SCALE)
        self.out.bias.data.mul_(_OUT_INIT_SCALE)
        # Receptive-field radius in input pixels, an upper bound. A level-k pixel stands for a 2**k block: each 3x3
        # conv there adds 2**k, pooling adds nothing beyond the block, a bilinear x2 up to level k adds 3 * 2**k
        # (the neighbouring coarse blocks). Encoder + bottleneck 2 * (2**(L+1) - 1), decoder 5 * (2**L - 1), and
        # the replicate padding (< 2**L px) lets a border pixel reach that much farther.
        radius = 2 * (2 ** (levels + 1) - 1) + 5 * (2**levels - 1) + 2**levels
        self.receptive_field = 2 * radius + 1  # pixels; tiles must overlap by at least half of it

    def forward(self, y: Tensor) -> Tensor:
        """Degraded [N, C, H, W] in [-1, 1] -> restored [N, C, H, W] (not clamped)."""
        assert y.ndim == 4 and y.shape[1] == self.channels, f"expected [N, {self.channels}, H, W], got {list(y.shape)}"
        h, w = y.shape[-2:]
        m = 2**self.levels
        x = F.pad(y, (0, -w % m, 0, -h % m), mode="replicate")                         # [N, C, H', W'], H' % m = 0
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))                             # [N, w*2^k, H'/2^k, W'/2^k]
            skips.append(x)
        skips.pop()  # the bottleneck
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], 1))                                  # [N, w*2^k, H'/2^k, W'/2^k]
        v = self.out(x)[..., :h, :w]                                                   # [N, C, H, W]
        return y - v
