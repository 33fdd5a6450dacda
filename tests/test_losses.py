"""Losses against hand-computed values, R1 and the gradient penalty against analytic gradients."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from ganforge.losses import ADVERSARIAL, acgan_loss, get_adversarial, gradient_penalty, r1_penalty

# real scores [1, -1], fake scores [0, 2] throughout.
REAL = torch.tensor([1.0, -1.0])
FAKE = torch.tensor([0.0, 2.0])


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# ns:    d = mean(softplus(-real)) + mean(softplus(fake))
#          = (softplus(-1) + softplus(1)) / 2 + (softplus(0) + softplus(2)) / 2
#          = (0.313262 + 1.313262) / 2 + (0.693147 + 2.126928) / 2 = 0.813262 + 1.410038 = 2.223300
#        g = mean(softplus(-fake)) = (softplus(0) + softplus(-2)) / 2 = (0.693147 + 0.126928) / 2 = 0.410038
# hinge: d = mean(relu(1 - real)) + mean(relu(1 + fake)) = mean([0, 2]) + mean([1, 3]) = 1 + 2 = 3
#        g = -mean(fake) = -1
# wgan:  d = mean(fake) - mean(real) = 1 - 0 = 1;  g = -mean(fake) = -1
# lsgan: d = 1/2 mean((real - 1)^2) + 1/2 mean(fake^2) = 1/2 * mean([0, 4]) + 1/2 * mean([0, 4]) = 1 + 1 = 2
#        g = 1/2 mean((fake - 1)^2) = 1/2 * mean([1, 1]) = 0.5
EXPECTED = {
    "ns": (
        (softplus(-1) + softplus(1)) / 2 + (softplus(0) + softplus(2)) / 2,
        (softplus(0) + softplus(-2)) / 2,
    ),
    "hinge": (3.0, -1.0),
    "wgan": (1.0, -1.0),
    "lsgan": (2.0, 0.5),
}


def test_registry_has_all_losses():
    assert list(ADVERSARIAL) == ["ns", "hinge", "wgan", "lsgan"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_adversarial_values(name):
    loss = get_adversarial(name)
    d_expected, g_expected = EXPECTED[name]
    assert loss.d(REAL, FAKE).item() == pytest.approx(d_expected, abs=1e-6)
    assert loss.g(FAKE).item() == pytest.approx(g_expected, abs=1e-6)
    assert loss.d(REAL, FAKE).ndim == 0 and loss.g(FAKE).ndim == 0


def test_ns_values_pasted():
    # Same numbers as the comment above, to catch a wrong formula in the helper too.
    assert get_adversarial("ns").d(REAL, FAKE).item() == pytest.approx(2.223300, abs=1e-5)
    assert get_adversarial("ns").g(FAKE).item() == pytest.approx(0.410038, abs=1e-5)


def test_losses_upcast_bf16_scores():
    loss = get_adversarial("hinge").d(REAL.bfloat16(), FAKE.bfloat16())
    assert loss.dtype == torch.float32 and loss.item() == 3.0


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="valid: ns, hinge, wgan, lsgan"):
        get_adversarial("relativistic")


def test_adversarial_loss_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ADVERSARIAL["ns"].d = lambda r, f: r  # type: ignore[misc]


class LinearD(nn.Module):
    """D(x) = <w, vec(x)> + b: its input gradient is w for every sample."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(weight.numel(), 1)
        with torch.no_grad():
            self.lin.weight.copy_(weight.reshape(1, -1))
            self.lin.bias.fill_(0.3)

    def forward(self, x, c=None):
        return self.lin(x.flatten(1)).squeeze(1), None


def test_r1_linear_d_is_squared_weight_norm():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 3)
    D = LinearD(w)
    x = torch.randn(5, 2, 3, 3, requires_grad=True)
    score, _ = D(x)
    r1 = r1_penalty(score, x)
    assert r1.shape == (5,)
    torch.testing.assert_close(r1, w.square().sum().expand(5), atol=1e-5, rtol=0)
    # create_graph=True: the penalty back-propagates into D; d/dw sum_i ||w||^2 = 2 * N * w.
    r1.sum().backward()
    torch.testing.assert_close(D.lin.weight.grad, 2 * 5 * w.reshape(1, -1), atol=1e-5, rtol=0)


def test_r1_is_per_sample():
    # D(x) = sum(x^2) per sample: grad = 2x, R1_i = 4 ||x_i||^2.
    x = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 3.0]]]], requires_grad=True)  # [2, 1, 1, 2]
    score = x.square().flatten(1).sum(1)
    torch.testing.assert_close(r1_penalty(score, x), torch.tensor([4 * 5.0, 4 * 9.0]))


def test_gradient_penalty_zero_for_unit_gradient():
    w = torch.randn(3, 4, 4)
    D = LinearD(w / w.norm())  # ||grad_x D|| = ||w|| = 1 everywhere
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(D, real, fake, None, torch.Generator().manual_seed(0))
    assert gp.ndim == 0 and gp.item() == pytest.approx(0.0, abs=1e-10)
    # ||w|| = 3  ->  (3 - 1)^2 = 4
    gp3 = gradient_penalty(LinearD(3 * w / w.norm()), real, fake, None, torch.Generator().manual_seed(0))
    assert gp3.item() == pytest.approx(4.0, abs=1e-4)


class SquareD(nn.Module):
    """D(x) = 1/2 ||x||^2 per sample: grad = x, so the penalty depends on where x^ lands."""

    def forward(self, x, c=None):
        return 0.5 * x.square().flatten(1).sum(1), None


def test_gradient_penalty_draws_eps_from_generator():
    real, fake = torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    gp = gradient_penalty(SquareD(), real, fake, None, torch.Generator().manual_seed(7))
    # x^ = eps * 1 + (1 - eps) * 0 = eps on 4 pixels: ||grad|| = ||x^|| = 2 eps.
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7)).flatten()
    assert gp.item() == pytest.approx(((2 * eps - 1) ** 2).mean().item(), abs=1e-6)
    again = gradient_penalty(SquareD(), real, fake, None, torch.Generator().manual_seed(7))
    assert again.item() == gp.item()


def test_gradient_penalty_backprops_into_d():
    D = LinearD(torch.randn(1, 2, 2))
    gp = gradient_penalty(D, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2))
    gp.backward()
    assert D.lin.weight.grad is not None and D.lin.weight.grad.abs().sum() > 0


def test_acgan_loss():
    # Uniform logits over K = 4 classes: cross-entropy = log 4 for any label.
    assert acgan_loss(torch.zeros(2, 4), torch.tensor([0, 3])).item() == pytest.approx(math.log(4))
    # A confident correct logit: -log softmax = log(1 + 3 e^-10) ~ 1.36e-4 (float32: ~1e-6 absolute error).
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    expected = math.log1p(3 * math.exp(-10))
    assert acgan_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-6)
