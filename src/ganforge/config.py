"""Typed training configuration: one pydantic model per concern, and the named presets.

Nothing here imports torch, so the CLI can validate and print a config (``--dry-run``) instantly.
Units are in the field names: ``kimg`` is thousands of real images shown to D, ``_steps`` counts
training steps (one pass over the task's phases), ``_lr`` is a learning rate.
"""

from __future__ import annotations

import copy
import json
import numbers
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DIFFAUGMENT_OPS = ("color", "translation", "cutout")  # mirrors ganforge.data.augment.DIFFAUGMENT_OPS
ADA_GROUPS = ("b", "g", "c", "f", "n", "o")  # mirrors ganforge.data.ada.ADA_GROUPS


def ada_groups(ops: str) -> tuple[str, ...]:
    """ADA group letters in canonical order, from a string such as "bgc". A "c" after an "n" is cutout ("o"), so
    NVlabs' "bgcfnc" means the same as there. ValueError names an unknown letter."""
    if "n" in ops:
        head, tail = ops.split("n", 1)
        ops = head + "n" + tail.replace("c", "o")
    bad = sorted(set(ops) - set(ADA_GROUPS))
    if bad:
        raise ValueError(f"unknown ADA op group(s) {bad} in {ops!r}; valid letters: b = x-flip/rot90/int-translate, "
                         "g = geometric, c = color, f = filter, n = noise, o = cutout (NVlabs' 'bgcfnc' is "
                         "accepted: a 'c' after 'n' is cutout)")
    return tuple(g for g in ADA_GROUPS if g in ops)


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in `--set optim.glr=...` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def resolution_plan(resolution: int) -> tuple[int, int]:
    """Split ``resolution`` into ``(r0, n)`` with ``resolution == r0 * 2**n``, ``r0`` in 4..7 and ``n >= 1``.

    Generators start at ``r0 x r0`` and upsample ``n`` times; discriminators downsample ``n`` times.
    Raises ValueError for any other resolution (e.g. 30, 4, 9).
    """
    error = ValueError(f"resolution must be r0*2^n with r0 in 4..7, e.g. 8, 16, 28, 32, 64, 128; got {resolution!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral):
        raise error
    r0, n = int(resolution), 0
    while r0 > 7 and r0 % 2 == 0:
        r0, n = r0 // 2, n + 1
    if not (4 <= r0 <= 7) or n < 1:
        raise error
    return r0, n


class DataConfig(_Strict):
    source: str = Field("shapes", description="image folder, .zip, or built-in name (fashion-mnist, digits, shapes)")
    resolution: int = Field(32, ge=8, le=1024, description="image size (gan) or training patch size (restore)")
    channels: Literal[1, 3, 4] | None = Field(None, description="None = 1 if every image is gray, else 3")
    resize: Literal["crop", "pad", "stretch"] = "crop"
    xflip: bool = Field(True, description="random horizontal flips (of both partners, for pairs)")
    rot90: bool = Field(True, description="restore: random rotations by multiples of 90 degrees (both partners)")
    max_images: int | None = Field(None, ge=1, description="train on a fixed random subset of this many images")
    subset_seed: int = Field(0, ge=0, description="seed of the max_images subset (independent of run.seed, so "
                                                  "runs with different seeds see the same images)")
    use_labels: bool | None = Field(None, description="None = use class subfolders when there are >= 2")
    derive: str = Field("", description="restore: make input/target pairs from single images with a chain of "
                                        "degradations applied left to right, e.g. noise:gaussian:25, "
                                        "blur:0.5-2,downscale:4,noise:gaussian:5-50,jpeg:30-95, second-order:4, "
                                        "rain:0.02-0.05, noise:poisson:20, gray, edges (data/derive.py); '' = "
                                        "the source holds pairs (lq/ + gt/, A/ + B/, or A|B files)")
    masks: str = Field("free-form", description="inpaint: the holes, free-form (DeepFill v2 brush strokes), box, "
                                                "center, free-form+box, or a folder of mask images (white = hole); "
                                                "ignored when the source has images/ + masks/ (data/masks.py)")
    label_classes: Annotated[int, Field(ge=2, le=256)] | Literal["auto"] | None = Field(
        None, description="pix2pix: the inputs (A/) are label maps, 8-bit gray PNGs of class indices 0..K-1, one-hot "
        "encoded for the generator; K, or auto = the largest index in the training label maps + 1; None = the "
        "inputs are images")

    @field_validator("resolution")
    @classmethod
    def _check_resolution(cls, v: int) -> int:
        resolution_plan(v)
        return v


class _GanModel(_Strict):
    """Fields every generator/discriminator pair has."""
    z_dim: int = Field(128, ge=1, le=4096)
    g_width: int = Field(64, ge=1, le=4096, description="G channels at the output resolution")
    d_width: int = Field(64, ge=1, le=4096, description="D channels at the input resolution")
    max_width: int = Field(512, ge=1, le=8192)
    cond: Literal["none", "projection", "acgan"] = Field(
        "none", description="class conditioning: projection D + conditional BN, or ACGAN auxiliary classifier"
    )


class DcganModel(_GanModel):
    arch: Literal["dcgan"] = "dcgan"
    d_spectral_norm: bool = Field(False, description="spectral norm in the discriminator (SNGAN always has it)")


class SnganModel(_GanModel):
    arch: Literal["sngan"] = "sngan"


class StyleGAN2Model(_GanModel):
    arch: Literal["stylegan2"] = "stylegan2"
    cond: Literal["none", "projection"] = Field("none", description="class conditioning: projection D and a "
                                                "class embedding in the mapping network (ACGAN is not available)")
    w_dim: int = Field(512, ge=1, le=4096, description="intermediate latent (W) size")
    mapping_layers: int = Field(8, ge=1, le=16, description="layers of the mapping network")
    freeze_d: int = Field(0, ge=0, le=16, description="FreezeD (Mo et al. 2020): keep D's first N blocks, "
                                                      "from the highest resolution, fixed; for run.init_from")
    amp_res: int = Field(4, ge=0, le=16, description="with run.amp on CUDA, only the N highest resolutions of G "
                         "and D compute in bf16/fp16; the rest, the mappings and D's epilogue stay float32 (NVlabs "
                         "num_fp16_res)")


class ResCNNModel(_Strict):
    """A residual CNN restorer (DnCNN-style, Zhang et al. 2017): it predicts the degradation and subtracts it."""
    arch: Literal["rescnn"] = "rescnn"
    width: int = Field(64, ge=1, le=1024, description="channels of the hidden layers")
    depth: int = Field(17, ge=2, le=100, description="3x3 conv layers (DnCNN: 17 for Gaussian denoising)")
    batch_norm: bool = Field(True, description="BN after the hidden convs (DnCNN)")
    noise_map: bool = Field(False, description="non-blind (FFDNet-style): the net also sees the noise level "
                            "sigma as an input channel; trained with the per-image sigma that data.derive's "
                            "noise:gaussian draws, applied with `ganforge denoise --sigma S`")


class SRResNetModel(_Strict):
    """MSRResNet (BasicSR's SRResNet without BN, Ledig et al. 2017 / Wang et al. 2018): super-resolution by
    pixel shuffle, residual over bilinear upsampling."""
    arch: Literal["srresnet"] = "srresnet"
    width: int = Field(64, ge=1, le=1024, description="channels of the residual blocks (BasicSR num_feat)")
    blocks: int = Field(16, ge=0, le=100, description="residual blocks without BN (MSRResNet: 16)")
    scale: Literal[2, 3, 4] = Field(4, description="upscaling factor; must match the data (derive downscale:S or "
                                                   "lq/gt sizes)")


class RRDBModel(_Strict):
    """RRDBNet (ESRGAN, Wang et al. 2018): super-resolution by Residual-in-Residual Dense Blocks, nearest
    upsampling + conv."""
    arch: Literal["rrdb"] = "rrdb"
    width: int = Field(64, ge=1, le=1024, description="channels of the trunk (BasicSR num_feat)")
    blocks: int = Field(23, ge=0, le=100, description="RRDB blocks, 3 dense blocks of 5 convs each (ESRGAN: 23)")
    growth: int = Field(32, ge=1, le=1024, description="channels each dense conv adds (BasicSR num_grow_ch)")
    scale: Literal[2, 3, 4] = Field(4, description="upscaling factor; must match the data (derive downscale:S or "
                                                   "lq/gt sizes)")


class UNetModel(_Strict):
    """A U-Net denoising autoencoder (Ronneberger et al. 2015): same-size restoration, residual output."""
    arch: Literal["unet"] = "unet"
    width: int = Field(64, ge=1, le=1024, description="channels of the first level; doubled at each level down")
    levels: int = Field(3, ge=1, le=6, description="max-pool downsamplings (the paper: 4; 3 keeps the receptive "
                                                   "field, 147 px, within the pipeline's default 512 px tile)")


# ---- Inpainting networks (task "inpaint"; nets/context_encoder.py, nets/deepfill.py) ----


class ContextEncoderModel(_Strict):
    """Context Encoder (Pathak et al. 2016): conv encoder, bottleneck, up-conv decoder; a DCGAN-style D."""
    arch: Literal["context_encoder"] = "context_encoder"
    width: int = Field(64, ge=1, le=1024, description="channels of the first encoder level; doubled per level")
    levels: int = Field(4, ge=1, le=8, description="stride-2 levels of the encoder and the decoder (and of D); the "
                                                   "resolution must be a multiple of 2^levels")
    bottleneck: int = Field(512, ge=1, le=8192, description="bottleneck channels (the paper: 4000)")
    max_width: int = Field(512, ge=1, le=8192)


class DeepFillModel(_Strict):
    """DeepFill v2 (Yu et al. 2019): gated convolutions, coarse and refinement nets, contextual attention."""
    arch: Literal["deepfill"] = "deepfill"
    width: int = Field(24, ge=2, le=1024, description="gated-conv feature channels at full resolution (the "
                                                      "reference cnum = 2 x width: 24 is its 48, 4.1 M parameters)")
    dilations: list[int] = Field([2, 4, 8, 16], min_length=0, max_length=8, description="rates of the dilated "
                                 "gated convs at 1/4 resolution (the paper: 2, 4, 8, 16)")
    attention: bool = Field(True, description="the contextual-attention branch of the refinement net")
    softmax_scale: float = Field(10.0, gt=0.0, le=1000.0, description="contextual attention softmax scale")
    prefill: Literal["zeros", "pushpull", "smooth"] = Field(
        "zeros", description="what the generator sees in the hole: zeros (the paper), or an interpolation of the "
        "known pixels that both stages then correct (residual outputs, learns much faster): pushpull (a fast "
        "pyramid fill, inside the ONNX graph) or smooth (the mean of the exact membrane and thin-plate fills, "
        "core/fill.py: fills better; the ONNX graph takes it as an input)")

    @field_validator("dilations")
    @classmethod
    def _check_dilations(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 64 for d in v):
            raise ValueError(f"each dilation must be in 1..64, got {v}")
        return v


# ---- Translation networks (tasks "pix2pix" and "cyclegan"; nets/unet_translator.py, nets/resnet_translator.py,
# nets/patchgan.py). The discriminator's fields live here too: the PatchGAN belongs to the recipe's architecture.


class _TranslatorModel(_Strict):
    width: int = Field(64, ge=1, le=1024, description="G channels of the first layer (the papers: 64)")
    norm: Literal["batch", "instance", "none"] = Field("instance", description="norm of G and D: batch (running "
                                                       "statistics at inference), instance, or none")
    d_width: int = Field(64, ge=1, le=1024, description="PatchGAN channels of the first layer (the papers: 64)")
    d_layers: int = Field(3, ge=0, le=6, description="PatchGAN stride-2 layers: 3 = 70x70 patches, 0 = the 1x1 "
                                                     "pixel variant")


class UNetTranslatorModel(_TranslatorModel):
    """The pix2pix U-Net generator (Isola et al. 2017): strided encoder-decoder with skips, dropout, tanh."""
    arch: Literal["unet_translator"] = "unet_translator"
    depth: int = Field(8, ge=2, le=10, description="stride-2 levels; data.resolution must be a multiple of "
                                                   "2^depth (the paper: 8 at 256 px; 6 at 64 px)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout of the 3 innermost decoder layers (training "
                                                            "only: inference runs in eval mode)")


class ResNetTranslatorModel(_TranslatorModel):
    """The CycleGAN ResNet-block generator (Zhu et al. 2017 after Johnson et al. 2016)."""
    arch: Literal["resnet_translator"] = "resnet_translator"
    blocks: int = Field(9, ge=0, le=30, description="residual blocks at 1/4 resolution (9 at 256 px, 6 at 128)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside the residual blocks (off in CycleGAN)")


# One class per architecture: a field that the chosen architecture lacks is an error that names it.
ModelConfig = Annotated[DcganModel | SnganModel | StyleGAN2Model | ResCNNModel | SRResNetModel | RRDBModel |
                        UNetModel | ContextEncoderModel | DeepFillModel | UNetTranslatorModel |
                        ResNetTranslatorModel, Field(discriminator="arch")]

# The tasks (tasks/__init__.py has the classes) and the architectures each can train; the first is the default.
TASK_ARCHS: dict[str, tuple[str, ...]] = {
    "pix2pix": ("unet_translator", "resnet_translator"),
    "cyclegan": ("resnet_translator", "unet_translator"),
    "gan": ("dcgan", "sngan", "stylegan2"),
    "restore": ("rescnn", "srresnet", "rrdb", "unet"),
    "inpaint": ("deepfill", "context_encoder"),
}


class GanLoss(_Strict):
    task: Literal["gan"] = "gan"
    adversarial: Literal["ns", "hinge", "wgan", "lsgan"] = "ns"
    r1_gamma: float | Literal["auto"] = Field(
        0.0, description="R1 weight (Mescheder 2018); 0 disables; auto = 0.0002 * resolution^2 / batch (StyleGAN2-ADA)")
    r1_every_steps: int = Field(16, ge=1, le=1000, description="lazy R1 interval (StyleGAN2 sec. 3.1)")
    gp_weight: float = Field(0.0, ge=0.0, le=1e4, description="WGAN-GP weight (Gulrajani 2017); 0 disables")
    acgan_weight: float = Field(1.0, ge=0.0, le=100.0)
    diffaugment: str = Field("", description="comma list of color,translation,cutout applied to all D inputs")
    ada: str = Field("", description="ADA op groups applied to all D inputs, e.g. bgc (blit, geometric, color; "
                                     "also f filter, n noise, o cutout: NVlabs' bgcfnc); "
                                     "'' disables")
    ada_target: float = Field(0.6, gt=-1.0, lt=1.0, description="ADA: target for E[sign(D(real))]")
    ada_kimg: float = Field(500.0, gt=0.0, le=1e5, description="ADA: kimg for p to move from 0 to 1")
    ada_interval: int = Field(4, ge=1, le=1000, description="ADA: steps between p adjustments")
    pl_weight: float = Field(0.0, ge=0.0, le=1e4, description="StyleGAN2 path-length regulariser; 0 disables")
    pl_every_steps: int = Field(4, ge=1, le=1000, description="lazy path-length interval")
    pl_decay: float = Field(0.01, gt=0.0, le=1.0, description="path-length running mean decay")
    pl_batch_shrink: int = Field(2, ge=1, le=64, description="path-length batch = batch / this")
    style_mixing: float = Field(0.0, ge=0.0, le=1.0, description="StyleGAN2 style-mixing probability")

    def r1_gamma_value(self, resolution: int, batch: int) -> float:
        """R1 weight with 'auto' resolved: 0.0002 * resolution^2 / batch (stylegan2-ada-pytorch, cfg 'auto')."""
        g = self.r1_gamma
        return 0.0002 * resolution**2 / batch if g == "auto" else float(g)

    @field_validator("r1_gamma")
    @classmethod
    def _check_gamma(cls, v: float | str) -> float | str:
        if isinstance(v, str) and v != "auto":
            raise ValueError("must be a number >= 0 or 'auto'")
        if not isinstance(v, str) and not 0.0 <= v <= 1e4:
            raise ValueError(f"must be in [0, 10000] or 'auto', got {v}")
        return v

    @field_validator("ada")
    @classmethod
    def _check_ada(cls, v: str) -> str:
        return "".join(ada_groups(v))

    @field_validator("diffaugment")
    @classmethod
    def _check_policy(cls, v: str) -> str:
        ops = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in ops if p not in DIFFAUGMENT_OPS]
        if bad:
            raise ValueError(f"unknown DiffAugment op(s) {bad}; valid: {', '.join(DIFFAUGMENT_OPS)}")
        return ",".join(ops)


class RestoreLoss(_Strict):
    """Pixel loss alone (PSNR-oriented), or with perceptual and adversarial terms (SRGAN/ESRGAN GAN stage): the
    network's loss is pixel_weight * pixel + perceptual_weight * perceptual + adversarial_weight * adversarial.
    A discriminator is trained only when adversarial_weight > 0."""
    task: Literal["restore"] = "restore"
    pixel: Literal["l1", "l2"] = Field("l1", description="pixel loss between output and target (PSNR-oriented)")
    pixel_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of the pixel loss")
    perceptual_weight: float = Field(0.0, ge=0.0, le=1e4, description="weight of the VGG-feature loss (VGG19 "
                                     "conv5_4 when torchvision and its weights are local, else a fixed random VGG)")
    perceptual: Literal["l1", "l2"] = Field("l1", description="feature distance (ESRGAN: l1; SRGAN: l2)")
    adversarial_weight: float = Field(0.0, ge=0.0, le=1e4, description="weight of the adversarial loss; > 0 "
                                      "trains a discriminator (the GAN stage)")
    gan_type: Literal["vanilla", "ragan"] = Field("ragan", description="vanilla (SRGAN: non-saturating) or "
                                                  "relativistic average (ESRGAN)")
    discriminator: Literal["vgg", "unet"] = Field("vgg", description="vgg: VGG-style classifier (SRGAN/ESRGAN); "
                                                  "unet: per-pixel U-Net D with spectral norm (Real-ESRGAN)")
    d_width: int = Field(32, ge=1, le=1024, description="discriminator width (BasicSR num_feat: 64)")

    @model_validator(mode="after")
    def _some_loss(self) -> RestoreLoss:
        if self.pixel_weight + self.perceptual_weight + self.adversarial_weight <= 0:
            raise ValueError("loss.pixel_weight, loss.perceptual_weight and loss.adversarial_weight are all 0; "
                             "set at least one > 0")
        return self


class Pix2PixLoss(_Strict):
    """pix2pix (Isola et al. 2017, eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G), D conditioned on the
    input (it sees concat(A, B))."""
    task: Literal["pix2pix"] = "pix2pix"
    adversarial: Literal["ns", "lsgan"] = Field("ns", description="ns: the paper's cGAN loss (non-saturating G); "
                                                "lsgan: least squares")
    l1_weight: float = Field(100.0, ge=0.0, le=1e4, description="lambda of the L1 term (the paper: 100)")
    lr_decay_start: float = Field(1.0, ge=0.0, le=1.0, description="fraction of run.kimg after which both "
                                  "learning rates fall linearly to 0 (1 = constant, the paper)")


class CycleGANLoss(_Strict):
    """CycleGAN (Zhu et al. 2017, eq. 3 and sec. 4): LSGAN for both mappings + lambda (cycle A->B->A and B->A->B, L1)
    + identity_weight * lambda * identity (G(B) = B, F(A) = A; sec. 5.2), D trained on a history of 50 fakes."""
    task: Literal["cyclegan"] = "cyclegan"
    adversarial: Literal["lsgan", "ns"] = Field("lsgan", description="lsgan: the paper's least-squares loss")
    cycle_weight: float = Field(10.0, ge=0.0, le=1e4, description="lambda of the cycle-consistency L1 (the paper: 10)")
    identity_weight: float = Field(0.5, ge=0.0, le=100.0, description="identity loss weight, times cycle_weight "
                                   "(the paper: 0.5; 0 = off)")
    pool_size: int = Field(50, ge=0, le=10000, description="D sees fakes from a history of this many per domain "
                                                           "(Shrivastava et al. 2017; 0 = the newest fakes)")
    lr_decay_start: float = Field(0.5, ge=0.0, le=1.0, description="fraction of run.kimg after which both "
                                  "learning rates fall linearly to 0 (the paper: half way)")


# The loss section belongs to the task; TrainConfig fills loss.task from its own task field.
class InpaintLoss(_Strict):
    """Reconstruction plus adversarial loss on composites. DeepFill v2: L1 on the coarse and the refined output over
    the whole image, 1:1, plus the SN-PatchGAN hinge loss x 1. Context Encoder: L2 over the hole x 0.999 plus the
    non-saturating adversarial loss x 0.001. A discriminator is trained only when adversarial_weight > 0."""
    task: Literal["inpaint"] = "inpaint"
    reconstruction: Literal["l1", "l2"] = Field("l1", description="pixel loss between output and image")
    region: Literal["image", "hole"] = Field("image", description="where the pixel loss is averaged: the whole "
                                             "image (DeepFill v2) or the hole only (Context Encoder)")
    reconstruction_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of the (refined) output's loss")
    coarse_weight: float = Field(1.0, ge=0.0, le=1e4, description="DeepFill: weight of the coarse output's loss")
    ssim_weight: float = Field(0.0, ge=0.0, le=1e4, description="adds ssim_weight x (1 - SSIM over the hole) to "
                               "each output's pixel loss (11x11 Gaussian window, the benchmark's hole SSIM; Zhao et "
                               "al. 2017's L1 + SSIM): rewards structure carried into the hole, not only colour")
    adversarial: Literal["hinge", "ns"] = Field("hinge", description="hinge (SN-PatchGAN) or non-saturating")
    adversarial_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of the G adversarial loss; 0 = no D")
    d_width: int = Field(64, ge=1, le=1024, description="discriminator channels at the input resolution")
    d_layers: int = Field(6, ge=1, le=10, description="stride-2 layers of the discriminator (SN-PatchGAN: 6 at "
                                                      "256 px, a 4x4 map of patch scores)")

    @model_validator(mode="after")
    def _some_loss(self) -> InpaintLoss:
        if self.reconstruction_weight + self.coarse_weight + self.adversarial_weight <= 0:
            raise ValueError("loss.reconstruction_weight, loss.coarse_weight and loss.adversarial_weight are all 0; "
                             "set at least one > 0")
        return self


LossConfig = Annotated[GanLoss | RestoreLoss | InpaintLoss | Pix2PixLoss | CycleGANLoss,
                       Field(discriminator="task")]


class OptimConfig(_Strict):
    g_lr: float = Field(2e-4, gt=0.0, le=1.0, description="generator (or the restoration network)")
    d_lr: float = Field(2e-4, gt=0.0, le=1.0, description="discriminator(s)")
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    batch: int = Field(64, ge=1, le=65536, description="global batch over all processes")
    batch_per_device: int | None = Field(None, ge=1, le=65536, description="micro-batch per process; smaller "
                                         "than batch / processes accumulates gradients. None = no accumulation")
    d_steps: int = Field(1, ge=1, le=20, description="D updates per G update")
    fused_adam: bool = Field(True, description="Adam's fused kernel on CPU/CUDA (the same update, ~3x faster on a "
                                               "CPU; off: the per-tensor loop, as runs before it)")
    ema_kimg: float = Field(10.0, ge=0.0, le=1e4, description="EMA half-life in kimg of the task's averaged "
                            "modules (G; the restoration network); 0 disables")
    ema_rampup: float | None = Field(0.05, ge=0.0, le=1.0, description="EMA half-life <= rampup * kimg so far")


class RunConfig(_Strict):
    kimg: float = Field(200.0, gt=0.0, le=1e6, description="training length in thousands of real images")
    minutes: float | None = Field(None, gt=0.0, le=1e6, description="wall-clock budget; stops with a final "
                                  "snapshot and checkpoint (checked every tick)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    out: str = Field("runs", description="parent folder of run folders")
    tick_kimg: float = Field(1.0, gt=0.0, le=1e4, description="stats/progress interval")
    sample_every_kimg: float = Field(10.0, gt=0.0, le=1e5)
    snapshot_every_kimg: float = Field(50.0, gt=0.0, le=1e5)
    checkpoint_every_kimg: float = Field(10.0, gt=0.0, le=1e5)
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="older checkpoints are deleted")
    grid_samples: int = Field(64, ge=1, le=1024)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="CUDA only; auto = bf16 if supported")
    channels_last: Literal["auto", "on", "off"] = Field("auto", description="NHWC memory "
                                                            "format; auto = on (faster on CUDA, and 1.1-1.3x on CPU)")
    threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads; None = torch default")
    tensorboard: bool = False
    init_from: str | None = Field(None, description="transfer learning: start from a run folder or checkpoint "
                                  "(G, D, G_ema) or a snapshot (G only; D starts fresh); step, optimizers and ADA "
                                  "start fresh")


class ConfigChange(_Strict):
    """A field changed when the run was resumed, and the step from which the new value applies."""
    step: int = Field(ge=0)
    field: str
    old: Any = None
    new: Any = None


class TrainConfig(_Strict):
    preset: str = "custom"
    task: Literal["gan", "restore", "inpaint", "pix2pix", "cyclegan"] = Field(
        "gan", description="what is trained: gan (images from noise), restore (image to image: denoise, ...), "
        "inpaint (fill holes), pix2pix and cyclegan (translation); see TASK_ARCHS")
    data: DataConfig = DataConfig()
    model: ModelConfig = DcganModel()
    loss: LossConfig = GanLoss()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    changes: list[ConfigChange] = Field(default_factory=list, description="fields changed on resume (written by "
                                        "the loop; log.txt says the same)")

    @model_validator(mode="before")
    @classmethod
    def _fill_task(cls, raw: Any) -> Any:
        """The model and loss sections follow the task: the task's default arch, and loss.task."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        task = raw.get("task", "gan")
        if raw.get("model") is None or isinstance(raw["model"], dict):
            raw["model"] = {"arch": TASK_ARCHS.get(task, ("dcgan",))[0], **(raw.get("model") or {})}
        loss = raw.get("loss")
        if loss is None or isinstance(loss, dict):
            raw["loss"] = {"task": task, **(loss or {})}
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainConfig:
        archs = TASK_ARCHS[self.task]
        if self.model.arch not in archs:
            raise ValueError(f"model.arch={self.model.arch!r} cannot be trained by task {self.task!r}; valid: "
                             f"{', '.join(archs)}")
        if self.loss.task != self.task:
            raise ValueError(f"loss.task={self.loss.task!r} but the run's task is {self.task!r}")
        if self.task == "gan":
            self._gan_checks()
        if self.task == "restore":
            self._restore_checks()
        if self.task == "inpaint":
            self._inpaint_checks()
        if self.task in ("pix2pix", "cyclegan"):
            self._translate_checks()
        per = self.optim.batch_per_device
        if per is not None and self.optim.batch % per:
            raise ValueError(f"optim.batch={self.optim.batch} must be a multiple of optim.batch_per_device={per}")
        return self

    def _gan_checks(self) -> None:
        if self.loss.adversarial == "wgan" and self.loss.gp_weight == 0 and self.model.arch == "dcgan" \
                and not self.model.d_spectral_norm:
            raise ValueError("loss.adversarial='wgan' needs a Lipschitz constraint: set loss.gp_weight > 0 "
                             "(typically 10) or model.d_spectral_norm=true")
        if self.model.arch == "stylegan2":
            n_blocks = resolution_plan(self.data.resolution)[1]
            if self.model.freeze_d > n_blocks:
                raise ValueError(f"model.freeze_d={self.model.freeze_d} is more than D's {n_blocks} blocks at "
                                 f"resolution {self.data.resolution}")
        elif self.loss.pl_weight > 0 or self.loss.style_mixing > 0:
            raise ValueError("loss.pl_weight and loss.style_mixing need model.arch='stylegan2' "
                             "(they act on its W latents)")
        if self.loss.ada and self.loss.diffaugment:
            raise ValueError("loss.ada and loss.diffaugment are alternatives: set only one of them")

    def _restore_checks(self) -> None:
        # A derived input is smaller by the product of the chain's downscale:S factors (second-order:S counts as
        # S) and the target's size without any; the network must upscale by exactly that. Parsed here without
        # torch (data/derive.py validates the rest when the data loads); lq/gt folders are checked by
        # RestoreTask.from_data.
        if getattr(self.model, "noise_map", False) and not re.search(r"(^|,)\s*(noise:gaussian|second-order):",
                                                                      self.data.derive):
            raise ValueError(f"model.noise_map=true (a non-blind denoiser) learns from the noise level of each "
                             f"training input, so data.derive must add Gaussian noise, e.g. noise:gaussian:0-75; "
                             f"got data.derive={self.data.derive!r}" + (" (paired lq/gt data carries no noise "
                             "level)" if not self.data.derive else ""))
        model_scale = getattr(self.model, "scale", 1)
        if self.data.resolution % model_scale:
            raise ValueError(f"data.resolution={self.data.resolution} (the target patch) must be a multiple of "
                             f"model.scale={model_scale}")
        if not self.data.derive:
            return
        data_scale = 1
        for token in self.data.derive.split(","):
            match = re.fullmatch(r"(?:downscale|second-order):(\d+)(?::\w+)?", token.strip())
            data_scale *= int(match.group(1)) if match else 1
        if data_scale == model_scale:
            return
        fix = (f"use an upscaler (model.arch='srresnet' or 'rrdb') with model.scale={data_scale}"
               if model_scale == 1 else
               f"make them match, e.g. data.derive='downscale:{model_scale}'")
        raise ValueError(f"data.derive={self.data.derive!r} makes inputs {data_scale}x smaller than the target, but "
                         f"model.scale={model_scale} (model.arch={self.model.arch!r}); {fix}")

    def _inpaint_checks(self) -> None:
        # The generator's stride product: Context Encoder 2^levels, DeepFill 8 (two downsamplings + attention rate 2).
        stride = 2 ** self.model.levels if self.model.arch == "context_encoder" else 8
        if self.data.resolution % stride:
            raise ValueError(f"data.resolution={self.data.resolution} must be a multiple of {stride} for "
                             f"model.arch={self.model.arch!r}" + (f" with model.levels={self.model.levels}"
                                                                  if self.model.arch == "context_encoder" else ""))

    def _translate_checks(self) -> None:
        res, m = self.data.resolution, self.model
        if self.task == "cyclegan" and self.data.derive:
            raise ValueError(f"task 'cyclegan' learns from two unpaired domains (trainA/ + trainB/), not derived "
                             f"pairs; drop data.derive={self.data.derive!r}, or use task 'pix2pix' (--preset "
                             "pix2pix-64) for derived pairs")
        if self.data.label_classes is not None and (self.task != "pix2pix" or self.data.derive):
            raise ValueError("data.label_classes (label-map inputs) needs task 'pix2pix' with paired data (label "
                             "maps in A/, photos in B/), not derived pairs")
        if m.arch == "unet_translator" and res % 2**m.depth:
            raise ValueError(f"data.resolution={res} must be a multiple of 2^model.depth={2**m.depth}; set "
                             f"model.depth={max(2, (res & -res).bit_length() - 1)} or another resolution")
        if m.arch == "resnet_translator" and res % 4:
            raise ValueError(f"data.resolution={res} must be a multiple of 4 for model.arch='resnet_translator'")
        if m.d_layers > 0 and res < 3 * 2**m.d_layers:
            raise ValueError(f"data.resolution={res} is too small for a PatchGAN with model.d_layers={m.d_layers} "
                             f"(needs >= {3 * 2**m.d_layers}); lower model.d_layers")

    def r1_gamma_value(self) -> float:
        """R1 weight with 'auto' resolved (GAN task only); see ``GanLoss.r1_gamma_value``."""
        return self.loss.r1_gamma_value(self.data.resolution, self.optim.batch)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)

    @classmethod
    def from_saved(cls, raw: dict[str, Any]) -> TrainConfig:
        """Validate a config written by any ganforge version. Before tasks existed (no "task" key) the model
        section held every architecture's fields; only the chosen architecture's are kept."""
        raw = copy.deepcopy(raw)
        model = raw.get("model")
        if "task" not in raw and isinstance(model, dict) and model.get("arch") in _MODEL_CLASSES:
            fields = _MODEL_CLASSES[model["arch"]].model_fields
            raw["model"] = {k: v for k, v in model.items() if k in fields}
        return cls.model_validate(raw)


_MODEL_CLASSES: dict[str, type[_Strict]] = {
    "dcgan": DcganModel, "sngan": SnganModel, "stylegan2": StyleGAN2Model, "rescnn": ResCNNModel,
    "srresnet": SRResNetModel, "rrdb": RRDBModel, "unet": UNetModel, "context_encoder": ContextEncoderModel,
    "deepfill": DeepFillModel, "unet_translator": UNetTranslatorModel, "resnet_translator": ResNetTranslatorModel}


# ---------------------------------------------------------------------------------------------------------
# Presets: the one visible table. Each is a partial config merged over the defaults above.
# ---------------------------------------------------------------------------------------------------------

_DCGAN = dict(model=dict(arch="dcgan", z_dim=100), loss=dict(adversarial="ns"),
              optim=dict(g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999))
_SNGAN = dict(model=dict(arch="sngan", z_dim=128, max_width=256), loss=dict(adversarial="hinge"),
              optim=dict(g_lr=2e-4, d_lr=2e-4, beta1=0.0, beta2=0.9))

_STYLEGAN2 = dict(model=dict(arch="stylegan2", z_dim=512, w_dim=512, mapping_layers=2, g_width=64, d_width=64,
                              max_width=512),
                  loss=dict(adversarial="ns", r1_gamma="auto", r1_every_steps=16, pl_weight=2.0, pl_every_steps=4,
                            style_mixing=0.9),
                  optim=dict(g_lr=0.0025, d_lr=0.0025, beta1=0.0, beta2=0.99, ema_kimg=10.0, ema_rampup=0.05))

PRESETS: dict[str, dict[str, Any]] = {
    # DCGAN (Radford et al. 2015): Adam(2e-4, 0.5), non-saturating loss.
    "dcgan-32": _DCGAN | dict(data=dict(resolution=32)),
    "dcgan-64": _DCGAN | dict(data=dict(resolution=64)),
    "dcgan-128": _DCGAN | dict(data=dict(resolution=128)),
    # ACGAN (Odena et al. 2017) on the DCGAN backbone.
    "acgan-32": _DCGAN | dict(data=dict(resolution=32), model=dict(arch="dcgan", z_dim=100, cond="acgan")),
    # WGAN-GP (Gulrajani et al. 2017): 5 D steps per G step, Adam(1e-4, 0, 0.9).
    "wgan-gp-32": dict(data=dict(resolution=32), model=dict(arch="dcgan", z_dim=128),
                       loss=dict(adversarial="wgan", gp_weight=10.0),
                       optim=dict(g_lr=1e-4, d_lr=1e-4, beta1=0.0, beta2=0.9, d_steps=5)),
    # ResNet SNGAN (Miyato et al. 2018) with hinge loss; -cond adds projection D + conditional BN.
    "sngan-32": _SNGAN | dict(data=dict(resolution=32)),
    "sngan-cond-32": _SNGAN | dict(data=dict(resolution=32),
                                   model=dict(arch="sngan", z_dim=128, max_width=256, cond="projection")),
    "sngan-64": _SNGAN | dict(data=dict(resolution=64)),
    "sngan-cond-64": _SNGAN | dict(data=dict(resolution=64),
                                   model=dict(arch="sngan", z_dim=128, max_width=256, cond="projection")),
    "sngan-128": _SNGAN | dict(data=dict(resolution=128)),
    # StyleGAN2 (Karras et al. 2020), the stylegan2-ada-pytorch 'auto' config: 2-layer mapping, lr 0.0025,
    # betas (0, 0.99), lazy R1 gamma auto, path length 2 every 4 steps, style mixing 0.9, EMA 10 kimg.
    # 32 and 64 px are narrower than NVlabs' (64 channels at the output, at most 256) so that they train on a CPU;
    # add --aug ada for small datasets.
    "stylegan2-32": _STYLEGAN2 | dict(data=dict(resolution=32),
                                      model=_STYLEGAN2["model"] | dict(g_width=64, d_width=64, max_width=256)),
    "stylegan2-64": _STYLEGAN2 | dict(data=dict(resolution=64),
                                      model=_STYLEGAN2["model"] | dict(g_width=64, d_width=64, max_width=256)),
    "stylegan2-128": _STYLEGAN2 | dict(data=dict(resolution=128),
                                       model=_STYLEGAN2["model"] | dict(g_width=128, d_width=128)),
    "stylegan2-256": _STYLEGAN2 | dict(data=dict(resolution=256)),
    # NVlabs' 'auto' doubles the channel base from 512 px (fmaps 1): 64 channels at 512, 128 at 256, ...
    "stylegan2-512": _STYLEGAN2 | dict(data=dict(resolution=512)),
    # Restoration (task "restore"): a small DnCNN-style residual CNN trained with L1 on 48 px patches of any image
    # folder, the noisy input made on the fly (Gaussian, sigma 25 of 255). No discriminator, no EMA.
    "denoise-25": dict(task="restore", data=dict(resolution=48, derive="noise:gaussian:25", xflip=True),
                       model=dict(arch="rescnn", width=32, depth=8, batch_norm=False),
                       loss=dict(pixel="l1"),
                       optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                       run=dict(kimg=50.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # Super-resolution x4 (task "restore"): MSRResNet trained with L1 on 64 px target patches (16 px inputs) made
    # by bicubic downscaling of any image folder; Adam(2e-4, 0.9, 0.99) as BasicSR's MSRResNet. Width 32 and 6
    # blocks (BasicSR: 64 and 16) so that it trains on a CPU.
    "srresnet-x4": dict(task="restore", data=dict(resolution=64, derive="downscale:4", xflip=True),
                        model=dict(arch="srresnet", width=32, blocks=6, scale=4),
                        loss=dict(pixel="l1"),
                        optim=dict(g_lr=2e-4, beta1=0.9, beta2=0.99, batch=16, ema_kimg=0.0),
                        run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # ESRGAN's PSNR-oriented first stage x4 (task "restore"): RRDBNet trained with L1, Adam(2e-4, 0.9, 0.99) as
    # BasicSR's ESRGAN pre-training, on 64 px target patches. Width 32, 4 blocks, growth 16 (ESRGAN: 64, 23, 32)
    # so that it trains on a CPU. The GAN stage is esrgan-x4.
    "esrgan-psnr-x4": dict(task="restore", data=dict(resolution=64, derive="downscale:4", xflip=True),
                           model=dict(arch="rrdb", width=32, blocks=4, growth=16, scale=4),
                           loss=dict(pixel="l1"),
                           optim=dict(g_lr=2e-4, beta1=0.9, beta2=0.99, batch=16, ema_kimg=0.0),
                           run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # ESRGAN's GAN stage x4 (Wang et al. 2018, sec. 4.1): L1 x 0.01 + VGG19 conv5_4 perceptual (L1) x 1 +
    # relativistic average adversarial x 0.005, VGG-style D; Adam(1e-4, 0.9, 0.99) for both, no EMA. The RRDBNet
    # is that of esrgan-psnr-x4, so start it from a PSNR-oriented run: --init-from <esrgan-psnr-x4 run>.
    "esrgan-x4": dict(task="restore", data=dict(resolution=64, derive="downscale:4", xflip=True),
                      model=dict(arch="rrdb", width=32, blocks=4, growth=16, scale=4),
                      loss=dict(pixel="l1", pixel_weight=0.01, perceptual_weight=1.0, perceptual="l1",
                                adversarial_weight=0.005, gan_type="ragan", discriminator="vgg", d_width=32),
                      optim=dict(g_lr=1e-4, d_lr=1e-4, beta1=0.9, beta2=0.99, batch=16, ema_kimg=0.0),
                      run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # SRGAN x4 (Ledig et al. 2017, eq. 3): VGG content loss (MSE on features) + 1e-3 x non-saturating adversarial
    # loss, no pixel term, VGG-style D; Adam(1e-4, 0.9, 0.999). The MSRResNet of srresnet-x4: --init-from that run.
    "srgan-x4": dict(task="restore", data=dict(resolution=64, derive="downscale:4", xflip=True),
                     model=dict(arch="srresnet", width=32, blocks=6, scale=4),
                     loss=dict(pixel="l2", pixel_weight=0.0, perceptual_weight=1.0, perceptual="l2",
                               adversarial_weight=1e-3, gan_type="vanilla", discriminator="vgg", d_width=32),
                     optim=dict(g_lr=1e-4, d_lr=1e-4, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                     run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # Blind Gaussian denoising (task "restore"), DnCNN-B (Zhang et al. 2017, sec. 4.1): a residual CNN, one model
    # for every sigma in [0, 55] (DnCNN-B's range, which covers the benchmark's 15/25/50 with room above), 50x50
    # patches (here 48) and Adam(1e-3, 0.9, 0.999) with L2 (here L1, the project's PSNR-oriented default).
    # Width 48 and depth 15 (DnCNN-B: 64 and 20) so that it trains on a CPU; receptive field 31 px. No BN
    # (DnCNN-B has it): in minutes-long CPU runs the BN net trailed the plain one (bench/pretrained.py's probe);
    # --set model.batch_norm=true for the paper's net on a longer budget.
    "denoise-blind": dict(task="restore", data=dict(resolution=48, derive="noise:gaussian:0-55", xflip=True),
                          model=dict(arch="rescnn", width=48, depth=15, batch_norm=False),
                          loss=dict(pixel="l1"),
                          optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                          run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # Non-blind Gaussian denoising (task "restore"), FFDNet (Zhang et al. 2018, sec. III-B/IV-A): the noise level
    # sigma is an input channel, trained on sigma in [0, 75] drawn per image (the level the degradation drew is
    # the map), 50x50 patches (here 48), Adam(1e-3). FFDNet works on 4 half-resolution sub-images with 12-15
    # layers of 64-96 channels and BN; here the residual CNN of denoise-blind (no BN, as there) at full
    # resolution, with the noise map.
    "denoise-nonblind": dict(task="restore", data=dict(resolution=48, derive="noise:gaussian:0-75", xflip=True),
                             model=dict(arch="rescnn", width=48, depth=15, batch_norm=False, noise_map=True),
                             loss=dict(pixel="l1"),
                             optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                             run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0,
                                      grid_samples=8)),
    # De-raining (task "restore"), after ID-CGAN (Zhang, Sindagi & Patel 2017): synthetic rain streaks on clean
    # photos (data/derive.py's rain op, light to heavy: 1-6 % of the pixels), an encoder-decoder generator (here
    # the U-Net autoencoder; its 147 px receptive field sees whole streaks, which run 1/8-1/3 of the patch) with
    # the PSNR-oriented L1 loss only (ID-CGAN adds perceptual and adversarial terms: --set loss.* as esrgan-x4).
    # 64 px patches, Adam(1e-3, 0.9, 0.999), width 32 (ID-CGAN trains on 256 px with Adam 2e-3).
    "derain": dict(task="restore", data=dict(resolution=64, derive="rain:0.01-0.06", xflip=True),
                   model=dict(arch="unet", width=32, levels=3),
                   loss=dict(pixel="l1"),
                   optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                   run=dict(kimg=100.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
    # A U-Net denoising autoencoder (task "restore"), L1 on 64 px patches with Gaussian noise (sigma 25 of 255).
    "unet-denoise-25": dict(task="restore", data=dict(resolution=64, derive="noise:gaussian:25", xflip=True),
                            model=dict(arch="unet", width=32, levels=3),
                            loss=dict(pixel="l1"),
                            optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                            run=dict(kimg=50.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
}

# ---- Inpainting presets (task "inpaint", docs/inpainting.md) ----
# DeepFill v2 (Yu et al. 2019, sec. 4 and the authors' inpaint.yml): gated coarse-to-fine generator with contextual
# attention, SN-PatchGAN D (5x5 stride-2 SN convs on image + mask), hinge loss; L1 on the coarse and refined output
# x 1 each + adversarial x 1; Adam(1e-4, 0.5, 0.999) for both, batch 16; masks the union of a free-form brush mask
# and a random box, as the reference code. D has log2(res) - 2 layers, so its patch-score map is 4x4 at every size
# (the paper: 6 at 256 px). 64 px drops the rate-16 dilation (its 16 px feature map would see only padding) and is
# narrower so that it trains on a CPU; 256 px is the paper's width (cnum 48).
def _deepfill(resolution: int, width: int, dilations: list[int], d_layers: int) -> dict[str, Any]:
    return dict(task="inpaint", data=dict(resolution=resolution, masks="free-form+box", xflip=True),
                model=dict(arch="deepfill", width=width, dilations=dilations),
                loss=dict(reconstruction="l1", region="image", reconstruction_weight=1.0, coarse_weight=1.0,
                          adversarial="hinge", adversarial_weight=1.0, d_width=64, d_layers=d_layers),
                optim=dict(g_lr=1e-4, d_lr=1e-4, beta1=0.5, beta2=0.999, batch=16, ema_kimg=0.0),
                run=dict(kimg=200.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8))


PRESETS |= {
    # Context Encoder (Pathak et al. 2016, sec. 3-4): the central half of the image is the hole (64 px of 128);
    # L2 over the hole x 0.999 + adversarial (non-saturating) x 0.001; Adam with beta1 0.5 and D's lr 10 times
    # lower than G's. The bottleneck is 512 channels (the paper: 4000) and D sees the whole composite image.
    "context-encoder-64": dict(task="inpaint", data=dict(resolution=64, masks="center", xflip=True),
                               model=dict(arch="context_encoder", width=64, levels=4, bottleneck=512),
                               loss=dict(reconstruction="l2", region="hole", reconstruction_weight=0.999,
                                         coarse_weight=0.0, adversarial="ns", adversarial_weight=0.001,
                                         d_width=64, d_layers=4),
                               optim=dict(g_lr=2e-4, d_lr=2e-5, beta1=0.5, beta2=0.999, batch=16, ema_kimg=0.0),
                               run=dict(kimg=200.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0,
                                        grid_samples=8)),
    "deepfill-64": _deepfill(64, 16, [2, 4, 8], d_layers=4),
    "deepfill-128": _deepfill(128, 24, [2, 4, 8, 16], d_layers=5),
    "deepfill-256": _deepfill(256, 24, [2, 4, 8, 16], d_layers=6),
}

# ---- Translation presets (tasks "pix2pix" and "cyclegan", docs/translation.md) ----
# `ganforge train --pairs NAME` sets data.derive to PAIRS[NAME] (or takes NAME as a derive chain): derived pairs.
PAIRS: dict[str, str] = {
    "edges": "edges",     # soft Sobel edge map -> photo (pix2pix's edges2shoes, from any photo folder)
    "gray": "gray",       # BT.601 luma replicated to RGB -> colour photo
    "lab": "lab",         # CIE L* as one channel -> colour photo (colorization in Lab)
    "degraded": "blur:0-2,noise:gaussian:0-25,jpeg:40-95",  # degraded -> clean
}


def _pix2pix(resolution: int, depth: int, width: int, batch: int, kimg: float, **data: Any) -> dict[str, Any]:
    return dict(task="pix2pix", data=dict(resolution=resolution, xflip=True, **data),
                model=dict(arch="unet_translator", width=width, depth=depth, norm="batch", dropout=0.5,
                           d_width=width, d_layers=3),
                loss=dict(adversarial="ns", l1_weight=100.0, lr_decay_start=1.0),
                optim=dict(g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999, batch=batch, ema_kimg=0.0),
                run=dict(kimg=kimg, sample_every_kimg=2.0, snapshot_every_kimg=10.0, checkpoint_every_kimg=5.0,
                         grid_samples=8))


def _cyclegan(resolution: int, blocks: int, width: int, batch: int, kimg: float) -> dict[str, Any]:
    return dict(task="cyclegan", data=dict(resolution=resolution, xflip=True),
                model=dict(arch="resnet_translator", width=width, blocks=blocks, norm="instance", dropout=0.0,
                           d_width=width, d_layers=3),
                loss=dict(adversarial="lsgan", cycle_weight=10.0, identity_weight=0.5, pool_size=50,
                          lr_decay_start=0.5),
                optim=dict(g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999, batch=batch, ema_kimg=0.0),
                run=dict(kimg=kimg, sample_every_kimg=2.0, snapshot_every_kimg=10.0, checkpoint_every_kimg=5.0,
                         grid_samples=8))


PRESETS |= {
    # pix2pix (Isola et al. 2017, sec. 3-4 and appx. 6): U-Net-256 G (depth 8, 64 channels, BatchNorm, dropout 0.5),
    # 70x70 PatchGAN D on concat(A, B), cGAN (non-saturating) + 100 x L1, Adam(2e-4, 0.5, 0.999), D then G each
    # step, batch 1, 200 epochs of facades' 400 images = 80 kimg, constant lr. Inference: eval mode (running BN
    # statistics, no dropout; docs/translation.md). A|B files, A/ + B/ folders, or --pairs edges|gray|lab|degraded.
    "pix2pix-256": _pix2pix(256, depth=8, width=64, batch=1, kimg=80.0),
    # The same at 64 px for a CPU: depth 6 (a 1x1 bottleneck at 64 px), 32 channels, batch 4.
    "pix2pix-64": _pix2pix(64, depth=6, width=32, batch=4, kimg=20.0),
    # Colorization in Lab: pix2pix-64 on the CIE L* of each photo (one channel) -> the RGB photo; the translate
    # pipeline keeps the input's L* and takes only the colours (a*b*) from the model (Zhang et al. 2016's L -> ab).
    "colorize-64": _pix2pix(64, depth=6, width=32, batch=4, kimg=20.0, derive="lab", channels=3),
    # CycleGAN (Zhu et al. 2017, sec. 4 and appx. 7): ResNet G with 9 blocks at 256 px, 64 channels, InstanceNorm;
    # 70x70 PatchGAN D; LSGAN, cycle lambda 10, identity 0.5 x lambda, a history of 50 fakes per D; Adam(2e-4,
    # 0.5, 0.999), batch 1; 100 epochs constant lr and 100 decaying linearly to 0 (lr_decay_start 0.5);
    # horse2zebra's ~1,100 images x 200 epochs = 220 kimg.
    "cyclegan-256": _cyclegan(256, blocks=9, width=64, batch=1, kimg=220.0),
    # The same at 64 px for a CPU: 6 blocks (the paper's 128 px choice), 32 channels, batch 4.
    "cyclegan-64": _cyclegan(64, blocks=6, width=32, batch=4, kimg=20.0),
}

_TAGS = {"model": set(_MODEL_CLASSES), "loss": set(TASK_ARCHS)}


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the allowed range."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """Turn ``["optim.g_lr=1e-4", "data.xflip=false"]`` into a nested override dict (values parsed as JSON
    where possible, else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. optim.g_lr=1e-4")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        # Union sections carry their tag in the path (model.dcgan.nope): name the field, then the choice.
        tag = ""
        if len(loc) > 2 and loc[0] in _TAGS and loc[1] in _TAGS[loc[0]]:
            tag = f" ({'arch' if loc[0] == 'model' else 'task'} {loc.pop(1)})"
        field = ".".join(loc) + tag if loc else "config"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) or "got " in e["msg"] else f" (got {got!r})"
        lines.append(f"  {field}: {e['msg']}{got_s}")
    return "invalid config:\n" + "\n".join(lines)


def resolve_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Merge a preset from ``PRESETS`` with nested overrides and validate. Raises ConfigError."""
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        base = deep_merge(PRESETS[preset], {"preset": preset})
    merged = deep_merge(base, overrides or {})
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
