"""The unconditional / class-conditional GAN task: networks, and one training step as phases.

Modules G, D and G_ema (the EMA copy that is snapshotted as "G"); a batch is {"image", "label"} from
``ImageBatches``. The phases (see tasks/base.py for the protocol the loop uses):

    D      every d-step: adversarial loss on real and fake (+ WGAN-GP, + ACGAN class loss)
    D_r1   every r1_every_steps: lazy R1 on reals (StyleGAN2 sec. 3.1: scaled by the interval)
    G      every d_steps steps: adversarial loss on fakes (+ ACGAN class loss)
    G_pl   every pl_every_steps (StyleGAN2 only): lazy path-length regulariser (Karras et al. 2020, sec. 3.2)

StyleGAN2 adds style mixing (a second latent takes over from a random layer on), and ADA (Karras et al.
2020b) replaces DiffAugment when ``loss.ada`` is set: its strength p follows D's outputs on reals; the loop
calls ``after_step`` after every step, and ``extra_state`` carries p and the path-length mean across a
resume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.config import DataConfig, GanLoss, OptimConfig
from ganforge.core.grid import to_uint8
from ganforge.core.latent import z_from_seeds
from ganforge.data import load_dataset
from ganforge.data.ada import AdaAugment, AdaController
from ganforge.data.augment import diff_augment, parse_policy
from ganforge.data.batches import ImageBatches, TrainData
from ganforge.losses import acgan_loss, get_adversarial, gradient_penalty, r1_penalty
from ganforge.nets import build_net
from ganforge.tasks.base import Phase, StepInputs, adam


def gan_nets(model, resolution: int, channels: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """G and D for a GAN model config (DcganModel | SnganModel | StyleGAN2Model); one branch per architecture
    field set, so each architecture's constructor gets exactly its own arguments."""
    m = model
    g_kwargs = dict(z_dim=m.z_dim, resolution=resolution, channels=channels, width=m.g_width,
                    max_width=m.max_width, num_classes=num_classes)
    d_kwargs = dict(resolution=resolution, channels=channels, width=m.d_width, max_width=m.max_width,
                    num_classes=num_classes, cond=m.cond if num_classes else "none")
    if m.arch == "stylegan2":
        # conv_clamp 256 as NVlabs: keeps reduced-precision activations finite; inactive in normal training.
        g_kwargs |= dict(w_dim=m.w_dim, mapping_layers=m.mapping_layers, conv_clamp=256, amp_res=m.amp_res)
        d_kwargs |= dict(conv_clamp=256, amp_res=m.amp_res)
    elif m.arch == "dcgan":
        d_kwargs["spectral_norm"] = m.d_spectral_norm
    return build_net(f"{m.arch}.G", **g_kwargs), build_net(f"{m.arch}.D", **d_kwargs)


class GanTask:
    name: ClassVar[str] = "gan"
    pipeline: ClassVar[str] = "generate"
    divergence_hint: ClassVar[str] = ("Try a lower learning rate (optim.d_lr / optim.g_lr), R1 (--r1-gamma), or "
                                      "another loss (--loss hinge)")

    def __init__(self, model, loss: GanLoss, optim: OptimConfig, resolution: int, channels: int,
                 num_classes: int = 0, class_names: tuple[str, ...] | list[str] = ()):
        m = model
        if m.cond != "none" and num_classes < 2:
            raise ValueError(f"model.cond={m.cond!r} needs class labels, but the data has none: put the images in "
                             "one subfolder per class, or train unconditionally with --cond none")
        self.model, self.loss, self.optim = model, loss, optim
        self.num_classes = num_classes if m.cond != "none" else 0
        self.class_names = list(class_names) if self.num_classes else []
        self.grid_cols = self.num_classes or None  # with classes, column k shows class k
        self.z_dim = m.z_dim
        self.style = m.arch == "stylegan2"
        self.G, self.D = gan_nets(m, resolution, channels, self.num_classes)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.modules: dict[str, nn.Module] = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        self.ema = {"G_ema": "G"}  # with optim.ema_kimg = 0 the loop copies G into G_ema every step
        self.snapshot_modules = {"G": "G_ema"}
        # FreezeD (Mo et al. 2020): D's first blocks (highest resolution, nearest the pixels) keep their
        # transferred weights; the loop never lets them require grad and D's optimizer does not hold them.
        freeze = getattr(m, "freeze_d", 0)
        self.frozen: set[nn.Parameter] = set(self.D.blocks[:freeze].parameters()) if freeze else set()
        self.adv = get_adversarial(loss.adversarial)
        self.policy = parse_policy(loss.diffaugment)
        self.r1_gamma = loss.r1_gamma_value(resolution, optim.batch)
        self.ada = AdaAugment(loss.ada) if loss.ada else None
        self.ada_ctrl = AdaController(target=loss.ada_target, interval=loss.ada_interval,
                                      speed_kimg=loss.ada_kimg) if loss.ada else None
        self.pl_mean = 0.0  # running mean of path lengths (state: saved in checkpoints)

    @classmethod
    def from_data(cls, model, loss: GanLoss, optim: OptimConfig, resolution: int, data: TrainData) -> GanTask:
        return cls(model, loss, optim, resolution, data.channels, data.num_classes, data.class_names)

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        if data.derive:
            raise ValueError(f"data.derive={data.derive!r} makes input/target pairs, which the gan task does not "
                             "use; remove it or choose a restoration preset")
        images = load_dataset(data.source, data.resolution, channels=data.channels, resize=data.resize,
                              max_images=data.max_images, use_labels=data.use_labels, seed=data.subset_seed)
        return ImageBatches(images, data.xflip, device)

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        # Lazy R1 shares D's optimizer, so D's lr and betas get the StyleGAN2 k/(k+1) rescale.
        k = self.loss.r1_every_steps
        ratio = k / (k + 1) if self.r1_gamma > 0 else 1.0
        return {"G": adam(self.G.parameters(), optim.g_lr, optim),
                "D": adam([p for p in self.D.parameters() if p not in self.frozen], optim.d_lr, optim, ratio)}

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        # Each cell has its own seed; with classes, column k shows class k.
        z = z_from_seeds(range(n), self.z_dim).to(device)
        c = (torch.arange(n) % self.num_classes).to(device) if self.num_classes else None
        with torch.no_grad():
            fakes = [self.G_ema(z[i:i + 64], None if c is None else c[i:i + 64]) for i in range(0, n, 64)]
        return to_uint8(torch.cat(fakes)), self.num_classes or None

    def snapshot_meta(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    # ----- randomness helpers (all drawn from the step generator on CPU, then moved) -----

    def sample_z(self, n: int, gen: torch.Generator, device: torch.device) -> Tensor:
        return torch.randn(n, self.z_dim, generator=gen).to(device)                    # [N, z_dim]

    def sample_c(self, n: int, gen: torch.Generator, device: torch.device) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(0, self.num_classes, (n,), generator=gen).to(device)      # [N]

    def augment(self, x: Tensor, gen: torch.Generator) -> Tensor:
        # ADA (Karras et al. 2020b) or DiffAugment (Zhao et al. 2020): the same transforms for real and fake
        # before D, differentiable so that G learns through them.
        if self.ada is not None:
            return self.ada(x, gen)
        return diff_augment(x, self.policy, gen) if self.policy else x

    def generate(self, n: int, gen: torch.Generator, device: torch.device, update_w_avg: bool = False,
                 return_ws: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``n`` fakes with random z and c -> (x, c, ws). StyleGAN2: style mixing with probability
        ``loss.style_mixing`` (one cutoff layer per batch, as in stylegan2-ada-pytorch)."""
        c = self.sample_c(n, gen, device)
        z = self.sample_z(n, gen, device)
        if not self.style:
            return self.G(z, c), c, None
        ws = self.G.mapping(z, c, update_w_avg=update_w_avg)                              # [N, num_ws, w_dim]
        z2 = self.sample_z(n, gen, device)  # drawn every time so the stream does not depend on the coin
        mix, cutoff = torch.rand((), generator=gen), torch.randint(1, ws.shape[1], (), generator=gen)
        if float(mix) < self.loss.style_mixing:
            ws2 = self.G.mapping(z2, c)
            ws = torch.cat([ws[:, :int(cutoff)], ws2[:, int(cutoff):]], dim=1)
        return self.G.synthesis(ws, noise_mode="random"), c, ws if return_ws else None

    # ----- phases -----

    def phases(self) -> list[Phase]:
        lc, oc = self.loss, self.optim
        out = [Phase("D", "D", 1, self.d_main)]
        if self.r1_gamma > 0:
            out.append(Phase("D_r1", "D", lc.r1_every_steps, self.d_r1, reg=True))
        out.append(Phase("G", "G", oc.d_steps, self.g_main))
        if self.style and lc.pl_weight > 0:
            out.append(Phase("G_pl", "G", lc.pl_every_steps, self.g_pl, reg=True))
        return out

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        real = inp.batch["image"]                                                         # [N, C, H, W]
        n, dev = real.shape[0], real.device
        c_real = inp.batch.get("label") if self.num_classes else None
        with torch.no_grad():
            fake, c_fake, _ = self.generate(n, inp.gen, dev)
        real_s, real_logits = self.D(self.augment(real, inp.gen), c_real)
        if self.ada_ctrl is not None:
            self.ada_ctrl.accumulate(real_s)
        fake_s, fake_logits = self.D(self.augment(fake, inp.gen), c_fake)
        adv = self.adv.d(real_s, fake_s)
        losses = {"D_adv": adv, "D_real": real_s.mean().detach(), "D_fake": fake_s.mean().detach()}
        total = adv
        if self.loss.gp_weight > 0:
            gp = gradient_penalty(self.D, self.augment(real, inp.gen), self.augment(fake, inp.gen),
                                  c_real, inp.gen)
            losses["D_gp"] = gp
            total = total + self.loss.gp_weight * gp
        if real_logits is not None:
            # ACGAN (Odena et al. 2017 eq. 2): D classifies both reals and fakes.
            cls = acgan_loss(real_logits, c_real) + acgan_loss(fake_logits, c_fake)
            losses["D_cls"] = cls
            total = total + self.loss.acgan_weight * cls
        losses["loss"] = total
        return losses

    def d_r1(self, inp: StepInputs) -> dict[str, Tensor]:
        # R1 (Mescheder et al. 2018 eq. 9), lazy: gamma/2 * E||grad D(x)||^2 times the interval.
        x = inp.batch["image"].detach().requires_grad_(True)
        score, _ = self.D(self.augment(x, inp.gen), inp.batch.get("label") if self.num_classes else None)
        r1 = r1_penalty(score, x).mean()
        loss = r1 * (self.r1_gamma / 2) * self.loss.r1_every_steps
        return {"D_r1": r1.detach(), "loss": loss}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        real = inp.batch["image"]
        fake, c, _ = self.generate(real.shape[0], inp.gen, real.device, update_w_avg=True)
        score, logits = self.D(self.augment(fake, inp.gen), c)
        adv = self.adv.g(score)
        losses = {"G_adv": adv}
        total = adv
        if logits is not None:
            cls = acgan_loss(logits, c)
            losses["G_cls"] = cls
            total = total + self.loss.acgan_weight * cls
        losses["loss"] = total
        return losses

    def g_pl(self, inp: StepInputs) -> dict[str, Tensor]:
        # Path-length regulariser (Karras et al. 2020, eq. 4), lazy: E(||J_w^T y|| - a)^2 with y ~ N(0, I)/sqrt(HW),
        # a the running mean of the lengths; on batch / pl_batch_shrink samples, scaled by the interval.
        lc = self.loss
        real = inp.batch["image"]
        n = max(1, real.shape[0] // lc.pl_batch_shrink)
        fake, _, ws = self.generate(n, inp.gen, real.device, return_ws=True)
        h, w = fake.shape[2:]
        y = torch.randn(fake.shape, generator=inp.gen).to(fake.device) / (h * w) ** 0.5
        (grad,) = torch.autograd.grad((fake.float() * y).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()                                  # [n]
        self.pl_mean = self.pl_mean + lc.pl_decay * (float(lengths.detach().mean()) - self.pl_mean)
        penalty = (lengths - self.pl_mean).square().mean()
        return {"G_pl": penalty.detach(), "pl_mean": torch.tensor(self.pl_mean),
                "loss": penalty * lc.pl_weight * lc.pl_every_steps}

    # ----- state beyond the networks and optimizers (checkpointed) -----

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        """Once per step: let the ADA controller adjust p. ``reduce`` averages over processes."""
        ctrl = self.ada_ctrl
        if ctrl is None:
            return
        if (ctrl.step + 1) % ctrl.interval == 0:  # an adjustment is due: agree on the accumulator first
            avg = reduce({"sum": ctrl.sign_sum, "count": ctrl.count})
            ctrl.sign_sum, ctrl.count = avg["sum"], avg["count"]
        ctrl.update(batch)
        self.ada.p = ctrl.p

    def stats(self) -> dict[str, float]:
        if self.ada_ctrl is None:
            return {}
        r_t = self.ada_ctrl.r_t
        return {"aug/p": self.ada_ctrl.p, **({"aug/r_t": r_t} if r_t == r_t else {})}  # r_t is NaN until set

    def log_notes(self) -> list[str]:
        return []

    def extra_state(self) -> dict[str, object]:
        state: dict[str, object] = {"pl_mean": self.pl_mean}
        if self.ada_ctrl is not None:
            state["ada"] = self.ada_ctrl.state_dict()
        return state

    def load_extra_state(self, state: dict[str, object]) -> None:
        self.pl_mean = float(state.get("pl_mean", 0.0))
        if self.ada_ctrl is not None and "ada" in state:
            self.ada_ctrl.load_state_dict(state["ada"])
            self.ada.p = self.ada_ctrl.p
