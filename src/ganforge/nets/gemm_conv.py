"""Convolutions as matrix products over channels-last (NHWC) columns, for the small maps of batch-1 training on a CPU.

There oneDNN's (transposed) convolution is bound by its weight handling, most of all in the backward pass: the
weight gradient of a 4x4 kernel over a 2x2 map, or PatchGAN's 256 -> 512 stride-1 layer over a 16x16 map, ran at a
quarter to a half of the machine's matrix-product rate. Here each pass is one matrix product plus a gather (im2col)
or a scatter-add (col2im) over NHWC maps, so that

- a weight is used as it lies in memory, never copied: a conv weight ``[C_out, C_in, kh, kw]`` is the matrix
  ``[C_out, kh kw C_in]`` when channels_last and ``[C_out, C_in kh kw]`` when contiguous (a ConvTranspose2d
  weight ``[C_in, C_out, kh, kw]`` likewise with C_out inside); the columns follow the weight's order;
- the product's ``[N H W, C]`` result is the channels_last output (or input gradient) itself;
- the weight gradient comes out in its parameter's layout (autograd would otherwise copy it).

Conv:       y = im2col(x) @ W^T;   dW = dy^T @ im2col(x);   dx = col2im(dy @ W)
Transposed: y = col2im(x @ W);     dW = x^T @ im2col(dy);    dx = im2col(dy) @ W^T

The same parameters and, to float rounding, the same results and gradients as torch's ops (tests/test_nets.py).
Groups 1, dilation 1, zero padding. The backward is built of differentiable ops, so a gradient penalty through
these layers (create_graph) gets its second derivatives; the columns are then recomputed from x.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _nhwc(x: Tensor) -> Tensor:
    """[N, C, H, W] (any layout) as a contiguous NHWC tensor [N, H, W, C]; a view of a channels_last tensor."""
    return x.permute(0, 2, 3, 1).contiguous()


def _nchw(y: Tensor, like: Tensor) -> Tensor:
    """NHWC y [N, H, W, C] as [N, C, H, W]: channels_last (a view), or contiguous when ``like`` is contiguous and
    not also channels_last (a 1x1 map is both: then channels_last, the training loop's layout). For input
    gradients: a view stays differentiable under create_graph, where ``_output``'s storage swap would not."""
    y = y.permute(0, 3, 1, 2)
    if like.is_contiguous() and not like.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous()
    return y


def _output(y: Tensor, like: Tensor) -> Tensor:
    """A layer's NHWC result y [N, H, W, C] as its [N, C, H, W] output: channels_last over y's memory, or a
    contiguous copy when ``like`` (the input) is contiguous and not also channels_last. Never a view of y: autograd
    forbids in-place ops (a following ReLU(inplace=True)) on a view made inside a Function."""
    n, h, w, c = y.shape
    if like.is_contiguous() and not like.is_contiguous(memory_format=torch.channels_last):
        return y.new_empty((n, c, h, w)).copy_(y.permute(0, 3, 1, 2))
    return y.new_empty(0).set_(y.untyped_storage(), y.storage_offset(), (n, c, h, w), (h * w * c, 1, w * c, c))


def _channels_inner(w: Tensor) -> bool:
    """Whether a weight [A, B, kh, kw] lies as [A, kh, kw, B] (channels_last) rather than [A, B, kh, kw]."""
    return not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)


def _weight_matrix(w: Tensor) -> Tensor:
    """A weight [A, B, kh, kw] as the matrix it is in memory: [A, kh kw B] or [A, B kh kw] (a view of a
    channels_last or contiguous weight; any other layout is copied)."""
    return (w.permute(0, 2, 3, 1) if _channels_inner(w) else w.contiguous()).reshape(w.shape[0], -1)


def _as_weight(m: Tensor, like: Tensor) -> Tensor:
    """The matrix of ``_weight_matrix(like)`` back as a weight [A, B, kh, kw] with ``like``'s strides."""
    a, b, kh, kw = like.shape
    return m.view(a, kh, kw, b).permute(0, 3, 1, 2) if _channels_inner(like) else m.view(a, b, kh, kw)


def _weight_grad(a: Tensor, b: Tensor, like: Tensor) -> Tensor:
    """The weight gradient a @ b (the matrix of ``_weight_matrix(like)``) as a weight with ``like``'s strides.
    Outside create_graph it is written into a tensor of its own, not a view: autograd then adds a second gradient
    of a weight used twice into it in place (PatchGAN's D(real) and D(fake): 8.6 ms of one pix2pix-128 step for
    the out-of-place sum of the 256 -> 512 layer's); under create_graph the product stays differentiable."""
    if torch.is_grad_enabled() or not (like.is_contiguous() or _channels_inner(like)):
        return _as_weight(a @ b, like)
    gw = torch.empty_like(like, memory_format=torch.preserve_format)  # dense: _weight_matrix(gw) is a view
    torch.mm(a, b, out=_weight_matrix(gw))
    return gw


def _taps(t: Tensor, channels_inner: bool) -> Tensor:
    """A [..., kh kw C] or [..., C kh kw] column block as [..., kh, kw, C] (a view)."""
    return t if channels_inner else t.movedim(-3, -1)


def _times_t(a: Tensor, w: Tensor) -> Tensor:
    """a [M, K] @ w [N, K]^T, contiguous [M, N]. With 9 to 64 rows MKL runs the transposed product (w a^T)^T
    faster (one thread: 1.3 instead of 2.4 ms for [16, 8192] x [8192, 512], 3.1 instead of 5.2 ms for N = 1024)."""
    if 8 < a.shape[0] <= 64:
        return (w @ a.t()).t().contiguous()
    return a @ w.t()


def _span(n_in: int, n_out: int, stride: int, pad: int, i: int) -> tuple[int, int, int]:
    """For kernel offset i: the input positions h in [h0, h1) whose tap r = h stride + i - pad lands in [0, n_out),
    and r at h0. Lets the scatter skip the padding without a padded buffer."""
    h0 = max(0, -((i - pad) // stride))                   # ceil((pad - i) / stride)
    h1 = min(n_in, (n_out - 1 - i + pad) // stride + 1)
    return h0, h1, h0 * stride + i - pad


def im2col(x: Tensor, k: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int], out_hw: tuple[int, int],
           channels_inner: bool) -> Tensor:
    """NHWC x [N, H, W, C] -> columns [N Ho Wo, kh kw C] (or [.., C kh kw]): row (n, p, q), tap (i, j) holds
    x[n, p s - pad + i, q s - pad + j] (zero outside x)."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = k, stride, pad, out_hw
    assert (ho - 1) * sh + kh <= h + 2 * ph and (wo - 1) * sw + kw <= w + 2 * pw, "windows past the padding"
    if (ph, pw) != (0, 0):
        xp = x.new_zeros(n, h + 2 * ph, w + 2 * pw, c)
        xp[:, ph:ph + h, pw:pw + w] = x
    else:
        xp = x
    s = xp.stride()
    win = xp.as_strided((n, ho, wo, kh, kw, c), (s[0], sh * s[1], sw * s[2], s[1], s[2], s[3]))
    if not channels_inner:
        win = win.permute(0, 1, 2, 5, 3, 4)
    return win.reshape(n * ho * wo, -1)


def col2im(cols: Tensor, n: int, in_hw: tuple[int, int], k: tuple[int, int], stride: tuple[int, int],
           pad: tuple[int, int], out_hw: tuple[int, int], channels_inner: bool) -> Tensor:
    """The adjoint of ``im2col``: columns [N Hi Wi, kh kw C] (or [.., C kh kw]) scatter-added into NHWC
    [N, Ho, Wo, C], tap (i, j) of position (p, q) landing on (p s - pad + i, q s - pad + j); taps outside the map
    are dropped."""
    (hi, wi), (kh, kw), (sh, sw), (ph, pw), (ho, wo) = in_hw, k, stride, pad, out_hw
    c = cols.shape[1] // (kh * kw)
    src = _taps(cols.view(n, hi, wi, kh, kw, c) if channels_inner else cols.view(n, hi, wi, c, kh, kw),
                channels_inner)                                                   # [N, Hi, Wi, kh, kw, C]
    out = cols.new_zeros(n, ho, wo, c)
    for i in range(kh):
        h0, h1, r0 = _span(hi, ho, sh, ph, i)
        if h1 <= h0:
            continue
        for j in range(kw):
            w0, w1, q0 = _span(wi, wo, sw, pw, j)
            if w1 <= w0:
                continue
            out[:, r0:r0 + (h1 - h0 - 1) * sh + 1:sh, q0:q0 + (w1 - w0 - 1) * sw + 1:sw] += src[:, h0:h1, w0:w1, i, j]
    return out


class _GemmConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                pad: tuple[int, int]) -> Tensor:
        n, _, h, w = x.shape
        k, inner = tuple(weight.shape[2:]), _channels_inner(weight)
        ho, wo = (h + 2 * pad[0] - k[0]) // stride[0] + 1, (w + 2 * pad[1] - k[1]) // stride[1] + 1
        cols = im2col(_nhwc(x), k, stride, pad, (ho, wo), inner)                # [N Ho Wo, kh kw C_in]
        wm = _weight_matrix(weight)                                               # [C_out, kh kw C_in]
        y = _times_t(cols, wm)                                                    # [N Ho Wo, C_out]
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, cols if weight.requires_grad else None, weight)
        ctx.geometry = (n, (h, w), k, stride, pad, (ho, wo), inner)
        return _output(y.view(n, ho, wo, -1), x)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, cols, weight = ctx.saved_tensors
        n, in_hw, k, stride, pad, out_hw, inner = ctx.geometry
        if torch.is_grad_enabled() and ctx.needs_input_grad[1]:  # create_graph: the columns as a function of x
            cols = im2col(_nhwc(x), k, stride, pad, out_hw, inner)
        g = _nhwc(gy).view(-1, gy.shape[1])                                      # [N Ho Wo, C_out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gcols = g @ _weight_matrix(weight)                                    # [N Ho Wo, kh kw C_in]
            gx = _nchw(col2im(gcols, n, out_hw, k, stride, pad, in_hw, inner), gy)
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(g.t(), cols, weight)
        if ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None, None


class _GemmConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                pad: tuple[int, int]) -> Tensor:
        n, _, h, w = x.shape
        k, inner = tuple(weight.shape[2:]), _channels_inner(weight)
        ho, wo = (h - 1) * stride[0] - 2 * pad[0] + k[0], (w - 1) * stride[1] - 2 * pad[1] + k[1]
        xm = _nhwc(x).view(n * h * w, -1)                                         # [N H W, C_in]
        cols = xm @ _weight_matrix(weight)                                        # [N H W, kh kw C_out]
        y = col2im(cols, n, (h, w), k, stride, pad, (ho, wo), inner)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, weight)
        ctx.geometry = (n, (h, w), k, stride, pad, inner)
        return _output(y, x)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        n, in_hw, k, stride, pad, inner = ctx.geometry
        gcols = im2col(_nhwc(gy), k, stride, pad, in_hw, inner)                 # [N H W, kh kw C_out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _nchw(_times_t(gcols, _weight_matrix(weight)).view(n, *in_hw, -1), gy)
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(_nhwc(x).view(-1, x.shape[1]).t(), gcols, weight)
        if ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None, None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], pad: tuple[int, int]) -> Tensor:
    """F.conv2d(x, weight, bias, stride, pad) as NHWC matrix products (groups 1, dilation 1)."""
    return _GemmConv.apply(x, weight, bias, tuple(stride), tuple(pad))


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int],
                     pad: tuple[int, int]) -> Tensor:
    """F.conv_transpose2d(x, weight, bias, stride, pad) as NHWC matrix products (groups 1, dilation 1, no
    output padding)."""
    return _GemmConvTranspose.apply(x, weight, bias, tuple(stride), tuple(pad))
