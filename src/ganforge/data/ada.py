"""ADA: adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data").

``AdaAugment`` is the augmentation pipeline of the paper (sec. 2.3, appendix B), following the math of the
official code (NVlabs/stylegan2-ada-pytorch, ``training/augment.py``), group by group in the official order:

* ``b`` pixel blitting: x-flip, 90-degree rotations, integer translation (reflect padding), done exactly by
  gathering pixels (no interpolation);
* ``g`` general geometric transforms: isotropic scaling, pre-rotation, anisotropic scaling, post-rotation,
  fractional translation, composed into one 3x3 matrix per sample and applied with one bilinear resample;
* ``c`` color transforms: brightness, contrast, luma flip, hue rotation, saturation, composed into one 4x4
  matrix per sample;
* ``f`` image-space filtering: four octave bands, each amplified or attenuated by a lognormal gain, with the
  gains renormalised to keep the expected power of a 1/f image;
* ``n`` additive Gaussian noise with a per-sample std ``|N(0, 0.1^2)|``;
* ``o`` cutout: one square of half the image side, centred uniformly at random, set to 0 (mid-gray). NVlabs
  spells the full pipeline ``bgcfnc`` (its second ``c`` is cutout); ``parse_ops`` reads a ``c`` after an ``n``
  that way, so ``bgcfnc`` means the same here as there.

Every op is applied to a sample with probability ``p`` (the augmentation strength; scaled by an optional
per-op weight), except the two rotations of ``g``, which each use ``1 - sqrt(1 - p)`` so that P(any rotation)
= p, as in the official code.

Like ``ganforge.data.augment``, every random number is drawn from an explicit ``torch.Generator`` on that
generator's device (CPU normally), in a fixed order and count that do not depend on ``p``, and only then moved
to the images' device: a seed gives the same augmentation on any device and after a resume. Images are
``[N, C, H, W]`` in [-1, 1]; for C = 2 or 4 the last channel is alpha, which the color ops leave alone
(geometry moves it with the image). Samples an op group does not select are returned bit-identical.

Departures from the official pipeline:

* The geometric resample is a bilinear ``grid_sample`` with reflection about the edge pixel centres (the same
  padding as the official ``F.pad(mode="reflect")``), without the official 2x upsampling / downsampling with a
  symmetric wavelet (sym6) filter. The result is slightly blurrier when magnifying and can alias when
  shrinking; the official filter exists to suppress that aliasing.
* Pixel blitting is done exactly before the geometric resample, instead of being folded into the same
  matrix. The result differs only in how the border is reflected when both groups act on a sample.
* For a 1-channel (or gray + alpha) image only brightness and contrast act; the official code also applies
  luma flip there (a gray image is negated). Hue and saturation are skipped in both.
* Sampling coordinates are computed with elementwise ops (not ``affine_grid``'s matmul), so no TF32 rounding.
* The ``f`` bands come from dilated binomial [1, 2, 1] / 4 low-passes (15 taps, bands summing exactly to a unit
  impulse), not from the official sym2 wavelet; band edges are near 1/8, 1/4 and 1/2 of the Nyquist frequency
  as there, and the filter is applied along x, then along y, with reflect padding, as there.
* The ``n`` noise images come from a per-sample seed drawn from the generator (so the stream still does not
  depend on p) and are only generated for the samples the op selects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.config import ada_groups

# ops string letter -> the ops of that group, in the order the official pipeline applies them.
ADA_GROUPS: dict[str, tuple[str, ...]] = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate", "aniso", "xfrac"),
    "c": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "f": ("filter",),
    "n": ("noise",),
    "o": ("cutout",),
}
ADA_OPS: tuple[str, ...] = tuple(op for ops in ADA_GROUPS.values() for op in ops)

_LUMA = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(3)  # luma axis v of appendix B


def parse_ops(ops: str) -> tuple[str, ...]:
    """Parse an ops string such as ``"bgc"`` into its group letters (in canonical order); ValueError on others.
    A ``c`` after an ``n`` is cutout (``o``), so NVlabs' ``"bgcfnc"`` parses to ``("b", "g", "c", "f", "n", "o")``."""
    if not isinstance(ops, str):
        raise TypeError(f"ops must be a string of group letters such as 'bgc', got {type(ops).__name__}")
    return ada_groups(ops)


def filter_bank() -> Tensor:
    """``[4, 15]`` float64 symmetric 1-D filters splitting a signal into octave bands, lowest band first. They sum
    to a unit impulse, so equal gains give the identity. Low-passes: binomial [1, 2, 1] / 4 dilated by 1, 2, 4."""
    taps = 15
    binomial = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64) / 4
    lows, low = [], torch.ones(1, dtype=torch.float64)
    for dilation in (1, 2, 4):
        f = torch.zeros(2 * dilation + 1, dtype=torch.float64)
        f[::dilation] = binomial
        low = F.conv1d(F.pad(low, (len(f) - 1, len(f) - 1))[None, None], f.flip(0)[None, None])[0, 0]
        pad = (taps - len(low)) // 2
        lows.append(F.pad(low, (pad, pad)))
    delta = torch.zeros(taps, dtype=torch.float64)
    delta[taps // 2] = 1
    l1, l2, l3 = lows  # cutoffs near 1/4, 1/8, 1/16 of the sampling rate
    return torch.stack([l3, l2 - l3, l1 - l2, delta - l1])


FILTER_BANK = filter_bank()
BAND_POWER = torch.tensor([10.0, 1.0, 1.0, 1.0], dtype=torch.float64) / 13  # expected power of a 1/f image


def filter_transform(x: Tensor, h: Tensor) -> Tensor:
    """Filter ``x [N, C, H, W]`` with the per-sample separable 1-D filters ``h [N, taps]`` (odd), along x then y,
    with reflect padding. Needs H and W > taps // 2."""
    n, c, hh, ww = x.shape
    k = h.shape[1]
    w = h.to(x.device, x.dtype).repeat_interleave(c, dim=0)  # [N * C, taps]
    y = x.reshape(1, n * c, hh, ww)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), w[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), w[:, None, :, None], groups=n * c)
    return y.reshape(n, c, hh, ww)


def _color_channels(c: int) -> int:
    """Number of color channels: the last channel of a 2- or 4-channel image is alpha."""
    return c - 1 if c in (2, 4) else c


# ---------------------------------------------------------------------------------------------------------------
# Deterministic transforms (parameters in, images out). Shapes: x [N, C, H, W].


def _reflect(i: Tensor, size: int) -> Tensor:
    """Reflect integer indices into [0, size - 1] about the edge pixels (torch ``F.pad(mode="reflect")``)."""
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


# Appendix B, "pixel blitting": out = T(R(F(x))), i.e. x-flip, then rotation by 90 deg * k, then integer shift.
def blit_transform(x: Tensor, xflip: Tensor, rot90: Tensor, shift: Tensor) -> Tensor:
    """Exact integer transform per sample: ``xflip`` [N] bool, ``rot90`` [N] int (quarter turns), ``shift``
    [N, 2] int (dx, dy) pixels. Out-of-image pixels are reflected (no edge repeat). Differentiable in ``x``.

    Rotations by an odd number of quarter turns need ``H - W`` even (so the pixel grid maps onto itself).
    """
    n, c, h, w = x.shape
    dev = x.device
    xflip, rot90, shift = xflip.to(dev), rot90.to(dev).remainder(4), shift.to(dev, torch.int64)
    if (h - w) % 2 and (rot90 % 2).any():
        raise ValueError(f"odd quarter turns need H - W even, got {h}x{w}")
    # Doubled, centred output coordinates (integers even for even sides): u = 2 x - (W - 1), v = 2 y - (H - 1).
    u = (2 * torch.arange(w, device=dev) - (w - 1))[None, None, :].expand(n, h, w)  # [N, H, W]
    v = (2 * torch.arange(h, device=dev) - (h - 1))[None, :, None].expand(n, h, w)
    # Walk back from the output pixel to the input pixel: undo the shift, the rotation, then the flip.
    u = u - 2 * shift[:, 0, None, None]
    v = v - 2 * shift[:, 1, None, None]
    cos = torch.tensor([1, 0, -1, 0], device=dev)[rot90][:, None, None]
    sin = torch.tensor([0, 1, 0, -1], device=dev)[rot90][:, None, None]
    u, v = cos * u + sin * v, -sin * u + cos * v
    u = torch.where(xflip[:, None, None], -u, u)
    xi = _reflect(torch.div(u + (w - 1), 2, rounding_mode="floor"), w)
    yi = _reflect(torch.div(v + (h - 1), 2, rounding_mode="floor"), h)
    index = (yi * w + xi).reshape(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


# Appendix B, "general geometric transformations": one resample with the composed inverse matrix.
def geometric_transform(x: Tensor, g_inv: Tensor) -> Tensor:
    """Resample each image with ``g_inv`` [N, 3, 3], which maps an output pixel to its input pixel in centred
    pixel coordinates (origin at the image centre, x right, y down). Bilinear, reflection about the edge pixels.
    Differentiable in ``x`` (also twice, as R1 through the augmentation needs).
    """
    n, _, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"geometric ADA ops need images of at least 2x2 pixels, got {h}x{w}")
    a = g_inv.to(device=x.device, dtype=torch.float32)[:, :2, :, None, None]  # [N, 2, 3, 1, 1]
    xo = (torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2)[None, None, :]  # [1, 1, W]
    yo = (torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2)[None, :, None]  # [1, H, 1]
    xi = a[:, 0, 0] * xo + a[:, 0, 1] * yo + a[:, 0, 2]  # [N, H, W] input pixel, centred
    yi = a[:, 1, 0] * xo + a[:, 1, 1] * yo + a[:, 1, 2]
    # align_corners=True: -1 and +1 are the centres of the edge pixels, so "reflection" = F.pad(mode="reflect").
    grid = torch.stack([xi * (2 / (w - 1)), yi * (2 / (h - 1))], dim=-1)  # [N, H, W, 2]
    work = torch.promote_types(x.dtype, torch.float32)  # half-precision coordinates would be off by ~0.1 px
    y = F.grid_sample(x.to(work), grid.to(work), mode="bilinear", padding_mode="reflection", align_corners=True)
    return y.to(x.dtype)


# Appendix B, "color transformations": [r, g, b, 1] -> C [r, g, b, 1]; alpha untouched.
def color_transform(x: Tensor, cmat: Tensor) -> Tensor:
    """Apply a 4x4 homogeneous color matrix ``cmat`` [N, 4, 4] per sample. RGB(A): the full matrix; gray(+A):
    the official reduction (gray scaled by the row-mean of the 3x3 part's row sums, plus the mean offset).
    """
    n, c = x.shape[:2]
    k = _color_channels(c)
    work = torch.promote_types(x.dtype, torch.float32)
    m = cmat.to(device=x.device, dtype=work)[:, :, :, None, None]  # [N, 4, 4, 1, 1]
    col, alpha = x[:, :k].to(work), x[:, k:]
    if k == 3:
        # Elementwise sum over the input channel (not a matmul: no TF32, same result on any device).
        col = torch.stack([sum(m[:, i, j] * col[:, j] for j in range(3)) + m[:, i, 3] for i in range(3)], dim=1)
    elif k == 1:
        gain = m[:, :3, :3].sum(dim=2).mean(dim=1)  # [N, 1, 1]
        col = col * gain[:, None] + m[:, :3, 3].mean(dim=1)[:, None]
    else:
        raise ValueError(f"ADA color ops need 1 (gray) or 3 (RGB) color channels (+ alpha), got C={c}")
    col = col.to(x.dtype)
    return torch.cat([col, alpha], dim=1) if alpha.shape[1] else col


# ---------------------------------------------------------------------------------------------------------------
# Homogeneous matrices (float64, [N, 3, 3] or [N, 4, 4]).


def _eye(n: int, k: int) -> Tensor:
    return torch.eye(k, dtype=torch.float64).expand(n, k, k).clone()


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(len(sx), 3)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta: Tensor) -> Tensor:
    m = _eye(len(theta), 3)
    cos, sin = theta.cos(), theta.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(len(tx), 3)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _luma_rotation(theta: Tensor) -> Tensor:
    """Rotation by ``theta`` about the luma axis v (Rodrigues: cos I + sin [v]x + (1 - cos) v v^T), [N, 4, 4]."""
    vx, vy, vz = _LUMA.tolist()
    cross = torch.tensor([[0.0, -vz, vy], [vz, 0.0, -vx], [-vy, vx, 0.0]], dtype=torch.float64)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    m = _eye(len(theta), 4)
    m[:, :3, :3] = cos * torch.eye(3, dtype=torch.float64) + sin * cross + (1 - cos) * torch.outer(_LUMA, _LUMA)
    return m


# ---------------------------------------------------------------------------------------------------------------
# The pipeline.


class AdaAugment(torch.nn.Module):
    """ADA augmentation pipeline (Karras et al. 2020, appendix B): ``x [N, C, H, W] -> [N, C, H, W]``.

    Args:
        ops: op groups to use, a string of letters: ``b`` blit, ``g`` geometric, ``c`` color (``"bgc"`` is the
            paper's recommended set).
        p: augmentation strength in [0, 1]: the probability of each op (usually set by ``AdaController``).
        weights: optional per-op multipliers of ``p`` (``{"xint": 0.0}`` turns integer translation off); keys
            from ``ADA_OPS`` whose group is in ``ops``.
        xint_max: max integer translation, as a fraction of the image side.
        scale_std, aniso_std: std of log2 of the isotropic / anisotropic scale.
        rotate_max: max rotation, as a fraction of pi.
        xfrac_std: std of the fractional translation, as a fraction of the image side.
        brightness_std: std of the brightness offset (images in [-1, 1]).
        contrast_std, saturation_std: std of log2 of the contrast / saturation factor.
        hue_max: max hue rotation, as a fraction of pi.
        filter_std: std of log2 of each band's gain (``f``).
        noise_std: std of the per-sample noise std (``n``).
        cutout_size: side of the cutout square, as a fraction of the image side (``o``).

    The defaults are the paper's. ``p`` is a plain float attribute: it lives in ``AdaController``'s state.
    """

    def __init__(
        self,
        ops: str = "bgc",
        p: float = 0.0,
        *,
        weights: Mapping[str, float] | None = None,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
        filter_std: float = 1.0,
        noise_std: float = 0.1,
        cutout_size: float = 0.5,
    ) -> None:
        super().__init__()
        self.ops = "".join(parse_ops(ops))
        enabled = {op for g in self.ops for op in ADA_GROUPS[g]}
        self.weights = {op: 1.0 if op in enabled else 0.0 for op in ADA_OPS}
        for op, wt in (weights or {}).items():
            if op not in self.weights:
                raise ValueError(f"unknown ADA op {op!r} in weights; valid: {', '.join(ADA_OPS)}")
            if op not in enabled:
                raise ValueError(f"weights[{op!r}] given but its group is not in ops={self.ops!r}")
            if not wt >= 0:
                raise ValueError(f"weights[{op!r}] must be >= 0, got {wt}")
            self.weights[op] = float(wt)
        self.xint_max, self.scale_std, self.rotate_max, self.aniso_std = xint_max, scale_std, rotate_max, aniso_std
        self.xfrac_std, self.brightness_std, self.contrast_std = xfrac_std, brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.filter_std, self.noise_std, self.cutout_size = filter_std, noise_std, cutout_size
        self.p = p

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"ADA strength p must be in [0, 1], got {value}")
        self._p = value

    def extra_repr(self) -> str:
        return f"ops={self.ops!r}, p={self.p:.4f}"

    def _prob(self, op: str) -> float:
        return min(1.0, self.weights[op] * self.p)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x [N, C, H, W]`` with randomness from ``generator`` only (the global CPU generator when
        None). Differentiable in ``x``; ``p = 0`` returns ``x`` itself.
        """
        assert x.ndim == 4, f"expected x [N, C, H, W], got {list(x.shape)}"
        gdev = generator.device if generator is not None else torch.device("cpu")

        # Every draw happens whatever p is, so the generator's stream after this call does not depend on p.
        # Parameters and matrices are then built on the CPU in float64; only the final ones go to x's device.
        def rand(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=gdev).to("cpu", torch.float64)

        def randn(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, device=gdev).to("cpu", torch.float64)

        def chosen(prob: float, *shape: int) -> Tensor:  # [shape] bool: this op applies to this sample
            return rand(*shape) < prob

        if "b" in self.ops:
            x = self._blit(x, rand, chosen)
        if "g" in self.ops:
            x = self._geometric(x, rand, randn, chosen)
        if "c" in self.ops:
            x = self._color(x, rand, randn, chosen)
        if "f" in self.ops:
            x = self._filter(x, randn, chosen)
        if "n" in self.ops:
            x = self._noise(x, generator, gdev, randn, chosen)
        if "o" in self.ops:
            x = self._cutout(x, rand, chosen)
        return x

    # Appendix B, pixel blitting (official: xflip, rotate90, xint).
    def _blit(self, x: Tensor, rand: Callable[..., Tensor], chosen: Callable[..., Tensor]) -> Tensor:
        n, _, h, w = x.shape
        flip = torch.floor(rand(n) * 2) > 0
        flip &= chosen(self._prob("xflip"), n)
        rot = torch.floor(rand(n) * 4).long()
        if (h - w) % 2:
            rot = rot // 2 * 2  # quarter turns cannot map this pixel grid onto itself: half turns only
        rot = torch.where(chosen(self._prob("rotate90"), n), rot, torch.zeros_like(rot))
        t = (rand(n, 2) * 2 - 1) * self.xint_max
        t = torch.where(chosen(self._prob("xint"), n, 1), t, torch.zeros_like(t))
        shift = torch.stack([torch.round(t[:, 0] * w), torch.round(t[:, 1] * h)], dim=1).long()  # [N, 2] (dx, dy)
        hit = flip | (rot != 0) | (shift != 0).any(dim=1)
        return _apply_to(x, hit, lambda xs, i: blit_transform(xs, flip[i], rot[i], shift[i]))

    # Appendix B, general geometric transformations (official: scale, rotate, aniso, xfrac).
    def _geometric(self, x: Tensor, rand: Callable, randn: Callable, chosen: Callable) -> Tensor:
        n, _, h, w = x.shape
        one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        g_inv = _eye(n, 3)  # output pixel -> input pixel, so each op multiplies its inverse on the right
        hit = torch.zeros(n, dtype=torch.bool)

        s = torch.exp2(randn(n) * self.scale_std)  # isotropic scaling, lognormal(0, (0.2 ln 2)^2)
        m = chosen(self._prob("scale"), n)
        hit |= m
        s = torch.where(m, s, one)
        g_inv = g_inv @ _scale2d(1 / s, 1 / s)

        # Pre- and post-rotation each with 1 - sqrt(1 - p), so that P(pre or post) = p.
        p_rot = 1 - math.sqrt(max(0.0, 1 - self.weights["rotate"] * self.p))
        theta = (rand(n) * 2 - 1) * math.pi * self.rotate_max
        m = chosen(p_rot, n)
        hit |= m
        g_inv = g_inv @ _rotate2d(-torch.where(m, theta, zero))

        s = torch.exp2(randn(n) * self.aniso_std)  # anisotropic scaling, lognormal(0, (0.2 ln 2)^2)
        m = chosen(self._prob("aniso"), n)
        hit |= m
        s = torch.where(m, s, one)
        g_inv = g_inv @ _scale2d(1 / s, s)

        theta = (rand(n) * 2 - 1) * math.pi * self.rotate_max
        m = chosen(p_rot, n)
        hit |= m
        g_inv = g_inv @ _rotate2d(-torch.where(m, theta, zero))

        t = randn(n, 2) * self.xfrac_std  # fractional translation, normal(0, 0.125^2) of the side
        m = chosen(self._prob("xfrac"), n, 1)
        hit |= m[:, 0]
        t = torch.where(m, t, torch.zeros_like(t))
        g_inv = g_inv @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)

        return _apply_to(x, hit, lambda xs, i: geometric_transform(xs, g_inv[i]))

    # Appendix B, color transformations (official: brightness, contrast, lumaflip, hue, saturation).
    def _color(self, x: Tensor, rand: Callable, randn: Callable, chosen: Callable) -> Tensor:
        n, c = x.shape[:2]
        k = _color_channels(c)
        if k not in (1, 3):
            raise ValueError(f"ADA color ops need 1 (gray) or 3 (RGB) color channels (+ alpha), got C={c}")
        rgb = k == 3  # luma flip, hue and saturation only act on RGB
        zero = torch.zeros(n, dtype=torch.float64)
        vvt = torch.zeros(4, 4, dtype=torch.float64)
        vvt[:3, :3] = torch.outer(_LUMA, _LUMA)
        eye4 = torch.eye(4, dtype=torch.float64)
        cmat = _eye(n, 4)  # each op multiplies on the left
        hit = torch.zeros(n, dtype=torch.bool)

        b = randn(n) * self.brightness_std  # brightness offset, normal(0, 0.2^2)
        m = chosen(self._prob("brightness"), n)
        hit |= m
        tb = _eye(n, 4)
        tb[:, :3, 3] = torch.where(m, b, zero)[:, None]
        cmat = tb @ cmat

        s = torch.exp2(randn(n) * self.contrast_std)  # contrast, lognormal(0, (0.5 ln 2)^2), about 0 (mid-gray)
        m = chosen(self._prob("contrast"), n)
        hit |= m
        s = torch.where(m, s, zero + 1)
        sc = _eye(n, 4)
        sc[:, 0, 0] = sc[:, 1, 1] = sc[:, 2, 2] = s
        cmat = sc @ cmat

        i = torch.floor(rand(n) * 2)  # luma flip: Householder reflection I - 2 v v^T
        m = chosen(self._prob("lumaflip"), n) & rgb
        hit |= m & (i > 0)
        i = torch.where(m, i, zero)
        cmat = (eye4 - 2 * vvt * i[:, None, None]) @ cmat

        theta = (rand(n) * 2 - 1) * math.pi * self.hue_max  # hue rotation about v
        m = chosen(self._prob("hue"), n) & rgb
        hit |= m
        cmat = _luma_rotation(torch.where(m, theta, zero)) @ cmat

        s = torch.exp2(randn(n) * self.saturation_std)  # saturation, lognormal(0, (ln 2)^2), away from v
        m = chosen(self._prob("saturation"), n) & rgb
        hit |= m
        s = torch.where(m, s, zero + 1)[:, None, None]
        cmat = (vvt + (eye4 - vvt) * s) @ cmat

        return _apply_to(x, hit, lambda xs, idx: color_transform(xs, cmat[idx]))


    # Appendix B, image-space filtering (official: imgfilter, 4 bands, std 1).
    def _filter(self, x: Tensor, randn: Callable, chosen: Callable) -> Tensor:
        n, c, h, w = x.shape
        k = _color_channels(c)
        if min(h, w) <= FILTER_BANK.shape[1] // 2:
            raise ValueError(f"ADA filter ('f') needs images larger than {FILTER_BANK.shape[1] // 2} pixels, got "
                             f"{h}x{w}")
        bands = FILTER_BANK.shape[0]
        gains = torch.ones(n, bands, dtype=torch.float64)
        hit = torch.zeros(n, dtype=torch.bool)
        for i in range(bands):  # one band at a time, renormalised so the expected power stays that of 1/f
            t_i = torch.exp2(randn(n) * self.filter_std)
            m = chosen(self._prob("filter"), n)
            hit |= m
            t = torch.ones(n, bands, dtype=torch.float64)
            t[:, i] = torch.where(m, t_i, torch.ones_like(t_i))
            gains = gains * t / (BAND_POWER * t.square()).sum(dim=1, keepdim=True).sqrt()
        h_ = gains @ FILTER_BANK  # [N, taps]

        def apply(xs: Tensor, idx: Tensor) -> Tensor:
            return torch.cat([filter_transform(xs[:, :k], h_[idx]), xs[:, k:]], dim=1)

        return _apply_to(x, hit, apply)

    # Appendix B, additive RGB noise (official: noise, std 0.1).
    def _noise(self, x: Tensor, generator: torch.Generator | None, gdev: torch.device, randn: Callable,
               chosen: Callable) -> Tensor:
        n, c, h, w = x.shape
        k = _color_channels(c)
        sigma = randn(n).abs() * self.noise_std
        seeds = torch.randint(0, 2**62, (n,), generator=generator, device=gdev).cpu()
        hit = chosen(self._prob("noise"), n) & (sigma > 0)

        def apply(xs: Tensor, idx: Tensor) -> Tensor:
            noise = torch.stack([torch.randn(k, h, w, generator=torch.Generator().manual_seed(int(seeds[i])))
                                 * float(sigma[i]) for i in idx.tolist()])
            return torch.cat([xs[:, :k] + noise.to(xs.device, xs.dtype), xs[:, k:]], dim=1)

        return _apply_to(x, hit, apply)

    # Appendix B, cutout (official: cutout, size 0.5): one square set to 0 (mid-gray for images in [-1, 1]).
    def _cutout(self, x: Tensor, rand: Callable, chosen: Callable) -> Tensor:
        n, _, h, w = x.shape
        centre = rand(n, 2)  # (cx, cy) in [0, 1) of the side
        hit = chosen(self._prob("cutout"), n)

        def apply(xs: Tensor, idx: Tensor) -> Tensor:
            cx, cy = (centre[idx, j].to(xs.device, torch.float32)[:, None] for j in (0, 1))
            px = (torch.arange(w, device=xs.device) + 0.5) / w  # pixel centres
            py = (torch.arange(h, device=xs.device) + 0.5) / h
            keep_x = (px[None] - cx).abs() >= self.cutout_size / 2  # [n, W]
            keep_y = (py[None] - cy).abs() >= self.cutout_size / 2  # [n, H]
            keep = keep_x[:, None, :] | keep_y[:, :, None]  # [n, H, W]
            return xs * keep[:, None].to(xs.dtype)

        return _apply_to(x, hit, apply)


def _apply_to(x: Tensor, hit: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Apply ``fn(x[idx], idx)`` to the samples where ``hit`` [N] is set; the others pass through bit-identical."""
    idx = hit.nonzero().flatten()  # on the CPU: no sync with the images' device
    if len(idx) == 0:
        return x
    if len(idx) == len(hit):
        return fn(x, idx)
    idx_x = idx.to(x.device)
    return x.index_copy(0, idx_x, fn(x.index_select(0, idx_x), idx))


# ---------------------------------------------------------------------------------------------------------------
# Adaptive strength (sec. 3): p follows the overfitting heuristic r_t = E[sign(D(x_real))].


class AdaController:
    """Adjusts the ADA strength ``p`` from the discriminator's outputs on reals (Karras et al. 2020, sec. 3).

    Call ``accumulate(d_real_scores)`` whenever D scores (augmented) reals, and ``update(batch)`` once per
    training step. Every ``interval`` steps, ``r_t = E[sign(D_real)]`` over what was accumulated, and
    ``p += sign(r_t - target) * batch * interval / (speed_kimg * 1000)``, clamped to ``[0, p_max]``: with the
    defaults p can go from 0 to 1 in 500k images. The accumulator is a ``(sign_sum, count)`` pair of floats
    that a multi-process caller can all-reduce before ``update``.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        p: float = 0.0,
        p_max: float = 1.0,
    ) -> None:
        if not -1.0 < target < 1.0:
            raise ValueError(f"target must be in (-1, 1), got {target}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1 step, got {interval}")
        if not speed_kimg > 0:
            raise ValueError(f"speed_kimg must be > 0, got {speed_kimg}")
        if not 0.0 <= p_max <= 1.0:
            raise ValueError(f"p_max must be in [0, 1], got {p_max}")
        if not 0.0 <= p <= p_max:
            raise ValueError(f"p must be in [0, p_max={p_max}], got {p}")
        self.target, self.interval, self.speed_kimg, self.p_max = float(target), int(interval), float(speed_kimg), p_max
        self.p = float(p)
        self.step = 0  # update() calls so far
        self.count = 0.0  # number of scores accumulated since the last adjustment
        self.r_t = math.nan  # the last r_t used for an adjustment (for logging)
        self._sum = 0.0
        self._pending: Tensor | None = None  # device-side sum not yet read back (avoids a sync per step)

    @property
    def sign_sum(self) -> float:
        """Sum of sign(D_real) since the last adjustment."""
        if self._pending is not None:
            self._sum += float(self._pending)
            self._pending = None
        return self._sum

    @sign_sum.setter
    def sign_sum(self, value: float) -> None:
        self._pending = None
        self._sum = float(value)

    def accumulate(self, d_real_scores: Tensor) -> None:
        """Add D's raw scores on (augmented) reals, any shape; only their signs count."""
        s = torch.sign(d_real_scores.detach().float()).sum()
        self._pending = s if self._pending is None else self._pending + s
        self.count += d_real_scores.numel()

    def update(self, batch: int) -> bool:
        """Count one training step of ``batch`` images (the global batch); every ``interval`` steps adjust ``p``.
        Returns True when ``p`` was re-evaluated this call (it may stay put if r_t == target or at a bound).
        """
        self.step += 1
        if self.step % self.interval != 0 or self.count == 0:
            return False
        self.r_t = self.sign_sum / self.count
        adjust = math.copysign(1.0, self.r_t - self.target) if self.r_t != self.target else 0.0
        self.p = min(max(self.p + adjust * batch * self.interval / (self.speed_kimg * 1000), 0.0), self.p_max)
        self.sign_sum, self.count = 0.0, 0.0
        return True

    def state_dict(self) -> dict[str, float | int]:
        """Plain floats and ints (fits a ``weights_only`` checkpoint): strength, accumulator and step counter."""
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "step": self.step, "r_t": self.r_t}

    def load_state_dict(self, state: Mapping[str, float | int]) -> None:
        self.p = float(state["p"])
        self.sign_sum = float(state["sign_sum"])
        self.count = float(state["count"])
        self.step = int(state["step"])
        self.r_t = float(state["r_t"])
