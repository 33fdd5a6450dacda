"""Network registry: one visible table from name to nn.Module class; snapshots name their modules by these keys.

Names are ``<arch>.G`` / ``<arch>.D`` for generator/discriminator pairs, the architecture for single networks.
Every class stores its constructor arguments in ``.config``, so ``build_net(name, **net.config)`` rebuilds it.
"""

from __future__ import annotations

from torch import nn

from ganforge.nets import (
    classifier,
    context_encoder,
    cycle_pair,
    dcgan,
    deepfill,
    patchgan,
    rescnn,
    resnet_translator,
    rrdb,
    sngan,
    srresnet,
    stylegan2,
    unet,
    unet_d,
    unet_translator,
    vgg_d,
)
from ganforge.nets.layers import resolution_plan

__all__ = ["DISCRIMINATORS", "GENERATORS", "NETS", "build_discriminator", "build_generator", "build_net",
           "resolution_plan"]

NETS: dict[str, type[nn.Module]] = {
    "dcgan.G": dcgan.Generator,
    "dcgan.D": dcgan.Discriminator,
    "sngan.G": sngan.Generator,
    "sngan.D": sngan.Discriminator,
    "stylegan2.G": stylegan2.Generator,
    "stylegan2.D": stylegan2.Discriminator,
    "rescnn": rescnn.ResCNN,
    "srresnet": srresnet.MSRResNet,
    "rrdb": rrdb.RRDBNet,
    "unet": unet.UNet,
    "vgg.D": vgg_d.VGGDiscriminator,
    "unet.D": unet_d.UNetDiscriminator,
    "classifier": classifier.Classifier,
    "unet_translator": unet_translator.UNetTranslator,
    "resnet_translator": resnet_translator.ResnetTranslator,
    "patchgan.D": patchgan.PatchGAN,
    "cyclegan.generators": cycle_pair.GeneratorPair,
    "cyclegan.discriminators": cycle_pair.DiscriminatorPair,
    "context_encoder": context_encoder.ContextEncoder,
    "context_encoder.D": context_encoder.ContextEncoderD,
    "deepfill": deepfill.DeepFillGenerator,
    "deepfill.D": deepfill.SNPatchGAN,
}

# Views of NETS by GAN role, keyed by architecture: the G/D pairs of the GAN task. A lone ".D" (the super-resolution
# discriminators "vgg.D", "unet.D") pairs with a restoration network, not with a same-named G, so it is left out.
GENERATORS: dict[str, type[nn.Module]] = {k[:-2]: v for k, v in NETS.items() if k.endswith(".G")}
DISCRIMINATORS: dict[str, type[nn.Module]] = {k[:-2]: v for k, v in NETS.items()
                                              if k.endswith(".D") and k[:-2] in GENERATORS}


def build_net(name: str, **kwargs) -> nn.Module:
    """Build the network registered as ``name`` (see ``NETS``) from its constructor kwargs."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; valid: {', '.join(sorted(NETS))}")
    return NETS[name](**kwargs)


def build_generator(arch: str, **kwargs) -> nn.Module:
    """Build the generator of architecture ``arch`` (see ``GENERATORS``)."""
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator architecture {arch!r}; valid: {', '.join(sorted(GENERATORS))}")
    return build_net(f"{arch}.G", **kwargs)


def build_discriminator(arch: str, **kwargs) -> nn.Module:
    """Build the discriminator of architecture ``arch`` (see ``DISCRIMINATORS``)."""
    if arch not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator architecture {arch!r}; valid: {', '.join(sorted(DISCRIMINATORS))}")
    return build_net(f"{arch}.D", **kwargs)


def net_name(module: nn.Module) -> str:
    """The registry name of a module built from ``NETS`` (what a snapshot records to rebuild it)."""
    for name, cls in NETS.items():
        if type(module) is cls:
            return name
    raise ValueError(f"{type(module).__name__} is not in the network registry (ganforge.nets.NETS)")
