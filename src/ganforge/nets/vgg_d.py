"""The VGG-style classifier discriminator of SRGAN/ESRGAN (Ledig et al. 2017, "SRGAN", fig. 4; BasicSR's
VGGStyleDiscriminator): real/fake score per image.

conv0 3x3 + LReLU, then ``stages`` stages of [conv3x3 stride 1 (+ BN) + LReLU, conv4x4 stride 2 (+ BN) + LReLU]
(the first stage has the stride-2 conv only after conv0), widths doubling to at most 8 x width; global average
pooling (instead of BasicSR's flatten of a fixed 4x4 map, so any input >= 2**stages px works) and a
linear(100) + LReLU + linear(1) head.
"""

from __future__ import annotations

from torch import Tensor, nn

_SLOPE = 0.2


def _block(c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [nn.LeakyReLU(_SLOPE, inplace=True)]


class VGGDiscriminator(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, stages: int = 5, batch_norm: bool = True):
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.config = dict(channels=channels, width=width, stages=stages, batch_norm=batch_norm)
        self.channels, self.min_size = channels, 2**stages
        widths = [width * min(2**k, 8) for k in range(stages)]
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(_SLOPE, inplace=True)]
        layers += _block(width, width, 4, 2, batch_norm)
        for k in range(1, stages):
            layers += _block(widths[k - 1], widths[k], 3, 1, batch_norm)
            layers += _block(widths[k], widths[k], 4, 2, batch_norm)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(widths[-1], 100), nn.LeakyReLU(_SLOPE, inplace=True), nn.Linear(100, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Images [N, C, H, W] in [-1, 1], H and W >= 2**stages -> scores [N] (logits)."""
        assert x.ndim == 4 and x.shape[1] == self.channels and min(x.shape[-2:]) >= self.min_size, \
            f"expected [N, {self.channels}, H, W] with H, W >= {self.min_size}, got {list(x.shape)}"
        f = self.features(x).mean((2, 3))                                              # [N, F]
        return self.head(f).squeeze(1)                                                 # [N]
