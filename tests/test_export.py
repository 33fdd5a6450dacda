"""ONNX export (infer/export.py, `ganforge export`): every restoration net, every generator, both inpainting nets and
the translation generators (both CycleGAN directions), built from a real snapshot, reproduced by onnxruntime to 1e-4,
with dynamic batch (and H/W for images), the snapshot's metadata in metadata_props, and clean CLI errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.core.snapshot import save_snapshot
from ganforge.nets import build_net

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ganforge.infer.export import (  # noqa: E402  (after the importorskips)
    OnnxExportError,
    OnnxUnavailable,
    check_onnx,
    export_onnx,
    load_graph,
)

TOL = 1e-4
runner = CliRunner()

# name -> (registry net, constructor kwargs, snapshot meta extras); widths 4-8 keep each export ~1-3 s.
RESTORERS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "rescnn": ("rescnn", dict(channels=3, width=8, depth=4, batch_norm=True), {"scale": 1}),
    "rescnn-noise-map": ("rescnn", dict(channels=1, width=8, depth=3, batch_norm=False, noise_map=True),
                         {"scale": 1}),
    "srresnet-x2": ("srresnet", dict(channels=3, width=8, blocks=1, scale=2), {"scale": 2}),
    "srresnet-x4": ("srresnet", dict(channels=3, width=8, blocks=1, scale=4), {"scale": 4}),
    "rrdb-x4": ("rrdb", dict(channels=3, width=8, blocks=1, growth=4, scale=4), {"scale": 4}),
    "unet": ("unet", dict(channels=3, width=4, levels=2), {"scale": 1}),
}
GENERATORS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "dcgan": ("dcgan.G", dict(z_dim=8, resolution=8, channels=3, width=4, max_width=8), []),
    "dcgan-cond": ("dcgan.G", dict(z_dim=8, resolution=8, channels=1, width=4, max_width=8, num_classes=3),
                   ["a", "b", "c"]),
    "sngan": ("sngan.G", dict(z_dim=8, resolution=8, channels=3, width=4, max_width=8), []),
    "sngan-cond": ("sngan.G", dict(z_dim=8, resolution=8, channels=3, width=4, max_width=8, num_classes=3),
                   ["a", "b", "c"]),
    "stylegan2": ("stylegan2.G", dict(resolution=8, channels=3, z_dim=8, w_dim=8, width=8, max_width=8,
                                      mapping_layers=2), []),
}


# name -> (registry net, constructor kwargs); InpaintTask.snapshot_meta adds resolution, stride and masks.
INPAINTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "context_encoder": ("context_encoder", dict(channels=3, width=4, levels=2, bottleneck=8, max_width=8)),
    "deepfill": ("deepfill", dict(channels=3, width=4, dilations=[2, 4], attention=True, softmax_scale=10.0)),
    "deepfill-pushpull": ("deepfill", dict(channels=3, width=4, dilations=[2, 4], attention=True, softmax_scale=10.0,
                                           prefill="pushpull")),
    "deepfill-smooth": ("deepfill", dict(channels=3, width=4, dilations=[2, 4], attention=True, softmax_scale=10.0,
                                         prefill="smooth")),
}
_UNET = dict(width=4, depth=3, norm="batch", dropout=0.5)
_RESNET = dict(width=4, blocks=1, norm="instance", dropout=0.0)
# name -> (registry net, constructor kwargs, Pix2PixTask / CycleGANTask.snapshot_meta)
TRANSLATORS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "pix2pix-unet": ("unet_translator", dict(in_channels=3, out_channels=3, **_UNET),
                     {"task": "pix2pix", "directions": ["AtoB"], "derive": None, "label_classes": None}),
    "pix2pix-lab": ("unet_translator", dict(in_channels=1, out_channels=3, **_UNET),
                    {"task": "pix2pix", "directions": ["AtoB"], "derive": "lab", "label_classes": None}),
    "pix2pix-labels": ("resnet_translator", dict(in_channels=4, out_channels=3, **_RESNET),
                       {"task": "pix2pix", "directions": ["AtoB"], "derive": None, "label_classes": 4}),
    "cyclegan": ("cyclegan.generators", dict(net="resnet_translator", AtoB=dict(in_channels=3, out_channels=3,
                                                                                  **_RESNET),
                                             BtoA=dict(in_channels=3, out_channels=3, **_RESNET)),
                 {"task": "cyclegan", "directions": ["AtoB", "BtoA"], "derive": None, "label_classes": None}),
}


def _perturb(net) -> None:
    """Trained-looking state: non-trivial BatchNorm running statistics (eval mode must use them), non-zero
    StyleGAN2 noise strengths and w_avg (constant noise and truncation must be in the graph)."""
    import torch

    gen = torch.Generator().manual_seed(1)
    for name, buf in net.named_buffers():
        if name.endswith("running_mean") or name.endswith("w_avg"):
            buf.copy_(torch.randn(buf.shape, generator=gen) * 0.3)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    for name, p in net.named_parameters():
        if name.endswith("noise_strength"):
            p.data.fill_(0.2)


def restore_snapshot(folder: Path, key: str) -> Path:
    """A snapshot laid out as training writes it (training/loop._snapshot_meta + RestoreTask.snapshot_meta)."""
    net_name, cfg, extra = RESTORERS[key]
    net = build_net(net_name, **cfg)
    _perturb(net)
    meta = {"task": "restore", "pipeline": "restore", "arch": net_name, "receptive_field": net.receptive_field,
            **extra, "modules": {"net": {"net": net_name, "config": net.config}},
            "dataset": {"name": "tiny", "channels": cfg["channels"]}, "kimg": 0.1, "step": 12}
    return save_snapshot(folder, "latest", {"net": net.state_dict()}, meta)


def gan_snapshot(folder: Path, key: str) -> Path:
    """A GAN snapshot as training writes it: G_ema saved as "G", class names from GanTask.snapshot_meta."""
    net_name, cfg, classes = GENERATORS[key]
    net = build_net(net_name, **cfg)
    _perturb(net)
    meta = {"task": "gan", "pipeline": "generate", "arch": net_name.split(".")[0], "class_names": classes,
            "modules": {"G": {"net": net_name, "config": net.config}},
            "dataset": {"resolution": cfg["resolution"], "channels": cfg["channels"]}, "kimg": 0.1, "step": 12}
    return save_snapshot(folder, "latest", {"G": net.state_dict()}, meta)


def inpaint_snapshot(folder: Path, key: str, resolution: int = 32) -> Path:
    """An inpainting snapshot as training writes it: G (or G_ema) saved as "G", with InpaintTask.snapshot_meta."""
    net_name, cfg = INPAINTERS[key]
    net = build_net(net_name, **cfg)
    _perturb(net)
    meta = {"task": "inpaint", "pipeline": "inpaint", "arch": net_name, "resolution": resolution,
            "stride": int(net.stride), "masks": "strokes", "modules": {"G": {"net": net_name, "config": net.config}},
            "dataset": {"name": "tiny", "channels": cfg["channels"]}, "kimg": 0.1, "step": 12}
    return save_snapshot(folder, "latest", {"G": net.state_dict()}, meta)


def translate_snapshot(folder: Path, key: str) -> Path:
    """A pix2pix or CycleGAN snapshot as training writes it: the generator (a GeneratorPair for CycleGAN) as "G",
    with the task's snapshot_meta (directions, derive, label_classes)."""
    net_name, cfg, extra = TRANSLATORS[key]
    net = build_net(net_name, **cfg)
    _perturb(net)
    arch = cfg.get("net", net_name)
    meta = {"pipeline": "translate", "arch": arch, **extra, "modules": {"G": {"net": net_name, "config": net.config}},
            "dataset": {"name": "tiny", "resolution": 32}, "kimg": 0.1, "step": 12}
    return save_snapshot(folder, "latest", {"G": net.state_dict()}, meta)


def make_snapshot(folder: Path, key: str) -> Path:
    for table, make in ((RESTORERS, restore_snapshot), (GENERATORS, gan_snapshot), (INPAINTERS, inpaint_snapshot),
                        (TRANSLATORS, translate_snapshot)):
        if key in table:
            return make(folder, key)
    raise KeyError(key)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(key, direction) -> (snapshot, .onnx): each tiny net is saved and exported once per module (exports take
    1-4 s, DeepFill ~20 s on two busy cores)."""
    snaps: dict[str, Path] = {}
    cache: dict[tuple[str, str | None], tuple[Path, Path]] = {}

    def get(key: str, direction: str | None = None) -> tuple[Path, Path]:
        if key not in snaps:  # one snapshot per key: both CycleGAN directions come from the same one
            snaps[key] = make_snapshot(tmp_path_factory.mktemp(key), key)
        if (key, direction) not in cache:
            snap = snaps[key]
            out = snap.parent / f"{key}-{direction or 'default'}.onnx"
            cache[key, direction] = snap, export_onnx(snap, out, tile=32, direction=direction)
        return cache[key, direction]

    return get


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def shapes(path: Path) -> dict[str, list]:
    """Input name -> dims (ints or symbolic names)."""
    model = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


# ---- restoration nets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(RESTORERS))
def test_restorer_exports_and_onnxruntime_matches(exported, key):
    snap, out = exported(key)
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))
    err = check_onnx(out, snap, tile=24)  # a [2, C, 24, 24] batch and a [1, C, 29, 27] one
    assert err <= TOL, err
    meta = props(out)
    scale = RESTORERS[key][2]["scale"]
    assert meta["ganforge.task"] == "restore" and meta["ganforge.scale"] == str(scale)
    assert meta["ganforge.input_range"] == "[0, 1]" and "pixels / 255" in meta["ganforge.input_normalisation"]
    assert json.loads(meta["ganforge.net_config"]) == build_net(RESTORERS[key][0], **RESTORERS[key][1]).config
    dims = shapes(out)
    assert dims["image"][1] == RESTORERS[key][1]["channels"]
    assert all(isinstance(d, str) for i, d in enumerate(dims["image"]) if i != 1), dims  # N, H, W dynamic
    if key == "rescnn-noise-map":
        assert list(dims) == ["image", "sigma"] and dims["sigma"] == [dims["image"][0]]
    else:
        assert list(dims) == ["image"]


def test_noise_map_sigma_changes_the_output(exported):
    """sigma is a live input of the non-blind rescnn graph, not a constant the tracer baked in."""
    _, out = exported("rescnn-noise-map")
    sess = ort.InferenceSession(str(out))
    x = np.random.default_rng(0).random((2, 1, 16, 16), dtype=np.float32)
    a = sess.run(None, {"image": x, "sigma": np.array([5, 5], np.float32)})[0]
    b = sess.run(None, {"image": x, "sigma": np.array([5, 50], np.float32)})[0]
    assert np.array_equal(a[0], b[0]) and np.abs(a[1] - b[1]).max() > 1e-4


def test_onnx_reproduces_the_restore_pipeline_on_a_tile(exported):
    """onnxruntime alone, fed as metadata_props says (pixels / 255), gives the pixels `ganforge upscale` writes."""
    from ganforge.infer.pipelines import load_pipeline

    snap, out = exported("srresnet-x2")
    pixels = np.random.default_rng(3).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    want = load_pipeline(snap)(pixels)                                                # [80, 72, 3] uint8
    x = pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255
    y = ort.InferenceSession(str(out)).run(None, {"image": x})[0][0]
    got = np.round(y.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert got.shape == want.shape == (80, 72, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # rounding at .5 only


def test_export_uses_eval_mode_batchnorm(exported):
    """A net with BatchNorm is exported with its running statistics: the output of one image does not depend on
    the rest of the batch (in training mode it would)."""
    _, out = exported("rescnn")
    sess = ort.InferenceSession(str(out))
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    together = sess.run(None, {"image": x})[0]
    alone = sess.run(None, {"image": x[:1]})[0]
    assert np.abs(together[:1] - alone).max() <= 1e-6


# ---- generators ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(GENERATORS))
def test_generator_exports_and_onnxruntime_matches(exported, key):
    snap, out = exported(key)
    err = check_onnx(out, snap)  # batches of 2 and 3 (dynamic N); stylegan2 with psi = 0.7
    assert err <= TOL, err
    _, cfg, classes = GENERATORS[key]
    meta = props(out)
    assert meta["ganforge.task"] == "gan" and meta["ganforge.z_dim"] == "8"
    assert json.loads(meta["ganforge.class_names"]) == classes
    names = list(shapes(out))
    want = ["z"] + (["label"] if classes else []) + (["psi"] if key == "stylegan2" else [])
    assert names == want
    label_type = [i for i in onnx.load(str(out)).graph.input if i.name == "label"]
    assert not label_type or label_type[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_generator_onnx_matches_loaded_generator(exported):
    """The ONNX graph gives the images of LoadedGenerator (the `ganforge generate` path) for the same z and labels."""
    from ganforge.infer.snapshot import load_generator

    snap, out = exported("sngan-cond")
    G = load_generator(snap)
    zs = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    labels = np.array([2, 0, 1, 2], np.int64)
    import torch

    want = G(torch.from_numpy(zs), torch.from_numpy(labels)).numpy()
    got = ort.InferenceSession(str(out)).run(None, {"z": zs, "label": labels})[0]
    assert np.abs(got - want).max() <= TOL


def test_stylegan2_psi_input_matches_truncation(exported):
    """psi is an input: psi = 1 is the untruncated generator, psi = 0.5 equals G(z, psi=0.5)."""
    import torch

    from ganforge.infer.snapshot import load_generator

    snap, out = exported("stylegan2")
    G = load_generator(snap)
    sess = ort.InferenceSession(str(out))
    z = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    for psi in (1.0, 0.5):
        want = G(torch.from_numpy(z), psi=psi).numpy()
        got = sess.run(None, {"z": z, "psi": np.array(psi, np.float32)})[0]
        assert np.abs(got - want).max() <= TOL, psi
    full = sess.run(None, {"z": z, "psi": np.array(1.0, np.float32)})[0]
    assert np.abs(full - got).max() > 1e-3  # truncation changed the images


def test_conditional_stylegan2_exports_with_labels(tmp_path):
    """The conditional StyleGAN2 mapping's label-range check is skipped while exporting (torch.export cannot trace
    data-dependent Python), so the net exports with a `label` input and matches PyTorch per class."""
    import torch

    from ganforge.infer.snapshot import load_generator

    net = build_net("stylegan2.G", resolution=8, channels=3, z_dim=8, w_dim=8, width=8, max_width=8,
                    mapping_layers=2, num_classes=3)
    _perturb(net)
    meta = {"task": "gan", "pipeline": "generate", "arch": "stylegan2", "class_names": ["a", "b", "c"],
            "modules": {"G": {"net": "stylegan2.G", "config": net.config}}}
    snap = save_snapshot(tmp_path, "latest", {"G": net.state_dict()}, meta)
    out = export_onnx(snap, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(out))
    assert [i.name for i in sess.get_inputs()] == ["z", "label", "psi"]
    G = load_generator(snap)
    z = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    label = np.array([0, 1, 2], np.int64)
    want = G(torch.from_numpy(z), torch.from_numpy(label)).numpy()
    got = sess.run(None, {"z": z, "label": label, "psi": np.array(1.0, np.float32)})[0]
    assert got.shape == (3, 3, 8, 8) and np.abs(got - want).max() <= TOL
    with pytest.raises(ValueError, match="out of range"):  # eager PyTorch still checks the range
        G(torch.from_numpy(z), torch.tensor([0, 1, 3]))


# ---- inpainting nets ---------------------------------------------------------------------------------------------


def _hole(n: int, h: int, w: int) -> np.ndarray:
    """[n, 1, h, w] float32 masks with a rectangular hole in the middle (known pixels all around)."""
    m = np.zeros((n, 1, h, w), np.float32)
    m[:, :, h // 4: h // 2 + 2, w // 3: w // 2 + 3] = 1
    return m


def _feed(key: str, x: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's inputs for an inpainter: image and mask, and for a prefill=smooth DeepFill the smooth fill
    (core/fill.py) of the image's hole, as metadata_props says."""
    import torch

    from ganforge.core.fill import smooth_fill

    feed = {"image": x, "mask": m}
    if key.endswith("smooth"):
        feed["fill"] = smooth_fill(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    return feed


@pytest.mark.parametrize("key", list(INPAINTERS))
def test_inpainter_exports_and_onnxruntime_matches(exported, key):
    import torch

    snap, out = exported(key)
    err = check_onnx(out, snap, tile=32)  # a [2, C, 32, 32] batch and a [1, C, 32 + stride, 32] one, holes
    assert err <= TOL, err
    net = build_net(INPAINTERS[key][0], **INPAINTERS[key][1])
    meta = props(out)
    assert meta["ganforge.task"] == "inpaint" and meta["ganforge.arch"] == INPAINTERS[key][0]
    assert meta["ganforge.stride"] == str(net.stride) and meta["ganforge.resolution"] == "32"
    assert meta["ganforge.outputs"] == "inpainted" and "1 = hole" in meta["ganforge.mask"]
    assert ("BatchNorm running statistics" in meta["ganforge.eval_mode"]) == (key == "context_encoder")
    assert json.loads(meta["ganforge.net_config"]) == net.config
    dims = shapes(out)
    smooth = key.endswith("smooth")
    assert list(dims) == ["image", "mask", *(["fill"] if smooth else [])]
    assert dims["image"][1] == 3 and dims["mask"][1] == 1
    assert ("ganforge.fill" in meta) == smooth and (not smooth or dims["fill"] == dims["image"])
    assert all(isinstance(d, str) for i, d in enumerate(dims["image"]) if i != 1), dims  # N, H, W dynamic
    assert [dims["mask"][i] for i in (0, 2, 3)] == [dims["image"][i] for i in (0, 2, 3)]  # the image's axes
    # a third size, neither traced nor checked: 64 x 48, a batch of 3; at 32 px DeepFill's 4 x 4 key grid has no
    # key clear of the hole, here it has, so contextual attention really copies features (checked by a hook)
    x = np.random.default_rng(5).random((3, 3, 64, 48), dtype=np.float32)
    m = _hole(3, 64, 48)
    feed = _feed(key, x, m)
    got = ort.InferenceSession(str(out)).run(None, feed)[0]
    graph, _ = load_graph(snap)
    attended = []
    if key.startswith("deepfill"):
        graph.net.att_out.register_forward_pre_hook(lambda mod, args: attended.append(float(args[0].abs().max())))
    with torch.no_grad():
        want = graph(*[torch.from_numpy(v) for v in feed.values()]).numpy()
    assert got.shape == (3, 3, 64, 48) and np.abs(got - want).max() <= TOL
    assert not key.startswith("deepfill") or attended[0] > 0  # all-zero when no key is valid


@pytest.mark.parametrize("key", list(INPAINTERS))
def test_inpaint_onnx_fills_only_the_hole(exported, key):
    """Outside the hole the output is the input bit for bit; inside it is the net's fill; a soft mask is
    thresholded at 0.5 like binarize_mask; a hole over the whole image (DeepFill: no valid attention key) gives
    finite numbers."""
    _, out = exported(key)
    sess = ort.InferenceSession(str(out))
    x = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    m = _hole(2, 32, 32)
    y = sess.run(None, _feed(key, x, m))[0]
    known = np.broadcast_to(m == 0, x.shape)
    assert np.array_equal(y[known], x[known])
    assert np.abs(y[~known] - x[~known]).max() > 1e-3 and y.min() >= 0 and y.max() <= 1
    soft = np.where(m > 0, 0.8, 0.3).astype(np.float32)
    assert np.array_equal(sess.run(None, {**_feed(key, x, m), "mask": soft})[0], y)
    full = sess.run(None, _feed(key, x, np.ones_like(m)))[0]
    assert np.isfinite(full).all() and full.min() >= 0 and full.max() <= 1
    if key.endswith("smooth"):  # nothing known: the net starts at mid-gray, as ganforge computes it itself
        import torch

        graph, _ = load_graph(exported(key)[0])
        with torch.no_grad():
            own = graph(torch.from_numpy(x), torch.ones(2, 1, 32, 32)).numpy()
        assert np.abs(full - own).max() <= TOL
    off = {k: v[:, :, :30] for k, v in _feed(key, x, m).items()}  # 30 rows: not a multiple of the stride (4 or 8)
    with pytest.raises(Exception, match="ONNXRuntimeError"):  # a shape error, not a silently wrong image
        sess.run(None, off)


def test_onnx_reproduces_the_inpaint_pipeline(exported):
    """onnxruntime alone, fed as metadata_props says, gives the pixels `ganforge inpaint` writes for an image of the
    model's training resolution (the pipeline then runs the net on the image as is, no resampling)."""
    from ganforge.infer.pipelines import load_pipeline

    snap, out = exported("deepfill")
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    hole = _hole(1, 32, 32)[0, 0] > 0
    want = load_pipeline(snap)(pixels, hole)
    x = pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255
    y = ort.InferenceSession(str(out)).run(None, {"image": x, "mask": hole[None, None].astype(np.float32)})[0][0]
    got = np.round(y.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(got[~hole], pixels[~hole])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # rounding at .5 only
    assert np.abs(got[hole].astype(int) - pixels[hole].astype(int)).max() > 2  # the hole was filled


# ---- translation generators --------------------------------------------------------------------------------------


TRANSLATE_CASES = [("pix2pix-unet", None), ("pix2pix-lab", None), ("pix2pix-labels", None), ("cyclegan", None),
                   ("cyclegan", "BtoA")]


@pytest.mark.parametrize(("key", "direction"), TRANSLATE_CASES)
def test_translator_exports_and_onnxruntime_matches(exported, key, direction):
    snap, out = exported(key, direction)
    err = check_onnx(out, snap, tile=24)  # [2, C, 24, 24] and [1, C, 29, 27]; the direction from the metadata
    assert err <= TOL, err
    _, cfg, extra = TRANSLATORS[key]
    meta = props(out)
    assert meta["ganforge.task"] == extra["task"] and meta["ganforge.direction"] == (direction or "AtoB")
    assert json.loads(meta["ganforge.directions"]) == extra["directions"]
    assert meta["ganforge.outputs"] == "translated" and meta["ganforge.out_channels"] == "3"
    channels = 1 if key in ("pix2pix-lab", "pix2pix-labels") else 3  # gray L* / a label map of indices
    assert meta["ganforge.channels"] == str(channels)
    assert meta["ganforge.label_classes"] == ("4" if key == "pix2pix-labels" else "0")
    dims = shapes(out)
    assert list(dims) == ["image"] and dims["image"][1] == channels
    assert all(isinstance(d, str) for i, d in enumerate(dims["image"]) if i != 1), dims
    if key == "pix2pix-labels":
        assert "class index / 255" in meta["ganforge.input_normalisation"]


def test_cyclegan_directions_are_the_pipelines(exported):
    """The AtoB and BtoA files are G and F: each gives the pixels of `ganforge translate --direction` on a whole
    image, and they differ from each other."""
    from ganforge.infer.pipelines import load_pipeline

    snap, ab = exported("cyclegan")
    _, ba = exported("cyclegan", "BtoA")
    pipe = load_pipeline(snap)
    pixels = np.random.default_rng(4).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    x = pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255
    outs = {}
    for direction, path in (("AtoB", ab), ("BtoA", ba)):
        y = ort.InferenceSession(str(path)).run(None, {"image": x})[0][0]
        outs[direction] = np.round(y.transpose(1, 2, 0) * 255).astype(np.uint8)
        want = pipe(pixels, direction)
        assert np.abs(outs[direction].astype(int) - want.astype(int)).max() <= 1, direction
    assert np.abs(outs["AtoB"].astype(int) - outs["BtoA"].astype(int)).max() > 2


def test_label_map_onnx_matches_the_pipeline(exported):
    """A labels -> photo model in onnxruntime, fed index / 255, gives `ganforge translate`'s pixels."""
    from ganforge.infer.pipelines import load_pipeline

    snap, out = exported("pix2pix-labels")
    labels = np.random.default_rng(6).integers(0, 4, (20, 28), dtype=np.uint8)
    want = load_pipeline(snap)(labels)
    y = ort.InferenceSession(str(out)).run(None, {"image": labels[None, None].astype(np.float32) / 255})[0][0]
    got = np.round(y.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert got.shape == want.shape == (20, 28, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# ---- the CLI -------------------------------------------------------------------------------------------------


def cli(*args: str | Path) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_cli_export_writes_and_checks(tmp_path):
    snap = restore_snapshot(tmp_path, "srresnet-x4")
    code, out = cli("export", tmp_path / "latest", "--format", "onnx", "-o", tmp_path / "u.onnx", "--tile", "32")
    assert code == 0, out
    assert "wrote" in out and "max abs error" in out
    err = float(out.split("max abs error")[1].split()[0])
    assert err <= TOL
    assert props(tmp_path / "u.onnx")["ganforge.scale"] == "4" and snap.exists()


def test_cli_export_no_check(tmp_path, monkeypatch):
    import ganforge.infer.export as export

    gan_snapshot(tmp_path, "dcgan")
    code, out = cli("export", tmp_path, "-o", tmp_path / "g.onnx", "--no-check")  # a folder with latest.*
    assert code == 0, out
    assert "max abs error" not in out and (tmp_path / "g.onnx").is_file()

    monkeypatch.setattr(export, "onnxruntime_available", lambda: False)  # default --check: skipped, and said so
    code, out = cli("export", tmp_path, "-o", tmp_path / "g2.onnx")
    assert code == 0, out
    assert "not checked" in out and "max abs error" not in out and (tmp_path / "g2.onnx").is_file()


def test_cli_export_errors(tmp_path, monkeypatch):
    gan_snapshot(tmp_path, "dcgan")
    code, out = cli("export", tmp_path / "latest", "--format", "tflite", "-o", tmp_path / "g.onnx")
    assert code == 2 and "tflite" in out and "valid: onnx" in out and "Traceback" not in out, (code, out)

    code, out = cli("export", tmp_path / "nothing-here", "-o", tmp_path / "g.onnx")
    assert code == 1 and "error:" in out and "nothing-here" in out and "Traceback" not in out, (code, out)

    (tmp_path / "junk.json").write_text("{}")
    (tmp_path / "junk.safetensors").write_bytes(b"not a snapshot")
    code, out = cli("export", tmp_path / "junk", "-o", tmp_path / "g.onnx")
    assert code == 1 and "error:" in out and "junk" in out and "Traceback" not in out, (code, out)

    import ganforge.infer.export as export

    def no_onnx() -> None:
        raise OnnxUnavailable(f"ONNX export needs onnx, which is not installed: {export.INSTALL_HINT}")

    monkeypatch.setattr(export, "_require_onnx", no_onnx)
    code, out = cli("export", tmp_path / "latest", "-o", tmp_path / "g.onnx")
    assert code == 1 and "pip install 'ganforge[onnx]'" in out and "Traceback" not in out, (code, out)
    assert not (tmp_path / "g.onnx").exists()


def test_missing_onnx_packages_are_named(monkeypatch):
    """_require_onnx names the missing package and the extra to install."""
    import builtins

    import ganforge.infer.export as export

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(OnnxUnavailable, match=r"onnxscript.*pip install 'ganforge\[onnx\]'"):
        export._require_onnx()


def test_cli_export_direction(tmp_path):
    """--direction BtoA exports a CycleGAN's second generator (and checks it); a one-way pix2pix model, a model that
    is not a translator and an unknown direction are clean errors that write nothing."""
    snap = translate_snapshot(tmp_path, "cyclegan")
    code, out = cli("export", snap, "--direction", "BtoA", "-o", tmp_path / "ba.onnx", "--tile", "16")
    assert code == 0, out
    assert float(out.split("max abs error")[1].split()[0]) <= TOL
    assert props(tmp_path / "ba.onnx")["ganforge.direction"] == "BtoA"

    (tmp_path / "p2p").mkdir()
    translate_snapshot(tmp_path / "p2p", "pix2pix-unet")
    code, out = cli("export", tmp_path / "p2p", "--direction", "BtoA", "-o", tmp_path / "x.onnx")
    assert code == 1 and "only AtoB" in out and "Traceback" not in out, (code, out)
    code, out = cli("export", snap, "--direction", "sideways", "-o", tmp_path / "x.onnx")
    assert code == 1 and "sideways" in out and "AtoB, BtoA" in out and "Traceback" not in out, (code, out)
    (tmp_path / "gan").mkdir()
    gan_snapshot(tmp_path / "gan", "dcgan")
    code, out = cli("export", tmp_path / "gan", "--direction", "AtoB", "-o", tmp_path / "x.onnx")
    assert code == 1 and "--direction is for translation" in out and "Traceback" not in out, (code, out)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_inpaint_rounds_the_tile_to_the_stride(tmp_path):
    """--tile 20 on a stride-8 DeepFill traces and checks at 24 (the next multiple); the file runs other sizes."""
    inpaint_snapshot(tmp_path, "deepfill")
    code, out = cli("export", tmp_path, "-o", tmp_path / "fill.onnx", "--tile", "20")
    assert code == 0, out
    assert float(out.split("max abs error")[1].split()[0]) <= TOL
    sess = ort.InferenceSession(str(tmp_path / "fill.onnx"))
    y = sess.run(None, {"image": np.zeros((1, 3, 40, 16), np.float32), "mask": _hole(1, 40, 16)})[0]
    assert y.shape == (1, 3, 40, 16)


def test_exporter_failure_names_the_network(tmp_path, monkeypatch):
    """An exporter error becomes OnnxExportError naming the snapshot, the network and the root cause in one line,
    and nothing is written."""
    import torch

    snap = inpaint_snapshot(tmp_path, "context_encoder")

    def fail(*args, **kwargs):
        try:
            raise KeyError("aten::im2col")
        except KeyError as exc:
            raise RuntimeError("\x1b[31mexport failed\x1b[0m\nmany lines of advice") from exc

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(OnnxExportError, match=r"context_encoder \(context_encoder\.ContextEncoder\) cannot be "
                                              r"exported .*KeyError: 'aten::im2col'"):
        export_onnx(snap, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
