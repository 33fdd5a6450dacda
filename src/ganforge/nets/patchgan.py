"""The PatchGAN discriminator of pix2pix and CycleGAN (Isola et al. 2017, sec. 3.2.2 and appx. 6.1.2).

``layers=3`` is the 70x70 PatchGAN: C64-C128-C256-C512 (4x4 convs, stride 2 except the last, LeakyReLU 0.2, no
norm on the first), then a 4x4 conv to one score per patch; each score sees a 70x70 window of the input.
``layers=0`` is the 1x1 "PixelGAN": 1x1 convs C64-C128 and a 1x1 score, one per pixel (it judges colour, not
structure). The input is concat(A, B) for pix2pix (a conditional D) and B alone for CycleGAN.

Output: raw scores [N, 1, h, w] (logits for the vanilla loss); losses average over every patch.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.nets.layers import GemmConv2d
from ganforge.nets.unet_translator import norm_layer


def patch_receptive_field(layers: int) -> int:
    """Side in input pixels of the window one score sees: 70 for layers=3, 1 for the pixel variant."""
    if layers == 0:
        return 1
    # Backwards from one output pixel: the final and the stride-1 4x4 convs, then `layers` stride-2 4x4 convs.
    rf = 1
    for stride in [1, 1] + [2] * layers:
        rf = (rf - 1) * stride + 4
    return rf


class PatchGAN(nn.Module):
    def __init__(self, in_channels: int = 6, width: int = 64, layers: int = 3, norm: str = "batch"):
        super().__init__()
        if not 0 <= layers <= 6:
            raise ValueError(f"layers must be in 0..6 (0 = the 1x1 pixel variant, 3 = 70x70), got {layers}")
        self.config = dict(in_channels=in_channels, width=width, layers=layers, norm=norm)
        self.in_channels = in_channels
        bias = norm != "batch"
        if layers == 0:  # PixelGAN
            body: list[nn.Module] = [nn.Conv2d(in_channels, width, 1), nn.LeakyReLU(0.2),
                                     nn.Conv2d(width, 2 * width, 1, bias=bias), norm_layer(norm, 2 * width),
                                     nn.LeakyReLU(0.2), nn.Conv2d(2 * width, 1, 1, bias=bias)]
        else:
            # GemmConv2d: the 16x16 and 15x15 maps of a 128 px input run as NHWC matrix products on the CPU
            # (nets/gemm_conv.py); the 1-channel score conv stays oneDNN's, faster for a single output channel.
            body = [GemmConv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = width
            for k in range(1, layers + 1):  # stride 2 for k < layers, then one stride-1 layer
                c_out = width * min(2**k, 8)
                body += [GemmConv2d(c, c_out, 4, stride=2 if k < layers else 1, padding=1, bias=bias),
                         norm_layer(norm, c_out), nn.LeakyReLU(0.2)]
                c = c_out
            body.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*body)
        self.receptive_field = patch_receptive_field(layers)

    def forward(self, x: Tensor) -> Tensor:
        """[N, in_channels, H, W] -> patch scores [N, 1, h, w]."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, \
            f"expected [N, {self.in_channels}, H, W], got {list(x.shape)}"
        return self.model(x)
