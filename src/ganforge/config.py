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


# One class per architecture: a field that the chosen architecture lacks is an error that names it.
ModelConfig = Annotated[DcganModel | SnganModel | StyleGAN2Model | ResCNNModel | SRResNetModel | RRDBModel |
                        UNetModel, Field(discriminator="arch")]

# The tasks (tasks/__init__.py has the classes) and the architectures each can train; the first is the default.
TASK_ARCHS: dict[str, tuple[str, ...]] = {
    "gan": ("dcgan", "sngan", "stylegan2"),
    "restore": ("rescnn", "srresnet", "rrdb", "unet"),
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


# The loss section belongs to the task; TrainConfig fills loss.task from its own task field.
LossConfig = Annotated[GanLoss | RestoreLoss, Field(discriminator="task")]


class OptimConfig(_Strict):
    g_lr: float = Field(2e-4, gt=0.0, le=1.0, description="generator (or the restoration network)")
    d_lr: float = Field(2e-4, gt=0.0, le=1.0, description="discriminator(s)")
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    batch: int = Field(64, ge=1, le=65536, description="global batch over all processes")
    batch_per_device: int | None = Field(None, ge=1, le=65536, description="micro-batch per process; smaller "
                                         "than batch / processes accumulates gradients. None = no accumulation")
    d_steps: int = Field(1, ge=1, le=20, description="D updates per G update")
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
    channels_last: Literal["auto", "on", "off"] = Field("auto", description="auto = on for CUDA")
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
    task: Literal["gan", "restore"] = Field("gan", description="what is trained: gan (images from noise), "
                                            "restore (image to image: denoise, ...); see TASK_ARCHS")
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
    "srresnet": SRResNetModel, "rrdb": RRDBModel, "unet": UNetModel}


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
    # A U-Net denoising autoencoder (task "restore"), L1 on 64 px patches with Gaussian noise (sigma 25 of 255).
    "unet-denoise-25": dict(task="restore", data=dict(resolution=64, derive="noise:gaussian:25", xflip=True),
                            model=dict(arch="unet", width=32, levels=3),
                            loss=dict(pixel="l1"),
                            optim=dict(g_lr=1e-3, beta1=0.9, beta2=0.999, batch=16, ema_kimg=0.0),
                            run=dict(kimg=50.0, sample_every_kimg=5.0, snapshot_every_kimg=10.0, grid_samples=8)),
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
