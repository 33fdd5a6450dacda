"""The pix2pix U-Net generator (Isola et al. 2017, sec. 3.2.1 and appx. 6.1.1), an encoder-decoder with skips.

Encoder: ``depth`` 4x4 stride-2 convs, C64-C128-C256-C512-C512-... (``width`` * 2**k capped at 8 * width), each
LeakyReLU(0.2) -> conv -> norm, no norm on the first conv nor on the innermost one (a 1x1 map at 256 px with
depth 8, where instance statistics are undefined). Decoder: ReLU -> 4x4 stride-2 transposed conv -> norm, with
dropout(0.5) on the three innermost decoder layers (the paper's CD512 x 3, ``dropout``), each concatenated with its
mirror encoder layer; the last layer maps to the output channels and tanh. The innermost layer is a 1x1
bottleneck when the input side is 2**depth (depth 8 at 256 px, 6 at 64 px): every output pixel sees the whole input.

This is its own file rather than an option of nets/unet.py (the restoration U-Net): that one is a residual
denoiser (3x3 double convs, max pooling, bilinear upsampling, output = input - v, no norm, no dropout) whose
near-identity start suits restoration; pix2pix's is the paper's strided-conv net with norm, dropout and a tanh
output over another channel count. Sharing one class would make every option change the other's numbers.

Inputs are padded (replicate) to a multiple of 2**depth and cropped back, so any size works; the padding and the
global bottleneck make the output depend on the whole image, so tiled inference is approximate (infer/translate.py
processes an image whole up to a pixel cap).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.layers import GemmConv2d, GemmConvTranspose2d, cat_channels

NORMS = ("batch", "instance", "none")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """BatchNorm (running statistics in eval mode), InstanceNorm (affine, no running statistics: the same in
    train and eval mode, as pix2pix's batch-size-1 BatchNorm at test time) or nothing."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


class UNetTranslator(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, depth: int = 8,
                 norm: str = "batch", dropout: float = 0.5):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        norm_layer(norm, 1)  # validates the name
        self.config = dict(in_channels=in_channels, out_channels=out_channels, width=width, depth=depth, norm=norm,
                           dropout=dropout)
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        widths = [width * min(2**k, 8) for k in range(depth)]  # encoder output channels, level k+1
        bias = norm != "batch"  # a conv followed by BatchNorm needs no bias (junyanz's use_bias)
        self.down = nn.ModuleList()
        for k in range(depth):
            c_in = in_channels if k == 0 else widths[k - 1]
            layers: list[nn.Module] = [] if k == 0 else [nn.LeakyReLU(0.2)]
            layers.append(GemmConv2d(c_in, widths[k], 4, stride=2, padding=1, bias=bias or k in (0, depth - 1)))
            if 0 < k < depth - 1:
                layers.append(norm_layer(norm, widths[k]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for k in reversed(range(depth)):  # the decoder layer that produces level k's resolution
            c_in = widths[k] if k == depth - 1 else 2 * widths[k]
            if k == 0:
                self.up.append(nn.Sequential(nn.ReLU(), GemmConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()))
                continue
            layers = [nn.ReLU(), GemmConvTranspose2d(c_in, widths[k - 1], 4, 2, 1, bias=bias),
                      norm_layer(norm, widths[k - 1])]
            if dropout > 0 and k >= depth - 3:  # the paper's CD512 x 3: the three innermost decoder layers
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: Tensor) -> Tensor:
        """[N, in_channels, H, W] in [-1, 1] -> [N, out_channels, H, W] in (-1, 1)."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, \
            f"expected [N, {self.in_channels}, H, W], got {list(x.shape)}"
        h, w = x.shape[-2:]
        m = 2**self.depth
        y = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")  # unconditional: an exported graph stays general
        skips = []
        for block in self.down:
            y = block(y)                                                     # [N, c_k, H/2^(k+1), W/2^(k+1)]
            skips.append(y)
        skips.pop()  # the innermost output goes straight up
        for k, block in enumerate(self.up):
            y = block(y if k == 0 else cat_channels([y, skips.pop()]))
        return y[..., :h, :w]                                                # [N, out_channels, H, W]
