"""A residual CNN restorer, DnCNN-style (Zhang et al. 2017, "Beyond a Gaussian Denoiser").

conv3x3 + ReLU, (depth - 2) x [conv3x3 (+ BN) + ReLU], conv3x3. The body predicts the residual v = y - x
(the noise, for a denoiser), and the output is x_hat = y - v (residual learning, DnCNN sec. 3.2). Fully
convolutional with a receptive field of 2 * depth + 1 pixels, so it runs on any size and tiles cleanly.
"""

from __future__ import annotations

from torch import Tensor, nn


class ResCNN(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, depth: int = 17, batch_norm: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.config = dict(channels=channels, width=width, depth=depth, batch_norm=batch_norm)
        self.channels = channels
        self.receptive_field = 2 * depth + 1  # pixels; tiles must overlap by at least half of it
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        """Degraded [N, C, H, W] in [-1, 1] -> restored [N, C, H, W] (not clamped)."""
        assert y.ndim == 4 and y.shape[1] == self.channels, f"expected [N, {self.channels}, H, W], got {list(y.shape)}"
        return y - self.body(y)
