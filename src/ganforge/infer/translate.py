"""The "translate" pipeline: apply a pix2pix or CycleGAN snapshot to images of any size.

``pipe(pixels, direction="AtoB")`` maps [H, W, C] uint8/uint16 to [H, W, C_out] of the same dtype; alpha is passed
through by ``process_file``. pix2pix models translate only A -> B (the direction they were trained in); CycleGAN
models have both generators, ``AtoB`` (G) and ``BtoA`` (F).

What the network sees is what it was trained on (the snapshot's ``derive`` and ``label_classes``):
    lab            the input's CIE L* (colour or gray input alike); the output keeps that L* exactly and takes only
                   its colours (a*b*) from the model, so tones and detail are the photo's own
    gray, gray:1   the input's BT.601 luma (replicated / one channel)
    label maps     an 8-bit gray PNG of class indices, one-hot encoded (indices >= the class count are an error)
    anything else  the pixels as they are (an edge drawing for edges -> photo, a degraded photo, a domain A image);
                   gray input to an RGB model is replicated, RGB input to a gray model becomes its luma

Eval mode (the documented choice): the snapshot's modules run in ``eval()``: dropout is off and BatchNorm uses the
running statistics collected in training. The reference implementation tests in train mode by default (dropout on,
BatchNorm with the statistics of the test batch), which makes the output random and dependent on the batch, and
an exported ONNX graph (always eval semantics) then disagrees with it. Here one input gives one output, on every
device, tiled or not, in PyTorch and in an export. InstanceNorm (CycleGAN, and pix2pix at batch 1 in the paper's
train-mode test) has no running statistics and behaves the same in both modes.

Large images: up to ``whole_pixels`` (default 4 MP) an image is processed whole (the networks pad it to a multiple
of their stride and crop back). Above it, tiles of ``tile`` px are blended with infer/tiles.run_tiled, with an
overlap of at least twice the receptive-field radius and tile starts on the network's stride grid (the image is
reflect-padded at the bottom and right until run_tiled's evenly spread starts are multiples of the stride: a
strided network shifted by a non-multiple computes different numbers). Tiling is then exact (tested) for a finite
receptive field with per-pixel normalisation: the ResNet generator with BatchNorm (eval) or no norm. The U-Net's
bottleneck sees the whole tile and InstanceNorm normalises by each tile's statistics, so their tiles agree only
approximately; the feathered overlap hides the seams, and the cap keeps ordinary photos on the exact path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.core.imageio import LoadedImage, read_image, write_image
from ganforge.data.color import keep_lightness, lightness
from ganforge.infer.snapshot import build_modules
from ganforge.infer.tiles import run_tiled

DIRECTIONS = ("AtoB", "BtoA")
WHOLE_PIXELS = 4_000_000  # images up to this many pixels run in one piece (exact); larger ones are tiled
_LUMA_601 = (0.299, 0.587, 0.114)
COLORIZE_DERIVES = ("lab", "gray", "gray:1")


class TranslatePipeline:
    """A translation snapshot's generator(s) by direction, with the input preparation they were trained with."""

    def __init__(self, g: nn.Module, meta: dict[str, Any], device: torch.device):
        self.meta, self.device = meta, device
        self.nets: dict[str, nn.Module] = {"AtoB": g.AtoB, "BtoA": g.BtoA} if hasattr(g, "BtoA") else {"AtoB": g}
        self.derive: str | None = meta.get("derive")
        self.label_classes: int | None = meta.get("label_classes")

    @classmethod
    def from_snapshot(cls, tensors: dict[str, dict[str, Tensor]], meta: dict[str, Any], snapshot: str | Path,
                      device: torch.device) -> TranslatePipeline:
        return cls(build_modules(tensors, meta, snapshot, device)["G"], meta, device)

    def __repr__(self) -> str:
        d = self.meta.get("dataset", {})
        return (f"TranslatePipeline({self.meta.get('task')}, {self.meta.get('arch')}, {'/'.join(self.nets)}, "
                f"input {self.derive or ('labels' if self.label_classes else 'image')}, trained on {d.get('name')})")

    @property
    def is_colorizer(self) -> bool:
        """Trained to colour gray photos (derived pairs lab or gray): what ``ganforge colorize`` accepts."""
        return self.derive in COLORIZE_DERIVES

    def net(self, direction: str) -> nn.Module:
        """The generator for ``direction``; ValueError for an unknown one or BtoA of a one-way (pix2pix) model."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        if direction not in self.nets:
            raise ValueError(f"this {self.meta.get('task')} model translates only AtoB (pix2pix learns one "
                             "direction from its pairs); for BtoA train another model on the pairs reversed, or a "
                             "CycleGAN (--preset cyclegan-64), which learns both")
        return self.nets[direction]

    def in_channels(self, direction: str) -> int:
        return int(self.net(direction).config["in_channels"])

    def out_channels(self, direction: str) -> int:
        return int(self.net(direction).config["out_channels"])

    def _prepare(self, x: Tensor, direction: str) -> Tensor:
        """Tile [N, C, h, w] in [-1, 1] -> the network's input [N, C_in, h, w] (see the module docstring)."""
        from ganforge.tasks.translate import one_hot_labels  # tasks sit below infer; imported where used

        want = self.in_channels(direction)
        if direction == "AtoB" and self.label_classes:
            if x.shape[1] != 1:
                raise ValueError("this model takes label maps: give 8-bit gray PNGs whose values are class indices "
                                 f"0..{self.label_classes - 1}, not {x.shape[1]}-channel images")
            return one_hot_labels(x, self.label_classes)
        if direction == "AtoB" and self.derive == "lab":
            return lightness(x)
        if direction == "AtoB" and self.derive in ("gray", "gray:1") or (x.shape[1] == 3 and want == 1):
            luma = torch.einsum("nchw,c->nhw", x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1),
                                torch.tensor(_LUMA_601, dtype=x.dtype, device=x.device))[:, None]
            return luma.expand(-1, want, -1, -1)
        if x.shape[1] == 1 and want == 3:
            return x.expand(-1, 3, -1, -1)
        if x.shape[1] != want:
            raise ValueError(f"the model takes {want}-channel images, got {x.shape[1]} channels")
        return x

    def graph(self, direction: str = "AtoB", channels: int | None = None) -> TranslateGraph:
        """The whole per-tile computation for ``direction`` as one module (input preparation, the network, the Lab
        recombination): [N, channels, H, W] in [0, 1] -> [N, C_out, H, W] in [0, 1]; what an ONNX export takes.
        ``channels``: the input's (default: the network's input, or 1 for label maps and Lab models)."""
        net = self.net(direction)
        if channels is None:
            gray_in = direction == "AtoB" and (self.label_classes or self.derive == "lab")
            channels = 1 if gray_in else int(net.config["in_channels"])
        return TranslateGraph(self, direction, channels)

    def _tile_fn(self, direction: str):
        self.net(direction)  # a bad or one-way direction fails here, before any pixel is read
        graphs: dict[int, TranslateGraph] = {}  # one per input channel count

        @torch.no_grad()
        def fn(t: Tensor) -> Tensor:  # [N, C, h, w] in [0, 1] -> [N, C_out, h, w] in [0, 1]
            c = t.shape[1]
            if c not in graphs:
                graphs[c] = self.graph(direction, c)
            return graphs[c](t.to(self.device)).float().cpu()
        return fn

    def __call__(self, pixels: np.ndarray, direction: str = "AtoB", tile: int = 1024, overlap: int = 128,
                 whole_pixels: int = WHOLE_PIXELS) -> np.ndarray:
        """Translate [H, W] or [H, W, C] uint8/uint16 pixels (C = 1 or 3) to [H, W, C_out] of the same dtype."""
        fn = self._tile_fn(direction)  # checks the direction first
        img = np.asarray(pixels)
        img = img[:, :, None] if img.ndim == 2 else img
        if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected [H, W] or [H, W, C] uint8/uint16 pixels with C = 1 or 3, got {img.dtype} "
                             f"{list(np.shape(pixels))}")
        if self.label_classes and direction == "AtoB" and img.dtype != np.uint8:
            raise ValueError("label maps must be 8-bit gray PNGs of class indices, got 16-bit pixels")
        h, w, _ = img.shape
        c_out = self.out_channels(direction)
        if h * w <= whole_pixels:  # one piece: exact for every network
            out = np.empty((h, w, c_out), img.dtype)
            run_tiled(fn, img.transpose(2, 0, 1), tile=max(h, w), overlap=0, margin=0, out=out.transpose(2, 0, 1))
            return out
        net = self.net(direction)
        stride = 2 ** net.config["depth"] if "depth" in net.config else 4  # the network's total downsampling
        radius = getattr(net, "receptive_field", 0) // 2  # 0: unbounded (the U-Net's bottleneck)
        overlap = max(overlap, 2 * radius)
        if not 0 <= overlap < tile or tile % stride:
            raise ValueError(f"need 0 <= overlap < tile and tile a multiple of {stride} (the network's stride); got "
                             f"tile={tile}, overlap={overlap}" + (f" (at least twice the receptive-field radius "
                                                                  f"{radius})" if radius else ""))
        # Tiles must start on the stride's grid to see what the whole image would: pad (reflect) the bottom and
        # right until the evenly spread starts run_tiled picks are multiples of the stride, then crop.
        ph, pw = _aligned(h, tile, overlap, stride), _aligned(w, tile, overlap, stride)
        padded = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        out = np.empty((ph, pw, c_out), img.dtype)
        run_tiled(fn, padded.transpose(2, 0, 1), tile=tile, overlap=overlap, margin=radius or overlap // 4,
                  out=out.transpose(2, 0, 1))
        return out[:h, :w]

    def process_file(self, src: str | Path, dst: str | Path, direction: str = "AtoB", tile: int = 1024,
                     overlap: int = 128) -> Path:
        """Read ``src`` (8/16 bit, gray/RGB/RGBA), translate it, write ``dst`` at the same depth, alpha untouched."""
        image: LoadedImage = read_image(src)
        return write_image(dst, self(image.pixels, direction, tile=tile, overlap=overlap), alpha=image.alpha)


class TranslateGraph(nn.Module):
    """``TranslatePipeline``'s per-tile computation for one direction and input channel count, as a module:
    [N, C, H, W] in [0, 1] -> [N, C_out, H, W] in [0, 1] (eval mode; see the module docstring)."""

    def __init__(self, pipe: TranslatePipeline, direction: str, channels: int):
        super().__init__()
        self.net = pipe.net(direction)
        self.direction, self.channels = direction, channels
        self.prepare = lambda x: pipe._prepare(x, direction)
        self.keep_l = direction == "AtoB" and pipe.derive == "lab"

    def forward(self, image: Tensor) -> Tensor:
        x = image * 2 - 1
        y = self.net(self.prepare(x)).clamp(-1, 1)
        if self.keep_l:
            y = keep_lightness(x, y)
        return (y + 1) / 2


def _aligned(length: int, tile: int, overlap: int, stride: int) -> int:
    """The smallest length >= ``length`` for which run_tiled's tile starts, round(i * (L - tile) / (n - 1)) with n
    tiles of stride at most tile - overlap, are all multiples of ``stride``."""
    size = length
    while size > tile:
        n = -(-(size - tile) // (tile - overlap)) + 1
        if (size - tile) % ((n - 1) * stride) == 0:
            return size
        size += 1
    return length
