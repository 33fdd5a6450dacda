"""Generator and discriminator registries: architecture name -> nn.Module class."""

from __future__ import annotations

from torch import nn

from ganforge.nets import dcgan, sngan, stylegan2
from ganforge.nets.layers import resolution_plan

__all__ = ["DISCRIMINATORS", "GENERATORS", "build_discriminator", "build_generator", "resolution_plan"]

GENERATORS: dict[str, type[nn.Module]] = {
    "dcgan": dcgan.Generator,
    "sngan": sngan.Generator,
    "stylegan2": stylegan2.Generator,
}

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "dcgan": dcgan.Discriminator,
    "sngan": sngan.Discriminator,
    "stylegan2": stylegan2.Discriminator,
}


def _lookup(registry: dict[str, type[nn.Module]], arch: str, kind: str) -> type[nn.Module]:
    if arch not in registry:
        raise ValueError(f"unknown {kind} architecture {arch!r}; valid: {', '.join(sorted(registry))}")
    return registry[arch]


def build_generator(arch: str, **kwargs) -> nn.Module:
    """Build the generator registered as ``arch`` (see ``GENERATORS``) from its constructor kwargs."""
    return _lookup(GENERATORS, arch, "generator")(**kwargs)


def build_discriminator(arch: str, **kwargs) -> nn.Module:
    """Build the discriminator registered as ``arch`` (see ``DISCRIMINATORS``) from its constructor kwargs."""
    return _lookup(DISCRIMINATORS, arch, "discriminator")(**kwargs)
