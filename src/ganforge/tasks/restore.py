"""The restoration task: one network maps a degraded image to a clean one (denoising, super-resolution;
deblurring and deraining grow from here).

Module "net" (nets/rescnn.py, DnCNN-style, same size; nets/srresnet.py, MSRResNet, x2/x3/x4; nets/rrdb.py; nets/unet.py)
and, with ``optim.ema_kimg > 0``, its EMA copy "net_ema". With ``loss.adversarial_weight > 0`` (the GAN stage:
SRGAN, ESRGAN, a GAN denoiser) also a discriminator "D" (nets/vgg_d.py or nets/unet_d.py) with its own Adam; the
snapshot still holds only "net". A batch is {"input", "target"} from
``data.pairs``: lq/ + gt/ or A/ + B/ folders, or any image folder with a derived degradation (``data.derive``, e.g.
noise:gaussian:25 or downscale:4) applied on the fly to random patches. The input may be model.scale times smaller.

    D      GAN stage only, every step: adversarial loss (vanilla or relativistic average) on target vs the
           detached net(input)
    net    every step: pixel_weight * pixel loss (L1 or L2) between net(input) and target (PSNR-oriented training
           when alone) + perceptual_weight * feature loss (losses_perceptual.py) + adversarial_weight * G loss

The U-Net D scores every pixel: its loss is applied per pixel (the means run over N x H x W scores), as Real-ESRGAN.

A non-blind denoiser (rescnn with ``model.noise_map``, FFDNet) is also told each input's noise level: when the
derive chain adds Gaussian noise, batches carry ``"sigma"`` [N] (0..255 units), the level the chain drew for that
image (data/derive.py's side channel, read through ``NoiseLevelPairs``), and every call of the net passes it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import DataConfig, OptimConfig, ResCNNModel, RestoreLoss, RRDBModel, SRResNetModel, UNetModel
from ganforge.core.grid import to_uint8
from ganforge.data.batches import TrainData
from ganforge.data.derive import RecordingDerive, parse_derive
from ganforge.data.pairs import PairBatches, load_pairs
from ganforge.losses import get_adversarial, ragan_d, ragan_g
from ganforge.losses_perceptual import PerceptualLoss
from ganforge.nets import build_net
from ganforge.tasks.base import Phase, StepInputs, adam

PREVIEW_SEED = 12345  # the preview's patches and degradations are fixed for the whole run

RestoreModel = ResCNNModel | SRResNetModel | RRDBModel | UNetModel


def build_restorer(model: RestoreModel, channels: int) -> nn.Module:
    """The network of ``model.arch`` (config.TASK_ARCHS["restore"]) with its constructor kwargs from the config."""
    if model.arch == "rescnn":
        return build_net("rescnn", channels=channels, width=model.width, depth=model.depth,
                         batch_norm=model.batch_norm, noise_map=model.noise_map)
    if model.arch == "srresnet":
        return build_net("srresnet", channels=channels, width=model.width, blocks=model.blocks, scale=model.scale)
    if model.arch == "rrdb":
        return build_net("rrdb", channels=channels, width=model.width, blocks=model.blocks, growth=model.growth,
                         scale=model.scale)
    if model.arch == "unet":
        return build_net("unet", channels=channels, width=model.width, levels=model.levels)
    raise ValueError(f"model.arch={model.arch!r} is not a restoration network; valid: rescnn, srresnet, rrdb, unet")


class NoiseLevelPairs:
    """Derived pairs whose batches also carry ``"sigma"`` [N]: the Gaussian noise level (0..255 units) the derive
    chain drew for each input, on the batch's device. Everything else is the wrapped ``PairBatches``'s (same
    fingerprint, same draws: recording draws nothing). The chain must be a ``RecordingDerive``, which keeps the
    side channel of its latest call; ``fetch`` reads it right after the batch is made."""

    def __init__(self, pairs: PairBatches):
        assert isinstance(pairs.derive, RecordingDerive) and "sigma" in pairs.derive.reports
        self.pairs = pairs

    def __getattr__(self, name: str) -> Any:  # name, channels, report, scale, input_channels, derive, ...
        return getattr(self.pairs, name)

    def __len__(self) -> int:
        return len(self.pairs)

    def fetch(self, idx: np.ndarray, gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        batch = self.pairs.fetch(idx, gen, device)
        return {**batch, "sigma": self.pairs.derive.last["sigma"].to(device)}


class RestoreTask:
    name: ClassVar[str] = "restore"
    pipeline: ClassVar[str] = "restore"
    divergence_hint: ClassVar[str] = "Try a lower learning rate (optim.g_lr) or the L1 loss (loss.pixel=l1)"

    def __init__(self, model: RestoreModel, loss: RestoreLoss, optim: OptimConfig, channels: int,
                 preview_batch: dict[str, Tensor] | None = None):
        self.model, self.loss = model, loss
        self.net = build_restorer(model, channels)
        self.modules: dict[str, nn.Module] = {"net": self.net}
        self.ema: dict[str, str] = {}
        self.snapshot_modules = {"net": "net"}
        if optim.ema_kimg > 0:
            self.modules["net_ema"] = copy.deepcopy(self.net).eval().requires_grad_(False)
            self.ema = {"net_ema": "net"}
            self.snapshot_modules = {"net": "net_ema"}
        self.frozen: set[nn.Parameter] = set()
        self.grid_cols: int | None = None
        self.preview_batch = preview_batch
        self.pixel: Callable[[Tensor, Tensor], Tensor] = F.l1_loss if loss.pixel == "l1" else F.mse_loss
        # The frozen feature network is not a task module: neither trained nor checkpointed (fixed weights or seed).
        self.perceptual = PerceptualLoss(loss.perceptual) if loss.perceptual_weight > 0 else None
        self.resumed_perceptual: str | None = None  # the feature network named in the checkpoint we resume
        self.noise_map = bool(getattr(model, "noise_map", False))  # non-blind: every net call gets the batch's sigma
        self.gan = loss.adversarial_weight > 0
        if self.gan:
            self.D = build_net(f"{loss.discriminator}.D", channels=channels, width=loss.d_width)
            self.modules["D"] = self.D
            if loss.gan_type == "ragan":
                self.adv_d, self.adv_g = ragan_d, ragan_g
            else:  # vanilla: SRGAN's non-saturating loss (Goodfellow et al. 2014), G sees only its fakes
                ns = get_adversarial("ns")
                self.adv_d, self.adv_g = ns.d, lambda real, fake: ns.g(fake)

    @classmethod
    def from_data(cls, model: RestoreModel, loss: RestoreLoss, optim: OptimConfig, resolution: int,
                  data: TrainData) -> RestoreTask:
        c_in = getattr(data, "input_channels", data.channels)
        if c_in != data.channels:
            raise ValueError(f"the data's inputs have {c_in} channel(s) and its targets {data.channels}, but "
                             f"model.arch={model.arch!r} keeps the channel count; use inputs and targets "
                             "with the same channel count (e.g. derive gray rather than gray:1, or data.channels)")
        data_scale, model_scale = getattr(data, "scale", 1), getattr(model, "scale", 1)
        if data_scale != model_scale and model_scale == 1:
            raise ValueError(f"the data's input is {data_scale}x smaller than its target, but model.arch="
                             f"{model.arch!r} keeps the image size; use same-size pairs or a non-scaling derive "
                             f"(noise, gray, edges), or model.arch='srresnet' with model.scale={data_scale}")
        if data_scale != model_scale:
            raise ValueError(f"the data's input is {data_scale}x smaller than its target (data.scale={data_scale}), "
                             f"but model.scale={model_scale}; set model.scale={data_scale} or use data of that scale")
        if getattr(model, "noise_map", False) and not isinstance(data, NoiseLevelPairs):
            raise ValueError("model.noise_map=true (a non-blind denoiser) needs the noise level of every training "
                             "input: derive the inputs with Gaussian noise (data.derive=noise:gaussian:0-75); "
                             "paired data carries no noise level")
        if loss.adversarial_weight > 0 and loss.discriminator == "vgg" and resolution < 32:
            raise ValueError(f"data.resolution={resolution}: loss.discriminator='vgg' needs target patches of at "
                             "least 32 px; raise data.resolution or use loss.discriminator='unet'")
        if loss.adversarial_weight > 0 and loss.discriminator == "unet" and resolution % 8:
            raise ValueError(f"data.resolution={resolution}: loss.discriminator='unet' needs a multiple of 8")
        n = min(8, len(data))
        batch = data.fetch(np.arange(n), torch.Generator().manual_seed(PREVIEW_SEED), torch.device("cpu"))
        return cls(model, loss, optim, data.channels, batch)

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        """Pairs (lq/ + gt/, A/ + B/, A|B files) or derived pairs; a chain that adds Gaussian noise also gives each
        batch its per-image noise level "sigma" (``NoiseLevelPairs``), which a non-blind net needs."""
        derive = parse_derive(data.derive) if data.derive else None
        if derive is not None and "sigma" in derive.reports:
            derive = RecordingDerive.of(derive)
        pairs = load_pairs(data.source, data.resolution, derive=derive, channels=data.channels,
                           max_images=data.max_images, seed=data.subset_seed, xflip=data.xflip, rot90=data.rot90)
        return NoiseLevelPairs(pairs) if isinstance(derive, RecordingDerive) else pairs

    def restore(self, net: nn.Module, batch: dict[str, Tensor], y: Tensor | None = None) -> Tensor:
        """``net(y)``, with the batch's per-image noise level for a non-blind net; ``y`` defaults to the input."""
        y = batch["input"] if y is None else y
        return net(y, batch["sigma"][:y.shape[0]]) if self.noise_map else net(y)

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        out = {"net": adam(self.net.parameters(), optim.g_lr, optim)}
        if self.gan:
            out["D"] = adam(self.D.parameters(), optim.d_lr, optim)
        return out

    def phases(self) -> list[Phase]:
        net = Phase("net", "net", 1, self.net_main)
        return [Phase("D", "D", 1, self.d_main), net] if self.gan else [net]

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        x = inp.batch["target"]                                                         # [N, C, H, W]
        with torch.no_grad():
            fake = self.restore(self.net, inp.batch)                                    # [N, C, H, W]
        real_s, fake_s = self.D(x), self.D(fake)                                        # [N] or [N, 1, H, W]
        loss = self.adv_d(real_s, fake_s)
        return {"D_adv": loss.detach(), "D_real": real_s.mean().detach(), "D_fake": fake_s.mean().detach(),
                "loss": loss}

    def net_main(self, inp: StepInputs) -> dict[str, Tensor]:
        x = inp.batch["target"]                                                         # [N, C, H, W]
        out = self.restore(self.net, inp.batch)                                         # [N, C, H, W]
        pixel = self.pixel(out, x)
        if self.perceptual is None and not self.gan:
            return {"pixel": pixel.detach(), "loss": pixel}  # PSNR-oriented: exactly the pixel loss
        lc = self.loss
        losses = {"pixel": pixel.detach()}
        total = lc.pixel_weight * pixel
        if self.perceptual is not None:
            perceptual = self.perceptual(out, x)
            losses["perceptual"] = perceptual.detach()
            total = total + lc.perceptual_weight * perceptual
        if self.gan:
            # ESRGAN eq. 2 needs D's real scores too; D is frozen in this phase and the real scores are constants.
            adv = self.adv_g(self.D(x).detach(), self.D(out))
            losses["adv"] = adv.detach()
            total = total + lc.adversarial_weight * adv
        losses["loss"] = total
        return losses

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        """Rows of input | output | target for the fixed preview patches."""
        net = self.modules[self.snapshot_modules["net"]]
        y, x = self.preview_batch["input"][:n].to(device), self.preview_batch["target"][:n].to(device)
        was_training = net.training
        net.eval()  # BatchNorm: use the running statistics, and do not update them with the preview
        with torch.no_grad():
            out = self.restore(net, {k: v.to(device) for k, v in self.preview_batch.items()}, y).clamp(-1, 1)
        net.train(was_training)
        if y.shape[-1] != x.shape[-1]:  # a smaller input (super-resolution) is shown enlarged
            y = F.interpolate(y, size=x.shape[-2:], mode="nearest")
        rows = torch.stack([y, out, x], dim=1).flatten(0, 1)                              # [3n, C, H, W]
        return to_uint8(rows), 3

    def snapshot_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"scale": getattr(self.model, "scale", 1), "receptive_field": self.net.receptive_field}
        if self.noise_map:
            meta["noise_map"] = True  # the restore pipeline asks for sigma (ganforge denoise --sigma)
        if self.perceptual is not None:
            meta["perceptual"] = self.perceptual.name  # which feature network trained this model
        return meta

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def log_notes(self) -> list[str]:
        if self.perceptual is None:
            return []
        notes = [f"perceptual loss features: {self.perceptual.name}"]
        if self.resumed_perceptual not in (None, self.perceptual.name):
            notes.append(f"warning: this run was trained with perceptual features {self.resumed_perceptual!r} and "
                         f"continues with {self.perceptual.name!r} (torchvision or its VGG19 weights appeared or "
                         "went away): the loss changes from here on")
        return notes

    def extra_state(self) -> dict[str, Any]:
        return {"perceptual": self.perceptual.name} if self.perceptual is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.resumed_perceptual = state.get("perceptual")
