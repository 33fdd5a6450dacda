"""The restoration commands as users call them: `ganforge upscale|denoise|derain` with the shipped models (a
registry folder of tiny snapshots written here, never the real weights), --model, --scale, --outscale, --sigma,
folders with progress and a skip report, the old `upscale SNAPSHOT SRC` form; and the non-blind denoiser from
preset to pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganforge.pretrained as pretrained
from ganforge.cli import app
from ganforge.config import ConfigError, resolve_config
from ganforge.core.imageio import read_image, write_image
from ganforge.core.snapshot import load_snapshot, save_snapshot
from ganforge.infer.pipelines import load_pipeline
from ganforge.infer.restore import RestorePipeline, resize_pixels
from ganforge.nets import build_net
from tests.conftest import make_class_folder

NAMES = {"sr-x4-psnr", "sr-x4-gan", "denoise-blind", "denoise-nonblind", "derain", "inpaint", "inpaint-deepfill",
         "colorize", "edges2photo"}


def tiny_snapshot(folder: Path, name: str, arch: str, half: bool = False, seed: int = 0, **config) -> Path:
    """A randomly initialised restoration snapshot, written as training writes one (float16 tensors if `half`,
    as the shipped files may be)."""
    torch.manual_seed(seed)
    net = build_net(arch, channels=3, **config)
    with torch.no_grad():  # random BN statistics, so that eval-mode BN is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in net.state_dict().items()}
    meta = {"task": "restore", "pipeline": "restore", "arch": arch, "scale": config.get("scale", 1),
            "receptive_field": net.receptive_field,
            "modules": {"net": {"net": arch, "config": net.config}}, "dataset": {"name": "test"}}
    folder.mkdir(parents=True, exist_ok=True)
    return save_snapshot(folder, name, {"net": state}, meta).with_suffix("")


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """An empty registry folder standing in for src/ganforge/pretrained/."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", folder)
    return folder


def install(folder: Path, *names: str) -> None:
    """Tiny stand-ins for shipped models, float16 like the real files may be."""
    specs = {"sr-x4-psnr": ("srresnet", dict(width=8, blocks=1, scale=4)),
             "sr-x4-gan": ("srresnet", dict(width=8, blocks=1, scale=4)),
             "denoise-blind": ("rescnn", dict(width=8, depth=3, batch_norm=True)),
             "denoise-nonblind": ("rescnn", dict(width=8, depth=3, batch_norm=True, noise_map=True)),
             "derain": ("unet", dict(width=4, levels=1))}
    for i, name in enumerate(names):
        arch, config = specs[name]
        tiny_snapshot(folder, name, arch, half=True, seed=i, **config)


def photo(path: Path, h: int = 21, w: int = 30, alpha: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    write_image(path, pixels, alpha=rng.integers(0, 256, (h, w), dtype=np.uint8) if alpha else None)
    return path


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------------------
# The registry


def test_registry_has_the_shipped_names_and_one_default_per_command():
    assert set(pretrained.PRETRAINED) == NAMES
    for name, p in pretrained.PRETRAINED.items():
        assert p.name == name and p.stem == name and p.command in pretrained.COMMANDS
        assert name in p.reproduce and p.description and "docs/pretrained.md" in p.data
        assert p.scale == (4 if name.startswith("sr-") else 1)
        assert (p.command in pretrained.RESTORE_COMMANDS) == (p.preset not in (
            "context-encoder-64", "deepfill-128", "colorize-64", "pix2pix-64"))
        assert resolve_config(p.preset)  # the preset it names exists
    assert pretrained.default_model("upscale").name == "sr-x4-psnr"
    assert pretrained.default_model("denoise").name == "denoise-blind"
    assert pretrained.default_model("denoise", sigma=True).name == "denoise-nonblind"
    assert pretrained.default_model("derain").name == "derain"
    assert pretrained.default_model("upscale", sigma=True).name == "sr-x4-psnr"  # no non-blind upscaler
    assert pretrained.PRETRAINED["sr-x4-gan"].default_for == ""
    assert pretrained.PRETRAINED["denoise-nonblind"].default_for == "ganforge denoise --sigma S"
    assert pretrained.default_model("inpaint").name == "inpaint-deepfill"
    assert pretrained.default_model("colorize").name == "colorize"
    assert pretrained.PRETRAINED["edges2photo"].default_for == ""  # `ganforge translate edges2photo ...`
    with pytest.raises(ValueError, match="no shipped model for 'generate'"):
        pretrained.default_model("generate")


def test_resolve_model_names_paths_and_mistakes(shipped, tmp_path):
    install(shipped, "derain")
    assert pretrained.resolve_model(None, "derain") == shipped / "derain"
    assert pretrained.resolve_model("derain", "upscale") == shipped / "derain"  # a name is a name
    own = tiny_snapshot(tmp_path / "mine", "latest", "rescnn", width=4, depth=2)
    assert pretrained.resolve_model(str(own), "denoise") == own
    assert pretrained.resolve_model(tmp_path / "mine" / "latest.safetensors", "denoise").name == "latest.safetensors"
    with pytest.raises(ValueError, match="not a shipped model .*sr-x4-psnr.*no such snapshot"):
        pretrained.resolve_model("sr-x4-psrn", "upscale")  # a typo of a name
    with pytest.raises(pretrained.PretrainedMissing, match="the shipped model denoise-blind is not installed"):
        pretrained.resolve_model(None, "denoise")
    assert [p.name for p in pretrained.installed()] == ["derain"]
    assert pretrained.PRETRAINED["derain"].snapshot_meta()["arch"] == "unet"


def test_restore_commands_refuse_other_shipped_models(shipped, tmp_path):
    res = run("upscale", photo(tmp_path / "a.png"), "-o", tmp_path / "b.png", "--model", "inpaint")
    assert res.exit_code == 1 and "the shipped inpaint model, not a restoration one" in " ".join(res.output.split())


def test_missing_shipped_model_says_how_to_make_one(shipped, tmp_path):
    res = run("upscale", photo(tmp_path / "a.png"), "--scale", "4", "-o", tmp_path / "big.png")
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "the shipped model sr-x4-psnr is not installed in this copy" in out
    assert "python bench/pretrained.py train sr-x4-psnr" in out and "--model" in out
    assert "Traceback" not in res.output and not (tmp_path / "big.png").exists()
    res = run("denoise", tmp_path / "a.png", "-o", tmp_path / "c.png", "--sigma", "25")
    assert res.exit_code == 1 and "denoise-nonblind is not installed" in " ".join(res.output.split())


def test_float16_weights_load_into_a_float32_net(shipped, tmp_path):
    install(shipped, "denoise-blind")
    pipe = pretrained.load_restorer(None, "denoise")
    assert isinstance(pipe, RestorePipeline)
    assert all(p.dtype == torch.float32 for p in pipe.net.parameters())
    stored, _ = load_snapshot(shipped / "denoise-blind")
    assert stored["net"]["body.0.weight"].dtype == torch.float16
    assert torch.equal(pipe.net.state_dict()["body.0.weight"], stored["net"]["body.0.weight"].float())
    x = torch.rand(1, 3, 12, 12)
    assert pipe._model(x).dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------
# upscale


def test_upscale_with_the_shipped_model_by_name_and_by_default(shipped, tmp_path):
    install(shipped, "sr-x4-psnr", "sr-x4-gan")
    src = photo(tmp_path / "a.png", 21, 30)
    res = run("upscale", src, "--scale", "4", "-o", tmp_path / "big.png")
    assert res.exit_code == 0, res.output
    big = read_image(tmp_path / "big.png").pixels
    assert big.shape == (84, 120, 3) and big.dtype == np.uint8
    res = run("upscale", src, "-o", tmp_path / "gan.png", "--model", "sr-x4-gan")
    assert res.exit_code == 0, res.output
    gan = read_image(tmp_path / "gan.png").pixels
    assert gan.shape == big.shape and not np.array_equal(gan, big)  # another model, another result
    # The same as the library on the same file.
    want = load_pipeline(shipped / "sr-x4-psnr")(read_image(src).pixels)
    assert np.array_equal(big, want)


def test_upscale_outscale_gives_the_requested_size_from_the_models_output(shipped, tmp_path):
    install(shipped, "sr-x4-psnr")
    src = photo(tmp_path / "a.png", 21, 30, alpha=True)
    res = run("upscale", src, "-o", tmp_path / "o.png", "--outscale", "3.5")
    assert res.exit_code == 0, res.output
    img = read_image(tmp_path / "o.png")
    assert img.pixels.shape == (int(21 * 3.5), int(30 * 3.5), 3) == (73, 105, 3)
    assert img.alpha is not None and img.alpha.shape == (73, 105)
    # Resampled from the x4 output with Lanczos (not a different path through the model).
    pipe = load_pipeline(shipped / "sr-x4-psnr")
    x4 = pipe(read_image(src).pixels)
    assert np.array_equal(img.pixels, resize_pixels(x4, (73, 105)))
    # 16-bit keeps its depth; outscale 4 (the model's own) is the model's output exactly.
    deep = (np.random.default_rng(1).integers(0, 65536, (10, 12, 3))).astype(np.uint16)
    out = pipe(deep, outscale=2.0)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint16 and out.max() > 255
    assert np.array_equal(pipe(deep, outscale=4.0), pipe(deep))
    with pytest.raises(ValueError, match="outscale must be in"):
        pipe(deep, outscale=0.0)


def test_upscale_scale_mismatch_and_wrong_model_kind(shipped, tmp_path):
    install(shipped, "sr-x4-psnr", "denoise-blind")
    src = photo(tmp_path / "a.png")
    res = run("upscale", src, "--scale", "2", "-o", tmp_path / "x.png")
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "--scale 2, but the shipped model upscales x4" in out and "--outscale 2" in out
    assert not (tmp_path / "x.png").exists()
    res = run("upscale", src, "-o", tmp_path / "x.png", "--model", "denoise-blind")
    assert res.exit_code == 1 and "not an upscaler" in res.output
    res = run("denoise", src, "-o", tmp_path / "x.png", "--model", "sr-x4-psnr")
    assert res.exit_code == 1 and "is an upscaler (x4): use ganforge upscale" in " ".join(res.output.split())


def test_upscale_old_form_snapshot_then_source_still_works(tmp_path):
    snap = tiny_snapshot(tmp_path / "run" / "snapshots", "latest", "srresnet", width=8, blocks=1, scale=2)
    src = photo(tmp_path / "a.png", 10, 14)
    res = run("upscale", tmp_path / "run", src, "-o", tmp_path / "b.png")
    assert res.exit_code == 0, res.output
    assert read_image(tmp_path / "b.png").pixels.shape == (20, 28, 3)
    res = run("upscale", snap, src, "-o", tmp_path / "b.png", "--model", "sr-x4-psnr")
    assert res.exit_code == 1 and "give the model once" in res.output
    res = run("upscale", snap, src, src, "-o", tmp_path / "b.png")
    assert res.exit_code == 1 and "expected one source" in res.output


# ---------------------------------------------------------------------------------------------------------
# denoise, sigma


def test_sigma_reaches_the_non_blind_net(shipped, tmp_path):
    install(shipped, "denoise-nonblind")
    pipe = pretrained.load_restorer("denoise-nonblind", "denoise")
    assert pipe.noise_map
    pixels = np.random.default_rng(2).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    for sigma in (5.0, 50.0):
        # What the net computes with that noise map, by hand: [-1, 1] in, sigma / 255 as the extra channel.
        m = torch.full((1, 1, 16, 20), sigma / 255)
        want = x - pipe.net.body(torch.cat([x, m], 1))
        want = ((want + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
        got = pipe(pixels, sigma=sigma).astype(np.float64)
        assert np.abs(got - want).max() <= 0.5 + 1e-3, sigma  # rounding to 8 bits only
    low, high = pipe(pixels, sigma=5), pipe(pixels, sigma=50)
    assert np.abs(low.astype(int) - high).mean() > 1  # the level changes the result


def test_denoise_cli_sigma_picks_the_non_blind_model_and_mismatches_are_errors(shipped, tmp_path):
    install(shipped, "denoise-blind", "denoise-nonblind")
    src = photo(tmp_path / "n.png", 18, 22)
    outs = {}
    for name, extra in {"blind": [], "s5": ["--sigma", "5"], "s50": ["--sigma", "50"]}.items():
        res = run("denoise", src, "-o", tmp_path / f"{name}.png", *extra)
        assert res.exit_code == 0, res.output
        outs[name] = read_image(tmp_path / f"{name}.png").pixels
    assert not np.array_equal(outs["s5"], outs["s50"])
    pixels = read_image(src).pixels
    assert np.array_equal(outs["blind"], load_pipeline(shipped / "denoise-blind")(pixels))
    assert np.array_equal(outs["s50"], load_pipeline(shipped / "denoise-nonblind")(pixels, sigma=50))
    # --sigma to a blind model, and a non-blind model without one: errors before any file is written.
    res = run("denoise", src, "-o", tmp_path / "x.png", "--model", "denoise-blind", "--sigma", "25")
    assert res.exit_code == 1 and "is blind" in res.output and not (tmp_path / "x.png").exists()
    folder = tmp_path / "folder"
    photo(folder / "a.png")
    res = run("denoise", folder, "-o", tmp_path / "xs", "--model", "denoise-nonblind")
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "non-blind denoiser: pass the noise level sigma" in out
    assert not (tmp_path / "xs").exists()
    res = run("apply", shipped / "denoise-nonblind", src, "-o", tmp_path / "ap.png", "--sigma", "50")
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_image(tmp_path / "ap.png").pixels, outs["s50"])


def test_folder_progress_and_skip_report(shipped, tmp_path, monkeypatch):
    install(shipped, "derain")
    src = tmp_path / "rainy"
    photo(src / "a.png", seed=1)
    photo(src / "sub" / "b.jpg", seed=2)
    (src / "broken.png").write_bytes(b"not a png")
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws its bar only on a terminal
    res = run("derain", src, "-o", tmp_path / "clear", "--ext", "png")
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    assert "de-raining" in out and "3/3" in out  # the progress bar reached the end
    assert "wrote 2 images to" in out and "1 of 3 files were not processed" in out and "broken.png" in out
    assert (tmp_path / "clear" / "a.png").is_file() and (tmp_path / "clear" / "sub" / "b.png").is_file()
    monkeypatch.delenv("FORCE_COLOR")
    res = run("derain", src / "a.png", "-o", tmp_path / "one.png")
    assert res.exit_code == 0 and "de-raining" not in res.output  # a file, no bar
    res = run("derain", src, "-o", tmp_path / "clear2")
    assert "de-raining" not in res.output and "wrote 2 images" in res.output  # not a terminal: no bar


def test_help_texts_show_examples():
    for command, example in [("upscale", "ganforge upscale photo.jpg --scale 4 -o big.png"),
                             ("denoise", "--sigma 25"), ("derain", "ganforge derain rainy.jpg -o clear.png")]:
        res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and example in res.output, command
    res = run("models")
    assert res.exit_code == 0 and all(n in res.output for n in NAMES)


# ---------------------------------------------------------------------------------------------------------
# The presets and the non-blind denoiser end to end


def test_new_presets_validate():
    blind, nonblind, rain = (resolve_config(n) for n in ("denoise-blind", "denoise-nonblind", "derain"))
    assert (blind.model.arch, blind.model.noise_map, blind.data.derive) == ("rescnn", False, "noise:gaussian:0-55")
    assert (nonblind.model.noise_map, nonblind.data.derive) == (True, "noise:gaussian:0-75")
    assert (rain.model.arch, rain.data.derive) == ("unet", "rain:0.01-0.06")
    for cfg in (blind, nonblind):
        assert 32 <= cfg.model.width <= 48 and 10 <= cfg.model.depth <= 17
    # The command line: the preset with the user's own chain.
    cfg = resolve_config("denoise-blind", {"data": {"source": "~/scans",
                                                    "derive": "noise:gaussian:5-50,jpeg:30-95"}})
    assert cfg.data.derive == "noise:gaussian:5-50,jpeg:30-95"
    with pytest.raises(ConfigError, match="noise_map=true .* must add Gaussian noise"):
        resolve_config("denoise-nonblind", {"data": {"derive": "rain:0.05"}})
    with pytest.raises(ConfigError, match="paired lq/gt data carries no noise level"):
        resolve_config("denoise-nonblind", {"data": {"derive": ""}})
    assert resolve_config("denoise-nonblind", {"data": {"derive": "blur:1,noise:gaussian:10-30"}})


def test_non_blind_denoiser_trains_and_needs_sigma(tmp_path):
    from ganforge.tasks.restore import NoiseLevelPairs, RestoreTask
    from ganforge.training.loop import train

    data = make_class_folder(tmp_path / "data", n_per_class=3, size=20)
    cfg = resolve_config("denoise-nonblind", {
        "data": {"source": str(data), "resolution": 16}, "model": {"width": 8, "depth": 3}, "optim": {"batch": 4},
        "run": {"kimg": 0.016, "out": str(tmp_path / "runs"), "tick_kimg": 0.004, "sample_every_kimg": 0.016,
                "snapshot_every_kimg": 0.016, "checkpoint_every_kimg": 0.016, "grid_samples": 4,
                "device": "cpu"}})
    pairs = RestoreTask.load_data(cfg.data, torch.device("cpu"))
    assert isinstance(pairs, NoiseLevelPairs)
    batch = pairs.fetch(np.arange(4), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch["sigma"].shape == (4,) and ((batch["sigma"] >= 0) & (batch["sigma"] <= 75)).all()
    assert len({round(float(s), 3) for s in batch["sigma"]}) == 4  # drawn per image

    run_dir = train(cfg, progress=False)
    meta = json.loads((run_dir / "snapshots" / "latest.json").read_text())
    assert meta["noise_map"] is True and meta["modules"]["net"]["config"]["noise_map"] is True
    pipe = load_pipeline(run_dir)
    pixels = np.asarray(Image.open(next(data.rglob("*.png"))).convert("RGB"))
    with pytest.raises(ValueError, match="non-blind denoiser: pass the noise level sigma"):
        pipe(pixels)
    a, b = pipe(pixels, sigma=0), pipe(pixels, sigma=75)
    assert a.shape == pixels.shape and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="sigma must be a noise level in 0..255"):
        pipe(pixels, sigma=300)
