"""Image-to-image translation (issue 15): the pix2pix U-Net, the ResNet translator and the PatchGAN; the pix2pix and
CycleGAN tasks through ganforge.train with exact resume (history pools included) and the linear LR decay; derived
pairs (edges, gray, lab); label maps (one-hot input, the procedural scenes set); the translate pipeline (directions,
eval mode, tiling, Lab recombination); the translate / colorize / train --pairs CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import ConfigError, resolve_config
from ganforge.data.color import lab_to_rgb, lightness, rgb_to_lab
from ganforge.data.derive import parse_derive
from ganforge.data.pairs import load_pairs
from ganforge.data.scenes import SCENE_CLASSES, render_scene, scenes_folder
from ganforge.infer.translate import TranslatePipeline
from ganforge.nets import NETS, build_net
from ganforge.nets.patchgan import PatchGAN, patch_receptive_field
from ganforge.nets.resnet_translator import ResnetBlock, ResnetTranslator
from ganforge.nets.unet_translator import UNetTranslator
from ganforge.tasks.translate import ImagePool, linear_decay, one_hot_labels

runner = CliRunner()


def cli(*args) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _photos(root: Path, n: int = 6, size: int = 40) -> Path:
    """Smooth colour images with a few shapes: something with edges and colours to translate."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):
        base = rng.uniform(40, 200, 3)
        img = base + 50 * np.stack([yy, xx, yy * xx], -1)
        cy, cx = rng.integers(10, size - 10, 2)
        img[(np.abs(np.arange(size)[:, None] - cy) < 6) & (np.abs(np.arange(size)[None] - cx) < 6)] = \
            rng.uniform(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    return root


def _unpaired(root: Path, n: int = 5, size: int = 36) -> Path:
    """Domain A dark and bluish, domain B bright and yellow (an offline two-domain set)."""
    rng = np.random.default_rng(2)
    for side, lo, hi, blue in (("trainA", 0, 110, 180), ("trainB", 120, 250, 20)):
        (root / side).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(lo, hi, (size, size, 3)).astype(np.uint8)
            img[..., 2] = blue
            Image.fromarray(img).save(root / side / f"{i}.png")
    return root


def _config(preset: str, source: Path | str, out: Path, kimg: float, **extra) -> ganforge.TrainConfig:
    model = {"width": 4, "d_width": 4, "d_layers": 2}
    model |= {"blocks": 1} if preset.startswith("cyclegan") else {"depth": 5}
    over = {"data": {"source": str(source), "resolution": 32}, "model": model,
            "optim": {"batch": 2}, "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.002,
                                             "checkpoint_every_kimg": 0.004, "sample_every_kimg": 0.004,
                                             "snapshot_every_kimg": 0.004, "device": "cpu", "grid_samples": 2,
                                             "threads": 1}}
    for section, fields in extra.items():
        over[section] = over.get(section, {}) | fields
    return resolve_config(preset, over)


def _losses(run: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in json.loads(line).items() if k.startswith("loss/")}
            for line in (run / "stats.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------
# Networks


def test_unet_translator_shapes_dropout_and_any_size():
    g = UNetTranslator(in_channels=1, out_channels=3, width=8, depth=6, norm="batch", dropout=0.5)
    assert g(torch.randn(2, 1, 64, 64)).shape == (2, 3, 64, 64)   # 64 px -> a 1x1 bottleneck
    assert g(torch.randn(1, 1, 45, 70)).shape == (1, 3, 45, 70)   # padded to 64k and cropped back
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 3   # the paper's CD512 x 3
    out = g.eval()(torch.zeros(1, 1, 64, 64))
    assert out.abs().max() < 1  # tanh
    g.eval()
    x = torch.randn(1, 1, 64, 64)
    assert torch.equal(g(x), g(x))  # eval: dropout off, running BatchNorm statistics -> deterministic
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in
               UNetTranslator(3, 3, 8, 8, norm="instance").modules()) == 13  # 6 encoder + 7 decoder layers
    with pytest.raises(ValueError, match="norm must be one of"):
        UNetTranslator(3, 3, 8, 6, norm="group")


@pytest.mark.parametrize("blocks", [6, 9])
def test_resnet_translator_blocks_shapes_and_reflection(blocks):
    g = ResnetTranslator(3, 3, width=4, blocks=blocks, norm="instance")
    assert sum(isinstance(m, ResnetBlock) for m in g.modules()) == blocks
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in g.modules())
    assert g(torch.randn(1, 3, 18, 22)).shape == (1, 3, 18, 22)
    assert g.receptive_field == 2 * (15 + 8 * blocks) + 1


def test_resnet_receptive_field_bounds_the_influence():
    g = ResnetTranslator(3, 3, width=4, blocks=1, norm="none").eval()
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    g(x)[0, :, 48, 48].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1)).sum(1)).flatten()
    assert rows.max() - rows.min() + 1 <= g.receptive_field
    assert rows.max() - rows.min() + 1 >= g.receptive_field - 12  # a tight bound, not a loose one


def _support(d: PatchGAN, size: int) -> int:
    x = torch.randn(1, d.in_channels, size, size, requires_grad=True)
    s = d(x)
    s[0, 0, s.shape[2] // 2, s.shape[3] // 2].backward()
    cols = torch.nonzero(x.grad.abs().sum((0, 1, 2))).flatten()
    return int(cols.max() - cols.min() + 1)


def test_patchgan_70_and_pixel_variant():
    d = PatchGAN(in_channels=6, width=8, layers=3, norm="none")
    assert d.receptive_field == patch_receptive_field(3) == 70
    assert _support(d, 160) == 70
    assert d(torch.randn(1, 6, 128, 128)).shape == (1, 1, 14, 14)  # 256 px: pix2pix's 30x30 patch map
    pixel = PatchGAN(in_channels=3, width=8, layers=0, norm="batch")
    assert pixel.receptive_field == 1 and pixel(torch.randn(2, 3, 20, 24)).shape == (2, 1, 20, 24)
    assert _support(pixel.eval(), 20) == 1


def test_nets_registered_and_rebuilt_from_config():
    for name in ("unet_translator", "resnet_translator", "patchgan.D", "cyclegan.generators",
                 "cyclegan.discriminators"):
        assert name in NETS
    pair = build_net("cyclegan.generators", net="resnet_translator", AtoB=dict(in_channels=3, out_channels=1, width=4,
                                                                                blocks=1),
                     BtoA=dict(in_channels=1, out_channels=3, width=4, blocks=1))
    again = build_net("cyclegan.generators", **pair.config)
    again.load_state_dict(pair.state_dict())
    assert pair(torch.randn(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    assert pair(torch.randn(1, 1, 16, 16), "BtoA").shape == (1, 3, 16, 16)


# ---------------------------------------------------------------------------------------------------------
# Recipe pieces: LR schedule, history pool, label maps, colour


def test_linear_decay_schedule_values():
    assert [linear_decay(s, 10, 0.5) for s in range(10)] == [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]
    assert [linear_decay(s, 4, 1.0) for s in range(4)] == [1, 1, 1, 1]
    assert [linear_decay(s, 4, 0.0) for s in range(4)] == [1, 0.75, 0.5, 0.25]


def test_image_pool_fills_then_swaps_with_the_generators_draws():
    pool = ImagePool(3)
    x = torch.arange(4.0).reshape(4, 1, 1, 1)
    out = pool.query(x[:2], torch.Generator().manual_seed(0))
    assert torch.equal(out, x[:2]) and len(pool.images) == 2
    seen = pool.query(torch.full((20, 1, 1, 1), 9.0), torch.Generator().manual_seed(0))
    assert len(pool.images) == 3 and (seen != 9).any()  # once full, some stored images come back
    a, b = ImagePool(2), ImagePool(2)
    for p in (a, b):
        p.query(x, torch.Generator().manual_seed(5))
    assert torch.equal(a.state(), b.state())  # a function of the draws
    assert ImagePool(0).query(x, torch.Generator()) is x


def test_one_hot_labels_and_bad_index():
    index = torch.tensor([[[0, 1], [2, 5]]], dtype=torch.uint8)[:, None]      # [1, 1, 2, 2] as in a PNG
    x = index.float() / 127.5 - 1                                              # as the data loader scales it
    onehot = one_hot_labels(x, 6)
    assert onehot.shape == (1, 6, 2, 2) and torch.equal(onehot.argmax(1)[0], index[0, 0].long())
    assert torch.equal(onehot.sum(1), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="class index 5, but data.label_classes=4"):
        one_hot_labels(x, 4)


def test_label_classes_detected_from_the_label_maps(tmp_path):
    from ganforge.tasks.translate import Pix2PixTask

    for side in ("A", "B"):
        (tmp_path / "d" / side).mkdir(parents=True)
    for i in range(3):
        labels = np.zeros((24, 24), np.uint8)
        labels[:, 12:] = 2 + i  # largest index: 4
        Image.fromarray(labels).save(tmp_path / "d" / "A" / f"{i}.png")
        Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)).save(tmp_path / "d" / "B" / f"{i}.png")
    cfg = resolve_config("pix2pix-64", {"data": {"source": str(tmp_path / "d"), "resolution": 16,
                                                 "label_classes": "auto"}, "model": {"depth": 4, "d_layers": 2}})
    data = Pix2PixTask.load_data(cfg.data, torch.device("cpu"))
    assert data.label_classes == 5 and "5 classes detected" in " ".join(data.report.notes)
    with pytest.raises(ConfigError, match="label_classes"):
        resolve_config("pix2pix-64", {"data": {"label_classes": "many"}})


def test_lab_round_trip_matches_reference_values():
    # sRGB pure red / white / mid gray in Lab (D65): (53.24, 80.09, 67.20), (100, 0, 0), (53.59, 0, 0)
    x = torch.tensor([[1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0039, 0.0039, 0.0039]]).T[None, :, :, None] * 1.0
    lab = rgb_to_lab(x)[0, :, :, 0].T
    assert torch.allclose(lab, torch.tensor([[53.24, 80.09, 67.20], [100.0, 0.0, 0.0], [53.59, 0.0, 0.0]]),
                          atol=0.05)
    y = torch.rand(2, 3, 5, 5) * 2 - 1
    assert torch.allclose(lab_to_rgb(rgb_to_lab(y)), y, atol=1e-4)


def test_derived_pairs_edges_gray_lab(tmp_path):
    photos = _photos(tmp_path / "p")
    gen = torch.Generator().manual_seed(0)
    for spec, channels in (("edges", 3), ("gray", 3), ("lab", 1)):
        data = load_pairs(photos, 32, derive=parse_derive(spec))
        batch = data.fetch(np.arange(3), gen, torch.device("cpu"))
        assert batch["input"].shape == (3, channels, 32, 32) and batch["target"].shape == (3, 3, 32, 32)
        assert data.input_channels == channels
        if spec == "lab":
            assert torch.allclose(batch["input"], lightness(batch["target"]), atol=1e-6)
        if spec == "gray":
            assert torch.equal(batch["input"][:, 0], batch["input"][:, 2])


def test_scenes_set_is_deterministic_and_labelled(tmp_path):
    a, b = render_scene(np.random.default_rng([0, 3]), 48), render_scene(np.random.default_rng([0, 3]), 48)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    labels, photo = a
    assert labels.max() < len(SCENE_CLASSES) and photo.shape == (48, 48, 3)
    sky, grass = photo[labels == 0].mean(0), photo[labels == 1].mean(0)
    assert sky[2] > grass[2] and grass[1] > grass[2]  # blue-ish sky, green grass
    root = scenes_folder(4, 32, root=tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["A", "B", "scenes.json"]
    assert len(list((root / "A").iterdir())) == 4 and scenes_folder(4, 32, root=tmp_path) == root


# ---------------------------------------------------------------------------------------------------------
# Config


def test_presets_and_config_errors():
    for name in ("pix2pix-64", "pix2pix-256", "cyclegan-64", "cyclegan-256", "colorize-64"):
        c = resolve_config(name)
        assert c.task in ("pix2pix", "cyclegan")
    assert resolve_config("cyclegan-256").loss.lr_decay_start == 0.5
    assert resolve_config("colorize-64").data.derive == "lab"
    with pytest.raises(ConfigError, match="unpaired domains"):
        resolve_config("cyclegan-64", {"data": {"derive": "edges"}})
    with pytest.raises(ConfigError, match="multiple of 2\\^model.depth=64"):
        resolve_config("pix2pix-64", {"data": {"resolution": 48}})
    with pytest.raises(ConfigError, match="model.arch='unet' cannot be trained by task 'pix2pix'"):
        resolve_config(None, {"task": "pix2pix", "model": {"arch": "unet"}})
    with pytest.raises(ConfigError, match="too small for a PatchGAN"):
        resolve_config("pix2pix-64", {"data": {"resolution": 16}, "model": {"depth": 4}})


def test_ema_copy_is_optional_and_snapshotted():
    from ganforge.tasks.translate import CycleGANTask, Pix2PixTask

    cfg = resolve_config("pix2pix-64", {"model": {"width": 4, "d_width": 4}, "optim": {"ema_kimg": 1.0}})
    task = Pix2PixTask(cfg.model, cfg.loss, cfg.optim, 3, 3, None, "edges")
    assert task.ema == {"G_ema": "G"} and task.snapshot_modules == {"G": "G_ema"}
    assert not any(p.requires_grad for p in task.modules["G_ema"].parameters())
    cfg = resolve_config("cyclegan-64", {"model": {"width": 4, "d_width": 4, "blocks": 1}})
    task = CycleGANTask(cfg.model, cfg.loss, cfg.optim, 3)
    assert set(task.modules) == {"G", "D"} and [p.module for p in task.phases()] == ["D", "G"]


# ---------------------------------------------------------------------------------------------------------
# Training through the one loop: exact resume (pools included), LR decay, snapshots


def _exact_resume(preset: str, source, tmp_path: Path, **extra) -> Path:
    full = ganforge.train(_config(preset, source, tmp_path / "runs", 0.012, **extra), progress=False)
    part = tmp_path / "interrupted"
    shutil.copytree(full, part)
    (part / "checkpoints" / "ckpt-000000006.pt").unlink()  # as if killed after the step-4 checkpoint
    for old in (part / "snapshots").glob("step000000006.*"):
        old.unlink()
    ganforge.train(_config(preset, source, tmp_path / "runs", 0.012, **extra), resume=part, progress=False)
    assert "resumed from ckpt-000000004.pt" in (part / "log.txt").read_text()
    assert _losses(part) == _losses(full) and len(_losses(full)) == 6
    return full


def test_cyclegan_trains_resumes_exactly_with_pools_and_decays_lr(tmp_path):
    source = _unpaired(tmp_path / "unp")
    run = _exact_resume("cyclegan-64", source, tmp_path, loss={"pool_size": 3})
    state = torch.load(run / "checkpoints" / "ckpt-000000006.pt", weights_only=True)
    assert state["task"]["pool_A"].shape == (3, 3, 32, 32)       # the history pools are checkpointed
    # The last step (5 of 6) ran at 2e-4 x (6 - 5) / (6 - 3): linear decay over the second half.
    for name in ("G", "D"):
        assert state["optimizers"][name]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 3)
    losses = _losses(run)[-1]
    assert {"loss/cycle_A", "loss/identity_B", "loss/D_A", "loss/G_adv_BtoA"} <= set(losses)
    pipe = ganforge.load(run)
    assert isinstance(pipe, TranslatePipeline) and set(pipe.nets) == {"AtoB", "BtoA"}
    img = np.asarray(Image.open(source / "trainA" / "0.png"))
    assert pipe(img, "AtoB").shape == img.shape and pipe(img, "BtoA").dtype == np.uint8
    grid = Image.open(sorted((run / "samples").glob("fakes*.png"))[-1])
    assert grid.size[0] > grid.size[1]  # 4 columns: A, G(A), B, F(B)


def test_pix2pix_edges_trains_resumes_exactly(tmp_path):
    photos = _photos(tmp_path / "photos")
    run = _exact_resume("pix2pix-64", photos, tmp_path, data={"derive": "edges"})
    meta = json.loads((run / "snapshots" / "latest.json").read_text())
    assert meta["pipeline"] == "translate" and meta["derive"] == "edges" and meta["modules"]["G"]["net"] == \
        "unet_translator"
    assert {"loss/G_L1", "loss/G_adv", "loss/D_adv"} <= set(_losses(run)[-1])


@pytest.mark.parametrize("preset, per_step", [("pix2pix-64", 1), ("cyclegan-64", 6)])
def test_one_generator_forward_per_step_shared_by_both_phases(preset, per_step, tmp_path, monkeypatch):
    """The loop's shared forward (tasks/base.py ``shared``): pix2pix runs G(A) once per step, its D phase scoring it
    detached and its G phase training through it (the reference's one forward and one dropout mask); CycleGAN's
    G(A), F(B) are shared the same way, leaving the G phase's two cycle and two identity passes (6, not 8).
    Forwards in training mode only: previews run in eval mode."""
    from ganforge.nets.resnet_translator import ResnetTranslator
    from ganforge.nets.unet_translator import UNetTranslator

    net = ResnetTranslator if preset.startswith("cyclegan") else UNetTranslator
    calls: list[bool] = []
    original = net.forward

    def counted(self, x):
        if self.training:
            calls.append(torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))
        return original(self, x)

    monkeypatch.setattr(net, "forward", counted)
    source = _unpaired(tmp_path / "unp") if preset.startswith("cyclegan") else _photos(tmp_path / "photos")
    extra = {} if preset.startswith("cyclegan") else {"data": {"derive": "edges"}}
    run = ganforge.train(_config(preset, source, tmp_path / "runs", 0.008, **extra), progress=False)
    assert len(_losses(run)) == 4 and len(calls) == 4 * per_step
    assert all(calls)  # every training-mode forward records G's graph: none is a no_grad recomputation


def test_pix2pix_on_scene_label_maps(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    cfg = _config("pix2pix-64", "scenes:6:32", tmp_path / "runs", 0.004)
    run = ganforge.train(cfg, progress=False)
    assert "label maps: 6 classes" in (run / "log.txt").read_text()
    pipe = ganforge.load(run)
    assert pipe.label_classes == 6 and pipe.net("AtoB").config["in_channels"] == 6  # one-hot input
    labels = np.asarray(Image.open(sorted((tmp_path / "cache" / "scenes").glob("n6-*"))[0] / "A" / "00000.png"))
    assert pipe(labels).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="label maps"):
        pipe(np.zeros((8, 8, 3), np.uint8))
    bad = labels.copy()
    bad[0, 0] = 9
    with pytest.raises(ValueError, match="class index 9"):
        pipe(bad)


# ---------------------------------------------------------------------------------------------------------
# The pipeline without training: directions, eval mode, tiling, Lab


def _pipe(meta: dict, norm: str = "none", in_channels: int = 3) -> TranslatePipeline:
    torch.manual_seed(0)
    g = build_net("cyclegan.generators", net="resnet_translator",
                  AtoB=dict(in_channels=in_channels, out_channels=3, width=4, blocks=1, norm=norm),
                  BtoA=dict(in_channels=3, out_channels=in_channels, width=4, blocks=1, norm=norm)).eval()
    return TranslatePipeline(g, {"task": "cyclegan", **meta}, torch.device("cpu"))


def test_pipeline_directions_and_errors():
    pipe = _pipe({})
    img = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    assert pipe(img, "BtoA").shape == (20, 24, 3)
    assert pipe(img[:, :, 0]).shape == (20, 24, 3)  # gray input to an RGB model is replicated
    with pytest.raises(ValueError, match="direction must be AtoB or BtoA"):
        pipe(img, "AtoC")
    one_way = TranslatePipeline(pipe.nets["AtoB"], {"task": "pix2pix"}, torch.device("cpu"))
    with pytest.raises(ValueError, match="translates only AtoB"):
        one_way(img, "BtoA")
    with pytest.raises(ValueError, match="uint8/uint16"):
        pipe(img.astype(np.float32))
    assert pipe(img.astype(np.uint16) * 257).dtype == np.uint16


def test_tiled_equals_whole_for_a_finite_receptive_field():
    pipe = _pipe({}, norm="batch")  # eval mode: running statistics, per-pixel -> exactly tileable
    with torch.no_grad():  # larger weights: an output that varies a lot, so a misaligned tile would show
        for m in pipe.nets["AtoB"].modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                m.weight.mul_(3)
    img = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    whole = pipe(img).astype(int)
    assert whole.std() > 50
    tiled = pipe(img, whole_pixels=1000, tile=128, overlap=0).astype(int)  # overlap raised to the receptive field
    assert np.abs(whole - tiled).max() <= 1
    with pytest.raises(ValueError, match="multiple of 4"):
        pipe(img, whole_pixels=1000, tile=130)


def test_lab_colorizer_keeps_the_lightness():
    pipe = _pipe({"derive": "lab"}, in_channels=1)
    assert pipe.is_colorizer
    gray = np.random.default_rng(2).integers(0, 255, (24, 24), dtype=np.uint8)
    color = pipe(gray)
    assert color.shape == (24, 24, 3)
    l_in = rgb_to_lab(torch.from_numpy(gray).float()[None, None] / 127.5 - 1)[:, 0]
    l_out = rgb_to_lab(torch.from_numpy(color).permute(2, 0, 1).float()[None] / 127.5 - 1)[:, 0]
    assert (l_in - l_out).abs().max() < 1.0  # L* kept up to 8-bit rounding (and gamut clipping)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own pytree deprecation notice
def test_colorizer_graph_exports_to_onnx_and_matches(tmp_path):
    """The pipeline's whole per-tile computation (L*, the U-Net, the Lab recombination) as one graph with dynamic
    batch and size; onnxruntime matches PyTorch to 1e-4 on a size that is not a multiple of the stride."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from torch.export import Dim

    torch.manual_seed(0)
    g = build_net("unet_translator", in_channels=1, out_channels=3, width=4, depth=3, norm="batch").eval()
    graph = TranslatePipeline(g, {"task": "pix2pix", "derive": "lab"}, torch.device("cpu")).graph().eval()
    assert graph.channels == 1
    dims = ({0: Dim("n"), 2: Dim("h", min=8, max=4096), 3: Dim("w", min=8, max=4096)},)
    program = torch.onnx.export(graph, (torch.rand(2, 1, 32, 40),), dynamo=True, input_names=["image"],
                                dynamic_shapes=dims, verbose=False)
    program.save(tmp_path / "colorize.onnx")
    x = torch.rand(3, 1, 27, 45)
    with torch.no_grad():
        ref = graph(x).numpy()
    out = ort.InferenceSession(str(tmp_path / "colorize.onnx")).run(None, {"image": x.numpy()})[0]
    assert out.shape == (3, 3, 27, 45) and np.abs(out - ref).max() < 1e-4


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_cli_train_pairs_flag():
    code, out = cli("train", "--data", "photos", "--preset", "pix2pix-64", "--pairs", "degraded", "--dry-run")
    assert code == 0 and '"derive": "blur:0-2,noise:gaussian:0-25,jpeg:40-95"' in out
    code, out = cli("train", "--data", "photos", "--preset", "pix2pix-64", "--pairs", "edges", "--degrade", "gray")
    assert code == 1 and "--pairs and --degrade" in out


def test_cli_translate_and_colorize(tmp_path, monkeypatch):
    source = _unpaired(tmp_path / "unp", n=3)
    run = ganforge.train(_config("cyclegan-64", source, tmp_path / "runs", 0.002), progress=False)
    code, out = cli("translate", run, source / "trainB", "-o", tmp_path / "out", "--direction", "BtoA", "--ext", "jpg")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    code, out = cli("translate", run, source / "trainA" / "0.png", "-o", tmp_path / "x.png", "--direction", "sideways")
    assert code == 1 and "direction must be AtoB or BtoA" in out
    code, out = cli("colorize", source / "trainA", "-o", tmp_path / "c", "--model", run)
    assert code == 1 and "not a colorization model" in out
    code, out = cli("colorize", source / "trainA", "-o", tmp_path / "c")   # the shipped colorizer
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["0.png", "1.png", "2.png"]
    from ganforge import pretrained

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "no-shipped-models")
    code, out = cli("colorize", source / "trainA", "-o", tmp_path / "c2")
    assert code == 1 and "--preset colorize-64" in out
    code, out = cli("translate", tmp_path / "nothing", source, "-o", tmp_path / "y")
    assert code == 1 and "Traceback" not in out


def test_cli_colorize_keeps_each_photos_lightness(tmp_path):
    photos = _photos(tmp_path / "photos", n=3)
    run = ganforge.train(_config("colorize-64", photos, tmp_path / "runs", 0.002), progress=False)
    gray = tmp_path / "gray"
    gray.mkdir()
    for p in photos.iterdir():
        Image.open(p).convert("L").save(gray / p.name)
    code, out = cli("colorize", gray, "-o", tmp_path / "color", "--model", run)
    assert code == 0, out
    src, dst = np.array(Image.open(gray / "00.png")), np.array(Image.open(tmp_path / "color" / "00.png"))
    assert dst.shape == src.shape + (3,)
    l_in = rgb_to_lab(torch.from_numpy(src).float()[None, None] / 127.5 - 1)[:, 0]
    l_out = rgb_to_lab(torch.from_numpy(dst).permute(2, 0, 1).float()[None] / 127.5 - 1)[:, 0]
    assert (l_in - l_out).abs().mean() < 0.5

