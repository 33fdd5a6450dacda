"""The unconditional / class-conditional GAN task: networks, and one training step as phases.

A phase is data: which module it updates, how often, and a function returning a dict of losses whose
"loss" entry is backpropagated. The training loop (train/loop.py) iterates the phases; it knows nothing
about GANs beyond that.

    D      every d-step: adversarial loss on real and fake (+ WGAN-GP, + ACGAN class loss)
    D_r1   every r1_every_steps: lazy R1 on reals (StyleGAN2 sec. 3.1: scaled by the interval)
    G      every d_steps steps: adversarial loss on fakes (+ ACGAN class loss)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge.config import TrainConfig
from ganforge.data.augment import diff_augment, parse_policy
from ganforge.losses import acgan_loss, get_adversarial, gradient_penalty, r1_penalty
from ganforge.nets import build_discriminator, build_generator


@dataclass
class StepInputs:
    real: Tensor            # [N, C, H, W] float in [-1, 1], on the training device
    c_real: Tensor | None   # [N] int64 class labels, or None for unconditional models
    gen: torch.Generator    # CPU generator seeded by (seed, rank, step): all randomness of this step
    step: int


@dataclass(frozen=True)
class Phase:
    name: str
    module: str                                        # key in task.modules whose parameters it updates
    interval: int                                      # runs when step % interval == 0
    loss: Callable[[StepInputs], dict[str, Tensor]]    # must contain "loss"
    reg: bool = False                                  # regulariser: computed in fp32, never under autocast


class GanTask:
    name = "gan"

    def __init__(self, cfg: TrainConfig, channels: int, num_classes: int):
        m = cfg.model
        self.cfg = cfg
        self.num_classes = num_classes if m.cond != "none" else 0
        self.z_dim = m.z_dim
        res = cfg.data.resolution
        self.G: nn.Module = build_generator(
            m.arch, z_dim=m.z_dim, resolution=res, channels=channels, width=m.g_width,
            max_width=m.max_width, num_classes=self.num_classes)
        d_kwargs = dict(resolution=res, channels=channels, width=m.d_width, max_width=m.max_width,
                        num_classes=self.num_classes, cond=m.cond if self.num_classes else "none")
        if m.arch == "dcgan":
            d_kwargs["spectral_norm"] = m.d_spectral_norm
        self.D: nn.Module = build_discriminator(m.arch, **d_kwargs)
        self.modules: dict[str, nn.Module] = {"G": self.G, "D": self.D}
        self.adv = get_adversarial(cfg.loss.adversarial)
        self.policy = parse_policy(cfg.loss.diffaugment)

    # ----- randomness helpers (all drawn from the step generator on CPU, then moved) -----

    def sample_z(self, n: int, gen: torch.Generator, device: torch.device) -> Tensor:
        return torch.randn(n, self.z_dim, generator=gen).to(device)                    # [N, z_dim]

    def sample_c(self, n: int, gen: torch.Generator, device: torch.device) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(0, self.num_classes, (n,), generator=gen).to(device)      # [N]

    def augment(self, x: Tensor, gen: torch.Generator) -> Tensor:
        # DiffAugment (Zhao et al. 2020): the same random transforms family for real and fake before D.
        return diff_augment(x, self.policy, gen) if self.policy else x

    # ----- phases -----

    def phases(self) -> list[Phase]:
        lc, oc = self.cfg.loss, self.cfg.optim
        out = [Phase("D", "D", 1, self.d_main)]
        if lc.r1_gamma > 0:
            out.append(Phase("D_r1", "D", lc.r1_every_steps, self.d_r1, reg=True))
        out.append(Phase("G", "G", oc.d_steps, self.g_main))
        return out

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        n, dev = inp.real.shape[0], inp.real.device
        c_real = inp.c_real if self.num_classes else None
        with torch.no_grad():
            c_fake = self.sample_c(n, inp.gen, dev)
            fake = self.G(self.sample_z(n, inp.gen, dev), c_fake)
        real_s, real_logits = self.D(self.augment(inp.real, inp.gen), c_real)
        fake_s, fake_logits = self.D(self.augment(fake, inp.gen), c_fake)
        adv = self.adv.d(real_s, fake_s)
        losses = {"D_adv": adv, "D_real": real_s.mean().detach(), "D_fake": fake_s.mean().detach()}
        total = adv
        if self.cfg.loss.gp_weight > 0:
            gp = gradient_penalty(self.D, self.augment(inp.real, inp.gen), self.augment(fake, inp.gen),
                                  c_real, inp.gen)
            losses["D_gp"] = gp
            total = total + self.cfg.loss.gp_weight * gp
        if real_logits is not None:
            # ACGAN (Odena et al. 2017 eq. 2): D classifies both reals and fakes.
            cls = acgan_loss(real_logits, c_real) + acgan_loss(fake_logits, c_fake)
            losses["D_cls"] = cls
            total = total + self.cfg.loss.acgan_weight * cls
        losses["loss"] = total
        return losses

    def d_r1(self, inp: StepInputs) -> dict[str, Tensor]:
        # R1 (Mescheder et al. 2018 eq. 9), lazy: gamma/2 * E||grad D(x)||^2 times the interval.
        x = inp.real.detach().requires_grad_(True)
        score, _ = self.D(self.augment(x, inp.gen), inp.c_real if self.num_classes else None)
        r1 = r1_penalty(score, x).mean()
        loss = r1 * (self.cfg.loss.r1_gamma / 2) * self.cfg.loss.r1_every_steps
        return {"D_r1": r1.detach(), "loss": loss}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        n, dev = inp.real.shape[0], inp.real.device
        c = self.sample_c(n, inp.gen, dev)
        fake = self.G(self.sample_z(n, inp.gen, dev), c)
        score, logits = self.D(self.augment(fake, inp.gen), c)
        adv = self.adv.g(score)
        losses = {"G_adv": adv}
        total = adv
        if logits is not None:
            cls = acgan_loss(logits, c)
            losses["G_cls"] = cls
            total = total + self.cfg.loss.acgan_weight * cls
        losses["loss"] = total
        return losses
