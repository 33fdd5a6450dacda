"""The ResNet-block generator of CycleGAN (Zhu et al. 2017, appx. 7.2), after Johnson et al. 2016.

c7s1-w, d2w, d4w, R4w x ``blocks``, u2w, uw, c7s1-out: a 7x7 conv with reflection padding, two 3x3 stride-2
downsamplings, residual blocks (two 3x3 convs with reflection padding, norm, ReLU between), two 3x3 stride-2
transposed convs back up, a 7x7 conv and tanh. 6 blocks for 128 px training, 9 for 256 px and above.

Fully convolutional: an input whose sides are not multiples of 4 is padded (reflect) and cropped back. The
receptive field is finite (``receptive_field``), so tiling is exact with BatchNorm in eval mode; InstanceNorm
normalises by each tile's own statistics, so tiles of an instance-norm model match the whole image only roughly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.unet_translator import norm_layer


class ResnetBlock(nn.Module):
    """x + conv-norm-ReLU-(dropout)-conv-norm (x), 3x3 convs with reflection padding."""

    def __init__(self, channels: int, norm: str, dropout: float, bias: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetTranslator(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, width=width, blocks=blocks, norm=norm,
                           dropout=dropout)
        self.in_channels, self.out_channels = in_channels, out_channels
        bias = norm != "batch"
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, w, 7, bias=bias),
                                   norm_layer(norm, w), nn.ReLU()]
        for k in range(2):  # d2w, d4w
            layers += [nn.Conv2d(w * 2**k, w * 2 ** (k + 1), 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, w * 2 ** (k + 1)), nn.ReLU()]
        layers += [ResnetBlock(4 * w, norm, dropout, bias) for _ in range(blocks)]
        for k in (2, 1):  # u2w, uw
            layers += [nn.ConvTranspose2d(w * 2**k, w * 2 ** (k - 1), 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       norm_layer(norm, w * 2 ** (k - 1)), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # Receptive-field radius in input pixels: 3 (c7) + 1 + 2 (the stride-2 3x3 convs) + 4 per 3x3 conv at 1/4
        # resolution (2 per block) + 2 + 1 (the transposed convs, at 1/4 and 1/2) + 3 (c7), plus the padding to a
        # multiple of 4 (< 4 px) a border pixel may reach through.
        radius = 3 + 1 + 2 + 8 * blocks + 2 + 1 + 3 + 3
        self.receptive_field = 2 * radius + 1

    def forward(self, x: Tensor) -> Tensor:
        """[N, in_channels, H, W] in [-1, 1] -> [N, out_channels, H, W] in (-1, 1)."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, \
            f"expected [N, {self.in_channels}, H, W], got {list(x.shape)}"
        h, w = x.shape[-2:]
        # Unconditional (a zero pad is a copy): an exported graph then pads any size, not only the example's.
        y = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect" if min(h, w) > 4 else "replicate")
        return self.model(y)[..., :h, :w]
