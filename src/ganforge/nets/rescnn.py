"""A residual CNN restorer, DnCNN-style (Zhang et al. 2017, "Beyond a Gaussian Denoiser").

conv3x3 + ReLU, (depth - 2) x [conv3x3 (+ BN) + ReLU], conv3x3. The body predicts the residual v = y - x
(the noise, for a denoiser), and the output is x_hat = y - v (residual learning, DnCNN sec. 3.2). Fully
convolutional with a receptive field of 2 * depth + 1 pixels, so it runs on any size and tiles cleanly.

``noise_map=True`` is the non-blind variant (FFDNet-style, Zhang et al. 2018, "FFDNet", sec. III-B): one more input
channel holds the noise level sigma / 255 at every pixel, and forward takes ``sigma``; the body still predicts the
residual of the image channels only. The default (blind) net is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResCNN(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, depth: int = 17, batch_norm: bool = True,
                 noise_map: bool = False):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.config = dict(channels=channels, width=width, depth=depth, batch_norm=batch_norm)
        if noise_map:  # only when set: blind snapshots keep the config they always had
            self.config["noise_map"] = True
        self.channels, self.noise_map = channels, noise_map
        self.receptive_field = 2 * depth + 1  # pixels; tiles must overlap by at least half of it
        layers: list[nn.Module] = [nn.Conv2d(channels + int(noise_map), width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, y: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """Degraded [N, C, H, W] in [-1, 1] -> restored [N, C, H, W] (not clamped). With ``noise_map``, ``sigma`` is
        the noise standard deviation in 0-255 units, a float or [N]; the blind net takes none."""
        assert y.ndim == 4 and y.shape[1] == self.channels, f"expected [N, {self.channels}, H, W], got {list(y.shape)}"
        if not self.noise_map:
            assert sigma is None, "this ResCNN is blind (noise_map=False): it takes no sigma"
            return y - self.body(y)
        assert sigma is not None, "this ResCNN is non-blind (noise_map=True): pass sigma (0-255 units)"
        s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1)          # [N] or [1]
        assert s.shape[0] in (1, y.shape[0]), f"sigma must be a float or [N={y.shape[0]}], got {list(s.shape)}"
        m = (s / 255).reshape(-1, 1, 1, 1).expand(y.shape[0], 1, *y.shape[-2:])        # [N, 1, H, W]
        return y - self.body(torch.cat([y, m], 1))
