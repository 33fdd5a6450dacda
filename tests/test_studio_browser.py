"""The studio in a real browser: Playwright drives Debian's chromium (headless; no browser download) through every
page: upload a dataset, start a tiny job and watch the chart and the sample grid update, look at the model, generate,
restore an image with the before/after slider, paint a stroke on the inpaint canvas and fill it, and colorize a
gray photo. Each page is screenshotted into $GANFORGE_SCREENSHOT_DIR (the
docs' images: GANFORGE_SCREENSHOT_DIR=docs/img/studio), else into the test's tmp folder.

Skipped when chromium or the playwright package is absent (`apt-get install chromium`, `pip install playwright`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.test_studio_api import TINY, class_zip, png
from tests.test_studio_playgrounds import inpaint_job, translate_job

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")


@pytest.fixture
def studio(tmp_path: Path, monkeypatch):
    """The studio served by uvicorn in a thread, with a tiny x4 upscaler as the shipped sr-x4-psnr."""
    import torch
    import uvicorn

    import ganforge.pretrained as pretrained
    from ganforge.core.snapshot import save_snapshot
    from ganforge.nets import build_net
    from ganforge.studio import StudioSettings, create_app

    torch.manual_seed(0)
    net = build_net("srresnet", channels=3, width=8, blocks=1, scale=4)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "shipped")
    save_snapshot(tmp_path / "shipped", pretrained.PRETRAINED["sr-x4-psnr"].stem, {"net": net.state_dict()},
                  {"task": "restore", "pipeline": "restore", "arch": "srresnet", "scale": 4,
                   "receptive_field": net.receptive_field,
                   "modules": {"net": {"net": "srresnet", "config": net.config}}})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(StudioSettings(data_dir=tmp_path / "studio", port=port, poll_s=0.2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the studio did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path / "studio"
    server.should_exit = True
    thread.join(timeout=60)


def test_every_page_in_chromium(studio: tuple[str, Path], tmp_path: Path):
    import httpx2

    studio, data_dir = studio
    shots = Path(os.environ.get("GANFORGE_SCREENSHOT_DIR", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    (tmp_path / "shapes2.zip").write_bytes(class_zip())
    try:  # a real photo makes the restore screenshot readable (scikit-image's astronaut, public domain)
        from PIL import Image
        from skimage.data import astronaut

        Image.fromarray(astronaut()[20:220:5, 150:270:5]).save(tmp_path / "small.png")  # 24 x 40
        photo = astronaut()[10:330:2, 100:420:2]  # 160 x 160
        Image.fromarray(photo).save(tmp_path / "photo.png")
        Image.fromarray(photo).convert("L").save(tmp_path / "gray.png")
    except ImportError:
        (tmp_path / "small.png").write_bytes(png((24, 40), seed=5))
        (tmp_path / "photo.png").write_bytes(png((160, 160), seed=6))
        (tmp_path / "gray.png").write_bytes(png((160, 160), seed=7))
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"{r.url} {r.failure}")
                if not r.url.endswith("/events") else None)
        expect = sync_api.expect

        def shot(name: str) -> None:  # from the top: the sticky header would land mid-image in a scrolled page
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shots / name), full_page=True)

        # Datasets: upload a zip through the (hidden) file input of the drop box; the report and thumbnails appear.
        page.goto(f"{studio}/#datasets")
        page.set_input_files("#upload-files", str(tmp_path / "shapes2.zip"))
        expect(page.locator("#upload-name")).to_have_value("shapes2")
        page.click("#upload-form button[type=submit]")
        expect(page.locator("#dataset-detail h3")).to_have_text("shapes2", timeout=30_000)
        expect(page.locator("#dataset-detail")).to_contain_text("dots/broken.png")
        expect(page.locator("#dataset-detail .thumbs img")).to_have_count(16)
        page.wait_for_function("[...document.querySelectorAll('#dataset-detail .thumbs img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        shot("datasets.png")

        # Train: the resolved config follows the form; a bad value highlights its field with the server's message.
        page.goto(f"{studio}/#train")
        # The task's data options are fields: inpaint's holes, pix2pix's derived pairs (hidden for a GAN).
        page.select_option("#train-task", "inpaint")
        expect(page.locator("#train-masks-field")).to_be_visible()
        page.select_option("#train-masks", "box")
        expect(page.locator("#train-config")).to_contain_text('"masks": "box"', timeout=10_000)
        page.select_option("#train-task", "pix2pix")
        expect(page.locator("#train-masks-field")).to_be_hidden()
        page.select_option("#train-pairs", "edges")
        expect(page.locator("#train-config")).to_contain_text('"derive": "edges"', timeout=10_000)
        page.select_option("#train-task", "gan")
        expect(page.locator("#train-pairs-field")).to_be_hidden()
        page.select_option("#train-dataset", "shapes2")
        page.select_option("#train-preset", "dcgan-32")
        page.fill("#train-batch", "0")
        expect(page.locator("#train-batch")).to_have_class("invalid", timeout=10_000)
        expect(page.locator("#train-config")).to_contain_text("optim.batch")
        page.fill("#train-batch", "")
        longer = {**TINY, "run": {**TINY["run"], "kimg": 0.48, "sample_every_kimg": 0.096}}
        page.fill("#train-overrides", json.dumps(longer))
        expect(page.locator("#train-config")).to_contain_text('"kimg": 0.48', timeout=10_000)
        shot("train.png")
        page.click("#train-start")

        # Jobs: the chart gets its series from the event stream, the sample slider fills, the job finishes.
        page.wait_for_url("**/#jobs/1")
        expect(page.locator("#job-legend .legend-item").first).to_be_visible(timeout=90_000)
        expect(page.locator("#job-status")).to_have_text("finished", timeout=120_000)
        page.wait_for_function("Number(document.getElementById('job-sample-step').max) >= 3")
        page.wait_for_function("document.getElementById('job-sample').naturalWidth > 0")
        expect(page.locator("#job-log")).to_contain_text("finished at step 60")
        shot("jobs.png")
        # A metric evaluation of the run (what `ganforge eval snapshot` appends) gets its own chart.
        run = next((data_dir / "runs").glob("job-*/*/stats.jsonl")).parent
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"kind": "snapshot", "metrics": {"fid": 123.4}, "protocol": {"kimg": 0.48}}) + "\n")
        page.reload()
        expect(page.locator("#job-metrics-figure")).to_be_visible(timeout=30_000)
        expect(page.locator("#job-metrics-legend")).to_contain_text("fid")

        # Models: the job's snapshots with downloads.
        page.goto(f"{studio}/#models")
        expect(page.locator("#models-jobs .model-card")).to_have_count(1)
        expect(page.locator("#models-shipped")).to_contain_text("sr-x4-psnr")
        shot("models.png")

        # Playground: generate a grid, then an interpolation; restore with the slider against bicubic.
        page.goto(f"{studio}/#play/generate:1")
        page.fill("#gen-seeds", "0-15")
        page.click("#gen-form button[type=submit]")
        page.wait_for_function("document.getElementById('gen-result').naturalWidth === 16 * 4 + 6")
        shot("playground-generate.png")
        page.click("#interp-form button[type=submit]")
        page.wait_for_function("document.getElementById('gen-result').naturalHeight === 16")
        page.click("#tab-restore")
        page.select_option("#restore-model", "shipped:sr-x4-psnr")
        page.set_input_files("#restore-image", str(tmp_path / "small.png"))
        page.click("#restore-form button[type=submit]")
        page.wait_for_function("document.getElementById('compare-after').naturalWidth === 96")  # 24 x4
        expect(page.locator("#compare-left")).to_contain_text("bicubic")
        page.wait_for_function("document.getElementById('compare-before').naturalWidth === 96")
        page.fill("#compare-slider", "30")
        shot("playground-restore.png")

        # Inpaint: an inpaint job's snapshot (an untrained tiny Context Encoder: the fill is noise, the path is real).
        with httpx2.Client(base_url=studio) as http:
            inpaint_id = inpaint_job(http, data_dir / "runs")
            color_id = translate_job(http, data_dir / "runs", colorizer=True)
        page.goto(f"{studio}/#play/inpaint:{inpaint_id}")
        expect(page.locator("#inpaint-model")).to_have_value(f"{inpaint_id}:latest")
        page.set_input_files("#inpaint-image", str(tmp_path / "photo.png"))
        expect(page.locator("#paint-stage")).to_be_visible()
        page.click("#inpaint-fill")  # nothing painted yet: refused on the page, nothing sent
        expect(page.locator("#error-text")).to_contain_text("the mask is empty")
        painted = ("(() => { const c = document.getElementById('paint-mask'); const d = c.getContext('2d')"
                   ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) "
                   "n += d[i] > 127; return n; })()")
        size = int(page.input_value("#inpaint-size"))
        page.keyboard.press("]")  # shortcuts: grow the brush, eraser, back to the brush
        assert int(page.input_value("#inpaint-size")) > size
        page.keyboard.press("e")
        expect(page.locator("#inpaint-eraser")).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("b")
        expect(page.locator("#inpaint-brush")).to_have_attribute("aria-pressed", "true")

        def drag(points: list[tuple[float, float]]) -> None:  # fractions of the canvas, which is brought into view
            page.locator("#paint-mask").scroll_into_view_if_needed()
            box = page.locator("#paint-mask").bounding_box()
            page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
            page.mouse.down()
            for fx, fy in points[1:]:
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=5)
            page.mouse.up()

        drag([(0.30, 0.35), (0.45, 0.42), (0.62, 0.38)])
        first = page.evaluate(painted)
        assert first > 100
        drag([(0.2, 0.8), (0.8, 0.8)])
        assert page.evaluate(painted) > first
        page.keyboard.press("Control+z")  # undo the second stroke only
        assert page.evaluate(painted) == first
        page.click("#inpaint-fill")
        page.wait_for_function("document.getElementById('inpaint-result').naturalWidth === 160")
        expect(page.locator("#inpaint-result-caption")).to_contain_text("filled")
        holes = int(page.text_content("#inpaint-result-caption").split()[1])
        assert 0.8 * first <= holes <= 1.2 * first  # the server's threshold kept about what was painted opaque
        shot("playground-inpaint.png")
        touch = browser.new_page(viewport={"width": 420, "height": 860}, has_touch=True)  # a phone: tap a dot
        touch.on("pageerror", lambda e: errors.append(str(e)))
        touch.goto(f"{studio}/#play/inpaint:{inpaint_id}")
        touch.select_option("#inpaint-dataset", "shapes")  # a dataset's image instead of a file this time
        touch.fill("#inpaint-index", "3")
        touch.click("#inpaint-pick")
        sync_api.expect(touch.locator("#paint-caption")).to_contain_text("shapes-3.png", timeout=30_000)
        touch.locator("#paint-mask").scroll_into_view_if_needed()
        tbox = touch.locator("#paint-mask").bounding_box()
        touch.touchscreen.tap(tbox["x"] + tbox["width"] / 2, tbox["y"] + tbox["height"] / 2)
        assert touch.evaluate(painted) > 0
        touch.close()

        # Colorize: a gray photo through a colorizer snapshot, the result beside the input.
        page.goto(f"{studio}/#play/translate:{color_id}")
        expect(page.locator("#translate-run")).to_have_text("Colorize")
        expect(page.locator("#translate-direction")).to_be_disabled()
        page.set_input_files("#translate-image", str(tmp_path / "gray.png"))
        page.click("#translate-run")
        page.wait_for_function("document.getElementById('translate-result').naturalWidth === 160")
        expect(page.locator("#translate-pair")).to_be_visible()
        shot("playground-translate.png")

        # A server refusal reaches the page as its message.
        page.click("#tab-generate")
        page.fill("#gen-seeds", "0-200")
        page.click("#gen-form button[type=submit]")
        expect(page.locator("#error-text")).to_contain_text("give 1..64 seeds")
        browser.close()
    assert not errors, errors
    assert sorted(p.name for p in shots.glob("*.png")) == sorted(
        ["datasets.png", "train.png", "jobs.png", "models.png", "playground-generate.png", "playground-restore.png",
         "playground-inpaint.png", "playground-translate.png"])
