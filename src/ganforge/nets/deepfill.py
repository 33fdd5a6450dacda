"""DeepFill v2 (Yu et al. 2019, "Free-Form Image Inpainting with Gated Convolution"), in plain PyTorch.

Generator (sec. 3.3, fig. 3; the layer list of the authors' inpaint_model.py with cnum = ``width``):

    input       the image with the hole filled with 0, a ones channel, the mask (1 = hole): C + 2 channels
    coarse      gated conv5x5 (w), gated 3x3 s2 (2w), 3x3 (2w), 3x3 s2 (4w), 2 x 3x3 (4w), dilated 3x3 (4w) at each
                rate of ``dilations`` (2, 4, 8, 16), 2 x 3x3 (4w), up x2 + 3x3 (2w), 3x3 (2w), up x2 + 3x3 (w),
                3x3 (w/2), conv3x3 -> C, tanh
    refinement  on the coarse result composited into the known pixels (+ the mask): two branches from the same
                input, each downsampling by 4 with gated convs,
                  dilated   the coarse trunk's dilated stack
                  attention gated convs (ReLU last), contextual attention (Yu et al. 2018) at rate 2, 2 gated convs
                concatenated, 2 gated 3x3 (4w), the coarse decoder again, tanh

A gated convolution (eq. 1) is conv -> 2 x c_out channels: ELU(features) * sigmoid(gating). The reference's gen_conv
splits its cnum output channels into cnum/2 features and cnum/2 gates, so ``width`` = 24 is its cnum = 48 (about
4.1 M generator parameters, as the paper). The last layer of each
stage is a plain conv. Upsampling is nearest x2 then a gated 3x3 conv (the reference's gen_deconv).

Contextual attention (Yu et al. 2018, "Generative Image Inpainting with Contextual Attention", sec. 4.1) matches
each location of the downsampled (by ``rate``) foreground features against 3x3 patches of the downsampled
background features (cosine similarity: keys normalised), excludes keys that touch the hole, takes a softmax over
keys (scale 10), and rebuilds the full-resolution output from the raw 2*rate x 2*rate background patches by a
transposed convolution (here ``fold``), divided by how many patches cover each pixel. The reference's optional
"fuse" smoothing of the score map is left out.

Discriminator (sec. 3.2, SN-PatchGAN): ``layers`` conv5x5 stride-2 with spectral norm and LeakyReLU(0.2) on the image
and the mask; every output of the last feature map is a score (hinge loss over all of them, in the task).

``prefill="pushpull"`` or ``"smooth"`` (not in the paper): the hole is first filled by interpolating the known
pixels instead of with 0, and both stages output a correction added to their input inside the hole, so training
starts from a smooth fill rather than from nothing. ``pushpull`` (``pushpull_fill``) is a fast pyramid
interpolation in tensor ops, inside the ONNX graph; ``smooth`` (core/fill.py ``smooth_fill``) is the mean of the
exact membrane and thin-plate interpolations, a sparse solve outside autograd: it fills better on its own (docs/
inpainting.md), and an ONNX graph takes it as an input. ``forward(..., fill=)`` takes a fill already computed (the
task computes it once per batch).

Initialisation: a gated conv's output is ELU(f) * sigmoid(g), and the gate halves it on average. With PyTorch's
default conv init each gated layer shrank its input about 3x, so the deepest features no longer depended on the
image and no correction was learned (docs/inpainting.md). ``GatedConv.reset_parameters`` draws He-normal feature
weights times FEATURE_GAIN (1.9: the spatial spread stays O(1) through the 12-layer coarse encoder), unit-gain gate
weights and zero biases; plain convs get unit gain.

The network runs on any H, W divisible by 8 (two stride-2 downsamplings, then attention at rate 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.core.fill import smooth_fill

_SLOPE = 0.2
STRIDE = 8  # H and W must be multiples of this
PREFILLS = ("zeros", "pushpull", "smooth")  # what the hole holds when the generator first sees it
PUSHPULL_LEVELS = 13  # 8192 px
FEATURE_GAIN = 1.9  # gated convs: the sigmoid gate halves the features on average (module docstring)


class GatedConv(nn.Module):
    """Gated convolution (Yu et al. 2019, eq. 1): ELU(W_f x) * sigmoid(W_g x); ``act=None``: a plain conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 act: str | None = "elu"):
        super().__init__()
        self.act = act
        self.conv = nn.Conv2d(c_in, c_out * (2 if act else 1), kernel, stride, dilation * (kernel - 1) // 2,
                              dilation=dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Variance-preserving init (the module docstring, "Initialisation"): He-normal feature weights scaled by
        FEATURE_GAIN, unit-gain gate weights, zero biases; a plain conv (``act=None``) gets unit gain."""
        fan_in = self.conv.in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]
        with torch.no_grad():
            self.conv.bias.zero_()
            if self.act is None:
                self.conv.weight.normal_(0.0, fan_in ** -0.5)
                return
            feat, gate = self.conv.weight.chunk(2, 0)
            feat.normal_(0.0, FEATURE_GAIN * (2.0 / fan_in) ** 0.5)
            gate.normal_(0.0, fan_in ** -0.5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.act is None:
            return x
        feat, gate = x.chunk(2, 1)
        feat = F.elu(feat) if self.act == "elu" else F.relu(feat)
        return feat * torch.sigmoid(gate)


class GatedUp(nn.Module):
    """Nearest x2 upsampling, then a gated 3x3 conv (the reference's gen_deconv)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = GatedConv(c_in, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def pushpull_fill(x: Tensor, hole: Tensor) -> Tensor:
    """x [N, C, H, W] with its hole (mask [N, 1, H, W], 1 = hole) filled by push-pull interpolation: each level of a
    2x pyramid averages the known pixels below it (push), then from the coarsest level up every unknown pixel takes
    the bilinear upsampling of the level above (pull). A smooth, membrane-like fill (Gortler et al. 1996) in
    plain tensor ops. The pyramid always has PUSHPULL_LEVELS levels (a 1 x 1 level stays 1 x 1), so an ONNX graph
    traced at one size fills any size up to 2**PUSHPULL_LEVELS px exactly as PyTorch does; beyond that, a cell with
    no known pixel at the coarsest level gets the image's mean."""
    known = 1 - hole
    levels: list[tuple[Tensor, Tensor]] = []
    v, k = x * known, known
    for _ in range(PUSHPULL_LEVELS):
        levels.append((v, k))
        vs, ks = F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(k, 2, ceil_mode=True)
        k = (ks > 0).to(x.dtype)
        v = vs / ks.clamp_min(1e-8) * k
    mean = (x * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1.0)
    fill = torch.where(k > 0, v, mean)
    for v, k in reversed(levels):
        fill = torch.where(k > 0, v, F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False))
    return torch.where(hole > 0, fill, x)


def contextual_attention(f: Tensor, b: Tensor, mask: Tensor, rate: int = 2, ksize: int = 3,
                         softmax_scale: float = 10.0) -> tuple[Tensor, Tensor]:
    """Yu et al. 2018, sec. 4.1: fill ``f`` from patches of ``b``.

    f, b: features [N, C, H, W] (foreground queries, background keys), H and W multiples of ``rate``; mask
    [N, 1, H, W] with 1 = hole (keys touching it are excluded). Returns (y [N, C, H, W], attention
    [N, L, Hr, Wr]): L = Hr * Wr keys, one per location of the rate-downsampled grid (Hr = H / rate), key k at
    (k // Wr, k % Wr); attention[:, :, i, j] sums to 1 over valid keys (all 0 when no key is valid).
    """
    n, c, h, w = f.shape
    assert b.shape == f.shape and mask.shape == (n, 1, h, w), \
        f"f, b [N, C, H, W] and mask [N, 1, H, W] expected, got {list(f.shape)}, {list(b.shape)}, {list(mask.shape)}"
    assert h % rate == 0 and w % rate == 0, f"H and W must be multiples of rate={rate}, got {h}x{w}"
    hr, wr, k_raw = h // rate, w // rate, 2 * rate
    pad = ksize // 2
    # Raw 2r x 2r patches of b with stride r, one per low-resolution location: [N, C * 4r^2, L].
    raw = F.unfold(b, k_raw, padding=rate // 2, stride=rate)
    # Matching at low resolution (nearest downsampling, as the reference): queries are every location of f.
    fs, bs = f[:, :, ::rate, ::rate], b[:, :, ::rate, ::rate]                                # [N, C, Hr, Wr]
    ms = F.max_pool2d(mask, rate)                                                             # [N, 1, Hr, Wr]
    keys = F.unfold(bs, ksize, padding=pad)                                                   # [N, C*k*k, L]
    keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-4)
    queries = F.unfold(fs, ksize, padding=pad)                                                # [N, C*k*k, L]
    valid = F.unfold(ms, ksize, padding=pad).amax(1) == 0                                     # [N, L] key outside hole
    scores = torch.bmm(keys.transpose(1, 2), queries) * softmax_scale                         # [N, L keys, L queries]
    scores = scores.masked_fill(~valid[:, :, None], float("-inf"))
    att = torch.softmax(scores, dim=1)
    att = torch.nan_to_num(att, nan=0.0) * valid[:, :, None]                                  # no valid key: zeros
    # Paste: every query location spreads its weighted raw patch (a transposed conv with stride r).
    cols = torch.bmm(raw, att)                                                                # [N, C*4r^2, L]
    y = F.fold(cols, (h, w), k_raw, padding=rate // 2, stride=rate)
    cover = F.fold(torch.ones_like(cols[:1, :k_raw * k_raw]), (h, w), k_raw, padding=rate // 2, stride=rate)
    return y / cover, att.reshape(n, hr * wr, hr, wr)


class CoarseNet(nn.Module):
    def __init__(self, c_in: int, c_out: int, w: int, dilations: tuple[int, ...], small_last: bool = False):
        super().__init__()
        self.encoder = nn.Sequential(
            GatedConv(c_in, w, 5), GatedConv(w, 2 * w, 3, 2), GatedConv(2 * w, 2 * w), GatedConv(2 * w, 4 * w, 3, 2),
            GatedConv(4 * w, 4 * w), GatedConv(4 * w, 4 * w),
            *[GatedConv(4 * w, 4 * w, dilation=d) for d in dilations],
            GatedConv(4 * w, 4 * w), GatedConv(4 * w, 4 * w))
        self.decoder = Decoder(4 * w, c_out, w, small_last)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class Decoder(nn.Module):
    """4w at H/4 -> C at H: up + 3x3 (2w), 3x3 (2w), up + 3x3 (w), 3x3 (w/2), conv3x3 -> C, tanh. ``small_last``: the
    last conv's weights start at a tenth of the default init and its bias at 0, so a residual decoder's correction
    starts small. (Zero would be a saddle: the layers below get no gradient while the last is zero, and an L1 loss
    keeps it there, measured: no change over 10 kimg.)"""

    def __init__(self, c_in: int, c_out: int, w: int, small_last: bool = False):
        super().__init__()
        self.net = nn.Sequential(GatedUp(c_in, 2 * w), GatedConv(2 * w, 2 * w), GatedUp(2 * w, w),
                                 GatedConv(w, max(w // 2, 1)), GatedConv(max(w // 2, 1), c_out, act=None))
        if small_last:
            last = self.net[-1].conv
            with torch.no_grad():
                last.weight.mul_(0.1)
                last.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.net(x))


class DeepFillGenerator(nn.Module):
    def __init__(self, channels: int = 3, width: int = 24, dilations: tuple[int, ...] | list[int] = (2, 4, 8, 16),
                 attention: bool = True, softmax_scale: float = 10.0, prefill: str = "zeros"):
        super().__init__()
        dilations = tuple(int(d) for d in dilations)
        assert prefill in PREFILLS, f"prefill must be one of {PREFILLS}, got {prefill!r}"
        self.config = dict(channels=channels, width=width, dilations=list(dilations), attention=attention,
                           softmax_scale=softmax_scale, prefill=prefill)
        self.channels, self.attention, self.softmax_scale, self.stride = channels, attention, softmax_scale, STRIDE
        self.prefill = prefill
        self.residual = prefill != "zeros"
        w = width
        self.coarse = CoarseNet(channels + 2, channels, w, dilations, small_last=self.residual)
        self.dilated = nn.Sequential(
            GatedConv(channels + 2, w, 5), GatedConv(w, w, 3, 2), GatedConv(w, 2 * w), GatedConv(2 * w, 2 * w, 3, 2),
            GatedConv(2 * w, 4 * w), GatedConv(4 * w, 4 * w),
            *[GatedConv(4 * w, 4 * w, dilation=d) for d in dilations])
        if attention:
            self.att_in = nn.Sequential(
                GatedConv(channels + 2, w, 5), GatedConv(w, w, 3, 2), GatedConv(w, 2 * w),
                GatedConv(2 * w, 4 * w, 3, 2), GatedConv(4 * w, 4 * w), GatedConv(4 * w, 4 * w, act="relu"))
            self.att_out = nn.Sequential(GatedConv(4 * w, 4 * w), GatedConv(4 * w, 4 * w))
        self.merge = nn.Sequential(GatedConv(8 * w if attention else 4 * w, 4 * w), GatedConv(4 * w, 4 * w))
        self.decoder = Decoder(4 * w, channels, w, small_last=self.residual)

    def prefill_of(self, image: Tensor, mask: Tensor) -> Tensor:
        """The image [N, C, H, W] with its hole (mask [N, 1, H, W], 1 = hole) filled as ``prefill`` says: the input
        that a residual net (``prefill`` pushpull or smooth) corrects."""
        known = image * (1 - mask)
        if self.prefill == "smooth":
            return smooth_fill(known, mask)
        return pushpull_fill(known, mask) if self.prefill == "pushpull" else known

    def forward(self, image: Tensor, mask: Tensor, fill: Tensor | None = None,
                return_coarse: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """image [N, C, H, W] in [-1, 1] (hole pixels are ignored), mask [N, 1, H, W] (1 = hole), H and W multiples
        of 8 -> the refined prediction [N, C, H, W] in [-1, 1]; with ``return_coarse``, (coarse, refined).
        ``fill``: ``prefill_of(image, mask)`` when already computed (a residual net computes it otherwise)."""
        n, c, h, w = image.shape
        assert c == self.channels and mask.shape == (n, 1, h, w), \
            f"expected image [N, {self.channels}, H, W] and mask [N, 1, H, W], got {list(image.shape)}, " \
            f"{list(mask.shape)}"
        assert h % STRIDE == 0 and w % STRIDE == 0, f"H and W must be multiples of {STRIDE}, got {h}x{w}"
        known = image * (1 - mask)
        ones = torch.ones_like(mask)
        if self.residual:  # both stages correct a smooth fill instead of painting from zeros
            fill = self.prefill_of(image, mask) if fill is None else fill                      # [N, C, H, W]
            coarse = (fill + mask * self.coarse(torch.cat([fill, ones, mask], 1))).clamp(-1, 1)
        else:
            coarse = self.coarse(torch.cat([known, ones, mask], 1))                              # [N, C, H, W]
        base = coarse * mask + known
        x = torch.cat([base, ones, mask], 1)                                                     # [N, C+2, H, W]
        feats = self.dilated(x)                                                                  # [N, 4w, H/4, W/4]
        if self.attention:
            a = self.att_in(x)                                                                   # [N, 4w, H/4, W/4]
            m4 = F.max_pool2d(mask, 4)                                                           # [N, 1, H/4, W/4]
            a, _ = contextual_attention(a, a, m4, rate=2, softmax_scale=self.softmax_scale)
            feats = torch.cat([feats, self.att_out(a)], 1)                                       # [N, 8w, H/4, W/4]
        refined = self.decoder(self.merge(feats))                                                # [N, C, H, W]
        if self.residual:
            refined = (base + mask * refined).clamp(-1, 1)
        return (coarse, refined) if return_coarse else refined


class SNPatchGAN(nn.Module):
    def __init__(self, channels: int = 3, width: int = 64, layers: int = 6, max_width: int = 256):
        super().__init__()
        self.config = dict(channels=channels, width=width, layers=layers, max_width=max_width)
        self.channels = channels
        convs: list[nn.Module] = []
        c_in = channels + 1
        for k in range(layers):
            c = min(width * 2**k, max_width)
            convs += [spectral_norm(nn.Conv2d(c_in, c, 5, 2, 2)), nn.LeakyReLU(_SLOPE, inplace=True)]
            c_in = c
        self.net = nn.Sequential(*convs)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Images [N, C, H, W] in [-1, 1] and masks [N, 1, H, W] -> patch scores [N, F] (every feature of the last
        map is one score; the hinge loss averages over all)."""
        assert x.ndim == 4 and x.shape[1] == self.channels and mask.shape == (x.shape[0], 1, *x.shape[2:]), \
            f"expected [N, {self.channels}, H, W] and [N, 1, H, W], got {list(x.shape)}, {list(mask.shape)}"
        return self.net(torch.cat([x, mask], 1)).flatten(1)                                     # [N, F]
