"""ONNX export of a snapshot's network: every restoration net (rescnn, srresnet, rrdb, unet), every generator
(dcgan, sngan, stylegan2), both inpainting nets (context_encoder, deepfill) and every translation generator
(pix2pix's U-Net or ResNet, either direction of a CycleGAN), so that a model trained with ganforge runs in
onnxruntime alone.

The network comes from the snapshot's own pipeline (``infer.pipelines.PIPELINES``), in eval mode: BatchNorm uses
its running statistics, dropout is off, StyleGAN2 uses its stored constant noise. A thin wrapper fixes what the
ONNX graph takes and returns:

    restore   image [N, C, H, W] float32 in [0, 1] (+ sigma [N] in 0-255 units for the non-blind rescnn)
              -> restored [N, C, H*s, W*s] in [0, 1], clamped: the same numbers as RestorePipeline on one tile
    generate  z [N, z_dim] float32 (+ label [N] int64 for conditional nets) (+ psi [] float32 for stylegan2)
              -> image [N, C, res, res] in [-1, 1] (stylegan2: roughly, not clamped), as LoadedGenerator
    inpaint   image [N, C, H, W] float32 in [0, 1] + mask [N, 1, H, W] float32, 1 = hole (> 0.5 counts as hole)
              (+ fill [N, C, H, W] in [0, 1] for a DeepFill with model.prefill=smooth: the image with its hole
              filled by core/fill.py smooth_fill, a sparse solve the graph cannot hold)
              -> inpainted [N, C, H, W] in [0, 1]: the net's fill inside the hole, the input exactly outside it,
              as InpaintPipeline on a crop of the model's size; H, W multiples of the net's stride
    translate image [N, C_in, H, W] float32 in [0, 1] -> translated [N, C_out, H, W] in [0, 1]: the pipeline's
              TranslateGraph (input preparation, the net, Lab recombination) for one direction (CycleGAN: AtoB
              or BtoA, an export option)

N (and H, W for restoration, inpainting and translation) are dynamic axes. The snapshot's metadata (task, arch,
scale, direction, value ranges, how to normalise the input) goes into the model's ``metadata_props`` under
``ganforge.*`` keys.

The exporter is torch's ``torch.export``-based one (``dynamo=True``, the default and recommended one since torch
2.9). The legacy TorchScript exporter is not used: it cannot export the conditional BatchNorm of the conditional
dcgan/sngan generators nor StyleGAN2's modulated convolution ("unknown channel size" / "kernel of unknown shape").
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.core.files import CheckpointError, atomic_write_bytes
from ganforge.core.fill import smooth_fill
from ganforge.core.snapshot import load_snapshot, snapshot_hash
from ganforge.core.version import __version__
from ganforge.infer.pipelines import PIPELINES
from ganforge.infer.translate import DIRECTIONS, TranslateGraph

DEFAULT_OPSET = 18  # the lowest opset the torch.export-based exporter emits; onnxruntime >= 1.14 runs it
INSTALL_HINT = "pip install 'ganforge[onnx]'"


class OnnxUnavailable(ValueError):
    """onnx / onnxscript / onnxruntime are not installed (an optional extra)."""


class OnnxExportError(ValueError):
    """The exporter could not turn this network into ONNX; the message names the network and the reason."""


# ---- what the ONNX graph computes ------------------------------------------------------------------------------


class RestoreGraph(nn.Module):
    """[N, C, H, W] in [0, 1] -> [N, C, H*s, W*s] in [0, 1]: RestorePipeline's per-tile model (the net works in
    [-1, 1]), so onnxruntime users feed pixels / max and get pixels / max back."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> Tensor:
        return ((self.net(image * 2 - 1) + 1) / 2).clamp(0, 1)


class NoiseMapRestoreGraph(RestoreGraph):
    """The non-blind rescnn (``noise_map=True``): also takes the noise level sigma [N] in 0-255 units."""

    def forward(self, image: Tensor, sigma: Tensor) -> Tensor:  # type: ignore[override]
        return ((self.net(image * 2 - 1, sigma) + 1) / 2).clamp(0, 1)


class GeneratorGraph(nn.Module):
    """z [N, z_dim] -> image [N, C, res, res]: an unconditional dcgan or sngan generator."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ConditionalGeneratorGraph(GeneratorGraph):
    """z [N, z_dim], label [N] int64 -> image: a conditional dcgan or sngan generator."""

    def forward(self, z: Tensor, label: Tensor) -> Tensor:  # type: ignore[override]
        return self.net(z, label)


class StyleGeneratorGraph(nn.Module):
    """z [N, z_dim] (+ label [N]), psi [] -> image: StyleGAN2 mapping, truncation, synthesis with constant noise.

    psi is an input (not baked in) so one file serves every truncation; psi = 1 is no truncation. It is the
    generator's own truncation (StyleGAN appendix B, w' = w_avg + psi (w - w_avg) on every w, the
    ``truncation_cutoff=None`` of ``G(z, c, psi)``) applied to the mapping's untruncated output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def _image(self, z: Tensor, label: Tensor | None, psi: Tensor) -> Tensor:
        ws = self.net.mapping(z, label)                                                 # [N, num_ws, w_dim]
        ws = self.net.mapping.w_avg.lerp(ws, psi.to(ws.dtype))
        return self.net.synthesis(ws, noise_mode="const")                               # [N, C, res, res]

    def forward(self, z: Tensor, psi: Tensor) -> Tensor:
        return self._image(z, None, psi)


class ConditionalStyleGeneratorGraph(StyleGeneratorGraph):
    def forward(self, z: Tensor, label: Tensor, psi: Tensor) -> Tensor:  # type: ignore[override]
        return self._image(z, label, psi)


class InpaintGraph(nn.Module):
    """image [N, C, H, W] in [0, 1], mask [N, 1, H, W] (1 = hole) -> inpainted [N, C, H, W] in [0, 1].

    InpaintPipeline's model step on a crop that already has the model's size (no resampling, no feather band):
    the net sees the image in [-1, 1] and the binary mask, its output is mapped back to [0, 1] and clamped, and
    pasted into the hole; every pixel outside the hole is the input, bit for bit. The mask is thresholded at 0.5
    (as ``binarize_mask`` does for float masks), so a soft mask gives the pipeline's result, not a blend.

    A DeepFill with ``prefill="smooth"`` (``needs_fill``) also takes ``fill``, the image in [0, 1] with its hole
    filled by ``smooth_fill`` (core/fill.py): that fill is a sparse linear solve, outside what a graph can hold.
    It is affine, so the [0, 1] fill maps to the net's [-1, 1] one by 2 * fill - 1, except for an image with no
    known pixel at all, which the net starts at 0 (mid-gray) whatever ``fill`` holds."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.needs_fill = getattr(net, "prefill", None) == "smooth"

    def forward(self, image: Tensor, mask: Tensor, fill: Tensor | None = None) -> Tensor:
        hole = (mask > 0.5).to(image.dtype)                                              # [N, 1, H, W] in {0, 1}
        start = None
        if fill is not None:  # [N, C, H, W] in [-1, 1]; an image with no known pixel starts at 0, as in PyTorch
            blind = (1 - hole).sum((1, 2, 3), keepdim=True) == 0                       # [N, 1, 1, 1]
            start = torch.where(blind, torch.zeros_like(fill), fill * 2 - 1)
        out = self.net(image * 2 - 1, hole) if start is None else self.net(image * 2 - 1, hole, fill=start)
        out = ((out + 1) / 2).clamp(0, 1)                                               # [N, C, H, W]
        return out * hole + image * (1 - hole)


# ---- building the graph module and example inputs from a snapshot ---------------------------------------------


def _require_onnx() -> None:
    missing = []
    for mod in ("onnx", "onnxscript"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise OnnxUnavailable(f"ONNX export needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}")


def onnxruntime_available() -> bool:
    """True when onnxruntime can be imported (then the export can be checked against PyTorch)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_graph(snapshot: str | Path, direction: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The snapshot's network, built by its pipeline on the CPU in eval mode and wrapped as the ONNX graph
    computes it, plus its metadata. ``direction`` (translation only): AtoB (default) or BtoA (CycleGAN's F).
    Raises CheckpointError for a file that is not a ganforge snapshot, ValueError for a direction the snapshot
    does not have, and OnnxExportError for a pipeline this exporter does not handle."""
    tensors, meta = load_snapshot(snapshot)
    name = meta.get("pipeline")
    if name not in PIPELINES:
        raise CheckpointError(f"snapshot {snapshot}: pipeline {name!r} (task {meta.get('task')!r}) is not one this "
                              f"ganforge can run; known: {', '.join(PIPELINES)}")
    if direction is not None and name != "translate":
        raise ValueError(f"--direction is for translation snapshots (pix2pix, CycleGAN); {snapshot} is a "
                         f"{meta.get('task')!r} model: leave --direction out")
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"--direction {direction!r}: valid: {', '.join(DIRECTIONS)}")
    pipe = PIPELINES[name].from_snapshot(tensors, meta, snapshot, torch.device("cpu"))
    if name == "translate":  # the pipeline's own per-tile module; its nets are in eval mode (build_modules)
        graph: nn.Module = pipe.graph(direction or "AtoB")
        graph.net.eval().requires_grad_(False)
        return graph.eval(), meta
    net: nn.Module = pipe.net.eval().requires_grad_(False)  # eval: BatchNorm running stats, no dropout
    if name == "inpaint":
        graph = InpaintGraph(net)
    elif name == "restore":
        graph = NoiseMapRestoreGraph(net) if getattr(net, "noise_map", False) else RestoreGraph(net)
    elif name == "generate":
        conditional = net.config.get("num_classes", 0) > 0
        if hasattr(net, "mapping"):
            graph = ConditionalStyleGeneratorGraph(net) if conditional else StyleGeneratorGraph(net)
        else:
            graph = ConditionalGeneratorGraph(net) if conditional else GeneratorGraph(net)
    else:
        raise OnnxExportError(f"snapshot {snapshot}: ONNX export handles the restore, generate, inpaint and "
                              f"translate pipelines, not {name!r}")
    return graph.eval(), meta


def input_names(graph: nn.Module) -> list[str]:
    """The ONNX input names of a graph module, in call order."""
    if isinstance(graph, InpaintGraph):
        return ["image", "mask", "fill"] if graph.needs_fill else ["image", "mask"]
    if isinstance(graph, TranslateGraph):
        return ["image"]
    if isinstance(graph, NoiseMapRestoreGraph):
        return ["image", "sigma"]
    if isinstance(graph, RestoreGraph):
        return ["image"]
    if isinstance(graph, ConditionalStyleGeneratorGraph):
        return ["z", "label", "psi"]
    if isinstance(graph, StyleGeneratorGraph):
        return ["z", "psi"]
    if isinstance(graph, ConditionalGeneratorGraph):
        return ["z", "label"]
    return ["z"]


def output_name(graph: nn.Module) -> str:
    """The ONNX output name of a graph module."""
    if isinstance(graph, RestoreGraph):
        return "restored"
    if isinstance(graph, InpaintGraph):
        return "inpainted"
    if isinstance(graph, TranslateGraph):
        return "translated"
    return "image"


def image_channels(graph: nn.Module) -> int:
    """The channel count of the graph's ``image`` input (a translation graph's may differ from its net's: a Lab
    colouriser or a label-map model takes one channel)."""
    return graph.channels if isinstance(graph, TranslateGraph) else int(graph.net.config["channels"])


def trace_side(graph: nn.Module, tile: int) -> int:
    """The side of the example image the exporter traces with: ``tile``, for an inpainting net rounded up to a
    multiple of its stride and at least two strides (torch.export fixes an axis whose example size is 1)."""
    if not isinstance(graph, InpaintGraph):
        return tile
    s = int(graph.net.stride)
    return max(-(-tile // s) * s, 2 * s)


def _hole_masks(n: int, height: int, width: int, gen: torch.Generator) -> Tensor:
    """[n, 1, H, W] in {0, 1}: one rectangular hole per image, 1/4 to 1/2 of each side, at a random place (known
    pixels all around most of them, so DeepFill's contextual attention has valid keys to copy from)."""
    mask = torch.zeros(n, 1, height, width)
    for i in range(n):
        hh = int(torch.randint(max(height // 4, 1), max(height // 2, 1) + 1, (), generator=gen))
        ww = int(torch.randint(max(width // 4, 1), max(width // 2, 1) + 1, (), generator=gen))
        top = int(torch.randint(0, height - hh + 1, (), generator=gen))
        left = int(torch.randint(0, width - ww + 1, (), generator=gen))
        mask[i, :, top:top + hh, left:left + ww] = 1
    return mask


def example_inputs(graph: nn.Module, n: int, height: int, width: int, seed: int = 0,
                   label_classes: int | None = None) -> dict[str, Tensor]:
    """Random inputs in each input's documented range: pixels in [0, 1], sigma in [0, 50] (0-255 units),
    z ~ N(0, 1), labels cycling over the classes, psi = 0.7 (so truncation is exercised), inpainting masks with a
    rectangular hole. ``label_classes``: a translation model's input is a label map, class index / 255."""
    gen = torch.Generator().manual_seed(seed)
    net = graph.net
    out: dict[str, Tensor] = {}
    for name in input_names(graph):
        if name == "image" and label_classes:
            index = torch.randint(0, label_classes, (n, 1, height, width), generator=gen)
            out[name] = index.float() / 255
        elif name == "image":
            out[name] = torch.rand(n, image_channels(graph), height, width, generator=gen)
        elif name == "mask":
            out[name] = _hole_masks(n, height, width, gen)
        elif name == "fill":  # the smooth fill of the image drawn above, in its hole (InpaintGraph)
            out[name] = smooth_fill(out["image"], out["mask"])
        elif name == "sigma":
            out[name] = torch.rand(n, generator=gen) * 50
        elif name == "z":
            out[name] = torch.randn(n, net.config["z_dim"], generator=gen)
        elif name == "label":
            out[name] = torch.arange(n, dtype=torch.long) % net.config["num_classes"]
        elif name == "psi":
            out[name] = torch.tensor(0.7)
    return out


def _dynamic_shapes(graph: nn.Module) -> tuple[dict[int, Any] | None, ...]:
    """N dynamic everywhere; H and W dynamic for image inputs, multiples of the stride for an inpainting net (which
    asserts it; the mask shares the image's axes)."""
    from torch.export import Dim

    n = Dim("N")
    if isinstance(graph, InpaintGraph):
        s = int(graph.net.stride)
        h, w = s * Dim("h"), s * Dim("w")  # the ONNX axes read "8*h", "8*w"
    else:
        h, w = Dim("H"), Dim("W")
    axes = {"image": {0: n, 2: h, 3: w}, "mask": {0: n, 2: h, 3: w}, "fill": {0: n, 2: h, 3: w}, "sigma": {0: n},
            "z": {0: n}, "label": {0: n}, "psi": None}
    return tuple(axes[k] for k in input_names(graph))


# ---- metadata --------------------------------------------------------------------------------------------------


def onnx_metadata(graph: nn.Module, meta: dict[str, Any], snapshot: str | Path) -> dict[str, str]:
    """``ganforge.*`` metadata_props: everything a user of onnxruntime alone needs to feed the model and read it."""
    net = graph.net
    names = input_names(graph)
    out = {"ganforge.task": str(meta.get("task")), "ganforge.pipeline": str(meta.get("pipeline")),
           "ganforge.arch": str(meta.get("arch")), "ganforge.net_config": json.dumps(net.config),
           "ganforge.inputs": ", ".join(names), "ganforge.outputs": output_name(graph),
           "ganforge.eval_mode": _EVAL_MODE.get(str(meta.get("pipeline")), _EVAL_MODE["restore"]),
           "ganforge.snapshot_sha256": snapshot_hash(snapshot),
           "ganforge.step": str(meta.get("step")), "ganforge.version": __version__,
           "ganforge.torch_version": torch.__version__}
    if isinstance(graph, RestoreGraph):
        scale = int(meta.get("scale", 1))
        out.update({"ganforge.scale": str(scale), "ganforge.channels": str(net.config["channels"]),
                    "ganforge.receptive_field": str(meta.get("receptive_field", getattr(net, "receptive_field", ""))),
                    "ganforge.input_range": "[0, 1]", "ganforge.output_range": "[0, 1] (clamped)",
                    "ganforge.input_normalisation": "image = pixels / 255 (8 bit) or / 65535 (16 bit), float32 "
                    "[N, C, H, W], RGB or gray as trained (ganforge.channels); output * 255 (or 65535), rounded",
                    "ganforge.output_shape": f"[N, C, H*{scale}, W*{scale}]"})
        if "sigma" in names:
            out["ganforge.sigma"] = "noise standard deviation per image, float32 [N], in 0-255 units"
    elif isinstance(graph, InpaintGraph):
        out.update(_inpaint_metadata(graph, meta))
    elif isinstance(graph, TranslateGraph):
        out.update(_translate_metadata(graph, meta))
    else:
        out.update({"ganforge.z_dim": str(net.config["z_dim"]), "ganforge.channels": str(net.config["channels"]),
                    "ganforge.resolution": str(net.config["resolution"]),
                    "ganforge.num_classes": str(net.config.get("num_classes", 0)),
                    "ganforge.class_names": json.dumps(meta.get("class_names", [])),
                    "ganforge.input_normalisation": "z ~ N(0, 1) float32 [N, z_dim]; label int64 [N] in "
                    "[0, num_classes) for conditional models",
                    "ganforge.output_range": "[-1, 1]" + (" (roughly; not clamped)" if "psi" in names else ""),
                    "ganforge.to_pixels": "pixels = clip((image + 1) * 127.5, 0, 255), rounded"})
        if "psi" in names:
            out["ganforge.psi"] = "truncation psi, float32 scalar []: 1 = none, 0.5-0.7 = typical"
    return out


_EVAL_MODE = {
    "restore": "true (BatchNorm running statistics, no dropout)",
    "generate": "true (BatchNorm running statistics, no dropout, StyleGAN2 constant noise)",
    "inpaint": "true (BatchNorm running statistics)",
    "translate": "true (BatchNorm running statistics, no dropout; InstanceNorm normalises each image by its own "
                 "statistics, as in training)",
}
_PIXELS = "pixels / 255 (8 bit) or / 65535 (16 bit)"


def _inpaint_metadata(graph: InpaintGraph, meta: dict[str, Any]) -> dict[str, str]:
    """What an inpainting graph takes (image + hole mask, H and W on the stride) and at what size it fills best."""
    s, res = int(graph.net.stride), int(meta.get("resolution", 256))
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in graph.net.modules())
    return {"ganforge.eval_mode": _EVAL_MODE["inpaint"] if has_bn else "true (no normalisation or dropout layers: "
            "the same numbers as in training mode)",
            "ganforge.channels": str(graph.net.config["channels"]), "ganforge.resolution": str(res),
            "ganforge.stride": str(s), "ganforge.masks": str(meta.get("masks", "")),
            "ganforge.input_range": "[0, 1]", "ganforge.output_range": "[0, 1] (clamped)",
            "ganforge.input_normalisation": f"image = {_PIXELS}, float32 [N, C, H, W], RGB or gray as trained "
            "(ganforge.channels); the hole's pixels are ignored; output * 255 (or 65535), rounded",
            "ganforge.mask": "float32 [N, 1, H, W], the image's H and W: 1 = hole to fill, 0 = known (values > 0.5 "
            "are the hole)",
            **({"ganforge.fill": "float32 [N, C, H, W] in [0, 1]: the image with its hole filled by "
                "ganforge.core.fill.smooth_fill (the mean of the exact membrane and thin-plate interpolations of "
                "the known pixels; a sparse solve, so an input of the graph rather than part of it; ignored for an "
                "image whose mask is all hole)"}
               if graph.needs_fill else {}),
            "ganforge.output": "the net's fill inside the hole; outside it the input image, unchanged",
            "ganforge.output_shape": "[N, C, H, W]",
            "ganforge.size": f"H and W multiples of {s}. Trained on {res} px crops: it fills best at about that "
            "size, so crop around the hole (about as much context again on each side) and resize the crop to "
            f"{res} px, as `ganforge inpaint` does (infer/inpaint.py)"}


def _translate_metadata(graph: TranslateGraph, meta: dict[str, Any]) -> dict[str, str]:
    """Which direction the graph translates, what it takes (pixels, gray for Lab, a label map) and returns."""
    labels = meta.get("label_classes") if graph.direction == "AtoB" else None
    if labels:
        what = (f"image = class index / 255 (the label PNG's 8-bit values / 255), float32 [N, 1, H, W]; indices "
                f"0..{labels - 1} (a larger one selects no class: onnxruntime does not raise ganforge's error)")
    elif graph.keep_l:
        what = (f"image = gray {_PIXELS}, float32 [N, {graph.channels}, H, W]; the output keeps the input's CIE L* "
                "exactly and takes only its a*b* colours from the model")
    else:
        what = f"image = {_PIXELS}, float32 [N, C, H, W], C = ganforge.channels"
    c_out = int(graph.net.config["out_channels"])
    return {"ganforge.direction": graph.direction,
            "ganforge.directions": json.dumps(meta.get("directions", ["AtoB"])),
            "ganforge.derive": str(meta.get("derive") or ""), "ganforge.label_classes": str(labels or 0),
            "ganforge.channels": str(graph.channels), "ganforge.out_channels": str(c_out),
            "ganforge.input_range": "[0, 1]", "ganforge.output_range": "[0, 1] (clamped)",
            "ganforge.input_normalisation": f"{what}; output * 255 (or 65535), rounded",
            "ganforge.output_shape": f"[N, {c_out}, H, W]",
            "ganforge.size": "any H and W (the net pads to its stride and crops back); the whole image at once, "
            "as `ganforge translate` does up to 4 MP"}


# ---- export and check ------------------------------------------------------------------------------------------


def export_onnx(snapshot: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, tile: int = 64,
                direction: str | None = None) -> Path:
    """Export a snapshot's network (restoration net, generator, inpainting net, translation generator) to ONNX at
    ``out``, written atomically.

    The network is exported in eval mode (BatchNorm running statistics, dropout off, StyleGAN2 constant noise), as
    ganforge runs it for inference; a model exported in training mode would disagree with PyTorch. ``tile`` is
    the side of the example image the exporter traces with (rounded up to an inpainting net's stride; the axes
    stay dynamic). ``direction``: translation only, AtoB (default) or BtoA (a CycleGAN's second generator); one
    file per direction. Returns ``out``. Raises OnnxUnavailable (onnx/onnxscript missing), CheckpointError (not a
    snapshot), ValueError (a bad option), OnnxExportError (the exporter cannot handle the network, named in the
    message)."""
    _require_onnx()
    if not DEFAULT_OPSET <= opset <= 23:
        raise ValueError(f"--opset {opset}: the torch.export-based ONNX exporter emits opset {DEFAULT_OPSET} to 23")
    if tile < 8:
        raise ValueError(f"--tile {tile}: use at least 8 pixels")
    graph, meta = load_graph(snapshot, direction)
    names = input_names(graph)
    side = trace_side(graph, tile)
    args = tuple(example_inputs(graph, 2, side, side, label_classes=_label_classes(graph, meta)).values())
    output = output_name(graph)
    what = f"{meta.get('arch')} ({type(graph.net).__module__.rsplit('.', 1)[-1]}.{type(graph.net).__name__})"
    try:
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, args, input_names=names, output_names=[output], opset_version=opset,
                                        dynamic_shapes=_dynamic_shapes(graph), dynamo=True, verbose=False)
    except Exception as exc:  # the exporter raises many types; all mean "this network does not export"
        raise OnnxExportError(f"snapshot {snapshot}: the network {what} cannot be exported to ONNX with torch "
                              f"{torch.__version__}: {_failure_summary(exc)}; see docs/export.md for the networks "
                              "known to export") from exc
    proto = program.model_proto
    way = f" {graph.direction}" if isinstance(graph, TranslateGraph) else ""
    proto.doc_string = (f"ganforge {meta.get('task')}{way} model ({meta.get('arch')}), exported in eval mode; inputs "
                        f"{', '.join(names)}, output {output}; see metadata_props ganforge.* for value ranges")
    for key, value in onnx_metadata(graph, meta, snapshot).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit
        raise OnnxExportError(f"snapshot {snapshot}: the ONNX model of {what} is over 2 GiB, which one .onnx file "
                              "cannot hold") from exc
    out = Path(out)
    atomic_write_bytes(out, data)
    return out


def _label_classes(graph: nn.Module, meta: dict[str, Any]) -> int | None:
    """The class count of a translation graph whose input is a label map (pix2pix labels -> photo, AtoB)."""
    if isinstance(graph, TranslateGraph) and graph.direction == "AtoB":
        return meta.get("label_classes") or None
    return None


def _failure_summary(exc: BaseException) -> str:
    """The root cause of an exporter failure in one line: its type, first line, and the model source line that
    raised it (the exporter's own message is pages of generic advice with colour codes)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root))
    first = text.strip().splitlines()[0] if text.strip() else ""
    where = re.search(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', text)
    at = f" at {Path(where[1]).name}:{where[2]} in {where[3]}: {where[4].strip()}" if where else ""
    return f"{type(root).__name__}: {first[:300]}{at}"


class _quiet_exporter:
    """Silence the exporter's progress lines, graph dumps and "torchvision is not installed" warnings (stdout, stderr,
    logging): failures are reported through the raised OnnxExportError instead."""

    def __enter__(self) -> None:
        import contextlib
        import io

        self._loggers = [(lg, lg.level) for lg in (logging.getLogger("torch.onnx"), logging.getLogger("torch"))]
        for lg, _ in self._loggers:
            lg.setLevel(logging.ERROR)
        self._out = contextlib.redirect_stdout(io.StringIO())
        self._err = contextlib.redirect_stderr(io.StringIO())
        self._out.__enter__()
        self._err.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._err.__exit__(*exc)
        self._out.__exit__(*exc)
        for lg, level in self._loggers:
            lg.setLevel(level)


def check_cases(graph: nn.Module, tile: int) -> list[tuple[int, int, int]]:
    """(N, H, W) of the batches ``check_onnx`` compares, covering the dynamic axes: restoration and translation a
    [2, tile, tile] batch and a [1, tile+5, tile+3] one; inpainting [2, t, t] and [1, t+s, t] with t the traced
    side (on the stride s); generators batches of 2 and 3."""
    if isinstance(graph, InpaintGraph):
        t, s = trace_side(graph, tile), int(graph.net.stride)
        return [(2, t, t), (1, t + s, t)]
    if isinstance(graph, RestoreGraph | TranslateGraph):
        return [(2, tile, tile), (1, tile + 5, tile + 3)]
    return [(2, 1, 1), (3, 1, 1)]


def check_onnx(onnx_path: str | Path, snapshot: str | Path, tile: int = 64, seed: int = 0,
               direction: str | None = None) -> float:
    """Run the exported model in onnxruntime and the snapshot's network in PyTorch on the same random inputs and
    return the largest absolute difference (the batches of ``check_cases``). ``direction`` (translation): the one
    the file was exported for, by default read from its ``ganforge.direction`` metadata."""
    if not onnxruntime_available():
        raise OnnxUnavailable(f"checking the export needs onnxruntime, which is not installed: {INSTALL_HINT}")
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if direction is None:
        direction = session.get_modelmeta().custom_metadata_map.get("ganforge.direction")
    graph, meta = load_graph(snapshot, direction)
    err = 0.0
    for k, (n, h, w) in enumerate(check_cases(graph, tile)):
        inputs = example_inputs(graph, n, h, w, seed=seed + k, label_classes=_label_classes(graph, meta))
        with torch.no_grad():
            ref = graph(*inputs.values()).numpy()
        got = session.run(None, {name: t.numpy() for name, t in inputs.items()})[0]
        if got.shape != ref.shape:
            raise OnnxExportError(f"{onnx_path}: onnxruntime returned shape {list(got.shape)}, PyTorch "
                                  f"{list(ref.shape)}, for inputs of shape {[list(t.shape) for t in inputs.values()]}")
        err = max(err, float(abs(got - ref).max()))
    return err
