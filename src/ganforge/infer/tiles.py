"""Tiled inference for any fully convolutional image-to-image network, with memory bounded by the tile size.

Super-resolution, denoising, inpainting and translation networks all map [N, C, h, w] to [N, C', h*s, w*s], and
users hand them photos far larger than fit through a network at once. `run_tiled` cuts the image into tiles that
overlap, runs the network on each, and blends the results so that no seam shows:

- Tiles are evenly spaced so that neighbours overlap by at least `overlap` pixels, and all have the same size
  (so they batch, and a network that needs sizes divisible by `multiple` gets them).
- Each tile's output is weighted by a separable feather. Inside an overlap, the outer `margin` pixels on the side
  of a tile's inner edge get weight 0 (that is where zero padding at the tile border corrupts a convolution's
  output; make `margin` at least the network's receptive-field radius and the result equals whole-image inference),
  and the rest of the overlap is a raised-cosine ramp. Image borders are not feathered.
- Because the weights are separable, their sum at any pixel is known in advance, per axis; the weights are
  normalised up front, so only weighted sums are accumulated, never a weight image.
- Tile rows are processed as strips. Only the current strip, [C', tile * scale, W * scale] float32, is held; rows
  that no later tile touches are converted and written straight into the output array, and the band that the next
  strip overlaps is carried over. Apart from the caller's input and output arrays, peak memory is one strip plus
  a few tiles, whatever the image size. Pass `out=` a uint8/uint16 array to avoid a full-size float output too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

_FINALIZE_ELEMENTS = 1 << 18  # finalize rows in chunks of about this many values (1 MiB of float32)


def _ramp(n_overlap: int, margin: int, size: int) -> np.ndarray:
    """Weights [size] rising over the first `n_overlap` pixels: 0 for `margin`, raised cosine, then 1."""
    w = np.ones(size, np.float64)
    n = min(n_overlap, size)
    band = n - 2 * margin  # the blended part of the overlap; the outer margins belong to one tile each
    w[:margin] = 0.0
    if band > 0:
        t = (np.arange(band) + 0.5) / band
        w[margin:margin + band] = 0.5 - 0.5 * np.cos(np.pi * t)
    return w


def _axis_plan(length: int, tile: int, overlap: int, margin: int, scale: int) -> tuple[list[int], list[np.ndarray]]:
    """Tile starts along one axis (input pixels) and each tile's normalised weights (output pixels, float32)."""
    size = min(tile, length)
    if length <= tile:
        starts = [0]
    else:
        # Fewest tiles whose stride is at most tile - overlap, spread evenly so every overlap is >= `overlap`.
        n = math.ceil((length - tile) / (tile - overlap)) + 1
        starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    weights = []
    for i, s in enumerate(starts):
        w = np.ones(size * scale, np.float64)
        if i > 0:  # feather the side that overlaps the previous tile
            w *= _ramp((starts[i - 1] + size - s) * scale, margin * scale, size * scale)
        if i < len(starts) - 1:  # and the side that overlaps the next one
            w *= _ramp((s + size - starts[i + 1]) * scale, margin * scale, size * scale)[::-1]
        weights.append(w)
    total = np.zeros(length * scale, np.float64)
    for s, w in zip(starts, weights, strict=True):
        total[s * scale:(s + size) * scale] += w
    assert total.min() > 0, "every output pixel must get weight from some tile"
    return starts, [(w / total[s * scale:(s + size) * scale]).astype(np.float32) for s, w in zip(starts, weights,
                                                                                                   strict=True)]


def _default_to_out(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float [C', rows, W'] -> dtype. Works in place on `block`: these strip rows are never read again."""
    if dtype == np.uint8 or dtype == np.uint16:
        peak = float(np.iinfo(dtype).max)
        np.multiply(block, peak, out=block)
        np.clip(block, 0.0, peak, out=block)
        return np.rint(block, out=block)  # the assignment into `out` casts to the integer dtype
    return block


def run_tiled(
    fn: Callable[[Tensor], Tensor],
    image: np.ndarray | Tensor,
    tile: int = 256,
    overlap: int = 32,
    scale: int = 1,
    out_channels: int | None = None,
    batch: int = 1,
    *,
    margin: int | None = None,
    multiple: int = 1,
    out: np.ndarray | None = None,
    to_out: Callable[[np.ndarray], np.ndarray] | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Run `fn` over `image` tile by tile and blend the tiles with feathered weights; returns `out`.

    `image` is [C, H, W]: float (passed as is), or uint8/uint16 (mapped to [0, 1] per tile, so a large image can
    stay in its compact dtype), as a numpy array (any strides, e.g. `hwc.transpose(2, 0, 1)`) or a CPU tensor.
    `fn` maps float32 [N, C, h, w] to [N, C', h*scale, w*scale]; it runs under `torch.no_grad()` on `device`
    (default: where the tiles are, the CPU), with N <= `batch`.

    Tiles are `tile` pixels square (smaller if the image is) and overlap by at least `overlap` pixels. `margin`
    (default overlap // 4, at most overlap // 2) is the part of each overlap given weight 0 at a tile's inner edge:
    set it to at least the network's receptive-field radius for tiles to be exact. An image smaller than a tile is
    processed whole; tiles are reflection-padded to a multiple of `multiple` when needed and cropped back.

    The result is float32 [C', H*scale, W*scale] unless `out` is given: an array of that shape (e.g. a
    `hwc.transpose(2, 0, 1)` view) of any dtype. For uint8/uint16 `out`, values in [0, 1] are rounded and
    clipped to the full integer range; `to_out` replaces that conversion (it gets float32 [C', rows, W*scale]).
    """
    x = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if x.ndim != 3:
        raise ValueError(f"image must be [C, H, W], got shape {tuple(x.shape)}")
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        in_scale = np.float32(1.0 / np.iinfo(x.dtype).max)
    elif x.dtype.kind == "f":
        in_scale = None
    else:
        raise ValueError(f"image must be float, uint8 or uint16, got {x.dtype}")
    margin = overlap // 4 if margin is None else margin
    if tile < 1 or not 0 <= overlap < tile or scale < 1 or batch < 1 or multiple < 1:
        raise ValueError(f"need tile >= 1, 0 <= overlap < tile, scale >= 1, batch >= 1, multiple >= 1; got "
                         f"tile={tile}, overlap={overlap}, scale={scale}, batch={batch}, multiple={multiple}")
    if not 0 <= margin <= overlap // 2:
        raise ValueError(f"margin must be in 0..overlap // 2 = {overlap // 2}, got {margin}")
    if tile % multiple:
        raise ValueError(f"tile={tile} must be a multiple of multiple={multiple}")

    c_in, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)  # tile size in input pixels
    ph, pw = -(-th // multiple) * multiple, -(-tw // multiple) * multiple  # padded for the network
    ys, wys = _axis_plan(h, tile, overlap, margin, scale)
    xs, wxs = _axis_plan(w, tile, overlap, margin, scale)
    h_out, w_out, th_out, tw_out = h * scale, w * scale, th * scale, tw * scale
    strip = scratch = None  # [C', th_out, w_out] weighted sums of the current strip; [C', th_out, tw_out]
    c_out = out_channels

    def check_out(c: int) -> np.ndarray:
        if out is None:
            return np.empty((c, h_out, w_out), np.float32)  # [C', H*scale, W*scale]
        if out.shape != (c, h_out, w_out):
            raise ValueError(f"out must have shape {(c, h_out, w_out)} = [C', H*scale, W*scale], got {out.shape}")
        return out

    if out is not None and c_out is not None:
        check_out(c_out)
    xb = np.empty((min(batch, len(xs)), c_in, ph, pw), np.float32)  # [N, C, ph, pw] input tiles, reused

    for r, (y0, wy) in enumerate(zip(ys, wys, strict=True)):
        for b0 in range(0, len(xs), batch):
            cols = range(b0, min(b0 + batch, len(xs)))
            for k, c in enumerate(cols):
                xb[k, :, :th, :tw] = x[:, y0:y0 + th, xs[c]:xs[c] + tw]  # casts to float32
                if in_scale is not None:
                    xb[k, :, :th, :tw] *= in_scale
                if (ph, pw) != (th, tw):
                    xb[k] = np.pad(xb[k, :, :th, :tw], ((0, 0), (0, ph - th), (0, pw - tw)), mode="reflect")
            with torch.no_grad():
                y = fn(torch.from_numpy(xb[:len(cols)]).to(device))  # [N, C', ph*scale, pw*scale]
            if y.ndim != 4 or y.shape[0] != len(cols) or tuple(y.shape[2:]) != (ph * scale, pw * scale):
                raise ValueError(f"fn returned shape {tuple(y.shape)} for input {tuple(xb[:len(cols)].shape)}; "
                                 f"expected [N, C', h*{scale}, w*{scale}]")
            if c_out is not None and y.shape[1] != c_out:
                raise ValueError(f"fn returned {y.shape[1]} channels, out_channels={c_out}")
            y = y.detach().float().cpu().numpy()[:, :, :th_out, :tw_out]  # crop the padding back off
            if strip is None:  # the first tile tells C' when out_channels was not given
                c_out = y.shape[1]
                out = check_out(c_out)
                strip = np.zeros((c_out, th_out, w_out), np.float32)
                scratch = np.empty((c_out, th_out, tw_out), np.float32)
            for k, c in enumerate(cols):
                np.multiply(y[k], np.outer(wy, wxs[c]), out=scratch)  # weights are normalised: no weight image
                strip[:, :, xs[c] * scale:xs[c] * scale + tw_out] += scratch

        # Rows above the next strip's first row are final: convert them into `out` in small chunks.
        base = y0 * scale
        end = ys[r + 1] * scale if r + 1 < len(ys) else h_out
        step = max(1, _FINALIZE_ELEMENTS // (c_out * w_out))
        for a in range(base, end, step):
            block = strip[:, a - base:min(a + step, end) - base]  # [C', rows, W*scale]
            out[:, a:a + block.shape[1]] = to_out(block) if to_out else _default_to_out(block, out.dtype)
        # Carry the band the next strip overlaps to the top of the strip; clear the rest.
        carry = base + th_out - end
        if carry > 0:
            strip[:, :carry] = strip[:, end - base:th_out]
        strip[:, max(carry, 0):] = 0.0
    return out

