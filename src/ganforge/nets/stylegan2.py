"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", config F): a mapping
network, a skip-architecture synthesis network with weight demodulation, and a residual discriminator with a
minibatch-stddev epilogue and an optional projection (``cmap``) conditioning.

The math follows NVlabs stylegan2-ada-pytorch ``training/networks.py`` in plain PyTorch ops (no custom CUDA
kernels): ``upfirdn2d`` is zero-insertion + ``F.pad`` + a depthwise ``F.conv2d``, ``bias_act`` is elementwise.

Channel plan as in dcgan.py: ``width`` channels at the full resolution, doubling per halving up to ``max_width``
(``layers.channels_at``). This is NVlabs' ``min(channel_base // res, channel_max)`` with
``channel_base = width * resolution``; ``width=None`` gives config F's ``channel_base = 32768``.
Resolutions ``r0 * 2**n`` (``layers.resolution_plan``): the synthesis starts from a learned ``r0 x r0`` constant and
the discriminator's epilogue runs at ``r0 x r0`` (NVlabs: ``r0 = 4``).

Mixed precision (NVlabs ``num_fp16_res``): under ``torch.autocast`` only the blocks of the ``amp_res`` highest
resolutions of G and D compute in reduced precision; the lower blocks, the mapping networks, D's epilogue and the
RGB skip path run in float32 (autocast is switched off inside them). ``amp_res=0`` keeps everything float32.
``conv_clamp`` (NVlabs: 256 whenever fp16 is used) bounds the activations so that fp16 cannot overflow.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.layers import channels_at, check_labels, resolution_plan

CONDITIONINGS = ("none", "projection")
NOISE_MODES = ("random", "const", "none")
CHANNEL_BASE = 32768  # config F: 512 channels up to 64x64, halving per doubling above
LRELU_GAIN = math.sqrt(2.0)  # keeps the second moment of lrelu(0.2) activations ~ that of the input


def _width(width: int | None, resolution: int, max_width: int) -> int:
    return min(CHANNEL_BASE // resolution, max_width) if width is None else width


# ---- resampling: the [1, 3, 3, 1] binomial filter (Zhang 2019; StyleGAN's bilinear up/down) -------------------


def _resample_filter() -> Tensor:
    """Separable 4x4 low-pass filter ``outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64`` (sums to 1): ``[4, 4]``."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad ``(before, after)`` on both axes, FIR-filter with ``f * gain``, subsample.

    ``x [N, C, H, W]`` -> ``[N, C, H', W']``, ``H' = (H * up + pad0 + pad1 - 4) // down + 1`` for a 4x4 ``f``
    (NVlabs ``upfirdn2d`` reference path; ``f`` is symmetric so convolution and correlation agree).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = (f * gain).to(x.dtype)[None, None].repeat(c, 1, 1, 1)  # depthwise: [C, 1, 4, 4]
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling with the FIR filter: ``[N, C, H, W]`` -> ``[N, C, 2H, 2W]`` (gain 4 keeps the mean)."""
    return upfirdn2d(x, f, up=2, pad=(2, 1), gain=4.0)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor, up: int = 1, down: int = 1, groups: int = 1) -> Tensor:
    """'Same'-padded convolution with ``w [O, I / groups, k, k]`` (odd ``k``) and optional 2x FIR resampling.

    ``up=2``: stride-2 transposed conv, then the blur (pads from NVlabs ``conv2d_resample``, filter size 4).
    ``down=2``: blur, then a stride-2 conv; for 1x1 kernels blur-and-subsample first (same samples, cheaper).
    """
    k = w.shape[-1]
    assert up in (1, 2) and down in (1, 2) and not (up == 2 and down == 2) and k % 2 == 1
    if up == 2:
        pad = k // 2 + 3 - k  # NVlabs: p + (fw + 1) // 2 - (k - 1) = p + (fw - 2) // 2 - (k - 2) for fw = 4
        assert pad >= 0, f"up=2 supports kernels up to 5x5, got {k}x{k}"
        o, i = w.shape[0], w.shape[1]
        # Transposed conv weight [I, O / groups, k, k], grouped per sample for the fused modulated conv.
        wt = w.reshape(groups, o // groups, i, k, k).transpose(1, 2).reshape(groups * i, o // groups, k, k)
        x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [N, O, 2H + k - 2, ...]
        return upfirdn2d(x, f, pad=(pad, pad), gain=4.0)  # [N, O, 2H, 2W]
    if down == 2:
        if k == 1:
            return F.conv2d(upfirdn2d(x, f, down=2, pad=(1, 1)), w, groups=groups)
        p = k // 2 + 1
        return F.conv2d(upfirdn2d(x, f, pad=(p, p)), w, stride=2, groups=groups)  # [N, O, H / 2, W / 2]
    return F.conv2d(x, w, padding=k // 2, groups=groups)


# ---- equalized learning rate (Karras et al. 2018, sec. 4.1) ----------------------------------------------------


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Pixelwise feature normalisation (Karras et al. 2018, eq. 2): ``x / sqrt(mean(x^2) + eps)`` along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def full_precision(x: Tensor | None, enabled: bool) -> contextlib.AbstractContextManager:
    """Autocast off (compute in float32) when ``enabled``; a no-op otherwise. ``x`` gives the device type."""
    if not enabled or x is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


def _float(x: Tensor | None, enabled: bool) -> Tensor | None:
    return x.float() if enabled and x is not None else x


def bias_act(x: Tensor, b: Tensor | None, lrelu: bool, gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """``clamp(act(x + b) * gain)`` with ``act`` = leaky ReLU(0.2) scaled by sqrt(2), or linear; b over dim 1."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, 0.2)
        gain = gain * LRELU_GAIN
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer: ``W ~ N(0, 1) / lr_mul`` stored, used as ``W * lr_mul / sqrt(in)``; the bias
    (stored ``bias_init``, as NVlabs) is used as ``b * lr_mul``. ``lr_mul`` scales the effective learning rate
    (StyleGAN, appendix C: 0.01 for the mapping network)."""

    def __init__(self, in_features: int, out_features: int, lrelu: bool = False, lr_mul: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.lrelu = in_features, out_features, lrelu
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)  # [N, out]
        return bias_act(x, None, self.lrelu)


class Conv2dLayer(nn.Module):
    """Equalized-lr conv (discriminator): ``W ~ N(0, 1)`` used as ``W / sqrt(in * k^2)``; optional 2x FIR down."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, lrelu: bool = True, bias: bool = True,
                 down: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.lrelu, self.down, self.conv_clamp = lrelu, down, conv_clamp
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(c_in * kernel_size**2)
        self.register_buffer("resample_filter", _resample_filter(), persistent=False)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, down=self.down)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.lrelu, gain=gain, clamp=clamp)


# ---- generator -----------------------------------------------------------------------------------------------


# Karras et al. 2020, sec. 2.2, eqs. 1-3: modulation w'_ijk = s_i * w_ijk, demodulation
# w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps).
def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, f: Tensor, demodulate: bool = True, up: int = 1,
                     fused: bool = False) -> Tensor:
    """Modulated (and demodulated) convolution: ``x [N, I, H, W]``, ``weight [O, I, k, k]``, ``styles [N, I]``.

    Default: scale the activations by ``s``, run one shared-weight conv over the batch, scale the outputs by the
    demodulation coefficients (NVlabs' non-fused path; equal to the per-sample weights of eq. 3 because ``s`` and
    ``1 / sigma`` are per input / output channel). ``fused=True``: per-sample weights as one grouped conv.
    Returns ``[N, O, H * up, W * up]``.
    """
    n, (o, i, k, _) = x.shape[0], weight.shape
    assert styles.shape == (n, i), f"expected styles [{n}, {i}], got {list(styles.shape)}"
    dcoefs = None
    if demodulate:
        # sigma_j^2 = sum_i s_i^2 * sum_k w_ijk^2 (eq. 3, without materialising the [N, O, I, k, k] weights)
        dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [N, O]
    if not fused:
        x = x * styles.to(x.dtype)[:, :, None, None]
        x = conv2d_resample(x, weight.to(x.dtype), f, up=up)
        return x * dcoefs.to(x.dtype)[:, :, None, None] if dcoefs is not None else x
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs[:, :, None, None, None]
    x = conv2d_resample(x.reshape(1, n * i, *x.shape[2:]), w.reshape(n * o, i, k, k).to(x.dtype), f, up=up, groups=n)
    return x.reshape(n, o, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Style-modulated 3x3 conv with weight demodulation, per-pixel noise, bias and lrelu:
    ``[N, c_in, R / up, R / up]``, ``w [N, w_dim]`` -> ``[N, c_out, R, R]`` (Karras et al. 2020, fig. 2d)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, c_in, bias_init=1.0)  # A: styles start at 1
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.weight_gain = 1 / math.sqrt(c_in * 9)  # cancelled by demodulation; kept for uniform equalized lr
        # StyleGAN sec. 3.2: single-channel noise images, per-layer learned strength (B), zero at init.
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("resample_filter", _resample_filter(), persistent=False)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused: bool = False) -> Tensor:
        styles = self.affine(w)  # [N, c_in]
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, self.resample_filter, up=self.up, fused=fused)
        if noise_mode == "random":  # from the global RNG: the training loop seeds it per step
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
            x = x + (noise * self.noise_strength).to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return bias_act(x, self.bias, lrelu=True, clamp=self.conv_clamp)  # [N, c_out, R, R]


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, plus bias: ``[N, c_in, R, R]`` -> ``[N, channels, R, R]``."""

    def __init__(self, c_in: int, channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.weight_gain = 1 / math.sqrt(c_in)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("resample_filter", _resample_filter(), persistent=False)

    def forward(self, x: Tensor, w: Tensor, fused: bool = False) -> Tensor:
        styles = self.affine(w)  # [N, c_in]
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, self.resample_filter, demodulate=False,
                             fused=fused)
        return bias_act(x, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator (Karras et al. 2020, fig. 7b): [const or up-conv], conv, toRGB;
    the RGB image from below is upsampled and added. ``c_in=0`` marks the first block (learned constant)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, channels: int,
                 conv_clamp: float | None = None, amp: bool = True):
        super().__init__()
        self.c_in, self.resolution, self.amp = c_in, resolution, amp
        if c_in == 0:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
            self.conv0 = None
        else:
            self.const = None
            self.conv0 = SynthesisLayer(c_in, c_out, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(c_out, c_out, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(c_out, channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if c_in == 0 else 2
        self.register_buffer("resample_filter", _resample_filter(), persistent=False)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str,
                fused: bool = False) -> tuple[Tensor, Tensor]:
        # ws: [N, num_conv + 1, w_dim]; the toRGB w is shared with the next block's first conv (as NVlabs).
        with full_precision(ws, not self.amp):
            x = _float(x, not self.amp)
            if self.conv0 is None:
                x = self.const[None].repeat(ws.shape[0], 1, 1, 1)  # [N, c_out, r0, r0]
                x = self.conv1(x, ws[:, 0], noise_mode, fused)
            else:
                x = self.conv0(x, ws[:, 0], noise_mode, fused)  # [N, c_out, R, R]
                x = self.conv1(x, ws[:, 1], noise_mode, fused)
            y = self.torgb(x, ws[:, self.num_conv], fused)
        # The RGB skip path stays in float32 under autocast (NVlabs keeps img fp32 too): it is the output.
        with full_precision(y, True):
            y = y.float()
            img = y if img is None else upsample2d(img, self.resample_filter.float()) + y  # [N, channels, R, R]
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim]`` -> image ``[N, channels, resolution, resolution]`` (skip architecture)."""

    def __init__(self, w_dim: int, resolution: int, channels: int, width: int, max_width: int,
                 conv_clamp: float | None = None, amp_res: int = 4):
        super().__init__()
        self.w_dim, self.resolution, self.channels = w_dim, resolution, channels
        r0, n_up = resolution_plan(resolution)
        self.blocks = nn.ModuleList()
        for level in range(n_up, -1, -1):  # level 0 is the output resolution
            c_in = channels_at(level + 1, width, max_width) if level < n_up else 0
            c_out = channels_at(level, width, max_width)
            self.blocks.append(SynthesisBlock(c_in, c_out, w_dim, r0 * 2 ** (n_up - level), channels, conv_clamp,
                                              amp=level < amp_res))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1  # + the last toRGB

    def forward(self, ws: Tensor, noise_mode: str = "random", fused: bool = False) -> Tensor:
        expected = (self.num_ws, self.w_dim)
        assert ws.ndim == 3 and tuple(ws.shape[1:]) == expected, (
            f"expected ws [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        )
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; valid: {', '.join(NOISE_MODES)}")
        ws = ws.to(self.blocks[0].const.dtype)
        x = img = None
        w_idx = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode, fused)
            w_idx += block.num_conv
        return img  # [N, channels, resolution, resolution]


class MappingNetwork(nn.Module):
    """z (+ class embedding) -> w through ``num_layers`` equalized-lr FC layers with lr multiplier 0.01
    (StyleGAN sec. 2 and appendix C). With ``num_ws``: broadcast to ``[N, num_ws, w_dim]``, track ``w_avg`` and
    apply truncation; without (the discriminator's label mapping): ``[N, w_dim]``."""

    def __init__(self, z_dim: int, num_classes: int, w_dim: int, num_layers: int, num_ws: int | None = None,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.num_classes, self.w_dim, self.num_ws = z_dim, num_classes, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        # NVlabs: an equalized-lr linear layer on the one-hot label (implemented as a lookup: same numbers).
        self.embed = FullyConnectedLayer(num_classes, w_dim) if num_classes > 0 else None
        features = [z_dim + (w_dim if num_classes > 0 else 0)] + [w_dim] * num_layers
        self.fcs = nn.ModuleList(
            FullyConnectedLayer(features[i], features[i + 1], lrelu=True, lr_mul=lr_mul) for i in range(num_layers)
        )
        if num_ws is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def _embed(self, c: Tensor) -> Tensor:
        # A data-dependent check: eager CPU calls only (torch.export, used by ONNX export, cannot trace it).
        if c.device.type == "cpu" and c.numel() and not torch.compiler.is_exporting() \
                and (int(c.min()) < 0 or int(c.max()) >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes - 1}], got {c.tolist()}")
        e = self.embed  # one_hot(c) @ (W * g)^T + b * g_b == (W * g)^T[c] + b * g_b
        return F.embedding(c, (e.weight * e.weight_gain).t()) + e.bias * e.bias_gain  # [N, w_dim]

    def forward(self, z: Tensor | None, c: Tensor | None = None, psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = False) -> Tensor:
        batch = z.shape[0] if z is not None else c.shape[0]
        check_labels(c, batch, self.num_classes, "stylegan2 mapping")
        with full_precision(z if z is not None else c, True):  # w is float32 (NVlabs), also under autocast
            return self._forward(z, c, psi, truncation_cutoff, update_w_avg)

    def _forward(self, z: Tensor | None, c: Tensor | None, psi: float, truncation_cutoff: int | None,
                 update_w_avg: bool) -> Tensor:
        parts = []
        if self.z_dim > 0:
            assert z.ndim == 2 and z.shape[1] == self.z_dim, f"expected z [N, {self.z_dim}], got {list(z.shape)}"
            parts.append(normalize_2nd_moment(z.float()))
        if self.embed is not None:
            parts.append(normalize_2nd_moment(self._embed(c)))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for fc in self.fcs:
            x = fc(x)
        x = x.float()  # [N, w_dim]
        if self.num_ws is None:
            return x
        if update_w_avg:  # training: w_avg <- lerp(mean_batch(w), w_avg, beta)
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x[:, None].repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if psi != 1:
            # StyleGAN appendix B, truncation trick: w' = w_avg + psi * (w - w_avg) on the first `cutoff` ws.
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z [N, z_dim], c [N] | None) -> x [N, channels, res, res]``, roughly [-1, 1]
    (not clamped). ``G.mapping(z, c, psi, truncation_cutoff, update_w_avg) -> ws [N, num_ws, w_dim]`` and
    ``G.synthesis(ws, noise_mode) -> x`` are exposed for truncation, style mixing, projection and the
    path-length regulariser. ``num_classes > 0`` makes it conditional (labels required, in range).
    """

    def __init__(
        self,
        resolution: int,
        channels: int = 3,
        z_dim: int = 512,
        w_dim: int = 512,
        num_classes: int = 0,
        width: int | None = None,
        max_width: int = 512,
        mapping_layers: int = 8,
        conv_clamp: float | None = None,
        amp_res: int = 4,
    ):
        super().__init__()
        self.config = dict(
            resolution=resolution,
            channels=channels,
            z_dim=z_dim,
            w_dim=w_dim,
            num_classes=num_classes,
            width=width,
            max_width=max_width,
            mapping_layers=mapping_layers,
            conv_clamp=conv_clamp,
            amp_res=amp_res,
        )
        resolution_plan(resolution)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if z_dim < 1 or w_dim < 1 or mapping_layers < 1:
            raise ValueError(f"need z_dim, w_dim, mapping_layers >= 1, got {z_dim}, {w_dim}, {mapping_layers}")
        self.z_dim, self.w_dim, self.resolution, self.channels = z_dim, w_dim, resolution, channels
        self.num_classes = num_classes
        width = _width(width, resolution, max_width)
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, width, max_width, conv_clamp, amp_res)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, num_classes, w_dim, mapping_layers, num_ws=self.num_ws)

    @property
    def w_avg(self) -> Tensor:
        """Running mean of w (``[w_dim]``), the center of the truncation trick."""
        return self.mapping.w_avg

    def forward(self, z: Tensor, c: Tensor | None = None, psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str | None = None, update_w_avg: bool = False) -> Tensor:
        """``noise_mode=None``: "random" in training mode, "const" in eval mode (so G_ema and loaded snapshots
        give the same image for the same seed)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"expected z [N, {self.z_dim}], got {list(z.shape)}"
        ws = self.mapping(z, c, psi=psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)
        mode = noise_mode or ("random" if self.training else "const")
        return self.synthesis(ws, noise_mode=mode)  # [N, channels, resolution, resolution]


# ---- discriminator -------------------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Residual block (Karras et al. 2020, fig. 7c): conv3, conv3 down, + 1x1 down skip, both scaled by sqrt(1/2):
    ``[N, c_tmp, R, R]`` -> ``[N, c_out, R / 2, R / 2]``. The first block also has fromRGB."""

    def __init__(self, c_tmp: int, c_out: int, channels: int, first: bool, conv_clamp: float | None = None,
                 amp: bool = True):
        super().__init__()
        self.amp = amp
        self.fromrgb = Conv2dLayer(channels, c_tmp, 1, conv_clamp=conv_clamp) if first else None
        self.conv0 = Conv2dLayer(c_tmp, c_tmp, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(c_tmp, c_out, 3, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(c_tmp, c_out, 1, lrelu=False, bias=False, down=2)

    def forward(self, x: Tensor) -> Tensor:
        with full_precision(x, not self.amp):
            x = _float(x, not self.amp)
            if self.fromrgb is not None:
                x = self.fromrgb(x)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            return y + x


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3): appends ``num_channels`` feature maps holding the
    stddev over groups of ``group_size`` samples, averaged over channels and pixels: ``[N, C, H, W]`` ->
    ``[N, C + num_channels, H, W]``. The group is the largest divisor of N not above ``group_size`` (NVlabs
    requires N divisible by the group; a batch of 1 gives sqrt(eps))."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        f = self.num_channels
        # Sample i is in group i % (n / g), as NVlabs' reshape(G, -1, ...). Statistics in float32.
        y = x.float().reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group: [n, F, c, H, W]
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: ``D(x [N, C, res, res], c [N] | None) -> (score [N], None)``.

    Residual blocks down to ``r0 x r0``, then the epilogue: minibatch stddev, conv3, FC, output FC. With
    ``cond="projection"`` (the default when ``num_classes > 0``) the output is ``cmap_dim`` wide and
    projected on a mapped label embedding: ``score = <out, cmap(c)> / sqrt(cmap_dim)`` (NVlabs; cf. Miyato &
    Koyama 2018). ``cond="none"`` ignores labels.
    """

    def __init__(
        self,
        resolution: int,
        channels: int = 3,
        num_classes: int = 0,
        width: int | None = None,
        max_width: int = 512,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        cmap_dim: int | None = None,
        cond: str | None = None,
        mapping_layers: int = 8,
        conv_clamp: float | None = None,
        amp_res: int = 4,
    ):
        super().__init__()
        self.config = dict(
            resolution=resolution,
            channels=channels,
            num_classes=num_classes,
            width=width,
            max_width=max_width,
            mbstd_group=mbstd_group,
            mbstd_channels=mbstd_channels,
            cmap_dim=cmap_dim,
            cond=cond,
            mapping_layers=mapping_layers,
            conv_clamp=conv_clamp,
            amp_res=amp_res,
        )
        r0, n_down = resolution_plan(resolution)
        cond = cond if cond is not None else ("projection" if num_classes > 0 else "none")
        if cond not in CONDITIONINGS:
            raise ValueError(f"unknown cond {cond!r}; valid: {', '.join(CONDITIONINGS)}")
        if cond != "none" and num_classes < 1:
            raise ValueError(f"cond={cond!r} needs num_classes >= 1, got {num_classes}")
        self.resolution, self.channels, self.num_classes, self.cond = resolution, channels, num_classes, cond
        width = _width(width, resolution, max_width)
        c_end = channels_at(n_down, width, max_width)  # channels of the r0 x r0 epilogue
        if mbstd_channels < 0 or (mbstd_channels > 0 and (c_end % mbstd_channels or mbstd_group < 1)):
            raise ValueError(f"mbstd_channels={mbstd_channels} must divide the {c_end} epilogue channels "
                             f"(and mbstd_group={mbstd_group} must be >= 1)")

        self.blocks = nn.Sequential(*(
            DiscriminatorBlock(channels_at(level, width, max_width), channels_at(level + 1, width, max_width),
                               channels, first=level == 0, conv_clamp=conv_clamp, amp=level < amp_res)
            for level in range(n_down)
        ))
        self.mbstd = MinibatchStdLayer(mbstd_group, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = Conv2dLayer(c_end + mbstd_channels, c_end, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(c_end * r0 * r0, c_end, lrelu=True)
        self.cmap_dim = (c_end if cmap_dim is None else cmap_dim) if cond == "projection" else 0
        self.out = FullyConnectedLayer(c_end, self.cmap_dim or 1)
        self.mapping = None
        if cond == "projection":
            self.mapping = MappingNetwork(0, num_classes, self.cmap_dim, mapping_layers, num_ws=None)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, None]:
        expected = (self.channels, self.resolution, self.resolution)
        assert x.ndim == 4 and tuple(x.shape[1:]) == expected, (
            f"expected x [N, {', '.join(map(str, expected))}], got {list(x.shape)}"
        )
        if self.cond == "projection":
            check_labels(c, x.shape[0], self.num_classes, "stylegan2.Discriminator(cond='projection')")
        h = self.blocks(x)  # [N, C_end, r0, r0]
        with full_precision(h, True):  # the epilogue and the score stay float32 (NVlabs)
            h = h.float()
            if self.mbstd is not None:
                h = self.mbstd(h)  # [N, C_end + F, r0, r0]
            h = self.fc(self.conv(h).flatten(1))  # [N, C_end]
            out = self.out(h)  # [N, cmap_dim or 1]
        if self.mapping is None:
            return out[:, 0], None
        cmap = self.mapping(None, c)  # [N, cmap_dim]
        return (out * cmap).sum(dim=1) / math.sqrt(self.cmap_dim), None  # [N]
