"""CycleGAN's two generators and two discriminators, each pair as one module (Zhu et al. 2017, sec. 3).

The reference trains G_A and G_B with one Adam over both parameter lists, and D_A and D_B likewise: one module
per pair keeps that exactly (Adam is per parameter, so one optimizer over two disjoint networks is two
optimizers with the same settings) and lets the one loop run CycleGAN as two phases, "D" (both Ds) then "G"
(both Gs). The snapshot holds the generator pair; inference and export use ``pair.AtoB`` / ``pair.BtoA``,
each a plain translator network of its own registry name (``net``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ganforge.nets.patchgan import PatchGAN
from ganforge.nets.resnet_translator import ResnetTranslator
from ganforge.nets.unet_translator import UNetTranslator

TRANSLATORS: dict[str, type[nn.Module]] = {"unet_translator": UNetTranslator, "resnet_translator": ResnetTranslator}
DIRECTIONS = ("AtoB", "BtoA")


class GeneratorPair(nn.Module):
    """G: A -> B as ``AtoB`` and F: B -> A as ``BtoA``, both of registry name ``net`` with their own kwargs."""

    def __init__(self, net: str = "resnet_translator", AtoB: dict[str, Any] | None = None,  # noqa: N803
                 BtoA: dict[str, Any] | None = None):  # noqa: N803
        super().__init__()
        if net not in TRANSLATORS:
            raise ValueError(f"unknown translator network {net!r}; valid: {', '.join(TRANSLATORS)}")
        self.AtoB = TRANSLATORS[net](**(AtoB or {}))
        self.BtoA = TRANSLATORS[net](**(BtoA or {}))
        self.config = dict(net=net, AtoB=self.AtoB.config, BtoA=self.BtoA.config)

    def forward(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        """[N, C_in, H, W] of the source domain -> [N, C_out, H, W] of the other one."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        return self.AtoB(x) if direction == "AtoB" else self.BtoA(x)


class DiscriminatorPair(nn.Module):
    """D_A scores domain A images, D_B domain B images (PatchGANs, each with its own kwargs)."""

    def __init__(self, A: dict[str, Any] | None = None, B: dict[str, Any] | None = None):  # noqa: N803
        super().__init__()
        self.A, self.B = PatchGAN(**(A or {})), PatchGAN(**(B or {}))
        self.config = dict(A=self.A.config, B=self.B.config)

    def forward(self, x: Tensor, domain: str = "B") -> Tensor:
        """[N, C, H, W] -> patch scores [N, 1, h, w] of the domain's discriminator."""
        return self.A(x) if domain == "A" else self.B(x)
