"""GAN losses: the adversarial loss registry, R1, WGAN-GP gradient penalty and the AC-GAN class loss.

Scores are raw discriminator outputs ``[N]`` (logits for "ns"). Every adversarial loss returns a scalar to
minimise: ``d(real_score, fake_score)`` for D and ``g(fake_score)`` for G. Scores are upcast to float32 so
that the batch means stay exact under autocast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AdversarialLoss:
    """Loss pair: ``d(real_score [N], fake_score [N]) -> []`` and ``g(fake_score [N]) -> []``."""

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]


# Goodfellow et al. 2014, eq. 1: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), as softplus for stability.
def _ns_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


# Goodfellow et al. 2014, sec. 3 (non-saturating G): -log sigmoid(D(G(z))).
def _ns_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake.float()).mean()


# Lim & Ye 2017; Miyato et al. 2018, eq. 16: E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))].
def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


# Miyato et al. 2018, eq. 17 (hinge G): -E[D(G(z))].
def _hinge_g(fake: Tensor) -> Tensor:
    return -fake.float().mean()


# Arjovsky et al. 2017, eq. 3 (critic, minimised form): E[D(G(z))] - E[D(x)].
def _wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.float().mean() - real.float().mean()


# Arjovsky et al. 2017, algorithm 1 (generator): -E[D(G(z))].
def _wgan_g(fake: Tensor) -> Tensor:
    return -fake.float().mean()


LSGAN_A, LSGAN_B, LSGAN_C = 0.0, 1.0, 1.0  # Mao et al. 2017, eq. 9: fake label a, real label b, G target c


# Mao et al. 2017, eq. 2 (D): 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2].
def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * (real.float() - LSGAN_B).square().mean() + 0.5 * (fake.float() - LSGAN_A).square().mean()


# Mao et al. 2017, eq. 2 (G): 1/2 E[(D(G(z)) - c)^2].
def _lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * (fake.float() - LSGAN_C).square().mean()


ADVERSARIAL: dict[str, AdversarialLoss] = {
    "ns": AdversarialLoss(d=_ns_d, g=_ns_g),
    "hinge": AdversarialLoss(d=_hinge_d, g=_hinge_g),
    "wgan": AdversarialLoss(d=_wgan_d, g=_wgan_g),
    "lsgan": AdversarialLoss(d=_lsgan_d, g=_lsgan_g),
}


def get_adversarial(name: str) -> AdversarialLoss:
    """Look up an adversarial loss by name; ValueError lists the valid names."""
    if name not in ADVERSARIAL:
        raise ValueError(f"unknown adversarial loss {name!r}; valid: {', '.join(ADVERSARIAL)}")
    return ADVERSARIAL[name]


# Mescheder et al. 2018, eq. 9: R1 = gamma/2 E||grad_x D(x)||^2 on reals; here per sample, without gamma/2.
def r1_penalty(real_score: Tensor, real_x: Tensor) -> Tensor:
    """Per-sample squared gradient norm ``||d score_i / d x_i||^2 -> [N]`` (multiply by gamma/2 and average).

    ``real_x`` must have ``requires_grad=True`` and ``real_score`` must come from it. The graph is kept
    (``create_graph=True``) so the penalty can be back-propagated into D. Assumes D treats samples
    independently (no batch norm), which is what makes the gradient of the summed score per-sample.
    """
    assert real_score.ndim == 1 and real_score.shape[0] == real_x.shape[0], (
        f"expected real_score [N] and real_x [N, ...], got {list(real_score.shape)}, {list(real_x.shape)}"
    )
    (grad,) = torch.autograd.grad(real_score.float().sum(), real_x, create_graph=True)
    return grad.float().square().flatten(1).sum(dim=1)  # [N]


# Gulrajani et al. 2017, eq. 3: E_{x^ ~ P_x^}[(||grad_x^ D(x^)||_2 - 1)^2], x^ = eps x + (1 - eps) G(z).
def gradient_penalty(
    D: nn.Module,
    real: Tensor,
    fake: Tensor,
    c: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty (scalar, without the lambda factor) at random interpolates of ``real`` and ``fake``.

    ``eps ~ U[0, 1]`` per sample is drawn from ``generator`` on its own device (the global CPU generator when
    None) and then moved to ``real.device``, so the draws do not depend on where the model runs.
    """
    assert real.shape == fake.shape, f"real {list(real.shape)} and fake {list(fake.shape)} must match"
    n = real.shape[0]
    rng_device = generator.device if generator is not None else torch.device("cpu")
    eps = torch.rand(n, *([1] * (real.ndim - 1)), generator=generator, device=rng_device)  # [N, 1, 1, 1]
    eps = eps.to(device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # [N, C, H, W]
    score, _ = D(x_hat, c)  # [N]
    (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    grad_norm = grad.float().flatten(1).norm(2, dim=1)  # [N]
    return (grad_norm - 1).square().mean()


# Odena et al. 2017, eq. 2 (L_C): log-likelihood of the correct class, here as mean cross-entropy.
def acgan_loss(class_logits: Tensor, c: Tensor) -> Tensor:
    """Mean cross-entropy of ``class_logits [N, K]`` against integer labels ``c [N]``."""
    assert class_logits.ndim == 2 and c.shape == (class_logits.shape[0],), (
        f"expected class_logits [N, K] and c [N], got {list(class_logits.shape)}, {list(c.shape)}"
    )
    return F.cross_entropy(class_logits.float(), c)


# Relativistic average GAN (Jolicoeur-Martineau 2018; ESRGAN, Wang et al. 2018, eq. 1-2), with
# D_Ra(x_r, x_f) = sigmoid(C(x_r) - E[C(x_f)]). It needs both logits in the G step too, so it does not fit the
# AdversarialLoss registry (whose g sees only fakes): two functions instead. Scores may be [N] or per-pixel maps
# (any shape; the expectations run over every element). As ESRGAN's official code (BasicSR), the real and the
# fake term are averaged (/2), which is the scale its adversarial weight 0.005 was tuned for.
def ragan_d(real: Tensor, fake: Tensor) -> Tensor:
    """D loss -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))], halved -> []."""
    r, f = real.float(), fake.float()
    return 0.5 * (F.softplus(-(r - f.mean())).mean() + F.softplus(f - r.mean()).mean())


def ragan_g(real: Tensor, fake: Tensor) -> Tensor:
    """G loss -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)], halved -> [] (pass real detached)."""
    r, f = real.float(), fake.float()
    return 0.5 * (F.softplus(r - f.mean()).mean() + F.softplus(-(f - r.mean())).mean())
