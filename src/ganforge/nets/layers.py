"""Shared building blocks: resolution and channel plans, conditional batch norm, spectral norm, convolutions that
compute small maps as matrix products (GemmConv2d, GemmConvTranspose2d; the products in nets/gemm_conv.py), and a
channel concatenation whose backward hands out dense gradients (cat_channels)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.config import resolution_plan  # torch-free, shared with config validation
from ganforge.nets import gemm_conv

__all__ = ["GEMM_MAX_COLUMNS", "GEMM_MAX_ROWS", "ConditionalBatchNorm2d", "GemmConv2d", "GemmConvTranspose2d",
           "cat_channels", "channels_at", "check_labels", "resolution_plan", "sn"]

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


# Rows of a layer's matrix products up to which the GEMM form runs: batch x output positions for a conv, batch x
# input positions for a transposed conv (y = col2im(x @ W) has one row per input position). Measured on one CPU
# thread, forward + backward at batch 1 (oneDNN -> GEMM): the 1024 -> 512 transposed conv from 2x2 and 4x4 maps
# 56 -> 9 and 104 -> 27 ms, the 512 -> 128 one from 16x16 43 -> 23 ms, the 512 -> 512 conv to 2x2 24 -> 5 ms,
# PatchGAN's 256 -> 512 stride-1 conv to 15x15 25 -> 22 ms; from 32x32 (1024 rows) oneDNN's own op is as fast or
# faster (the 256 -> 64 transposed conv from 32x32: 21 against 25 ms).
GEMM_MAX_ROWS = 256
# A transposed conv also needs at most this many floats in its column buffer (rows x C_out x kh x kw): the scatter-add
# over a bigger buffer measured no faster in the whole step than oneDNN's op (pix2pix-256 at batch 4, whose 1024 -> 512
# layer from 8x8 maps has 2 M: 3.82 against 4.48 s per step in one interleaved A/B, 4.02 against 4.11 in another).
GEMM_MAX_COLUMNS = 2**20


def _eager() -> bool:
    """Not inside an ONNX export, a trace or torch.compile (they record torch's own ops)."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()


def _dense(g: Tensor) -> Tensor:
    return g.contiguous(memory_format=torch.channels_last if g.dim() == 4 and g.stride(1) == 1 else
                        torch.contiguous_format)


def cat_channels(xs: list[Tensor]) -> Tensor:
    """``torch.cat(xs, 1)`` whose backward hands each input a dense gradient instead of a channel slice of the
    concatenation's (with channels_last, a slice strides over the other inputs' channels). BatchNorm's CPU backward
    runs 3-5x slower on such a slice: 3.0 against 0.64 ms for 64 channels at 64x64 on one thread (a U-Net skip's
    decoder side, pix2pix); the copy costs a fraction of that. Same values and gradients as torch.cat."""
    if torch.is_grad_enabled() and _eager():
        for x in xs:
            if x.grad_fn is not None:  # an intermediate result (a hook on a leaf would stay for good)
                x.register_hook(_dense)
    return torch.cat(xs, 1)


def _use_gemm(x: Tensor, positions: int) -> bool:
    """The GEMM form only for float32/float64 on the CPU, for 1 to GEMM_MAX_ROWS rows (``positions`` per sample:
    output positions for a conv, input positions for a transposed conv), in eager mode outside autocast: an ONNX
    export, trace or torch.compile records torch's op, and autocast keeps its own dtype rules. On such small maps
    oneDNN's (transposed) convolution is bound by its weight handling, most of all in the backward pass (the weight
    gradient of a 4x4 kernel over a 2x2 map), while a matrix product over NHWC columns is not."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and 0 < x.shape[0] * positions <= GEMM_MAX_ROWS and not torch.is_autocast_enabled("cpu") and _eager())


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, state_dict and result to float rounding) that computes a small output map as
    one matrix product over NHWC columns (nets/gemm_conv.py); larger maps, other devices and exports run nn.Conv2d.
    Groups 1, dilation 1, zero padding only."""

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.padding, str) or self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros":
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (x.shape[-2] + 2 * ph - kh) // sh + 1, (x.shape[-1] + 2 * pw - kw) // sw + 1
        if not _use_gemm(x, ho * wo):
            return super().forward(x)
        return gemm_conv.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters, state_dict and result to float rounding) that upsamples a small input map
    with one matrix product and a scatter-add over NHWC columns (nets/gemm_conv.py); larger maps, other devices and
    exports run nn.ConvTranspose2d. Groups 1, dilation 1, no output padding."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        (kh, kw), rows = self.kernel_size, x.shape[-2] * x.shape[-1]  # rows per sample
        if (output_size is not None or self.groups != 1 or self.dilation != (1, 1) or self.output_padding != (0, 0)
                or not _use_gemm(x, rows) or x.shape[0] * rows * self.out_channels * kh * kw > GEMM_MAX_COLUMNS):
            return super().forward(x, output_size)
        return gemm_conv.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding)
