"""Inpainting end to end: contextual attention copies a known patch, the nets run at several sizes from one config,
both architectures train through ganforge.train with exact resume, the pipeline changes only hole pixels (also on
large images, via a crop), 16-bit and alpha round-trip, and `ganforge inpaint` (file, folder, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge
from ganforge.cli import app
from ganforge.config import ConfigError, DeepFillModel, InpaintLoss, OptimConfig, resolve_config
from ganforge.core.fill import PLATE_WEIGHT, smooth_fill
from ganforge.core.imageio import read_image, write_image
from ganforge.core.imagemath import ssim_maps
from ganforge.infer.inpaint import InpaintPipeline, binarize_mask
from ganforge.nets import build_net
from ganforge.nets import deepfill as deepfill_module
from ganforge.nets.deepfill import FEATURE_GAIN, DeepFillGenerator, contextual_attention, pushpull_fill
from ganforge.tasks.base import StepInputs
from ganforge.tasks.inpaint import InpaintTask, build_inpainter, composite, hole_ssim
from ganforge.training import checkpoint as ckpt
from ganforge.training.rundir import read_jsonl


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


# ---- Contextual attention ---------------------------------------------------------------------------------------


def test_contextual_attention_copies_the_matching_patch_into_the_hole():
    torch.manual_seed(0)
    b = torch.randn(1, 8, 48, 48)
    b[:, :, 32:48, 32:48] = b[:, :, 0:16, 0:16]   # the hole's surroundings are a copy of the top-left block
    b = b * 50                                    # large features: the softmax (scale 10) is one-hot
    mask = torch.zeros(1, 1, 48, 48)
    mask[:, :, 36:44, 36:44] = 1
    # Queries: the features with the copy in the hole; keys and raw patches: the hole's content is gone (zeros).
    y, att = contextual_attention(b, b * (1 - mask), mask, rate=2)
    assert y.shape == (1, 8, 48, 48) and att.shape == (1, 24 * 24, 24, 24)
    # The query at the hole's low-resolution location (19, 19) attends to the key 16 locations up and left.
    assert int(att[0, :, 19, 19].argmax()) == 3 * 24 + 3 and float(att[0, :, 19, 19].max()) > 0.999
    # Inside the hole the output is the source block's pixels, 32 px up and left.
    assert torch.allclose(y[:, :, 36:44, 36:44], b[:, :, 4:12, 4:12], atol=1e-3)
    # Keys touching the hole get no weight; every query's weights sum to 1.
    hole_keys = torch.nn.functional.max_pool2d(mask, 2)[0, 0].flatten() > 0
    assert float(att[0][hole_keys].abs().max()) == 0.0
    assert torch.allclose(att.sum(1), torch.ones(1, 24, 24))


def test_contextual_attention_without_a_valid_key_returns_zeros():
    f = torch.randn(1, 4, 16, 16)
    y, att = contextual_attention(f, f, torch.ones(1, 1, 16, 16))
    assert torch.equal(att, torch.zeros_like(att)) and torch.equal(y, torch.zeros_like(y))


# ---- Networks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset,model", [("deepfill-64", {"width": 4, "dilations": [2, 4]}),
                                          ("deepfill-64", {"width": 4, "dilations": [2, 4], "prefill": "pushpull"}),
                                          ("deepfill-64", {"width": 4, "dilations": [2, 4], "prefill": "smooth"}),
                                          ("context-encoder-64", {"width": 4, "levels": 3, "bottleneck": 8})])
def test_one_config_runs_at_64_and_128_and_ignores_hole_pixels(preset, model):
    cfg = resolve_config(preset, {"model": model})
    torch.manual_seed(0)
    net = build_inpainter(cfg.model, 3).eval()
    for size in (64, 128):
        x = torch.rand(2, 3, size, size) * 2 - 1
        m = torch.zeros(2, 1, size, size)
        m[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1
        y = net(x, m)
        assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
        noisy = x + m * torch.randn_like(x)       # other pixels inside the hole: the same output
        assert torch.allclose(net(noisy, m), y, atol=1e-6)
    if cfg.model.arch == "deepfill":
        coarse, refined = net(x, m, return_coarse=True)
        assert coarse.shape == refined.shape == x.shape
        d = build_net("deepfill.D", channels=3, width=4, layers=5)
        assert d(x, m).shape == (2, 4 * 16 * 4 * 4)  # a 4x4 map of patch scores at 128 px
    with pytest.raises(AssertionError, match="multiples"):
        net(torch.zeros(1, 3, 60, 60), torch.zeros(1, 1, 60, 60))


def test_pushpull_fill_keeps_known_pixels_and_interpolates_the_hole():
    ramp = torch.linspace(-1, 1, 96).expand(1, 3, 80, 96).clone()                 # left-to-right gradient
    hole = torch.zeros(1, 1, 80, 96)
    hole[:, :, 20:60, 30:70] = 1
    out = pushpull_fill(ramp * (1 - hole), hole)
    known = hole.expand_as(ramp) == 0
    assert torch.equal(out[known], ramp[known])
    inside = out[:, :, 20:60, 30:70]
    assert inside.min() >= ramp[:, :, :, 29].max() - 0.05 and inside.max() <= ramp[:, :, :, 70].max() + 0.05
    assert (inside - ramp[:, :, 20:60, 30:70]).abs().mean() < 0.15               # close to the ramp it replaces
    assert (inside[..., 1:] - inside[..., :-1]).mean() > 0                        # and rising like it
    flat = torch.full((2, 3, 40, 24), 0.3)
    assert torch.allclose(pushpull_fill(flat, hole[:, :, :40, :24].expand(2, 1, 40, 24)), flat)
    # nothing known: 0 (the mean of no pixels), finite
    assert torch.equal(pushpull_fill(flat, torch.ones(2, 1, 40, 24)), torch.zeros_like(flat))


def test_smooth_fill_is_exact_on_ramps_and_the_plate_on_parabolas():
    """Golden values: a linear ramp is harmonic and biharmonic, so every mix reproduces it in a hole at least 2 px
    from the border; a parabola x^2 has a constant Laplacian, so only the thin plate reproduces it; the membrane
    sags below it (max principle) and the default mean lies between. Known pixels are never changed."""
    yy, xx = torch.meshgrid(torch.arange(40.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64),
                            indexing="ij")
    hole = torch.zeros(1, 1, 40, 48, dtype=torch.float64)
    hole[:, :, 6:30, 9:25] = 1
    hole[:, :, 33:36, 4:44] = 1                                                       # two parts, one a thin band
    inside = hole[0, 0] > 0
    ramp = torch.stack([0.03 * xx - 0.5, -0.02 * yy + 0.1, 0.01 * (xx + yy) - 0.4])[None]
    for w in (0.0, 0.5, 1.0):
        out = smooth_fill(ramp * (1 - hole), hole, plate_weight=w)
        assert torch.allclose(out, ramp, atol=1e-9), w
    para = ((xx - 17) / 10).square()[None, None]
    plate = smooth_fill(para * (1 - hole), hole, plate_weight=1.0)
    membrane = smooth_fill(para * (1 - hole), hole, plate_weight=0.0)
    mean = smooth_fill(para * (1 - hole), hole)
    assert torch.allclose(plate, para, atol=1e-8)
    err = (membrane - para)[0, 0][inside]
    assert err.min() > -1e-9 and err.max() > 0.05                      # the membrane sits above the convex bowl
    assert torch.allclose(mean, (plate + membrane) / 2, atol=1e-9) and PLATE_WEIGHT == 0.5
    for out in (plate, membrane, mean):
        assert torch.equal(out[0, 0][~inside], para[0, 0][~inside])


def test_smooth_fill_is_affine_and_handles_empty_and_full_holes():
    """fill(a x + b) = a fill(x) + b (the ONNX graph's [0, 1] fill input maps to the net's [-1, 1] one); a mask
    without a hole returns the image; a hole over everything gives 0 (nothing to interpolate from); float32 in,
    float32 out, each image of a batch with its own mask."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 24, 32, generator=g)
    m = torch.zeros(3, 1, 24, 32)
    m[0, :, 4:12, 5:20] = 1
    m[1, :, 10:22, 2:9] = 1
    f = smooth_fill(x, m)
    assert f.dtype == torch.float32 and torch.allclose(smooth_fill(2 * x - 1, m), 2 * f - 1, atol=1e-5)
    assert torch.equal(f[2], x[2])                                                    # no hole in image 2
    assert not torch.allclose(f[0, :, 4:12, 5:20], x[0, :, 4:12, 5:20])
    full = smooth_fill(x[:1], torch.ones(1, 1, 24, 32))
    assert torch.equal(full, torch.zeros_like(full))


def test_smooth_deepfill_uses_the_given_fill_and_the_task_computes_it_once(monkeypatch):
    torch.manual_seed(0)
    g = DeepFillGenerator(width=4, dilations=[2], prefill="smooth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:24, 8:20] = 1
    fill = g.prefill_of(x, m)
    assert torch.equal(fill, smooth_fill(x * (1 - m), m))
    assert torch.equal(g(x, m), g(x, m, fill=fill))
    other = fill + m * 0.3                                                            # another start in the hole
    assert (g(x, m, fill=other) - g(x, m)).abs().max() > 0.1                          # is what the net corrects
    coarse, refined = g(x, m, return_coarse=True)
    for y in (coarse, refined):  # the corrections start small and stay in the hole
        assert (y - fill).abs().mean() < 0.05 and torch.equal(y[m.expand_as(y) == 0], x[m.expand_as(x) == 0])
    cfg = resolve_config("deepfill-64", {"model": {"width": 4, "dilations": [2], "prefill": "smooth"},
                                         "loss": {"d_width": 4}})
    task = InpaintTask(cfg.model, cfg.loss, cfg.optim, 3, 32, "box")
    assert task.gan  # a D phase and a G phase, both filling the batch
    batch = {"image": x, "mask": m}
    calls = []
    real = deepfill_module.smooth_fill
    monkeypatch.setattr(deepfill_module, "smooth_fill", lambda *a: calls.append(1) or real(*a))
    inp = StepInputs(batch=batch, gen=torch.Generator().manual_seed(0), step=0)
    for phase in task.phases():  # one loop step: D, then G
        phase.loss(inp)["loss"].backward()
    assert len(calls) == 1 and torch.equal(batch["prefill"], fill)                 # solved once, shared
    assert task.prefill(batch) is batch["prefill"] and len(calls) == 1


def test_pushpull_deepfill_starts_at_the_fill_and_learns_a_correction():
    torch.manual_seed(0)
    g = DeepFillGenerator(width=4, dilations=[2], prefill="pushpull")
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 32), torch.linspace(0, 6, 32), indexing="ij")
    x = torch.stack([xx.sin(), yy.cos(), (xx + yy).sin()])[None].repeat(2, 1, 1, 1) * 0.9   # smooth waves
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:24, 8:20] = 1
    coarse, refined = g(x, m, return_coarse=True)
    base = pushpull_fill(x * (1 - m), m)
    for y in (coarse, refined):  # both corrections start small, and touch only the hole
        assert (y - base).abs().mean() < 0.05 and torch.equal(y[m.expand_as(y) == 0], x[m.expand_as(x) == 0])
    opt = torch.optim.SGD(g.parameters(), lr=0.05)
    losses = []
    for step in range(5):
        opt.zero_grad()
        c, r = g(x, m, return_coarse=True)
        loss = (r - x).square().mean() + (c - x).square().mean()
        loss.backward()
        if step == 0:  # every layer learns from the first step (a zero last conv would block the ones below)
            # (the attention branch is idle here: at 32 px every key touches the hole)
            assert all(p.grad.abs().max() > 0 for p in [*g.coarse.parameters(), *g.decoder.parameters()])
        opt.step()
        losses.append(loss.item())
    assert (g(x, m) - base).abs().max() > 1e-2 and losses == sorted(losses, reverse=True)
    assert DeepFillGenerator(width=4, dilations=[2]).config["prefill"] == "zeros"  # the paper's input by default


def test_deepfill_init_keeps_the_signal_through_the_gated_stack():
    # With PyTorch's default conv init each gated conv shrank its input ~3x (the sigmoid gate halves it as well), so
    # after the 12-layer coarse encoder the features no longer depended on the image and no correction could be
    # learned (measured: 1e-3 of the input's spatial variation, and 0 % hole-error change after 4.8 kimg).
    torch.manual_seed(0)
    g = DeepFillGenerator(width=16, prefill="pushpull")
    x, m = torch.rand(4, 3, 64, 64) * 2 - 1, torch.zeros(4, 1, 64, 64)
    m[:, :, 16:40, 20:44] = 1
    seen = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, o.std((2, 3)).mean().item()))
             for k, mod in (("coarse", g.coarse.encoder), ("merge", g.merge))]
    with torch.no_grad():
        g(x, m)
    for h in hooks:
        h.remove()
    assert 0.1 < seen["coarse"] < 5 and 0.1 < seen["merge"] < 5, seen  # spatial std of the deepest features
    conv = g.coarse.encoder[1].conv
    feat, gate = conv.weight.chunk(2, 0)
    fan_in = conv.in_channels * 9
    assert abs(feat.std().item() / (2 / fan_in) ** 0.5 - FEATURE_GAIN) < 0.2 and conv.bias.abs().max() == 0
    assert abs(gate.std().item() * fan_in ** 0.5 - 1) < 0.1


def test_ssim_loss_scores_the_hole_like_the_benchmark_and_trains():
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    m = torch.zeros(2, 1, 48, 48)
    m[:, :, 10:30, 12:34] = 1
    assert hole_ssim(x, x, m).item() == pytest.approx(1.0) and hole_ssim(x, x, torch.zeros_like(m)).item() == 1.0
    blur = composite(torch.zeros_like(x), x, m)
    # The same number as the metric's SSIM map (uint8-free path: [0, 1] data range) over hole-centred windows.
    ref = ssim_maps((blur + 1) / 2, (x + 1) / 2, data_range=1.0)[0].mean(1)[m[:, 0, 5:-5, 5:-5] > 0]
    assert hole_ssim(blur, x, m).item() == pytest.approx(ref.mean().item(), rel=1e-5)
    task = InpaintTask(DeepFillModel(width=4, dilations=[2], prefill="pushpull"),
                       InpaintLoss(adversarial_weight=0.0, ssim_weight=1.0), OptimConfig(), channels=3,
                       resolution=48, masks="free-form")
    out = task.g_main(StepInputs(batch={"image": x, "mask": m}, gen=torch.Generator(), step=0))
    assert {"rec", "ssim", "rec_coarse", "ssim_coarse", "l1_vs_fill"} <= set(out) and 0 < out["ssim"].item() < 1
    assert out["l1_vs_fill"].item() == pytest.approx(1.0, abs=0.2)  # the net starts near the interpolation
    full = (out["rec"] + 1 - out["ssim"] + out["rec_coarse"] + 1 - out["ssim_coarse"]).item()
    assert out["loss"].item() == pytest.approx(full, rel=1e-5)
    out["loss"].backward()
    assert task.G.decoder.net[-1].conv.weight.grad.abs().max() > 0


def test_deepfill_default_width_matches_the_paper_size():
    n = sum(p.numel() for p in build_net("deepfill").parameters())
    assert 3.5e6 < n < 4.5e6  # DeepFill v2: 4.1 M generator parameters


def test_resolution_must_fit_the_stride():
    with pytest.raises(ConfigError, match="multiple of 8"):
        resolve_config("deepfill-64", {"data": {"resolution": 28}})
    with pytest.raises(ConfigError, match="multiple of 16"):
        resolve_config("context-encoder-64", {"data": {"resolution": 24}})


# ---- Training ---------------------------------------------------------------------------------------------------


def _photos(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :56]
    for i in range(4):
        img = np.stack([(xx * (3 + i)) % 256, (yy * 5) % 256, rng.integers(0, 256, (48, 56))], -1).astype(np.uint8)
        Image.fromarray(img).save(root / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("inpaint") / "photos")


def _cfg(preset: str, source: Path, out: Path, kimg: float):
    model = {"width": 4, "dilations": [2]} if preset.startswith("deepfill") else {"width": 4, "levels": 3,
                                                                                   "bottleneck": 8}
    return resolve_config(preset, {
        "data": {"source": str(source), "resolution": 32},
        "model": model, "loss": {"d_width": 4, "d_layers": 3}, "optim": {"batch": 4},
        "run": {"kimg": kimg, "out": str(out), "tick_kimg": 0.004, "sample_every_kimg": 0.016,
                "snapshot_every_kimg": 0.016, "checkpoint_every_kimg": 0.012, "grid_samples": 4}})


@pytest.fixture(scope="module")
def deepfill_run(photos, tmp_path_factory) -> Path:
    return ganforge.train(_cfg("deepfill-64", photos, tmp_path_factory.mktemp("runs"), 0.016), progress=False)


def test_deepfill_run_folder_and_snapshot(deepfill_run):
    stats = read_jsonl(deepfill_run / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3, 4]
    assert all({"loss/rec", "loss/rec_coarse", "loss/adv", "loss/D_adv"} <= set(r) for r in stats)
    meta = json.loads((deepfill_run / "snapshots" / "latest.json").read_text())
    assert (meta["task"], meta["pipeline"], meta["arch"]) == ("inpaint", "inpaint", "deepfill")
    assert set(meta["modules"]) == {"G"} and meta["modules"]["G"]["net"] == "deepfill"
    assert (meta["resolution"], meta["stride"], meta["masks"]) == (32, 8, "free-form+box")
    state = ckpt.load_latest_checkpoint(deepfill_run / "checkpoints")[1]
    assert set(state["modules"]) == {"G", "D"} and set(state["optimizers"]) == {"G", "D"}
    grid = np.asarray(Image.open(deepfill_run / "samples" / "fakes000000004.png"))
    assert grid.shape[1] == 3 * 32 + 2 * 2  # masked input | output | real
    assert "note: masks free-form+box at 32 px, mask coverage: mean" in (deepfill_run / "log.txt").read_text()
    assert isinstance(ganforge.load(str(deepfill_run)), InpaintPipeline)


@pytest.mark.parametrize("preset", ["deepfill-64", "context-encoder-64"])
def test_resume_is_exact(preset, photos, tmp_path):
    full = ganforge.train(_cfg(preset, photos, tmp_path / "a", 0.024), progress=False)
    part = ganforge.train(_cfg(preset, photos, tmp_path / "b", 0.012), progress=False)
    resumed = ganforge.train(_cfg(preset, photos, tmp_path / "b", 0.024), resume=part, progress=False)
    keys = ["step", "loss/rec", "loss/adv", "loss/D_adv"]
    assert [[r[k] for k in keys] for r in read_jsonl(resumed / "stats.jsonl")] == \
        [[r[k] for k in keys] for r in read_jsonl(full / "stats.jsonl")]
    a = ckpt.load_latest_checkpoint(full / "checkpoints")[1]["modules"]
    b = ckpt.load_latest_checkpoint(resumed / "checkpoints")[1]["modules"]
    assert all(torch.equal(v, b[m][k]) for m in a for k, v in a[m].items())


def test_train_cli_masks_flag_and_mask_folder_errors(photos, tmp_path):
    res = CliRunner().invoke(app, ["train", "--data", str(photos), "--preset", "deepfill-64", "--masks", "box",
                                   "--dry-run"])
    assert res.exit_code == 0 and json.loads(res.output)["data"]["masks"] == "box"
    res = CliRunner().invoke(app, ["train", "--data", str(photos), "--preset", "deepfill-64", "--resolution", "32",
                                   "--masks", str(tmp_path / "nope"), "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 1 and "no such folder of mask images" in res.output


# ---- Pipeline ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe(deepfill_run) -> InpaintPipeline:
    return ganforge.load(str(deepfill_run))


def test_pipeline_changes_only_the_hole_small_and_large(pipe):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    hole = np.zeros((30, 40), bool)
    hole[8:14, 10:20] = True
    out = pipe(small, hole)
    assert out.dtype == np.uint8 and out.shape == small.shape
    assert np.array_equal(out[~hole], small[~hole]) and (out[hole] != small[hole]).any()
    # A large image: the crop around the hole (twice the hole, at least max_side = 64 px), never the whole image.
    big = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    hole = np.zeros((300, 500), bool)
    hole[100:110, 200:250] = True
    assert pipe.crop_box(hole) == (55, 175, 100, 100)
    out = pipe(big, hole)
    assert np.array_equal(out[~hole], big[~hole]) and (out[hole] != big[hole]).mean() > 0.9
    # A hole at the image edge: the crop moves inside the image.
    edge = np.zeros((300, 500), bool)
    edge[290:, 480:] = True
    assert pipe.crop_box(edge) == (236, 436, 64, 64)
    out = pipe(big, edge, feather=3)
    assert np.array_equal(out[~edge], big[~edge])
    assert np.array_equal(pipe(big, np.zeros((300, 500), bool)), big)  # no hole: unchanged


def test_pipeline_runs_crops_up_to_max_side_natively(pipe):
    seen = []
    hook = pipe.net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        big = np.random.default_rng(3).integers(0, 256, (300, 500, 3), dtype=np.uint8)
        hole = np.zeros((300, 500), bool)
        hole[100:124, 200:224] = True                      # a 24 px hole: a crop of max_side 2 x 32 px
        assert pipe.max_side == 64 and pipe.crop_box(hole)[2:] == (64, 64)
        pipe(big, hole)
        hole[100:140, 200:240] = True                      # 40 px: an 80 px crop, shrunk to max_side 64
        pipe(big, hole)
        pipe.max_side = pipe.check_max_side(32)            # the model's resolution: every crop shrunk to 32
        pipe(big, hole)
        assert seen == [(64, 64), (64, 64), (32, 32)]
    finally:
        hook.remove()
        pipe.max_side = pipe.check_max_side(None)
    with pytest.raises(ValueError, match="max_side=16 is below the model's training resolution 32"):
        pipe.check_max_side(16)


def test_pipeline_masks_depths_gray_and_errors(pipe, tmp_path):
    soft = np.zeros((16, 16), np.uint8)
    soft[4:8, 4:8], soft[4:8, 8:10] = 255, 100               # canvas anti-aliasing below half: not a hole
    assert binarize_mask(soft).sum() == 16 and binarize_mask(soft.astype(np.uint16) * 257).sum() == 16
    img16 = (np.random.default_rng(1).integers(0, 65536, (40, 48, 3))).astype(np.uint16)
    hole = np.zeros((40, 48), bool)
    hole[10:20, 10:30] = True
    out = pipe(img16, hole)
    assert out.dtype == np.uint16 and np.array_equal(out[~hole], img16[~hole])
    gray = pipe(img16[:, :, 0], hole)
    assert gray.shape == (40, 48) and np.array_equal(gray[~hole], img16[:, :, 0][~hole])
    with pytest.raises(ValueError, match="the mask is 10x10 but the image is 48x40"):
        pipe(img16, np.zeros((10, 10), bool))
    # Files: 16-bit RGBA in, alpha untouched; a transparent canvas mask (painted = hole).
    alpha = np.full((40, 48), 40000, np.uint16)
    write_image(tmp_path / "in.png", img16, alpha=alpha)
    canvas = np.zeros((40, 48, 4), np.uint8)
    canvas[10:20, 10:30] = (255, 0, 0, 255)                  # red strokes on transparent
    Image.fromarray(canvas, "RGBA").save(tmp_path / "canvas.png")
    pipe.process_file(tmp_path / "in.png", tmp_path / "canvas.png", tmp_path / "out.png")
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16 and np.array_equal(back.alpha, alpha)
    assert np.array_equal(back.pixels[~hole], img16[~hole]) and not np.array_equal(back.pixels[hole], img16[hole])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small_mask.png")
    with pytest.raises(ValueError, match=r"small_mask\.png is 8x8 but .*in\.png is 48x40"):
        pipe.process_file(tmp_path / "in.png", tmp_path / "small_mask.png", tmp_path / "x.png")


# ---- CLI --------------------------------------------------------------------------------------------------------


def test_inpaint_cli_file_folder_and_errors(deepfill_run, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    m = np.zeros((36, 44), np.uint8)
    m[5:15, 5:20] = 255
    for name in ("a", "sub/b", "c", "d"):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{name}.png")
    for name in ("a", "sub/b"):
        Image.fromarray(m).save(tmp_path / "masks" / f"{name}.jpg")
    Image.fromarray(m[:20]).save(tmp_path / "masks" / "c.png")            # wrong size; d has no mask
    run = CliRunner().invoke
    res = run(app, ["inpaint", "--image", str(tmp_path / "imgs" / "a.png"), "--mask",
                    str(tmp_path / "masks" / "a.jpg"), "-o", str(tmp_path / "a_out.png"), "--model", str(deepfill_run)])
    assert res.exit_code == 0, res.output
    a_in, a_out = np.asarray(Image.open(tmp_path / "imgs" / "a.png")), np.asarray(Image.open(tmp_path / "a_out.png"))
    assert np.array_equal(a_in[m <= 127], a_out[m <= 127])
    res = run(app, ["inpaint", "--image", str(tmp_path / "imgs"), "--mask", str(tmp_path / "masks"), "-o",
                    str(tmp_path / "out"), "--model", str(deepfill_run)])
    assert res.exit_code == 1 and "2 of 4 images were not filled" in res.output
    assert "c.png is 44x20" in res.output and "no mask d.*" in res.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == \
        ["a.png", "sub/b.png"]
    res = run(app, ["inpaint", "--image", str(tmp_path / "imgs" / "a.png"), "--mask", str(tmp_path / "masks" / "a.jpg"),
                    "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 0, res.output                       # the shipped model (src/ganforge/pretrained/inpaint)
    x_out = np.asarray(Image.open(tmp_path / "x.png"))
    assert np.array_equal(a_in[m <= 127], x_out[m <= 127]) and not np.array_equal(a_in[m > 127], x_out[m > 127])
    res = run(app, ["inpaint", "--image", str(tmp_path / "imgs" / "a.png"), "--mask", str(tmp_path / "masks" / "a.jpg"),
                    "-o", str(tmp_path / "x.png"), "--max-side", "64"])
    assert res.exit_code == 1 and "max_side=64 is below the model's training resolution 128" in res.output
    res = run(app, ["inpaint", "--image", str(tmp_path / "nope.png"), "--mask", str(tmp_path / "masks" / "a.jpg"),
                    "-o", str(tmp_path / "x.png"), "--model", str(deepfill_run)])
    assert res.exit_code == 1 and "no such file or folder" in res.output
