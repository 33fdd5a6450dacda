"""The studio's inpaint and translate / colorize playgrounds through the API, and the Train page's task data options
(data.masks, data.derive) with their field-named 422s.

The snapshots are tiny untrained networks written with ``core/snapshot.save_snapshot`` into a job's run folder
(the run folder is the contract between the studio and the library), so no training runs here."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402

from ganforge.studio import StudioSettings, create_app  # noqa: E402
from tests.test_studio_api import png, tiny_restore_snapshot  # noqa: E402

BASE = "http://127.0.0.1"


@pytest.fixture
def settings(tmp_path: Path) -> StudioSettings:
    return StudioSettings(data_dir=tmp_path / "studio", poll_s=0.1, max_pixels=200_000, max_upload_mb=2)


@pytest.fixture
def client(settings: StudioSettings):
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def _save(folder: Path, stem: str, task: str, modules: dict[str, Any], meta: dict[str, Any]) -> None:
    """Snapshot ``stem`` of ``modules`` (name -> net) in ``folder``, as training writes it."""
    from ganforge.core.snapshot import save_snapshot

    nets = meta.pop("nets")
    specs = {k: {"net": nets[k], "config": n.config} for k, n in modules.items()}
    save_snapshot(folder, stem, {k: n.state_dict() for k, n in modules.items()},
                  {"task": task, "step": 0, "kimg": 0.0, **meta, "modules": specs})


def _job_with_snapshot(client: Any, runs_dir: Path, task: str, preset: str, modules: dict[str, Any],
                       meta: dict[str, Any]) -> int:
    """A created (never started) job whose run folder holds snapshot ``latest`` of ``modules`` (name -> net)."""
    r = client.post("/api/jobs", json={"task": task, "preset": preset, "dataset": "shapes", "start": False})
    assert r.status_code == 201, r.text
    job = r.json()
    _save(runs_dir / f"job-{job['id']:05d}" / f"00000-shapes-{preset}" / "snapshots", "latest", task, modules, meta)
    return job["id"]


def _inpainter() -> tuple[dict[str, Any], dict[str, Any]]:
    """An untrained Context Encoder (32 px crops, stride 8) and its snapshot meta."""
    import torch

    from ganforge.nets import build_net

    torch.manual_seed(0)
    net = build_net("context_encoder", channels=3, width=4, levels=3, bottleneck=8)
    return {"G": net}, {"pipeline": "inpaint", "arch": "context_encoder", "resolution": 32, "stride": 8,
                        "nets": {"G": "context_encoder"}}


def inpaint_job(client: Any, runs_dir: Path) -> int:
    """A created job of task inpaint whose snapshot is an untrained Context Encoder (32 px crops, stride 8)."""
    return _job_with_snapshot(client, runs_dir, "inpaint", "context-encoder-64", *_inpainter())


def _translator(kind: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(task, preset, modules, meta) of an untrained translator: "colorize", a pix2pix colorizer (L* -> RGB, derive
    lab); "edges", a one-way pix2pix (RGB -> RGB, derive edges); "cyclegan", a two-way CycleGAN (RGB <-> RGB)."""
    import torch

    from ganforge.nets import build_net

    torch.manual_seed(0)
    if kind in ("colorize", "edges"):
        g = build_net("unet_translator", in_channels=1 if kind == "colorize" else 3, out_channels=3, width=4, depth=3,
                      norm="none", dropout=0.0)
        return "pix2pix", "colorize-64" if kind == "colorize" else "pix2pix-64", {"G": g}, {
            "pipeline": "translate", "arch": "unet_translator", "derive": "lab" if kind == "colorize" else "edges",
            "label_classes": None, "directions": ["AtoB"], "nets": {"G": "unet_translator"}}
    g = build_net("cyclegan.generators", net="resnet_translator",
                  AtoB=dict(in_channels=3, out_channels=3, width=4, blocks=1, norm="none"),
                  BtoA=dict(in_channels=3, out_channels=3, width=4, blocks=1, norm="none"))
    return "cyclegan", "cyclegan-64", {"G": g}, {"pipeline": "translate", "arch": "resnet_translator", "derive": None,
                                                 "label_classes": None, "directions": ["AtoB", "BtoA"],
                                                 "nets": {"G": "cyclegan.generators"}}


def translate_job(client: Any, runs_dir: Path, colorizer: bool) -> int:
    """A pix2pix colorizer (L* -> RGB, derive lab) or a two-way CycleGAN (RGB <-> RGB)."""
    task, preset, modules, meta = _translator("colorize" if colorizer else "cyclegan")
    return _job_with_snapshot(client, runs_dir, task, preset, modules, meta)


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch) -> Path:
    """The shipped-model folder pointed at a temporary one holding tiny untrained stand-ins for the shipped inpaint,
    colorize and edges2photo models (and no restoration model)."""
    import ganforge.pretrained as pretrained

    folder = tmp_path / "shipped"
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", folder)
    _save(folder, pretrained.PRETRAINED["inpaint"].stem, "inpaint", *_inpainter())
    for name, kind in (("colorize", "colorize"), ("edges2photo", "edges")):
        task, _, modules, meta = _translator(kind)
        _save(folder, pretrained.PRETRAINED[name].stem, task, modules, meta)
    assert {p.name for p in pretrained.installed()} == {"inpaint", "colorize", "edges2photo"}
    return folder


def canvas_mask(size: tuple[int, int], stroke: list[tuple[int, int]], width: int) -> tuple[bytes, np.ndarray]:
    """An anti-aliased brush stroke on a transparent RGBA canvas, like the page's <canvas> export (drawn at 4x and
    shrunk, so its edges have every alpha level); returns the PNG and its alpha plane."""
    big = Image.new("RGBA", (size[0] * 4, size[1] * 4), (0, 0, 0, 0))
    ImageDraw.Draw(big).line([(x * 4, y * 4) for x, y in stroke], fill=(255, 40, 90, 255), width=width * 4,
                             joint="curve")
    img = big.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), np.asarray(img)[:, :, 3]


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_inpaint_fills_only_the_thresholded_hole(client: TestClient, settings: StudioSettings):
    job = inpaint_job(client, settings.runs_dir)
    photo = png((48, 40), seed=3)
    mask, alpha = canvas_mask((48, 40), [(8, 10), (30, 22), (40, 12)], width=5)
    soft = (alpha > 0) & (alpha < 255)
    assert soft.sum() > 20  # the stroke really is anti-aliased: the server must threshold it
    r = client.post("/api/infer/inpaint", data={"job_id": str(job)},
                    files={"image": ("photo.png", photo), "mask": ("mask.png", mask)})
    assert r.status_code == 200, r.text
    hole = alpha > 127
    assert int(r.headers["X-Hole-Pixels"]) == int(hole.sum()) > 0
    out, before = decode(r.content), decode(photo)
    assert out.shape == before.shape
    assert np.array_equal(out[~hole], before[~hole])  # faint edge pixels (alpha <= 127) are not hole
    assert (out[hole] != before[hole]).any()

    # A white-on-black mask without transparency (a mask file) is thresholded on its level.
    level = np.where(hole, 200, 60).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(level).save(buf, "PNG")
    r2 = client.post("/api/infer/inpaint", data={"job_id": str(job)},
                     files={"image": ("photo.png", photo), "mask": ("mask.png", buf.getvalue())})
    assert r2.status_code == 200 and r2.content == r.content


def test_inpaint_refusals(client: TestClient, settings: StudioSettings):
    job = inpaint_job(client, settings.runs_dir)
    photo = png((48, 40), seed=3)

    def post(mask: bytes, job_id: int = job, image: bytes = photo) -> Any:
        return client.post("/api/infer/inpaint", data={"job_id": str(job_id)},
                           files={"image": ("photo.png", image), "mask": ("mask.png", mask)})

    # Empty: a transparent canvas, and a canvas with only faint anti-aliased dust below the threshold.
    r = post(canvas_mask((48, 40), [(5, 5), (6, 5)], width=0)[0])
    assert r.status_code == 422 and "mask is empty" in r.json()["detail"], r.text
    faint = np.zeros((40, 48, 4), np.uint8)
    faint[10:20, 10:20] = (255, 255, 255, 100)
    buf = io.BytesIO()
    Image.fromarray(faint).save(buf, "PNG")
    r = post(buf.getvalue())
    assert r.status_code == 422 and "threshold (127 of 255" in r.json()["detail"]
    # Another size than the image: both sizes named.
    r = post(canvas_mask((40, 40), [(5, 5), (20, 20)], width=4)[0])
    assert r.status_code == 422 and "40x40" in r.json()["detail"] and "48x40" in r.json()["detail"]
    # A snapshot of another task.
    other = client.post("/api/jobs", json={"task": "restore", "preset": "denoise-25", "dataset": "shapes",
                                           "start": False}).json()["id"]
    tiny_restore_snapshot(settings.runs_dir / f"job-{other:05d}" / "00000-shapes-denoise-25" / "snapshots", "latest")
    r = post(canvas_mask((48, 40), [(5, 5), (20, 20)], width=4)[0], job_id=other)
    assert r.status_code == 422 and "not an inpainting model" in r.json()["detail"]
    # No mask part, a pickle as the mask, a job without snapshots.
    r = client.post("/api/infer/inpaint", data={"job_id": str(job)}, files={"image": ("photo.png", photo)})
    assert r.status_code == 422 and "mask" in r.text
    r = post(b"\x80\x04.")
    assert r.status_code == 422
    fresh = client.post("/api/jobs", json={"task": "inpaint", "preset": "deepfill-64", "dataset": "shapes",
                                           "start": False}).json()["id"]
    assert post(photo, job_id=fresh).status_code == 404
    assert not list(settings.tmp_dir.iterdir())  # every request cleaned up after itself


def test_translate_directions_and_colorize(client: TestClient, settings: StudioSettings):
    cycle = translate_job(client, settings.runs_dir, colorizer=False)
    color = translate_job(client, settings.runs_dir, colorizer=True)
    snaps = {j["job_id"]: j["latest"] for j in client.get("/api/models").json()["jobs"]}
    assert snaps[cycle]["directions"] == ["AtoB", "BtoA"] and not snaps[cycle]["colorizer"]
    assert snaps[color]["directions"] == ["AtoB"] and snaps[color]["colorizer"]
    photo = png((36, 28), seed=4)
    outs = {}
    for direction in ("AtoB", "BtoA"):
        r = client.post("/api/infer/translate", data={"job_id": str(cycle), "direction": direction},
                        files={"image": ("p.png", photo)})
        assert r.status_code == 200, r.text
        outs[direction] = decode(r.content)
        assert outs[direction].shape == (28, 36, 3)
    assert not np.array_equal(outs["AtoB"], outs["BtoA"])  # two different generators

    # Colorize a gray photo: the output keeps its lightness (Lab pipeline), so it is close to the input's gray.
    gray = np.asarray(Image.open(io.BytesIO(photo)).convert("L"))
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")
    r = client.post("/api/infer/colorize", data={"job_id": str(color)}, files={"image": ("g.png", buf.getvalue())})
    assert r.status_code == 200, r.text
    colored = decode(r.content)
    assert colored.shape == (28, 36, 3)
    back = np.asarray(Image.fromarray(colored).convert("L")).astype(int)
    assert np.abs(back - gray).mean() < 12

    # Refusals: BtoA of a one-way pix2pix model; colorize with a non-colorizer; a shipped colorizer that does not
    # exist; neither/both of model and job_id; a restore snapshot on the translate endpoint.
    r = client.post("/api/infer/translate", data={"job_id": str(color), "direction": "BtoA"},
                    files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "only AtoB" in r.json()["detail"]
    r = client.post("/api/infer/colorize", data={"job_id": str(cycle)}, files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "not to colour gray photos" in r.json()["detail"]
    r = client.post("/api/infer/colorize", data={"model": "sr-x4-psnr"}, files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "no shipped colorize model" in r.json()["detail"]
    r = client.post("/api/infer/colorize", files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    r = client.post("/api/infer/translate", data={"job_id": str(cycle), "direction": "sideways"},
                    files={"image": ("p.png", photo)})
    assert r.status_code == 422
    other = client.post("/api/jobs", json={"task": "restore", "preset": "denoise-25", "dataset": "shapes",
                                           "start": False}).json()["id"]
    tiny_restore_snapshot(settings.runs_dir / f"job-{other:05d}" / "00000-shapes-denoise-25" / "snapshots", "latest")
    r = client.post("/api/infer/translate", data={"job_id": str(other)}, files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "not a translation model" in r.json()["detail"]
    r = client.post("/api/infer/translate", data={"job_id": str(cycle)},
                    files={"image": ("p.png", png((500, 500)))})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_train_data_options_are_fields(client: TestClient, settings: StudioSettings):
    tasks = {t["task"]: t for t in client.get("/api/tasks").json()}
    assert tasks["inpaint"]["playground"] == "inpaint" and tasks["cyclegan"]["playground"] == "translate"
    assert "free-form+box" in tasks["inpaint"]["data_options"]["masks"]
    assert tasks["pix2pix"]["data_options"]["pairs"]["lab"] == "lab"
    assert {"inpaint", "translate"} <= set(client.get("/api/info").json()["playgrounds"])

    def resolve(task: str, preset: str, data: dict[str, Any]) -> Any:
        return client.post("/api/config/resolve", json={"task": task, "preset": preset, "dataset": "shapes",
                                                        "overrides": {"data": data}})

    assert resolve("inpaint", "deepfill-64", {"masks": "box"}).json()["data"]["masks"] == "box"
    for bad in ("/etc", "../x", "shapes", "nope"):  # a server path, a traversal, a built-in, an unknown dataset
        r = resolve("inpaint", "deepfill-64", {"masks": bad})
        assert r.status_code == 422 and r.json()["fields"] == ["data.masks"], (bad, r.text)
    # An uploaded dataset of mask images becomes its folder (inside the data dir).
    client.post("/api/datasets", data={"name": "holes"}, files=[("files", ("m.png", png(), "image/png"))])
    r = resolve("inpaint", "deepfill-64", {"masks": "holes"})
    assert r.status_code == 200 and Path(r.json()["data"]["masks"]) == settings.datasets_dir / "holes"

    assert resolve("pix2pix", "pix2pix-64", {"derive": "edges"}).json()["data"]["derive"] == "edges"
    r = resolve("pix2pix", "pix2pix-64", {"derive": "degraded"})
    assert r.json()["data"]["derive"].startswith("blur:")  # a named pair becomes its chain
    r = resolve("pix2pix", "pix2pix-64", {"derive": "sparkle:3"})
    assert r.status_code == 422 and r.json()["fields"] == ["data.derive"] and "sparkle" in r.json()["detail"]
    r = client.post("/api/jobs", json={"task": "pix2pix", "preset": "pix2pix-64", "dataset": "shapes",
                                       "overrides": {"data": {"derive": "sparkle:3"}}, "start": False})
    assert r.status_code == 422 and r.json()["fields"] == ["data.derive"]


def test_dataset_image_for_the_playgrounds(client: TestClient):
    """A dataset's image as the playground's input: full size up to max_side, shrunk above it; 404 past the end."""
    big = png((300, 200), seed=9)
    assert client.post("/api/datasets", data={"name": "big"}, files=[("files", ("b.png", big, "image/png"))]
                       ).status_code == 201
    r = client.get("/api/datasets/big/images/0.png")
    assert r.status_code == 200 and np.array_equal(decode(r.content), decode(big))  # lossless at full size
    r = client.get("/api/datasets/big/images/0.png", params={"max_side": 150})
    assert Image.open(io.BytesIO(r.content)).size == (150, 100)
    assert client.get("/api/datasets/big/images/1.png").status_code == 404
    assert client.get("/api/datasets/nope/images/0.png").status_code == 404
    assert client.get("/api/datasets/big/images/0.png", params={"max_side": 5}).status_code == 422
    r = client.get("/api/datasets/shapes/images/3.png")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size[0] >= 16


def test_shipped_inpaint_and_translate_models(client: TestClient, settings: StudioSettings, shipped: Path):
    """The shipped inpaint and translate models through their endpoints (model=NAME), the same result as a job's
    snapshot of the same network, and the refusals: exactly one of model and job_id; a shipped model of another
    command names the endpoint that takes it; the restore endpoint takes only restoration models."""
    shipped_list = client.get("/api/models").json()["shipped"]
    listed = {s["name"]: s for s in shipped_list}
    assert listed["inpaint"]["installed"] and listed["edges2photo"]["command"] == "translate"
    # each command's default is flagged and listed before its other models (the playground preselects the first)
    inpainters = [s["name"] for s in shipped_list if s["command"] == "inpaint"]
    assert inpainters == ["inpaint-deepfill", "inpaint"] and listed["inpaint-deepfill"]["default"]
    assert not listed["inpaint"]["default"] and listed["sr-x4-psnr"]["default"] and not listed["sr-x4-gan"]["default"]
    assert not listed["sr-x4-psnr"]["installed"]
    photo = png((48, 40), seed=3)
    mask, alpha = canvas_mask((48, 40), [(8, 10), (30, 22), (40, 12)], width=5)
    files = {"image": ("photo.png", photo), "mask": ("mask.png", mask)}

    r = client.post("/api/infer/inpaint", data={"model": "inpaint"}, files=files)
    assert r.status_code == 200, r.text
    hole = alpha > 127
    assert int(r.headers["X-Hole-Pixels"]) == int(hole.sum()) > 0
    out, before = decode(r.content), decode(photo)
    assert np.array_equal(out[~hole], before[~hole]) and (out[hole] != before[hole]).any()
    job = inpaint_job(client, settings.runs_dir)  # the same untrained network as a job's snapshot: the same fill
    assert client.post("/api/infer/inpaint", data={"job_id": str(job)}, files=files).content == r.content

    r = client.post("/api/infer/translate", data={"model": "edges2photo"}, files={"image": ("p.png", photo)})
    assert r.status_code == 200, r.text
    assert decode(r.content).shape == (40, 48, 3)
    r = client.post("/api/infer/translate", data={"model": "edges2photo", "direction": "BtoA"},
                    files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "only AtoB" in r.json()["detail"]
    r = client.post("/api/infer/colorize", data={"model": "colorize"}, files={"image": ("p.png", photo)})
    assert r.status_code == 200, r.text

    # Exactly one of model and job_id, on every endpoint that takes either.
    for endpoint, extra in (("inpaint", {"mask": ("mask.png", mask)}), ("translate", {}), ("colorize", {}),
                            ("restore", {})):
        model = "denoise-blind" if endpoint == "restore" else "edges2photo" if endpoint == "translate" else endpoint
        for data in ({}, {"model": model, "job_id": str(job)}):
            r = client.post(f"/api/infer/{endpoint}", data=data, files={"image": ("p.png", photo), **extra})
            assert r.status_code == 422 and "exactly one of model" in r.json()["detail"], (endpoint, data, r.text)

    # A shipped model of another command: a 422 naming the model and the endpoint to use.
    for endpoint, model, use in (("restore", "inpaint", "/api/infer/inpaint"),
                                 ("restore", "edges2photo", "/api/infer/translate"),
                                 ("restore", "colorize", "/api/infer/colorize"),
                                 ("translate", "colorize", "/api/infer/colorize"),
                                 ("inpaint", "sr-x4-psnr", "/api/infer/restore")):
        extra = {"mask": ("mask.png", mask)} if endpoint == "inpaint" else {}
        r = client.post(f"/api/infer/{endpoint}", data={"model": model}, files={"image": ("p.png", photo), **extra})
        detail = r.json()["detail"]
        assert r.status_code == 422 and repr(model) in detail and use in detail, (endpoint, model, detail)
    assert "no shipped restoration model 'inpaint'" in client.post(
        "/api/infer/restore", data={"model": "inpaint"}, files={"image": ("p.png", photo)}).json()["detail"]
    # A restoration model of the registry that this copy lacks, and a name that is not in it.
    r = client.post("/api/infer/restore", data={"model": "denoise-blind"}, files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "not installed" in r.json()["detail"]
    r = client.post("/api/infer/inpaint", data={"model": "nope"}, files=files)
    assert r.status_code == 422 and "shipped inpaint models: inpaint" in r.json()["detail"]
    assert not list(settings.tmp_dir.iterdir())


def test_shipped_models_absent(client: TestClient, tmp_path: Path, monkeypatch):
    """A copy without the shipped files: the inpaint and translate endpoints say the model is not installed."""
    import ganforge.pretrained as pretrained

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "empty")
    assert not any(s["installed"] for s in client.get("/api/models").json()["shipped"])
    photo = png((16, 16))
    r = client.post("/api/infer/inpaint", data={"model": "inpaint"},
                    files={"image": ("p.png", photo), "mask": ("m.png", photo)})
    assert r.status_code == 422 and "not installed" in r.json()["detail"]
    r = client.post("/api/infer/translate", data={"model": "edges2photo"}, files={"image": ("p.png", photo)})
    assert r.status_code == 422 and "not installed" in r.json()["detail"]
