"""The inpainting task: a generator fills the holes of masked images (Context Encoder, DeepFill v2).

Module "G" (nets/context_encoder.py or nets/deepfill.py), its EMA copy "G_ema" when ``optim.ema_kimg > 0``, and a
discriminator "D" when ``loss.adversarial_weight > 0`` (Context Encoder's DCGAN-style D on images, or DeepFill's
SN-PatchGAN on image + mask). A batch is ``{"image", "mask"}`` (data/masks.py): image crops with generated masks
(``data.masks``), or the source's own images/ + masks/. G sees the image with the hole filled with 0 and the mask
(DeepFill also a ones channel); D always sees composites, the prediction inside the hole and the real pixels outside.

    D   every step: adversarial loss (hinge or non-saturating) on real images vs detached composites; DeepFill's
        SN-PatchGAN scores every patch of its last feature map (the hinge loss averages over all)
    G   every step: reconstruction_weight * pixel loss of the output + coarse_weight * pixel loss of DeepFill's coarse
        output (L1 over the whole image, Yu et al. 2019 sec. 3.4; Context Encoder: L2 over the hole, Pathak et al.
        2016 eq. 1), each plus ssim_weight * (1 - SSIM over the hole) when loss.ssim_weight > 0, + adversarial_weight
        * G's adversarial loss on the composite (eq. 2 / the hinge G loss)
        logged beside them: l1_vs_fill, the output's L1 in the hole over that of the fill a residual DeepFill starts
        from (model.prefill; the push-pull interpolation, nets/deepfill.py pushpull_fill, for other nets): below 1
        once the net fills better than the interpolation
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.config import ContextEncoderModel, DataConfig, DeepFillModel, InpaintLoss, OptimConfig
from ganforge.core.grid import to_uint8
from ganforge.core.imagemath import ssim_maps
from ganforge.data.batches import TrainData
from ganforge.data.masks import InpaintBatches, load_inpaint
from ganforge.losses import get_adversarial
from ganforge.nets import build_net
from ganforge.nets.deepfill import pushpull_fill
from ganforge.tasks.base import Phase, StepInputs, adam, optional_ema

PREVIEW_SEED = 12345  # the preview's crops and masks are fixed for the whole run

InpaintModel = ContextEncoderModel | DeepFillModel


def build_inpainter(model: InpaintModel, channels: int) -> nn.Module:
    """The generator of ``model.arch`` (config.TASK_ARCHS["inpaint"]) with its constructor kwargs from the config."""
    if model.arch == "context_encoder":
        return build_net("context_encoder", channels=channels, width=model.width, levels=model.levels,
                         bottleneck=model.bottleneck, max_width=model.max_width)
    if model.arch == "deepfill":
        return build_net("deepfill", channels=channels, width=model.width, dilations=list(model.dilations),
                         attention=model.attention, softmax_scale=model.softmax_scale, prefill=model.prefill)
    raise ValueError(f"model.arch={model.arch!r} is not an inpainting network; valid: deepfill, context_encoder")


def pixel_loss(out: Tensor, x: Tensor, mask: Tensor, kind: str, region: str) -> Tensor:
    """Mean |out - x| (l1) or (out - x)^2 (l2) over the whole image, or over the hole's pixels only."""
    err = (out - x).abs() if kind == "l1" else (out - x).square()                   # [N, C, H, W]
    if region == "image":
        return err.mean()
    return (err * mask).sum() / (mask.sum() * x.shape[1]).clamp_min(1.0)


def hole_ssim(out: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Mean SSIM (images in [-1, 1]) over the window positions centred in the hole, as bench/inpaint.py's hole SSIM;
    1 when no window is centred in a hole. Differentiable in ``out``."""
    s = ssim_maps((out + 1) / 2, (x + 1) / 2, data_range=1.0)[0].mean(1, keepdim=True)          # [N, 1, H-10, W-10]
    r = (mask.shape[-1] - s.shape[-1]) // 2
    m = mask[:, :, r:mask.shape[-2] - r, r:mask.shape[-1] - r]
    return ((s * m).sum() + (m.sum() == 0).to(s.dtype)) / m.sum().clamp_min(1.0)


def composite(out: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """The prediction inside the hole, the real pixels outside it."""
    return out * mask + x * (1 - mask)


class InpaintTask:
    name: ClassVar[str] = "inpaint"
    pipeline: ClassVar[str] = "inpaint"
    divergence_hint: ClassVar[str] = ("Try lower learning rates (optim.g_lr, optim.d_lr) or a smaller "
                                      "loss.adversarial_weight")

    def __init__(self, model: InpaintModel, loss: InpaintLoss, optim: OptimConfig, channels: int, resolution: int,
                 masks: str, preview_batch: dict[str, Tensor] | None = None):
        self.model, self.loss, self.resolution, self.masks = model, loss, resolution, masks
        self.G = build_inpainter(model, channels)
        self.deepfill = model.arch == "deepfill"
        self.modules: dict[str, nn.Module] = {"G": self.G}
        self.ema, self.snapshot_modules = optional_ema(self.modules, optim.ema_kimg)
        self.frozen: set[nn.Parameter] = set()
        self.grid_cols: int | None = None
        self.preview_batch = preview_batch
        self.gan = loss.adversarial_weight > 0
        if self.gan:
            if self.deepfill:
                self.D = build_net("deepfill.D", channels=channels, width=loss.d_width, layers=loss.d_layers)
            else:
                self.D = build_net("context_encoder.D", channels=channels, width=loss.d_width, levels=loss.d_layers)
            self.modules["D"] = self.D
            self.adv = get_adversarial(loss.adversarial)

    @classmethod
    def from_data(cls, model: InpaintModel, loss: InpaintLoss, optim: OptimConfig, resolution: int,
                  data: TrainData) -> InpaintTask:
        n = min(8, len(data))
        batch = data.fetch(np.arange(n), torch.Generator().manual_seed(PREVIEW_SEED), torch.device("cpu"))
        masks = data.masks.describe() if isinstance(data, InpaintBatches) else "the source's masks/"
        return cls(model, loss, optim, data.channels, resolution, masks, batch)

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        """Image crops with ``data.masks`` (generated or a mask folder), or the source's own images/ + masks/."""
        return load_inpaint(data.source, data.resolution, data.masks, channels=data.channels,
                            max_images=data.max_images, seed=data.subset_seed, xflip=data.xflip)

    # ---- The steps ----------------------------------------------------------------------------------------------

    def fill(self, net: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor | None, Tensor]:
        """(DeepFill's coarse output or None, the output) for the batch's images and masks, [N, C, H, W]."""
        x, m = batch["image"], batch["mask"]
        if self.deepfill:
            coarse, out = net(x, m, fill=self.prefill(batch), return_coarse=True)
            return coarse, out
        return None, net(x, m)

    def prefill(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's images with the hole filled as a residual DeepFill's ``prefill`` says (what its stages
        correct), computed once per batch and kept in it under "prefill" (the D and G phases and the logged
        l1_vs_fill share it); None for other nets."""
        if not (self.deepfill and self.G.residual):
            return None
        if "prefill" not in batch:
            batch["prefill"] = self.G.prefill_of(batch["image"], batch["mask"])
        return batch["prefill"]

    def score(self, x: Tensor, mask: Tensor) -> Tensor:
        """D's scores: [N] (Context Encoder's D) or [N, F] patch scores (SN-PatchGAN, which also sees the mask)."""
        return self.D(x, mask) if self.deepfill else self.D(x)

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        x, m = inp.batch["image"], inp.batch["mask"]                                    # [N, C, H, W], [N, 1, H, W]
        with torch.no_grad():
            fake = composite(self.fill(self.G, inp.batch)[1], x, m)
        real_s, fake_s = self.score(x, m), self.score(fake, m)
        loss = self.adv.d(real_s, fake_s)
        return {"D_adv": loss.detach(), "D_real": real_s.mean().detach(), "D_fake": fake_s.mean().detach(),
                "loss": loss}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        x, m = inp.batch["image"], inp.batch["mask"]
        lc = self.loss
        coarse, out = self.fill(self.G, inp.batch)
        losses: dict[str, Tensor] = {}

        def reconstruction(y: Tensor, name: str) -> Tensor:
            rec = pixel_loss(y, x, m, lc.reconstruction, lc.region)
            losses[name] = rec.detach()
            if lc.ssim_weight > 0:
                s = hole_ssim(y, x, m)
                losses[name.replace("rec", "ssim")] = s.detach()
                rec = rec + lc.ssim_weight * (1 - s)
            return rec

        total = lc.reconstruction_weight * reconstruction(out, "rec")
        if coarse is not None and lc.coarse_weight > 0:
            total = total + lc.coarse_weight * reconstruction(coarse, "rec_coarse")
        fill = self.prefill(inp.batch)
        if fill is None:  # the push-pull interpolation as the yardstick of nets that do not start from a fill
            fill = pushpull_fill(x * (1 - m), m)
        with torch.no_grad():  # < 1: the net fills the hole better than the interpolation alone (L1 in the hole)
            losses["l1_vs_fill"] = (pixel_loss(out.detach(), x, m, "l1", "hole")
                                    / pixel_loss(fill, x, m, "l1", "hole").clamp_min(1e-8))
        if self.gan:
            adv = self.adv.g(self.score(composite(out, x, m), m))
            losses["adv"] = adv.detach()
            total = total + lc.adversarial_weight * adv
        losses["loss"] = total
        return losses

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        out = {"G": adam(self.G.parameters(), optim.g_lr, optim)}
        if self.gan:
            out["D"] = adam(self.D.parameters(), optim.d_lr, optim)
        return out

    def phases(self) -> list[Phase]:
        g = Phase("G", "G", 1, self.g_main)
        return [Phase("D", "D", 1, self.d_main), g] if self.gan else [g]

    # ---- Preview, snapshot, state -------------------------------------------------------------------------------

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        """Rows of masked input (the hole white) | output composited into the known pixels | real image."""
        net = self.modules[self.snapshot_modules["G"]]
        batch = {k: v[:n].to(device) for k, v in self.preview_batch.items()}
        x, m = batch["image"], batch["mask"]
        was_training = net.training
        net.eval()  # Context Encoder's BatchNorm: running statistics, and no update from the preview
        with torch.no_grad():
            out = composite(self.fill(net, batch)[1].clamp(-1, 1), x, m)
        net.train(was_training)
        masked = x * (1 - m) + m                                                          # the hole in white
        rows = torch.stack([masked, out, x], dim=1).flatten(0, 1)                         # [3n, C, H, W]
        return to_uint8(rows), 3

    def snapshot_meta(self) -> dict[str, Any]:
        # The pipeline runs crops at the training resolution and needs sizes divisible by the net's stride.
        return {"resolution": self.resolution, "stride": int(self.G.stride), "masks": self.masks}

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def log_notes(self) -> list[str]:
        return []  # the mask coverage is in the intake report's notes (logged as "note: ...")

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
