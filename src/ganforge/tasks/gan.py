"""The unconditional / class-conditional GAN task: networks, and one training step as phases.

A phase is data: which module it updates, how often, and a function returning a dict of losses whose
"loss" entry is backpropagated. The training loop (train/loop.py) iterates the phases; it knows nothing
about GANs beyond that.

    D      every d-step: adversarial loss on real and fake (+ WGAN-GP, + ACGAN class loss)
    D_r1   every r1_every_steps: lazy R1 on reals (StyleGAN2 sec. 3.1: scaled by the interval)
    G      every d_steps steps: adversarial loss on fakes (+ ACGAN class loss)
    G_pl   every pl_every_steps (StyleGAN2 only): lazy path-length regulariser (Karras et al. 2020, sec. 3.2)

StyleGAN2 adds style mixing (a second latent takes over from a random layer on), and ADA (Karras et al.
2020b) replaces DiffAugment when ``loss.ada`` is set: its strength p follows D's outputs on reals; the loop
calls ``update_augment`` after every step, and ``extra_state`` carries p and the path-length mean across a
resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge.config import TrainConfig
from ganforge.data.ada import AdaAugment, AdaController
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
        self.style = m.arch == "stylegan2"
        g_kwargs = dict(z_dim=m.z_dim, resolution=res, channels=channels, width=m.g_width,
                        max_width=m.max_width, num_classes=self.num_classes)
        if self.style:
            # conv_clamp 256 as NVlabs: keeps reduced-precision activations finite; inactive in normal training.
            g_kwargs |= dict(w_dim=m.w_dim, mapping_layers=m.mapping_layers, conv_clamp=256, amp_res=m.amp_res)
        self.G: nn.Module = build_generator(m.arch, **g_kwargs)
        d_kwargs = dict(resolution=res, channels=channels, width=m.d_width, max_width=m.max_width,
                        num_classes=self.num_classes, cond=m.cond if self.num_classes else "none")
        if m.arch == "dcgan":
            d_kwargs["spectral_norm"] = m.d_spectral_norm
        if self.style:
            d_kwargs |= dict(conv_clamp=256, amp_res=m.amp_res)
        self.D: nn.Module = build_discriminator(m.arch, **d_kwargs)
        self.modules: dict[str, nn.Module] = {"G": self.G, "D": self.D}
        # FreezeD (Mo et al. 2020): D's first blocks (highest resolution, nearest the pixels) keep their
        # transferred weights; the loop never lets them require grad and D's optimizer does not hold them.
        self.frozen: set[nn.Parameter] = set(self.D.blocks[:m.freeze_d].parameters()) if m.freeze_d else set()
        self.adv = get_adversarial(cfg.loss.adversarial)
        self.policy = parse_policy(cfg.loss.diffaugment)
        self.r1_gamma = cfg.r1_gamma_value()
        lc = cfg.loss
        self.ada = AdaAugment(lc.ada) if lc.ada else None
        self.ada_ctrl = AdaController(target=lc.ada_target, interval=lc.ada_interval,
                                      speed_kimg=lc.ada_kimg) if lc.ada else None
        self.pl_mean = 0.0  # running mean of path lengths (state: saved in checkpoints)

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
        if float(mix) < self.cfg.loss.style_mixing:
            ws2 = self.G.mapping(z2, c)
            ws = torch.cat([ws[:, :int(cutoff)], ws2[:, int(cutoff):]], dim=1)
        return self.G.synthesis(ws, noise_mode="random"), c, ws if return_ws else None

    # ----- phases -----

    def phases(self) -> list[Phase]:
        lc, oc = self.cfg.loss, self.cfg.optim
        out = [Phase("D", "D", 1, self.d_main)]
        if self.r1_gamma > 0:
            out.append(Phase("D_r1", "D", lc.r1_every_steps, self.d_r1, reg=True))
        out.append(Phase("G", "G", oc.d_steps, self.g_main))
        if self.style and lc.pl_weight > 0:
            out.append(Phase("G_pl", "G", lc.pl_every_steps, self.g_pl, reg=True))
        return out

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        n, dev = inp.real.shape[0], inp.real.device
        c_real = inp.c_real if self.num_classes else None
        with torch.no_grad():
            fake, c_fake, _ = self.generate(n, inp.gen, dev)
        real_s, real_logits = self.D(self.augment(inp.real, inp.gen), c_real)
        if self.ada_ctrl is not None:
            self.ada_ctrl.accumulate(real_s)
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
        loss = r1 * (self.r1_gamma / 2) * self.cfg.loss.r1_every_steps
        return {"D_r1": r1.detach(), "loss": loss}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        n, dev = inp.real.shape[0], inp.real.device
        fake, c, _ = self.generate(n, inp.gen, dev, update_w_avg=True)
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

    def g_pl(self, inp: StepInputs) -> dict[str, Tensor]:
        # Path-length regulariser (Karras et al. 2020, eq. 4), lazy: E(||J_w^T y|| - a)^2 with y ~ N(0, I)/sqrt(HW),
        # a the running mean of the lengths; on batch / pl_batch_shrink samples, scaled by the interval.
        lc = self.cfg.loss
        n = max(1, inp.real.shape[0] // lc.pl_batch_shrink)
        fake, _, ws = self.generate(n, inp.gen, inp.real.device, return_ws=True)
        h, w = fake.shape[2:]
        y = torch.randn(fake.shape, generator=inp.gen).to(fake.device) / (h * w) ** 0.5
        (grad,) = torch.autograd.grad((fake.float() * y).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()                                  # [n]
        self.pl_mean = self.pl_mean + lc.pl_decay * (float(lengths.detach().mean()) - self.pl_mean)
        penalty = (lengths - self.pl_mean).square().mean()
        return {"G_pl": penalty.detach(), "pl_mean": torch.tensor(self.pl_mean),
                "loss": penalty * lc.pl_weight * lc.pl_every_steps}

    # ----- state beyond the networks and optimizers (checkpointed) -----

    def update_augment(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        """Once per step: let the ADA controller adjust p. ``reduce`` averages over processes."""
        ctrl = self.ada_ctrl
        if ctrl is None:
            return
        if (ctrl.step + 1) % ctrl.interval == 0:  # an adjustment is due: agree on the accumulator first
            avg = reduce({"sum": ctrl.sign_sum, "count": ctrl.count})
            ctrl.sign_sum, ctrl.count = avg["sum"], avg["count"]
        ctrl.update(batch)
        self.ada.p = ctrl.p

    def augment_stats(self) -> dict[str, float]:
        if self.ada_ctrl is None:
            return {}
        r_t = self.ada_ctrl.r_t
        return {"aug/p": self.ada_ctrl.p, **({"aug/r_t": r_t} if r_t == r_t else {})}  # r_t is NaN until set

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
