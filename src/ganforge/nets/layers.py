"""Shared building blocks: resolution and channel plans, conditional batch norm, spectral norm."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.config import resolution_plan  # torch-free, shared with config validation

__all__ = ["ConditionalBatchNorm2d", "channels_at", "check_labels", "resolution_plan", "sn"]

def channels_at(level: int, width: int, max_width: int) -> int:
    """Channels at ``level`` (0 = full resolution, +1 per halving): ``min(width * 2**level, max_width)``."""
    if width < 1 or max_width < width:
        raise ValueError(f"need 1 <= width <= max_width, got width={width}, max_width={max_width}")
    return min(width * 2**level, max_width)


def sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module`` in spectral normalization (Miyato et al. 2018) when ``enabled``, else return it."""
    return spectral_norm(module) if enabled else module


def check_labels(c: Tensor | None, batch: int, num_classes: int, who: str) -> None:
    """Raise ValueError when labels are missing for a conditional model or given to an unconditional one."""
    if num_classes > 0 and c is None:
        raise ValueError(f"{who} is conditional (num_classes={num_classes}): pass class labels c [N] int64")
    if num_classes == 0 and c is not None:
        raise ValueError(f"{who} is unconditional (num_classes=0): pass c=None")
    if c is not None:
        assert c.shape == (batch,), f"{who}: expected labels c of shape [{batch}], got {list(c.shape)}"
        assert not c.is_floating_point(), f"{who}: labels c must be integer class ids, got {c.dtype}"


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm with per-class affine gamma/beta (de Vries et al. 2017; Miyato & Koyama 2018).

    ``num_classes=0`` gives an ordinary affine ``BatchNorm2d`` (then ``c`` is ignored).
    Input/output: ``x [N, C, H, W]``, ``c [N]`` int64.
    """

    def __init__(self, num_features: int, num_classes: int = 0):
        super().__init__()
        self.num_features, self.num_classes = num_features, num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=num_classes == 0)
        if num_classes > 0:
            # Start as the identity affine map: gamma = 1, beta = 0 for every class.
            self.gamma = nn.Embedding(num_classes, num_features)
            self.beta = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.bn(x)  # [N, C, H, W]
        if self.num_classes == 0:
            return h
        if c is None:
            raise ValueError("ConditionalBatchNorm2d with num_classes > 0 needs labels c [N]")
        gamma = self.gamma(c)[:, :, None, None]  # [N, C, 1, 1]
        beta = self.beta(c)[:, :, None, None]  # [N, C, 1, 1]
        return gamma * h + beta
