"""ResNet SNGAN (Miyato et al. 2018, appendix B, the CIFAR-10 ResNet) with a projection discriminator
(Miyato & Koyama 2018) or an AC-GAN class head (Odena et al. 2017).

Channel plan as in dcgan.py: ``width`` channels at full resolution, doubling per halving up to ``max_width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.layers import ConditionalBatchNorm2d, channels_at, check_labels, resolution_plan, sn

CONDITIONINGS = ("none", "projection", "acgan")


# Miyato et al. 2018 (official chainer code) initialise residual convs with xavier_uniform(gain=sqrt(2))
# (they follow a ReLU) and shortcuts, linears and embeddings with gain 1. Called before spectral norm wraps.
def _xavier(module: nn.Module, gain: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


class GBlock(nn.Module):
    """Generator residual block, 2x nearest upsampling: [N, c_in, H, W] -> [N, c_out, 2H, 2W]."""

    # Miyato et al. 2018, fig. 8a: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up-conv1.
    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2))
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor, c: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        # A 1x1 conv commutes with nearest upsampling; convolving first is 4x cheaper.
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class OptimizedDBlock(nn.Module):
    """First discriminator block, 2x average-pool downsampling: [N, c_in, H, W] -> [N, c_out, H/2, W/2]."""

    # Miyato et al. 2018, appendix B: conv3-ReLU-conv3-avgpool (no ReLU on the image), shortcut avgpool-conv1.
    def __init__(self, c_in: int, c_out: int, spectral_norm: bool):
        super().__init__()
        self.conv1 = sn(_xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2)), spectral_norm)
        self.conv2 = sn(_xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2)), spectral_norm)
        self.shortcut = sn(_xavier(nn.Conv2d(c_in, c_out, 1)), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    """Discriminator residual block: [N, c_in, H, W] -> [N, c_out, H', W'], H' = H/2 if downsample else H."""

    # Miyato et al. 2018, fig. 8b: ReLU-conv3-ReLU-conv3-avgpool, shortcut conv1-avgpool (or identity).
    def __init__(self, c_in: int, c_out: int, downsample: bool, spectral_norm: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1 = sn(_xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2)), spectral_norm)
        self.conv2 = sn(_xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2)), spectral_norm)
        learnable = downsample or c_in != c_out
        self.shortcut = sn(_xavier(nn.Conv2d(c_in, c_out, 1)), spectral_norm) if learnable else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        s = self.shortcut(x) if self.shortcut is not None else x
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class Generator(nn.Module):
    """ResNet SNGAN generator: ``G(z [N, z_dim], c [N] | None) -> x [N, channels, res, res]`` in [-1, 1].

    Linear z -> ``r0 x r0``, ``n`` upsampling GBlocks, then BN-ReLU-conv3-tanh. With ``num_classes > 0`` the
    block BNs are ConditionalBatchNorm2d and ``c`` is required.
    """

    def __init__(
        self,
        z_dim: int = 128,
        resolution: int = 32,
        channels: int = 3,
        width: int = 64,
        max_width: int = 512,
        num_classes: int = 0,
    ):
        super().__init__()
        self.config = dict(
            z_dim=z_dim,
            resolution=resolution,
            channels=channels,
            width=width,
            max_width=max_width,
            num_classes=num_classes,
        )
        r0, n_up = resolution_plan(resolution)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.num_classes = num_classes
        self.r0, self.c0 = r0, channels_at(n_up, width, max_width)

        self.project = _xavier(nn.Linear(z_dim, self.c0 * r0 * r0))
        self.blocks = nn.ModuleList()
        for level in range(n_up, 0, -1):
            c_in, c_out = channels_at(level, width, max_width), channels_at(level - 1, width, max_width)
            self.blocks.append(GBlock(c_in, c_out, num_classes))
        self.bn = nn.BatchNorm2d(width)
        self.to_image = _xavier(nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"expected z [N, {self.z_dim}], got {list(z.shape)}"
        check_labels(c, z.shape[0], self.num_classes, "sngan.Generator")
        h = self.project(z).view(-1, self.c0, self.r0, self.r0)  # [N, C0, r0, r0]
        for block in self.blocks:
            h = block(h, c)  # [N, C_l, 2H, 2W]
        return torch.tanh(self.to_image(F.relu(self.bn(h))))  # [N, channels, resolution, resolution]


class Discriminator(nn.Module):
    """ResNet SNGAN discriminator: ``D(x [N, C, res, res], c [N] | None) -> (score [N], logits | None)``.

    An optimized block then ``n - 1`` downsampling DBlocks reach ``r0 x r0``; one more DBlock at ``r0`` (the
    CIFAR net also ends with unstrided blocks), ReLU, global sum pooling and a linear score. Spectral norm on
    every layer (``spectral_norm=False`` only for ablations). ``cond="projection"``: + ``<embed(c), h>``
    (Miyato & Koyama 2018); ``cond="acgan"``: class logits head (Odena et al. 2017); ``"none"`` ignores ``c``.
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 3,
        width: int = 64,
        max_width: int = 512,
        num_classes: int = 0,
        cond: str = "none",
        spectral_norm: bool = True,
    ):
        super().__init__()
        self.config = dict(
            resolution=resolution,
            channels=channels,
            width=width,
            max_width=max_width,
            num_classes=num_classes,
            cond=cond,
            spectral_norm=spectral_norm,
        )
        _, n_down = resolution_plan(resolution)
        if cond not in CONDITIONINGS:
            raise ValueError(f"unknown cond {cond!r}; valid: {', '.join(CONDITIONINGS)}")
        if cond != "none" and num_classes < 1:
            raise ValueError(f"cond={cond!r} needs num_classes >= 1, got {num_classes}")
        self.resolution, self.channels, self.num_classes, self.cond = resolution, channels, num_classes, cond

        blocks: list[nn.Module] = [OptimizedDBlock(channels, channels_at(0, width, max_width), spectral_norm)]
        for level in range(1, n_down):
            c_in, c_out = channels_at(level - 1, width, max_width), channels_at(level, width, max_width)
            blocks.append(DBlock(c_in, c_out, downsample=True, spectral_norm=spectral_norm))
        feature_dim = channels_at(n_down - 1, width, max_width)
        blocks.append(DBlock(feature_dim, feature_dim, downsample=False, spectral_norm=spectral_norm))
        self.blocks = nn.Sequential(*blocks)
        self.score = sn(_xavier(nn.Linear(feature_dim, 1)), spectral_norm)
        self.embed, self.classify = None, None
        if cond == "projection":
            self.embed = sn(_xavier(nn.Embedding(num_classes, feature_dim)), spectral_norm)  # V
        if cond == "acgan":
            self.classify = sn(_xavier(nn.Linear(feature_dim, num_classes)), spectral_norm)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        expected = (self.channels, self.resolution, self.resolution)
        assert x.ndim == 4 and tuple(x.shape[1:]) == expected, (
            f"expected x [N, {', '.join(map(str, expected))}], got {list(x.shape)}"
        )
        if self.cond == "projection":
            check_labels(c, x.shape[0], self.num_classes, "sngan.Discriminator(cond='projection')")
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # phi(x), global sum pooling: [N, C]
        score = self.score(h).squeeze(1)  # psi(phi(x)): [N]
        if self.embed is not None:
            # Miyato & Koyama 2018, eq. 3: f(x, y) = y^T V phi(x) + psi(phi(x)).
            score = score + (self.embed(c) * h).sum(dim=1)
        logits = self.classify(h) if self.classify is not None else None  # [N, K]
        return score, logits
