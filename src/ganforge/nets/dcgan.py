"""DCGAN (Radford et al. 2015), optionally class-conditional, with projection or AC-GAN discriminator heads.

Channel plan: level 0 is the full resolution and has ``width`` channels; each halving of the resolution
doubles the channels up to ``max_width`` (see ``layers.channels_at``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.layers import ConditionalBatchNorm2d, channels_at, check_labels, resolution_plan, sn

CONDITIONINGS = ("none", "projection", "acgan")


# Radford et al. 2015, sec. 4 "Details of adversarial training": all weights from N(0, 0.02).
# Applied layer by layer, before spectral norm wraps a layer (afterwards `weight` is recomputed from a hidden
# parameter). Conditional BN keeps its own identity init (gamma = 1, beta = 0).
def _dcgan_init(m: nn.Module) -> nn.Module:
    if isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
    else:
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    return m


class Generator(nn.Module):
    """DCGAN generator: ``G(z [N, z_dim], c [N] | None) -> x [N, channels, res, res]`` in [-1, 1].

    z is projected to ``r0 x r0`` (linear + BN + ReLU), upsampled ``n`` times by stride-2 4x4 transposed
    convolutions (+ BN + ReLU), then mapped to ``channels`` by a 3x3 conv and tanh. With ``num_classes > 0``
    every BN is a ConditionalBatchNorm2d and ``c`` is required.
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

        # The BN right after each linear/conv makes their biases redundant.
        self.project = _dcgan_init(nn.Linear(z_dim, self.c0 * r0 * r0, bias=False))
        self.project_bn = ConditionalBatchNorm2d(self.c0, num_classes)
        self.ups = nn.ModuleList()
        self.bns = nn.ModuleList()
        for level in range(n_up, 0, -1):
            c_in, c_out = channels_at(level, width, max_width), channels_at(level - 1, width, max_width)
            self.ups.append(_dcgan_init(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False)))
            self.bns.append(ConditionalBatchNorm2d(c_out, num_classes))
        self.to_image = _dcgan_init(nn.Conv2d(channels_at(0, width, max_width), channels, 3, padding=1))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"expected z [N, {self.z_dim}], got {list(z.shape)}"
        check_labels(c, z.shape[0], self.num_classes, "dcgan.Generator")
        h = self.project(z).view(-1, self.c0, self.r0, self.r0)  # [N, C0, r0, r0]
        h = F.relu(self.project_bn(h, c))
        for up, bn in zip(self.ups, self.bns, strict=True):
            h = F.relu(bn(up(h), c))  # [N, C_l, 2H, 2W]
        return torch.tanh(self.to_image(h))  # [N, channels, resolution, resolution]


class Discriminator(nn.Module):
    """DCGAN discriminator: ``D(x [N, C, res, res], c [N] | None) -> (score [N], logits [N, K] | None)``.

    ``n`` stride-2 4x4 convs with LeakyReLU(0.2) down to ``r0 x r0``, then a linear score.
    ``cond="projection"`` adds ``<embed(c), h>`` (Miyato & Koyama 2018); ``cond="acgan"`` adds a class head
    (Odena et al. 2017) whose logits are returned. ``cond="none"`` ignores ``c``.

    ``batchnorm`` defaults to False (unlike the paper): BN couples the samples of a batch, so R1 and the
    WGAN-GP penalty would no longer be per-sample gradients and real/fake batches would share statistics;
    it also makes double backward slower. Use ``spectral_norm=True`` for stability instead.
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 3,
        width: int = 64,
        max_width: int = 512,
        num_classes: int = 0,
        cond: str = "none",
        spectral_norm: bool = False,
        batchnorm: bool = False,
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
            batchnorm=batchnorm,
        )
        r0, n_down = resolution_plan(resolution)
        if cond not in CONDITIONINGS:
            raise ValueError(f"unknown cond {cond!r}; valid: {', '.join(CONDITIONINGS)}")
        if cond != "none" and num_classes < 1:
            raise ValueError(f"cond={cond!r} needs num_classes >= 1, got {num_classes}")
        self.resolution, self.channels, self.num_classes, self.cond = resolution, channels, num_classes, cond

        layers: list[nn.Module] = []
        c_in = channels
        for level in range(n_down):
            c_out = channels_at(level, width, max_width)
            use_bn = batchnorm and level > 0  # the paper leaves BN off the first D layer
            conv = _dcgan_init(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not use_bn))
            layers.append(sn(conv, spectral_norm))
            if use_bn:
                layers.append(_dcgan_init(nn.BatchNorm2d(c_out)))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        feature_dim = c_in * r0 * r0
        self.score = sn(_dcgan_init(nn.Linear(feature_dim, 1)), spectral_norm)
        self.embed, self.classify = None, None
        if cond == "projection":
            self.embed = sn(_dcgan_init(nn.Embedding(num_classes, feature_dim)), spectral_norm)  # V
        if cond == "acgan":
            self.classify = sn(_dcgan_init(nn.Linear(feature_dim, num_classes)), spectral_norm)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        expected = (self.channels, self.resolution, self.resolution)
        assert x.ndim == 4 and tuple(x.shape[1:]) == expected, (
            f"expected x [N, {', '.join(map(str, expected))}], got {list(x.shape)}"
        )
        if self.cond == "projection":
            check_labels(c, x.shape[0], self.num_classes, "dcgan.Discriminator(cond='projection')")
        h = self.features(x).flatten(1)  # phi(x): [N, C * r0 * r0]
        score = self.score(h).squeeze(1)  # psi(phi(x)): [N]
        if self.embed is not None:
            # Miyato & Koyama 2018, eq. 3: f(x, y) = y^T V phi(x) + psi(phi(x)).
            score = score + (self.embed(c) * h).sum(dim=1)
        logits = self.classify(h) if self.classify is not None else None  # [N, K]
        return score, logits
