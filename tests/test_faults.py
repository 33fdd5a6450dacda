"""Fault trial: a corpus of bad inputs, built here in tmp folders, through the public commands (`dataset inspect`,
`train`, `generate`, `apply`, `project`).

Every case must end cleanly: exit 0 when the bad file is skipped (or loaded) and reported by name, exit 1 with one
`error:` message naming the file for a refusal; never a traceback, and nothing written outside the tmp folders
(no zip-slip target, no file made by a malicious pickle, nothing in the working directory).

File cases put one bad file into a folder of good images: `dataset inspect` runs on each case's own folder, and one
`train` run (module fixture) on a folder holding every case at once, so that training sees them all. Zip cases
do the same with archives. Command cases feed damaged snapshots, checkpoints, projections, images and options.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.core.snapshot import save_snapshot
from ganforge.nets import build_net

runner = CliRunner()
GOOD = 8  # good images beside the bad file(s)
TINY = ["--resolution", "16", "--batch", "8", "--kimg", "0.016", "--set", "model.z_dim=16", "--set",
        "model.g_width=8", "--set", "model.d_width=8", "--set", "model.max_width=32", "--set", "run.tick_kimg=0.008",
        "--set", "run.grid_samples=4", "--no-progress"]


# ---------------------------------------------------------------------------------------------------------
# Bad files


def rgb(size=(16, 16), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit RGB and whose pixel data is one empty zlib stream: a
    decompression bomb as far as any header check can tell, a few dozen bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def frames(fmt: str) -> bytes:
    first, *rest = [rgb(seed=k) for k in range(3)]
    return encoded(first, fmt, save_all=True, append_images=rest)


def write(folder: Path, name: str | bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(folder), name) if isinstance(name, bytes) else folder / name
    with open(path, "wb") as f:
        f.write(data)


class Touch:
    """Unpickling this creates a file: what a malicious checkpoint or snapshot would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def non_utf8_names_work(folder: Path) -> bool:
    try:
        write(folder, b"probe\xe9.tmp", b"")
    except OSError:
        return False
    os.remove(os.path.join(os.fsencode(folder), b"probe\xe9.tmp"))
    return True


# ---------------------------------------------------------------------------------------------------------
# File cases: (id, what to write into a data folder, outcome, the name and the words the report must show)


@dataclass
class FileCase:
    id: str
    make: Callable[[Path, Path], None]  # (data folder, a folder outside it)
    outcome: str  # "skipped" or "loaded"
    name: str  # as reports show it (None: nothing to say about a good file)
    says: str  # words of the reason or note


def _link(target: str, name: str) -> Callable[[Path, Path], None]:
    def make(folder: Path, outside: Path) -> None:
        os.symlink(target.format(outside=outside), folder / name)
    return make


def _outside_cats(folder: Path, outside: Path) -> None:
    (outside / "cats").mkdir(exist_ok=True)
    rgb().save(outside / "cats" / "c.png")
    os.symlink(outside / "cats", folder / "cats-link")


FILE_CASES = [
    FileCase("zero-byte", lambda f, o: write(f, "zero.png", b""), "skipped", "zero.png", "empty file"),
    FileCase("truncated", lambda f, o: write(f, "trunc.png", encoded(rgb((64, 64)), "PNG")[:300]), "skipped",
             "trunc.png", "truncated"),
    FileCase("png-is-jpeg", lambda f, o: write(f, "mis.png", encoded(rgb(), "JPEG")), "loaded", "mis.png is JPEG",
             "named as another format"),
    FileCase("png-is-text", lambda f, o: write(f, "text.png", b"hello, I am not an image\n"), "skipped",
             "text.png", "not a readable image"),
    FileCase("bomb-header", lambda f, o: write(f, "bomb.png", png_header_only(20000, 20000)), "skipped",
             "bomb.png", "too"),
    FileCase("16-bit", lambda f, o: write(f, "deep.png", encoded(Image.fromarray(
        np.arange(256, dtype=np.uint16).reshape(16, 16) * 257), "PNG")), "loaded", "deep.png", "16"),
    FileCase("cmyk", lambda f, o: write(f, "cmyk.jpg", encoded(Image.new("CMYK", (16, 16), (0, 90, 200, 10)),
                                                                  "JPEG")), "loaded", "cmyk.jpg", "CMYK to RGB"),
    FileCase("animated", lambda f, o: write(f, "anim.png", frames("PNG")), "loaded", "anim.png (3)",
             "several frames"),
    FileCase("multi-page", lambda f, o: write(f, "pages.tif", frames("TIFF")), "loaded", "pages.tif (3)",
             "several frames"),
    FileCase("tiny-1x1", lambda f, o: rgb((1, 1)).save(f / "dot.png"), "loaded", "dot.png 1x1", "upscaled"),
    FileCase("aspect-200:1", lambda f, o: rgb((4000, 20)).save(f / "strip.png"), "loaded", "strip.png 4000x20",
             "aspect ratio"),
    FileCase("symlink-loop-dir", _link(".", "loop"), "skipped", "loop", "loop"),
    FileCase("symlink-loop-self", _link("self.png", "self.png"), "skipped", "self.png", "loop"),
    FileCase("symlink-escape-file", _link("{outside}/secret.png", "escape.png"), "skipped", "escape.png",
             "outside the data folder"),
    FileCase("symlink-escape-folder", _outside_cats, "skipped", "cats-link", "outside the data folder"),
    FileCase("non-utf8-name", lambda f, o: write(f, b"caf\xe9.png", encoded(rgb(), "PNG")), "loaded", None, ""),
    FileCase("non-utf8-name-bad", lambda f, o: write(f, b"d\xe9j\xe0.png", b"GIF89a but not really"), "skipped",
             "d\\xe9j\\xe0.png", "not a readable image"),
]


# ---------------------------------------------------------------------------------------------------------
# Zip cases: members of an archive (read in place, never extracted)


def _patch_sizes(data: bytearray, name: bytes, size: int) -> None:
    # Set the uncompressed size of member `name` in its local header and its central directory entry.
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        i = data.find(sig)
        while i >= 0:
            n = struct.unpack("<H", data[i + name_len_at:i + name_len_at + 2])[0]
            if data[i + name_at:i + name_at + n] == name:
                struct.pack_into("<I", data, i + size_at, size)
            i = data.find(sig, i + 4)


@dataclass
class ZipCase:
    id: str
    member: str
    data: bytes
    name: str  # as reports show it
    says: str
    claim: int | None = None  # patched uncompressed size
    symlink: bool = False


def zip_cases(tmp: Path) -> list[ZipCase]:
    png = encoded(rgb((64, 64)), "PNG")
    return [
        ZipCase("zip-slip", "../evil.png", png, "../evil.png", "zip-slip"),
        ZipCase("zip-absolute", f"{tmp}/abs-evil.png", png, f"{tmp}/abs-evil.png", "absolute path"),
        ZipCase("zip-bomb-claims", "bomb.png", png, "bomb.png", "zip bomb", claim=0xFFFFFF00),
        ZipCase("zip-bomb-inflates", "liar.png", png + bytes(1 << 20), "liar.png", "damaged archive member",
                claim=100),
        ZipCase("zip-symlink", "link.png", b"../../etc/passwd", "link.png", "symbolic link", symlink=True),
    ]


ZIP_IDS = ["zip-slip", "zip-absolute", "zip-bomb-claims", "zip-bomb-inflates", "zip-symlink"]


def make_zip(path: Path, cases: list[ZipCase]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in range(GOOD):
            zf.writestr(f"good{k}.png", encoded(rgb(seed=100 + k), "PNG"))
        for case in cases:
            info = zipfile.ZipInfo(case.member)
            info.compress_type = zipfile.ZIP_DEFLATED
            if case.symlink:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, case.data)
    data = bytearray(path.read_bytes())
    for case in cases:
        if case.claim is not None:
            _patch_sizes(data, case.member.encode(), case.claim)
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------------
# Fixtures: the corpus folders, one training run over all file cases and one over all zip cases


def good_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for k in range(GOOD):
        rgb(seed=100 + k).save(folder / f"good{k}.png")
    return folder


def cli(*args) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Everything the cases need, under one tmp root: per-case folders, the combined corpus and its training run,
    the zips and theirs, a restore snapshot and the working directory (which must stay empty)."""
    root = tmp_path_factory.mktemp("faults")
    mp = pytest.MonkeyPatch()
    mp.setenv("GANFORGE_CACHE", str(root / "cache"))
    (root / "cwd").mkdir()
    mp.chdir(root / "cwd")
    outside = root / "outside"
    outside.mkdir()
    rgb().save(outside / "secret.png")
    utf8 = non_utf8_names_work(outside)
    cases = [c for c in FILE_CASES if utf8 or "utf8" not in c.id]

    for case in cases:
        case.make(good_folder(root / "cases" / case.id), outside)
    corpus = good_folder(root / "corpus")
    for case in cases:
        case.make(corpus, outside)
    zips = zip_cases(root)
    (root / "zips").mkdir()
    for case in zips:
        make_zip(root / "zips" / f"{case.id}.zip", [case])
    make_zip(root / "corpus.zip", zips)

    logs = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())
    logging.getLogger("ganforge").addHandler(handler)
    try:
        trained = {key: cli("train", "--data", src, "--out", root / "runs" / key, *TINY)
                   for key, src in (("folder", corpus), ("zip", root / "corpus.zip"))}
    finally:
        logging.getLogger("ganforge").removeHandler(handler)
    runs = {key: next((root / "runs" / key).glob("0*"), None) for key in trained}

    restore = root / "restore"
    net = build_net("rescnn", channels=3, width=8, depth=3, batch_norm=False)
    save_snapshot(restore, "latest", {"net": net.state_dict()},
                  {"task": "restore", "pipeline": "restore", "arch": "rescnn", "receptive_field": 7,
                   "modules": {"net": {"net": "rescnn", "config": net.config}}})
    yield {"root": root, "outside": outside, "cases": {c.id: c for c in cases}, "zips": {z.id: z for z in zips},
           "trained": trained, "runs": runs, "logs": logs, "restore": restore}
    mp.undo()


def clean(code: int, out: str, want: int) -> None:
    assert "Traceback" not in out, out
    assert code == want, out
    if want == 1:
        assert out.count("error:") == 1, out


def nothing_outside(world) -> None:
    root = world["root"]
    assert not any((root / "cwd").iterdir()), list((root / "cwd").iterdir())
    assert sorted(p.name for p in world["outside"].iterdir()) in (["secret.png"], ["cats", "secret.png"])
    for p in (root / "evil.png", root.parent / "evil.png", root / "zips" / "evil.png", root / "abs-evil.png"):
        assert not p.exists(), p


# ---------------------------------------------------------------------------------------------------------
# The corpus: file cases and zip cases (inspect per case, and the one training run over all of them)


@pytest.mark.parametrize("case_id", [c.id for c in FILE_CASES])
def test_bad_file_in_a_data_folder(world, case_id):
    case = world["cases"].get(case_id)
    if case is None:
        pytest.skip("this file system refuses file names that are not UTF-8")
    code, out = cli("dataset", "inspect", world["root"] / "cases" / case_id)
    clean(code, out, 0)
    counts = next(line for line in out.splitlines() if line.startswith("image files:"))
    loaded = GOOD + (case.outcome == "loaded")
    assert f" {loaded} loaded" in counts, out
    if case.name is not None:
        line = next((ln for ln in out.splitlines() if case.name in ln), "")
        assert case.says in line, out

    code, out = world["trained"]["folder"]
    clean(code, out, 0)
    log = (world["runs"]["folder"] / "log.txt").read_text()
    skipped = [ln for ln in log.splitlines() if " skipped " in ln]
    if case.outcome == "skipped":
        assert any(f"skipped {case.name}: " in ln and case.says in ln for ln in skipped), log
    elif case.name is not None:  # loaded, and the warning names it
        assert not any(case.name.split(" ")[0] in ln for ln in skipped), log
        assert any(case.name in m and case.says in m for m in world["logs"]), world["logs"]
    nothing_outside(world)


@pytest.mark.parametrize("case_id", ZIP_IDS)
def test_bad_member_in_a_zip(world, case_id):
    case = world["zips"][case_id]
    code, out = cli("dataset", "inspect", world["root"] / "zips" / f"{case_id}.zip")
    clean(code, out, 0)
    assert f"{GOOD} loaded, 1 skipped" in out, out
    assert any(case.name in ln and case.says in ln for ln in out.splitlines()), out
    code, out = world["trained"]["zip"]
    clean(code, out, 0)
    log = (world["runs"]["zip"] / "log.txt").read_text()
    assert any(f"skipped {case.name}: " in ln and case.says in ln for ln in log.splitlines()), log
    nothing_outside(world)


# ---------------------------------------------------------------------------------------------------------
# Command cases: a refusal (exit 1, one message naming the file), never a traceback


def _snapshot_copy(world, tmp: Path, name: str = "snap") -> Path:
    src = world["runs"]["folder"] / "snapshots"
    dst = tmp / name
    dst.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(src / f"latest{suffix}", dst / f"latest{suffix}")
    return dst / "latest"


def _meta(world, tmp: Path, change: Callable[[dict], object]) -> tuple[list, str]:
    snap = _snapshot_copy(world, tmp)
    meta = json.loads(snap.with_suffix(".json").read_text())
    snap.with_suffix(".json").write_text(json.dumps(change(meta)))
    return ["generate", snap, "--grid", tmp / "g.png"], "latest.json"


def _pickled_snapshot(world, tmp):
    snap = _snapshot_copy(world, tmp)
    snap.with_suffix(".safetensors").write_bytes(pickle.dumps({"G": Touch(tmp / "pwned")}))
    return ["generate", snap, "--grid", tmp / "g.png"], "latest.safetensors"


def _malformed_json(world, tmp):
    snap = _snapshot_copy(world, tmp)
    snap.with_suffix(".json").write_text('{"format": "ganforge-snapshot/2",\n')
    return ["generate", snap, "--grid", tmp / "g.png"], "latest.json"


def _binary_json(world, tmp):
    snap = _snapshot_copy(world, tmp)
    snap.with_suffix(".json").write_bytes(b"\xff\xfe\x00garbage")
    return ["generate", snap, "--grid", tmp / "g.png"], "latest.json"


def _evil_checkpoint(tmp: Path) -> Path:
    path = tmp / "ckpt-000000001.pt"
    torch.save({"step": 1, "modules": Touch(tmp / "pwned")}, path)
    return path


def _resume_evil(world, tmp):
    run = tmp / "run"
    shutil.copytree(world["runs"]["folder"], run)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    shutil.move(_evil_checkpoint(tmp), run / "checkpoints" / "ckpt-000000001.pt")
    return ["train", "--resume", run, "--kimg", "0.032", "--no-progress"], "ckpt-000000001.pt"


def _init_from_evil(world, tmp):
    ckpt = _evil_checkpoint(tmp)
    return ["train", "--data", world["root"] / "cases" / "zero-byte", "--out", tmp / "runs", "--init-from", ckpt,
            *TINY], "ckpt-000000001.pt"


def _all_bad(world, tmp):
    (tmp / "bad").mkdir()
    write(tmp / "bad", "zero.png", b"")
    write(tmp / "bad", "text.png", b"text")
    return ["train", "--data", tmp / "bad", "--out", tmp / "runs", *TINY], "text.png"


def _not_a_zip(world, tmp):
    (tmp / "data.zip").write_text("not a zip")
    return ["train", "--data", tmp / "data.zip", "--out", tmp / "runs", *TINY], "data.zip"


def _apply_on(data: bytes, name: str):
    def case(world, tmp):
        write(tmp, name, data)
        return ["apply", world["restore"] / "latest", tmp / name, "-o", tmp / "out.png"], name
    return case


def _apply_folder(world, tmp):
    (tmp / "in").mkdir()
    rgb((40, 40)).save(tmp / "in" / "ok.png")
    write(tmp / "in", "trunc.png", encoded(rgb((64, 64)), "PNG")[:300])
    return ["apply", world["restore"] / "latest", tmp / "in", "-o", tmp / "out"], "trunc.png"


def _apply_pickle(world, tmp):
    snap = tmp / "r"
    shutil.copytree(world["restore"], snap)
    (snap / "latest.safetensors").write_bytes(pickle.dumps(Touch(tmp / "pwned")))
    rgb().save(tmp / "x.png")
    return ["apply", snap / "latest", tmp / "x.png", "-o", tmp / "out.png"], "latest.safetensors"


def _device(command: str, device: str):
    def case(world, tmp):
        rgb().save(tmp / "x.png")
        if command == "generate":
            args = ["generate", world["runs"]["folder"], "--grid", tmp / "g.png"]
        elif command == "apply":
            args = ["apply", world["restore"] / "latest", tmp / "x.png", "-o", tmp / "out.png"]
        else:
            args = ["project", world["runs"]["folder"], tmp / "x.png", "-o", tmp / "proj"]
        return [*args, "--device", device], device
    return case


def _walk_mp4(world, tmp):
    return ["generate", world["runs"]["folder"], "--interpolate", "0,1", "-o", tmp / "walk.mp4"], "walk.mp4"


def _projection(style_run, tmp, damage: Callable[[Path], None], shown: str):
    proj = tmp / "proj"
    proj.mkdir()
    ws = torch.zeros(1, 2, 16)
    from safetensors.torch import save_file

    save_file({"ws": ws}, str(proj / "latent.safetensors"))
    (proj / "latent.json").write_text("{}")
    damage(proj)
    return ["generate", style_run, "--class", "0", "--interpolate", f"{proj},1", "--space", "w", "-o",
            tmp / "w.gif"], shown


def _proj_pickle(style_run, tmp):
    return _projection(style_run, tmp, lambda p: (p / "latent.safetensors").write_bytes(
        pickle.dumps(Touch(tmp / "pwned"))), "latent.safetensors")


def _proj_json(style_run, tmp):
    return _projection(style_run, tmp, lambda p: (p / "latent.json").write_text("{\n"), "latent.json")


def _project_on(data: bytes, name: str):
    def case(style_run, tmp):
        write(tmp, name, data)
        return ["project", style_run, tmp / name, "--class", "0", "--steps", "1", "-o", tmp / "proj"], name
    return case


# (id, builder(world or style_run, tmp) -> (args, the file name the message must show), needs the StyleGAN2 run)
COMMAND_CASES = [
    ("snapshot-json-is-a-list", lambda w, t: _meta(w, t, lambda m: [m]), False),
    ("snapshot-json-without-modules", lambda w, t: _meta(w, t, lambda m: {k: v for k, v in m.items()
                                                                          if k != "modules"}), False),
    ("snapshot-module-without-net", lambda w, t: _meta(w, t, lambda m: {**m, "modules": {"G": {"config": {}}}}),
     False),
    ("snapshot-json-malformed", _malformed_json, False),
    ("snapshot-json-not-text", _binary_json, False),
    ("snapshot-weights-are-a-pickle", _pickled_snapshot, False),
    ("checkpoint-pickle-resume", _resume_evil, False),
    ("checkpoint-pickle-init-from", _init_from_evil, False),
    ("data-all-files-bad", _all_bad, False),
    ("data-zip-not-a-zip", _not_a_zip, False),
    ("apply-zero-byte", _apply_on(b"", "zero.png"), False),
    ("apply-bomb-header", _apply_on(png_header_only(20000, 20000), "bomb.png"), False),
    ("apply-png-is-text", _apply_on(b"not an image", "text.png"), False),
    ("apply-folder-one-truncated", _apply_folder, False),
    ("apply-snapshot-pickle", _apply_pickle, False),
    ("generate-device-foo", _device("generate", "foo"), False),
    ("generate-device-cuda-missing", _device("generate", "cuda:64"), False),
    ("apply-device-foo", _device("apply", "foo"), False),
    ("project-device-cuda-missing", _device("project", "cuda:64"), False),
    ("generate-walk-mp4", _walk_mp4, False),
    ("projection-latent-is-a-pickle", _proj_pickle, True),
    ("projection-json-malformed", _proj_json, True),
    ("project-bomb-header-13000x13000", _project_on(png_header_only(13000, 13000), "big.png"), True),
    ("project-truncated", _project_on(encoded(rgb((64, 64)), "PNG")[:300], "trunc.png"), True),
]


@pytest.mark.parametrize("case_id", [c[0] for c in COMMAND_CASES])
def test_refusal(world, request, tmp_path, case_id):
    _, build, style = next(c for c in COMMAND_CASES if c[0] == case_id)
    args, shown = build(request.getfixturevalue("style_run") if style else world, tmp_path)
    code, out = cli(*args)
    clean(code, out, 1)
    error = out[out.index("error:"):]
    assert shown in error, out
    assert not (tmp_path / "pwned").exists(), "a pickle was unpickled"
    assert not (tmp_path / "walk.mp4").exists() and not (tmp_path / "g.png").exists()
    nothing_outside(world)
