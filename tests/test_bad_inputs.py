"""Hardening, item by item: one device check for every command, file names that are not UTF-8, damaged run files
that name themselves, and the silent surprises (GIF data in a .mp4, unlimited projection targets, symlinks,
tiny or extreme images, very small datasets). tests/test_faults.py drives the same through the commands."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.core.files import CheckpointError
from ganforge.core.grid import save_gif
from ganforge.core.imageio import ImageIOError, read_image
from ganforge.core.snapshot import load_snapshot, save_snapshot
from ganforge.data import SkippedFile, inspect_source, load_dataset, load_patches
from ganforge.data.cache import decode_to_memmap
from ganforge.infer.pipelines import load_pipeline
from ganforge.infer.project import load_projection, load_target
from ganforge.infer.snapshot import load_generator
from ganforge.nets import build_net
from tests.test_faults import frames, non_utf8_names_work, rgb, write

runner = CliRunner()


def cli(*args) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def folder_of(root: Path, n: int = 6, size=(16, 16)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rgb(size, seed=k).save(root / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def gan_snapshot(tmp_path_factory) -> Path:
    net = build_net("dcgan.G", z_dim=8, resolution=8, channels=3, width=4, max_width=8)
    folder = tmp_path_factory.mktemp("snap")
    save_snapshot(folder, "latest", {"G": net.state_dict()},
                  {"task": "gan", "pipeline": "generate", "arch": "dcgan",
                   "modules": {"G": {"net": "dcgan.G", "config": net.config}}})
    return folder / "latest"


# ---------------------------------------------------------------------------------------------------------
# 8. Devices: one check (core.device.resolve_device) before anything is read


def test_device_is_checked_before_the_snapshot(tmp_path):
    for load in (load_generator, load_pipeline):
        with pytest.raises(ValueError, match="--device 'foo' is not a device; use auto | cpu | cuda"):
            load(tmp_path / "missing", device="foo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["generate", "apply", "project"])
@pytest.mark.parametrize("device", ["cuda", "foo"])
def test_device_errors_are_one_line(gan_snapshot, tmp_path, command, device):
    rgb().save(tmp_path / "x.png")
    args = {"generate": ["generate", gan_snapshot, "--grid", tmp_path / "g.png"],
            "apply": ["apply", gan_snapshot, tmp_path / "x.png", "-o", tmp_path / "y.png"],
            "project": ["project", gan_snapshot, tmp_path / "x.png", "-o", tmp_path / "p"]}[command]
    code, out = cli(*args, "--device", device)
    assert code == 1 and out.count("\n") == 1 and out.startswith("error: --device"), out
    assert ("CPU-only" if device == "cuda" else "is not a device") in out


# ---------------------------------------------------------------------------------------------------------
# 9. File names that are not UTF-8


@pytest.fixture
def latin1_folder(tmp_path) -> Path:
    folder = folder_of(tmp_path / "data")
    if not non_utf8_names_work(folder):
        pytest.skip("this file system refuses file names that are not UTF-8")
    write(folder, b"caf\xe9.png", _png(rgb(seed=9)))
    write(folder, b"d\xe9j\xe0.png", b"not an image")
    return folder


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_non_utf8_names_load_and_are_reported_printably(latin1_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANFORGE_MAX_MEMORY_MB", "0.001")  # the memmap cache: its key hashes every file name
    data = load_dataset(latin1_folder, 8)
    assert len(data) == 7
    assert [(s.path, s.reason) for s in data.report.skipped] == [
        ("d\\xe9j\\xe0.png", "not a readable image (unknown format or corrupt header)")]
    "\n".join(data.report.summary_lines()).encode("utf-8")  # a log or a terminal can take every line
    json.dumps(data.report.to_dict()).encode("utf-8")
    patches = load_patches(latin1_folder, 8)  # the patch cache: its key and its index name every file
    assert len(patches) == 7 and patches.report.skipped[0].path == "d\\xe9j\\xe0.png"
    code, out = cli("dataset", "inspect", latin1_folder)
    assert code == 0 and "d\\xe9j\\xe0.png: not a readable image" in out, out


# ---------------------------------------------------------------------------------------------------------
# 10. Damaged run files name themselves


def _damage(snapshot: Path, tmp: Path, meta) -> Path:
    for suffix in (".json", ".safetensors"):
        (tmp / f"s{suffix}").write_bytes(snapshot.with_suffix(suffix).read_bytes())
    (tmp / "s.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return tmp / "s"


@pytest.mark.parametrize(("change", "says"), [
    (lambda m: [m], "holds a JSON list, expected an object"),
    (lambda m: {"format": m["format"]}, "'modules' is missing"),
    (lambda m: {**m, "modules": {"G": {"net": "dcgan.G"}}}, "module 'G' needs 'net'"),
    (lambda m: {**m, "modules": {"G": "dcgan.G"}}, "module 'G' needs 'net'"),
    (lambda m: {k: v for k, v in m.items() if k != "pipeline"}, "'pipeline' is missing"),
    (lambda m: {"format": "ganforge-snapshot/1", "arch": "dcgan"}, "needs 'arch'.*'net_config'"),
    (lambda m: '{"format": "ganforge-snapshot/2",\n', "is unreadable \\(Expecting"),
])
def test_damaged_snapshot_metadata_is_a_checkpoint_error_naming_the_json(gan_snapshot, tmp_path, change, says):
    meta = json.loads(gan_snapshot.with_suffix(".json").read_text())
    snap = _damage(gan_snapshot, tmp_path, change(meta))
    with pytest.raises(CheckpointError, match=f"{tmp_path / 's.json'}.*{says}"):
        load_snapshot(snap)
    code, out = cli("generate", snap, "--grid", tmp_path / "g.png")
    assert code == 1 and "s.json" in out and "Traceback" not in out, out


def _projection(folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({"ws": torch.zeros(1, 4, 8)}, str(folder / "latent.safetensors"))
    (folder / "latent.json").write_text(json.dumps({"space": "w"}))
    return folder


def test_damaged_projection_files_name_themselves(tmp_path):
    proj = _projection(tmp_path / "proj")
    ws, noise, meta = load_projection(proj)
    assert ws.shape == (1, 4, 8) and noise == {} and meta == {"space": "w"}
    (proj / "latent.json").write_text("{\n")
    with pytest.raises(ValueError, match=r"latent\.json: unreadable \(Expecting"):
        load_projection(proj)
    (proj / "latent.json").write_text("[]")
    with pytest.raises(ValueError, match=r"latent\.json: holds a JSON list"):
        load_projection(proj)
    (proj / "latent.safetensors").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ValueError, match=r"latent\.safetensors: not a readable safetensors file"):
        load_projection(proj)
    (proj / "latent.safetensors").unlink()
    with pytest.raises(ValueError, match=r"latent\.safetensors: missing"):
        load_projection(proj)


def test_damaged_memmap_cache_index_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))

    def fill(out: np.ndarray) -> list[str | None]:
        out[...] = 7
        return [None] * len(out)

    decode_to_memmap(fill, (2, 1, 4, 4), "x", "k")
    (tmp_path / "images" / "x-k.json").write_text("{\n")
    images, errors = decode_to_memmap(fill, (2, 1, 4, 4), "x", "k")
    assert errors == [None, None] and int(images.sum()) == 7 * 32


def test_empty_image_file_says_so(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageIOError, match="zero.png: empty file"):
        read_image(tmp_path / "zero.png")


# ---------------------------------------------------------------------------------------------------------
# 15. Silent surprises


def test_animations_are_gif_or_webp_only(gan_snapshot, tmp_path):
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"walk\.mp4: an animation is written as GIF or WebP"):
        save_gif([frame, frame], tmp_path / "walk.mp4")
    save_gif([frame, frame], tmp_path / "walk.webp")
    assert Image.open(tmp_path / "walk.webp").format == "WEBP"
    code, out = cli("generate", gan_snapshot, "--interpolate", "0,1", "-o", tmp_path / "walk.mp4")
    assert code == 1 and "walk.mp4" in out and not (tmp_path / "walk.mp4").exists(), out


def test_projection_target_has_the_training_pixel_limit(tmp_path, monkeypatch):
    rgb((40, 30)).save(tmp_path / "photo.png")
    assert load_target(tmp_path / "photo.png", 3, 8).shape == (3, 8, 8)
    monkeypatch.setattr("ganforge.data.decode.DEFAULT_MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"photo\.png: cannot use it as the target image: too large \(40x30"):
        load_target(tmp_path / "photo.png", 3, 8)


def test_symlinks_inside_are_followed_and_escapes_refused(tmp_path):
    data = tmp_path / "data"
    folder_of(data / "real" / "cats", 3)
    folder_of(data / "dogs", 3)
    folder_of(tmp_path / "elsewhere" / "birds", 2)
    os.symlink("real/cats", data / "cats")  # a class folder linked from inside the tree: followed
    os.symlink(tmp_path / "elsewhere" / "birds", data / "birds")  # outside: refused
    os.symlink(tmp_path / "elsewhere" / "birds" / "0.png", data / "dogs" / "escape.png")
    os.symlink("..", data / "dogs" / "up")  # a loop
    ds = load_dataset(data, 8, use_labels=False)
    assert len(ds) == 9  # cats via the link (3), real/cats (3), dogs (3)
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert set(reasons) == {"birds", "dogs/escape.png", "dogs/up"}
    assert "outside the data folder" in reasons["birds"] and "outside the data folder" in reasons["dogs/escape.png"]
    assert "loop" in reasons["dogs/up"]
    assert ds.report.files_found == len(ds) + len(ds.report.skipped)
    os.remove(data / "birds")
    os.remove(data / "dogs" / "up")
    labelled = load_dataset(data, 8)
    assert labelled.class_names == ["cats", "dogs", "real"] and labelled.report.skipped == [SkippedFile(
        "dogs/escape.png", reasons["dogs/escape.png"])]


def test_zip_members_that_escape_or_claim_too_much_are_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k in range(3):
            zf.writestr(f"{k}.png", _png(rgb(seed=k)))
        zf.writestr("../evil.png", _png(rgb()))
        zf.writestr("/abs.png", _png(rgb()))
        zf.writestr("huge.png", _png(rgb()))
    data = bytearray(archive.read_bytes())
    from tests.test_faults import _patch_sizes

    _patch_sizes(data, b"huge.png", 0xFFFFFF00)
    archive.write_bytes(bytes(data))
    ds = load_dataset(archive, 8)
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert len(ds) == 3 and set(reasons) == {"../evil.png", "/abs.png", "huge.png"}
    assert "zip-slip" in reasons["../evil.png"] and "absolute" in reasons["/abs.png"]
    assert "zip bomb" in reasons["huge.png"]


def test_tiny_extreme_and_small_datasets_get_notes_and_warnings(tmp_path, caplog):
    data = folder_of(tmp_path / "data", 4)
    rgb((1, 1)).save(data / "dot.png")
    rgb((4000, 20)).save(data / "strip.png")
    with caplog.at_level(logging.WARNING, logger="ganforge.data"):
        ds = load_dataset(data, 16)
    notes = "\n".join(ds.report.summary_lines())
    assert "much smaller than the 16-pixel training resolution (1): dot.png 1x1" in notes
    assert "aspect ratio over 4:1 (1): strip.png 4000x20" in notes
    assert "only 6 images" in notes and "--aug ada" in notes and "DiffAugment" in notes
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert "dot.png 1x1" in warned and "strip.png 4000x20" in warned and "only 6 images" in warned
    report = inspect_source(data)
    assert any("a side under 16 pixels (1): dot.png 1x1" in n for n in report.notes)
    assert any("only 6 images" in n for n in report.notes)
    big = load_dataset(folder_of(tmp_path / "big", 100, (8, 8)), 8)
    assert big.report.notes == []


def test_mislabelled_and_multi_frame_files_are_named(tmp_path):
    data = folder_of(tmp_path / "data", 2)
    import io

    buf = io.BytesIO()
    rgb().save(buf, "JPEG")
    write(data, "mis.png", buf.getvalue())
    write(data, "anim.webp", frames("WEBP"))
    report = inspect_source(data)
    assert report.files_loaded == 4
    notes = "\n".join(report.notes)
    assert "mis.png is JPEG" in notes and "anim.webp (3)" in notes
