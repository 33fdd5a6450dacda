"""Context Encoder (Pathak et al. 2016, "Context Encoders: Feature Learning by Inpainting"), the inpainting baseline.

Generator (sec. 3.1, fig. 2): an encoder of ``levels`` conv4x4 stride-2 + BN + LeakyReLU(0.2) blocks (the paper's
released code is DCGAN-like, not AlexNet), a bottleneck, and a decoder of ``levels`` up-convolutions
(ConvTranspose4x4 stride 2 + BN + ReLU) back to the input size, tanh at the end. It sees the image with the hole
filled with 0 and the mask as one more channel, and predicts every pixel; the task composites the hole.

Departure: the paper's bottleneck is a channel-wise fully connected layer, whose weights depend on the input size
(each channel's n x n map is fully connected to itself). To run one network at any size divisible by
2^levels, the bottleneck here is a 3x3 conv to ``bottleneck`` channels plus a global context: the spatial mean of
every bottleneck channel, mixed by a 1x1 conv and added at every location, which also connects every location to
every other one within a channel's information.

Discriminator (sec. 3.2): the DCGAN-style D of the released code, conv4x4 stride 2 + BN + LeakyReLU, on whole
images (the task gives it composites), ending in one logit per image (the mean of a 1-channel conv map).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_SLOPE = 0.2


class ContextEncoder(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, levels: int = 4, bottleneck: int = 512,
                 max_width: int = 512):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.config = dict(channels=channels, width=width, levels=levels, bottleneck=bottleneck, max_width=max_width)
        self.channels, self.stride = channels, 2**levels
        widths = [min(width * 2**k, max_width) for k in range(levels)]                  # channels after block k
        enc: list[nn.Module] = []
        c_in = channels + 1
        for k, c in enumerate(widths):
            enc.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=k == 0))
            if k > 0:  # DCGAN: no BN on the first layer
                enc.append(nn.BatchNorm2d(c))
            enc.append(nn.LeakyReLU(_SLOPE, inplace=True))
            c_in = c
        self.encoder = nn.Sequential(*enc)
        self.bottleneck = nn.Sequential(nn.Conv2d(c_in, bottleneck, 3, 1, 1, bias=False), nn.BatchNorm2d(bottleneck),
                                        nn.LeakyReLU(_SLOPE, inplace=True))
        self.context = nn.Conv2d(bottleneck, bottleneck, 1)
        dec: list[nn.Module] = []
        c_in = bottleneck
        outs = list(reversed(widths[:-1])) + [channels]
        for k, c in enumerate(outs):
            last = k == len(outs) - 1
            dec.append(nn.ConvTranspose2d(c_in, c, 4, 2, 1, bias=last))
            if not last:
                dec += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.decoder = nn.Sequential(*dec)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """image [N, C, H, W] in [-1, 1] (hole pixels are ignored), mask [N, 1, H, W] (1 = hole), H and W multiples
        of 2^levels -> prediction [N, C, H, W] in [-1, 1] for every pixel."""
        n, c, h, w = image.shape
        assert c == self.channels and mask.shape == (n, 1, h, w), \
            f"expected image [N, {self.channels}, H, W] and mask [N, 1, H, W], got {list(image.shape)}, " \
            f"{list(mask.shape)}"
        assert h % self.stride == 0 and w % self.stride == 0, f"H and W must be multiples of {self.stride}, got {h}x{w}"
        x = torch.cat([image * (1 - mask), mask], 1)                                    # [N, C+1, H, W]
        z = self.bottleneck(self.encoder(x))                                            # [N, B, H/s, W/s]
        z = z + self.context(z.mean((2, 3), keepdim=True))                              # global context, [N, B, 1, 1]
        return torch.tanh(self.decoder(z))                                              # [N, C, H, W]


class ContextEncoderD(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, levels: int = 4, max_width: int = 512):
        super().__init__()
        self.config = dict(channels=channels, width=width, levels=levels, max_width=max_width)
        self.channels = channels
        layers: list[nn.Module] = []
        c_in = channels
        for k in range(levels):
            c = min(width * 2**k, max_width)
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=k == 0))
            if k > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(_SLOPE, inplace=True))
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Images [N, C, H, W] in [-1, 1] -> one logit per image [N]."""
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected [N, {self.channels}, H, W], got {list(x.shape)}"
        return self.net(x).mean((1, 2, 3))                                              # [N]
