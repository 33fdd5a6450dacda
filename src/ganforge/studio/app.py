"""The studio's FastAPI app: ``create_app(settings)`` serves the REST API under /api/, its schema at /openapi.json,
and the single page (static/) at /.

Security (docs/studio.md): without a token the app answers only requests addressed to a loopback host name (a
guard against DNS rebinding; `ganforge studio` refuses a non-loopback bind without one); with a token every /api
request must carry it, as ``Authorization: Bearer TOKEN`` or as the HttpOnly ``ganforge_token`` cookie that
``POST /api/session`` sets (the page uses the cookie, because EventSource and <img> cannot send headers).
Request bodies are capped while they stream in (413), and every path is resolved under the data dir.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ganforge.config import PRESETS, TASK_ARCHS, resolve_config
from ganforge.core.files import CheckpointError
from ganforge.core.version import __version__
from ganforge.data import DatasetError
from ganforge.studio import inference
from ganforge.studio.datasets import DatasetNotFound, DatasetStore, Upload
from ganforge.studio.jobs import ACTIVE, JobError, JobManager
from ganforge.studio.settings import LOOPBACK_NAMES, DataDirLock, StudioSettings, is_loopback
from ganforge.studio.store import JobStore
from ganforge.studio.uploads import UploadError, check_suffix, copy_capped, inside
from ganforge.training.rundir import read_jsonl

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ganforge_token"
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
# The playgrounds that exist: one per landed inference pipeline (a page for a task that has not landed does not),
# with the tasks whose snapshots it runs. "translate" also colours photos (pix2pix on derived lab or gray pairs).
PLAYGROUNDS: dict[str, tuple[str, ...]] = {"generate": ("gan",), "restore": ("restore",), "inpaint": ("inpaint",),
                                           "translate": ("pix2pix", "cyclegan")}


MAX_ID = 2**62  # SQLite INTEGER is 64-bit signed: larger ids are refused by validation (422), not by SQLite (500)
JobId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="a job id (GET /api/jobs)")]


# ---- request bodies -----------------------------------------------------------------------------------------------
class SessionRequest(BaseModel):
    token: str = Field(max_length=4096)


class ResolveRequest(BaseModel):
    task: str = Field("gan", description="gan | restore (GET /api/tasks)")
    preset: str = Field(description="a preset of that task (GET /api/presets)")
    dataset: str = Field(description="a dataset name (GET /api/datasets), user or built-in")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description='{section: {field: value}}, e.g. {"run": {"kimg": 5}}')


class JobCreate(ResolveRequest):
    name: str | None = Field(None, max_length=100)
    start: bool = Field(True, description="queue it at once (else it waits for POST /api/jobs/{id}/start)")


class ResumeRequest(BaseModel):
    kimg: float | None = Field(None, gt=0, le=1e6, description="train to this many kimg in total (extends a run)")


class Interpolation(BaseModel):
    seed_a: int = Field(ge=0, le=2**31 - 1)
    seed_b: int = Field(ge=0, le=2**31 - 1)
    frames: int = Field(8, ge=2, le=inference.MAX_FRAMES)


class StyleMix(BaseModel):
    rows: list[int] = Field(min_length=1, max_length=8)
    cols: list[int] = Field(min_length=1, max_length=8)
    styles: Literal["coarse", "middle", "fine"] = "coarse"


class GenerateRequest(BaseModel):
    job_id: int = Field(ge=1, le=MAX_ID, description="the job whose snapshot generates")
    snapshot: str = Field("latest", description="snapshot name in GET /api/jobs/{id}/snapshots")
    seeds: str = Field("0-15", max_length=200, description="0-15, or 1,5,9")
    truncation: float = Field(1.0, ge=0.0, le=2.0, description="psi; below 1 needs a StyleGAN2 snapshot")
    class_index: int | None = Field(None, ge=0, description="the class for a conditional model")
    interpolate: Interpolation | None = None
    mix: StyleMix | None = None


# ---- the app --------------------------------------------------------------------------------------------------
def create_app(settings: StudioSettings) -> FastAPI:
    """The studio app on ``settings.data_dir`` (created if missing). Jobs left running by a previous server are
    recovered when the app starts (lifespan), and running workers are stopped with a checkpoint when it ends."""
    settings.ensure_dirs()
    store = JobStore(settings.db_path)
    datasets = DatasetStore(settings)
    jobs = JobManager(settings, store, datasets)
    pipes = inference.PipelineCache()

    lock = DataDirLock(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock.acquire()  # one server per data dir
        try:
            for stale in settings.tmp_dir.iterdir():  # uploads and deletions cut short by a previous crash
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            jobs.start_scheduler()
            yield
            await asyncio.to_thread(jobs.shutdown)
        finally:
            lock.release()

    # No /docs or /redoc: FastAPI's pages load Swagger UI from a CDN, and the studio makes no network requests.
    app = FastAPI(title="ganforge studio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Train GANs and restoration models on your own images, watch them train, use them. "
                              "See docs/studio.md.")
    app.state.settings, app.state.jobs, app.state.datasets = settings, jobs, datasets

    # ---- middleware: host guard, token, body cap (outermost last) ----------------------------------------------
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if request.method not in ("GET", "HEAD", "OPTIONS") and _cross_site(request):
            # A form or fetch from another site's page (CSRF): "simple" requests (multipart forms, bodiless POSTs
            # such as /stop) reach the server without a CORS preflight, so the browser's Origin decides.
            return JSONResponse({"detail": "cross-site request refused: the studio's API takes changes only from its "
                                           "own page (or from clients that send no Origin header)"}, 403)
        if not settings.token:
            host = _host_name(request.headers.get("host", ""))
            if host not in LOOPBACK_NAMES and not is_loopback(host):
                return JSONResponse({"detail": f"Host {host!r} is not a loopback name; without a token the studio "
                                               "answers only http://127.0.0.1 or http://localhost (DNS rebinding "
                                               "guard). Start it with --token to serve other names"}, 400)
        elif request.url.path.startswith("/api/") and request.url.path != "/api/session":
            sent = request.headers.get("authorization", "")
            token = sent[7:] if sent.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
            if not hmac.compare_digest(token.encode(), settings.token.encode()):
                return JSONResponse({"detail": "missing or wrong token: send 'Authorization: Bearer TOKEN', or log "
                                               "in on the page (POST /api/session)"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    # ---- errors: every refusal is JSON {"detail": message} (+ "fields" for config errors) ----------------------
    @app.exception_handler(JobError)
    async def _job_error(_: Request, exc: JobError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "fields": exc.fields}, exc.status)

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(inference.InferenceError)
    async def _infer_error(_: Request, exc: inference.InferenceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(DatasetNotFound)
    async def _no_dataset(_: Request, exc: DatasetNotFound) -> JSONResponse:
        return JSONResponse({"detail": f"no dataset {exc.args[0]!r}; GET /api/datasets lists them"}, 404)

    @app.exception_handler(DatasetError)
    async def _dataset_error(_: Request, exc: DatasetError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(CheckpointError)
    async def _checkpoint_error(_: Request, exc: CheckpointError) -> JSONResponse:
        return JSONResponse({"detail": _hide_paths(str(exc), settings.data_dir)}, 422)

    # ---- session and info --------------------------------------------------------------------------------------
    @app.get("/api/session", tags=["session"])
    def session_info(request: Request) -> dict[str, Any]:
        """Whether this studio needs a token, and whether this browser already sent the right one."""
        ok = not settings.token or hmac.compare_digest(request.cookies.get(COOKIE, "").encode(),
                                                       settings.token.encode())
        return {"token_required": bool(settings.token), "authenticated": ok}

    @app.post("/api/session", tags=["session"])
    def login(body: SessionRequest) -> JSONResponse:
        """Check a token and set it as an HttpOnly, SameSite=Strict cookie for the page (EventSource and images
        cannot send an Authorization header)."""
        if not settings.token:
            return JSONResponse({"authenticated": True})
        if not hmac.compare_digest(body.token.encode(), settings.token.encode()):
            return JSONResponse({"detail": "wrong token"}, 401)
        resp = JSONResponse({"authenticated": True})
        resp.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict", max_age=30 * 86400)
        return resp

    @app.get("/api/info", tags=["info"])
    def info() -> dict[str, Any]:
        return {"version": __version__, "max_jobs": settings.max_jobs, "max_upload_mb": settings.max_upload_mb,
                "max_pixels": settings.max_pixels, "playgrounds": list(PLAYGROUNDS)}

    @app.get("/api/tasks", tags=["info"])
    def tasks() -> list[dict[str, Any]]:
        """The trainable tasks, their architectures and presets, their playground, and the data options the Train
        page offers as fields: ``masks`` (inpaint: the generated kinds; a user dataset name is a mask folder) and
        ``pairs`` (pix2pix: named derived pairs -> their data.derive chain; '' = the dataset holds pairs)."""
        from ganforge.config import PAIRS
        from ganforge.data.masks import GENERATED

        options: dict[str, dict[str, Any]] = {"inpaint": {"masks": list(GENERATED)}, "pix2pix": {"pairs": PAIRS}}
        return [{"task": t, "archs": list(archs), "presets": [n for n in PRESETS if PRESETS[n].get("task", "gan") == t],
                 "playground": next((p for p, pt in PLAYGROUNDS.items() if t in pt), None),
                 "data_options": options.get(t, {})}
                for t, archs in TASK_ARCHS.items()]

    @app.get("/api/presets", tags=["info"])
    def presets() -> list[dict[str, Any]]:
        out = []
        for name in PRESETS:
            c = resolve_config(name)
            out.append({"name": name, "task": c.task, "arch": c.model.arch, "resolution": c.data.resolution,
                        "batch": c.optim.batch, "kimg": c.run.kimg, "derive": c.data.derive,
                        "cond": getattr(c.model, "cond", None)})
        return out

    @app.post("/api/config/resolve", tags=["jobs"])
    def resolve(body: ResolveRequest) -> dict[str, Any]:
        """The config a job with these settings would train with (422 naming the field when invalid)."""
        cfg = jobs.resolve(body.task, body.preset, body.dataset, body.overrides)
        out = cfg.model_dump(mode="json")
        out["data"]["source"] = body.dataset
        out["run"]["out"] = "<data-dir>/runs/job-N"
        return out

    # ---- datasets ----------------------------------------------------------------------------------------------
    @app.get("/api/datasets", tags=["datasets"])
    def list_datasets() -> list[dict[str, Any]]:
        return datasets.list()

    @app.post("/api/datasets", tags=["datasets"], status_code=201)
    def upload_dataset(name: Annotated[str, Form(max_length=200)],
                       files: Annotated[list[UploadFile], File(description="images and/or .zip archives")]) \
            -> dict[str, Any]:
        """Create a dataset from images (``class/file.png`` names keep one class folder) and/or zip archives
        (subfolders become classes). Refused whole, with the reason, on any unsafe member."""
        return datasets.create(name, [Upload(f.filename or "upload", f.file) for f in files])

    @app.get("/api/datasets/{name}", tags=["datasets"])
    def inspect_dataset(name: str) -> dict[str, Any]:
        """Counts, classes, sizes, modes and the unreadable-files report (with reasons)."""
        return datasets.inspect(name)

    @app.get("/api/datasets/{name}/thumbnails/{index}.png", tags=["datasets"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def thumbnail(name: str, index: Annotated[int, PathParam(ge=0, le=MAX_ID)]) -> Response:
        try:
            png = datasets.thumbnail(name, index)
        except IndexError:
            raise HTTPException(404, f"dataset {name} has no image {index}") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/datasets/{name}/images/{index}.png", tags=["datasets"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def dataset_image(name: str, index: Annotated[int, PathParam(ge=0, le=MAX_ID)],
                      max_side: Annotated[int, Query(ge=16, le=4096, description="shrink larger images to this "
                                                     "longer side")] = 1024) -> Response:
        """Image ``index`` of a dataset (the thumbnails' order) as a PNG, at most ``max_side`` px on its longer side:
        what the inpaint and translate playgrounds take as their input when you pick a dataset image."""
        try:
            png = datasets.thumbnail(name, index, size=max_side)
        except IndexError:
            raise HTTPException(404, f"dataset {name} has no image {index}") from None
        return Response(png, media_type="image/png")

    @app.delete("/api/datasets/{name}", tags=["datasets"], status_code=204)
    def delete_dataset(name: str) -> Response:
        used = [j.id for j in store.list(ACTIVE) if j.dataset == name]
        if used:
            raise HTTPException(409, f"dataset {name} is used by active job(s) {used}; stop them first")
        datasets.delete(name)
        return Response(status_code=204)

    # ---- jobs --------------------------------------------------------------------------------------------------
    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs() -> list[dict[str, Any]]:
        return [jobs.describe(j) for j in store.list()]

    @app.post("/api/jobs", tags=["jobs"], status_code=201)
    def create_job(body: JobCreate) -> dict[str, Any]:
        """Validate (422 naming the field), record, and queue unless ``start`` is false."""
        job = jobs.create(body.task, body.preset, body.dataset, body.overrides, body.name, body.start)
        return jobs.describe(job)

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: JobId) -> dict[str, Any]:
        return jobs.describe(jobs.get(job_id))

    @app.post("/api/jobs/{job_id}/start", tags=["jobs"])
    def start_job(job_id: JobId) -> dict[str, Any]:
        return jobs.describe(jobs.start(job_id))

    @app.post("/api/jobs/{job_id}/stop", tags=["jobs"])
    def stop_job(job_id: JobId) -> dict[str, Any]:
        """SIGTERM: the worker finishes its step, writes a checkpoint and a snapshot, and exits (status stopping,
        then stopped). A queued job just leaves the queue."""
        return jobs.describe(jobs.stop(job_id))

    @app.post("/api/jobs/{job_id}/resume", tags=["jobs"])
    def resume_job(job_id: JobId, body: ResumeRequest | None = None) -> dict[str, Any]:
        return jobs.describe(jobs.resume(job_id, body.kimg if body else None))

    @app.delete("/api/jobs/{job_id}", tags=["jobs"], status_code=204)
    def delete_job(job_id: JobId) -> Response:
        jobs.delete(job_id)
        return Response(status_code=204)

    def run_of(job_id: JobId) -> Path:
        run = jobs.run_dir(jobs.get(job_id))
        if run is None:
            raise HTTPException(404, f"job {job_id} has no run folder yet (it has not started training)")
        return run

    @app.get("/api/jobs/{job_id}/log", tags=["jobs"])
    def job_log(job_id: JobId, lines: int = 200) -> dict[str, Any]:
        """The last ``lines`` of the run's log.txt and of the worker's output (worker.log)."""
        job = jobs.get(job_id)
        lines = max(1, min(lines, 5000))
        run = jobs.run_dir(job)
        return {"log": _tail(run / "log.txt", lines) if run else [],
                "worker": _tail(Path(job.job_dir) / "worker.log", lines)}

    @app.get("/api/jobs/{job_id}/stats", tags=["jobs"])
    def job_stats(job_id: JobId) -> list[dict[str, Any]]:
        """Every record of stats.jsonl (one per tick): step, kimg, losses, timings."""
        run = jobs.run_dir(jobs.get(job_id))
        return read_jsonl(run / "stats.jsonl") if run else []

    @app.get("/api/jobs/{job_id}/metrics", tags=["jobs"])
    def job_metrics(job_id: JobId) -> list[dict[str, Any]]:
        run = jobs.run_dir(jobs.get(job_id))
        return read_jsonl(run / "metrics.jsonl") if run else []

    @app.get("/api/jobs/{job_id}/samples", tags=["jobs"])
    def job_samples(job_id: JobId) -> list[dict[str, Any]]:
        """The sample grids (fixed seeds) in step order, plus reals.png first."""
        run = jobs.run_dir(jobs.get(job_id))
        return _samples(job_id, run) if run else []

    @app.get("/api/jobs/{job_id}/samples/{file}", tags=["jobs"], response_class=FileResponse,
             responses={200: {"content": {"image/png": {}}}})
    def job_sample(job_id: JobId, file: str) -> FileResponse:
        return FileResponse(_file_in(run_of(job_id) / "samples", file, ".png"), media_type="image/png")

    @app.get("/api/jobs/{job_id}/snapshots", tags=["snapshots"])
    def job_snapshots(job_id: JobId) -> list[dict[str, Any]]:
        """Snapshots with their metadata: step, kimg, task, pipeline, arch, metrics, size."""
        run = jobs.run_dir(jobs.get(job_id))
        return _snapshots(job_id, run) if run else []

    @app.get("/api/jobs/{job_id}/snapshots/{file}", tags=["snapshots"], response_class=FileResponse,
             responses={200: {"content": {"application/octet-stream": {}, "application/json": {}}}})
    def download_snapshot(job_id: JobId, file: str) -> FileResponse:
        """``<name>.safetensors`` or ``<name>.json``: together they are the snapshot (`ganforge.load` takes it)."""
        suffix = ".json" if file.endswith(".json") else ".safetensors"
        path = _file_in(run_of(job_id) / "snapshots", file, suffix)
        job = jobs.get(job_id)
        return FileResponse(path, filename=f"job{job_id}-{Path(job.job_dir).name}-{path.name}",
                            media_type="application/json" if suffix == ".json" else "application/octet-stream")

    @app.get("/api/jobs/{job_id}/snapshots/{name}/onnx", tags=["snapshots"], response_class=FileResponse,
             responses={200: {"content": {"application/octet-stream": {}}}})
    def export_snapshot(job_id: JobId, name: str) -> FileResponse:
        """The snapshot's network as ONNX (``ganforge export``'s format), exported on first request and kept in the
        run folder's ``exports/`` until the snapshot changes. Needs the ``onnx`` extra (422 saying so otherwise)."""
        from ganforge.infer.export import export_onnx

        snap = snapshot_path(job_id, name)
        out = snap.parent.parent / "exports" / f"{snap.name}.onnx"
        weights = snap.with_name(snap.name + ".safetensors")
        if not out.is_file() or out.stat().st_mtime < weights.stat().st_mtime:
            out.parent.mkdir(exist_ok=True)
            try:
                export_onnx(snap, out)
            except ValueError as exc:  # OnnxUnavailable, OnnxExportError: the message says what to do
                raise HTTPException(422, _hide_paths(str(exc), settings.data_dir)) from None
        job = jobs.get(job_id)
        return FileResponse(out, filename=f"job{job_id}-{Path(job.job_dir).name}-{out.name}",
                            media_type="application/octet-stream")

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(job_id: JobId, request: Request) -> StreamingResponse:
        """Server-Sent Events: ``stats`` (each new stats.jsonl record), ``sample`` (each new sample grid),
        ``metric`` (each new metrics.jsonl record), ``status`` (status changes), ``reset`` (a resume truncated the
        stats: reload them), ``end`` (the job is no longer active; the stream closes). Event ids are
        ``stats.samples.metrics`` counts: reconnecting with Last-Event-ID continues where the stream left off."""
        jobs.get(job_id)
        cursor = _parse_cursor(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))
        return StreamingResponse(_events(job_id, cursor, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(job_id: JobId, cursor: list[int], request: Request) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last_status, last_beat = None, time.monotonic()
        while True:
            job = store.get(job_id)
            if job is None:
                yield _sse("status", {"status": "deleted"}, cursor)
                return
            run = jobs.run_dir(job)
            if run is not None:
                stats = read_jsonl(run / "stats.jsonl")
                if len(stats) < cursor[0]:  # a resume dropped records past its checkpoint
                    cursor[0] = 0
                    yield _sse("reset", {}, cursor)
                for rec in stats[cursor[0]:]:
                    cursor[0] += 1
                    yield _sse("stats", rec, cursor)
                samples = _samples(job_id, run)
                for s in samples[cursor[1]:]:
                    cursor[1] += 1
                    yield _sse("sample", s, cursor)
                metrics = read_jsonl(run / "metrics.jsonl")
                for m in metrics[cursor[2]:]:
                    cursor[2] += 1
                    yield _sse("metric", m, cursor)
            if job.status != last_status:
                last_status = job.status
                yield _sse("status", jobs.describe(job), cursor)
            if job.status not in ACTIVE:
                yield _sse("end", {"status": job.status}, cursor)
                return
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(settings.poll_s)

    # ---- models and inference ------------------------------------------------------------------------------------
    @app.get("/api/models", tags=["snapshots"])
    def models() -> dict[str, Any]:
        """Shipped models (installed or not) and every job's latest snapshot, for the Models page."""
        out = []
        for job in store.list():
            run = jobs.run_dir(job)
            snaps = _snapshots(job.id, run) if run else []
            latest = next((s for s in snaps if s["name"] == "latest"), None)
            if latest:
                out.append({"job_id": job.id, "job_name": job.name, "status": job.status, "preset": job.preset,
                            "dataset": job.dataset, "snapshots": snaps, "latest": latest,
                            "metrics": read_jsonl(run / "metrics.jsonl"), "config": job.config})
        return {"shipped": _shipped(), "jobs": out}

    def snapshot_path(job_id: JobId, name: str) -> Path:
        return _file_in(run_of(job_id) / "snapshots", f"{name}.json", ".json").with_suffix("")

    @app.post("/api/infer/generate", tags=["inference"], response_class=Response,
              responses={200: {"content": {"image/png": {}}}})
    def infer_generate(body: GenerateRequest) -> Response:
        """A PNG: one image per seed (a grid), or an interpolation between two seeds, or a style-mixing grid."""
        from ganforge.seeds import parse_seeds

        try:
            inference.check_seed_count(body.seeds)  # before expanding "0-999999999" into a list
            seeds = parse_seeds(body.seeds)
        except ValueError as exc:
            raise HTTPException(422, f"seeds: {exc}") from None
        pipe = pipes.get(snapshot_path(body.job_id, body.snapshot))
        interp = (body.interpolate.seed_a, body.interpolate.seed_b, body.interpolate.frames) \
            if body.interpolate else None
        mix = (body.mix.rows, body.mix.cols, body.mix.styles) if body.mix else None
        png = inference.generate(pipe, seeds, body.truncation, body.class_index, interp, mix)
        return Response(png, media_type="image/png")

    @app.post("/api/infer/restore", tags=["inference"], response_class=Response,
              responses={200: {"content": {"image/png": {}}}})
    def infer_restore(image: Annotated[UploadFile, File(description="png, jpg, webp, bmp or tif")],
                      model: Annotated[str | None, Form(description="a shipped restoration model (GET "
                                                                    "/api/models)")] = None,
                      job_id: Annotated[int | None, Form(ge=1, le=MAX_ID, description="or a job's snapshot")] = None,
                      snapshot: Annotated[str, Form(max_length=200)] = "latest",
                      method: Annotated[Literal["model", "bicubic"], Form()] = "model",
                      sigma: Annotated[float | None, Form(ge=0, le=255, description="noise level (0-255) for a "
                                                          "non-blind denoiser")] = None) -> Response:
        """Restore an uploaded image with a shipped restoration model (upscale, denoise, derain) or a job's
        snapshot; returns a PNG (``X-Scale`` says the model's scale). ``method=bicubic`` returns the bicubic upscale
        at the model's scale instead: the baseline for the before/after slider."""
        from ganforge.pretrained import RESTORE_COMMANDS

        path = shipped_or_snapshot(model, job_id, snapshot, RESTORE_COMMANDS)
        pipe = pipes.get(path)
        work = settings.tmp_dir / f"infer-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            loaded = inference.read_upload(save_upload(image, work, "input"), settings.max_pixels)
            scale = int(getattr(pipe, "scale", 1))
            if loaded.pixels.shape[0] * loaded.pixels.shape[1] * scale * scale > settings.max_pixels:
                raise inference.InferenceError(f"the result would have {loaded.pixels.shape[0] * scale}x"
                                               f"{loaded.pixels.shape[1] * scale} pixels, over the studio's limit of "
                                               f"{settings.max_pixels:,}; crop the image", 413)
            png = inference.bicubic(loaded, scale) if method == "bicubic" else inference.restore(pipe, loaded, sigma)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Response(png, media_type="image/png", headers={"X-Scale": str(scale)})

    def shipped_or_snapshot(model: str | None, job_id: int | None, snapshot: str,
                            commands: str | tuple[str, ...]) -> Path:
        """The snapshot an inference request names: exactly one of a shipped model (of ``commands``) or a job's."""
        if model is not None and job_id is None:
            return _shipped_path(model, commands)
        if job_id is not None and model is None:
            return snapshot_path(job_id, snapshot)
        raise HTTPException(422, "give exactly one of model (a shipped model) or job_id (a job's snapshot)")

    def save_upload(file: UploadFile, work: Path, stem: str) -> Path:
        """Copy an uploaded image into ``work`` under the upload cap (pickles and other non-images refused)."""
        suffix = check_suffix(file.filename or "image.png")
        local = work / f"{stem}{suffix if suffix else '.png'}"
        copy_capped(file.file, local, [settings.max_upload_bytes], file.filename or f"the {stem}")
        return local

    @app.post("/api/infer/inpaint", tags=["inference"], response_class=Response,
              responses={200: {"content": {"image/png": {}}}})
    def infer_inpaint(image: Annotated[UploadFile, File(description="png, jpg, webp, bmp or tif")],
                      mask: Annotated[UploadFile, File(description="the hole, same size as the image: white (or "
                                                       "opaque, on a transparent PNG) = hole; thresholded at half")],
                      model: Annotated[str | None, Form(description="a shipped inpainting model (GET "
                                                                    "/api/models)")] = None,
                      job_id: Annotated[int | None, Form(ge=1, le=MAX_ID, description="or an inpaint job")] = None,
                      snapshot: Annotated[str, Form(max_length=200)] = "latest") -> Response:
        """Fill the hole of an uploaded image with a shipped inpainting model or an inpaint job's snapshot (exactly
        one of ``model`` and ``job_id``); returns a PNG of the image's size in which only hole pixels changed.
        Canvas masks arrive anti-aliased: a mask pixel is hole when its level (alpha for a transparent PNG, else the
        mean of its channels) is above 127 of 255 (``X-Hole-Pixels`` says how many). An empty mask, a mask of another
        size or a snapshot of another task is a 422 saying so."""
        pipe = pipes.get(shipped_or_snapshot(model, job_id, snapshot, "inpaint"))
        work = settings.tmp_dir / f"infer-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            loaded = inference.read_upload(save_upload(image, work, "input"), settings.max_pixels)
            hole = inference.read_mask_upload(save_upload(mask, work, "mask"), settings.max_pixels)
            png = inference.inpaint(pipe, loaded, hole)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Response(png, media_type="image/png", headers={"X-Hole-Pixels": str(int(hole.sum()))})

    def _translate(image: UploadFile, path: Path, direction: str, colorize: bool) -> Response:
        pipe = pipes.get(path)
        work = settings.tmp_dir / f"infer-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            loaded = inference.read_upload(save_upload(image, work, "input"), settings.max_pixels)
            png = inference.translate(pipe, loaded, direction, colorize=colorize)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Response(png, media_type="image/png")

    @app.post("/api/infer/translate", tags=["inference"], response_class=Response,
              responses={200: {"content": {"image/png": {}}}})
    def infer_translate(image: Annotated[UploadFile, File(description="png, jpg, webp, bmp or tif")],
                        model: Annotated[str | None, Form(description="a shipped translation model (GET "
                                                                      "/api/models)")] = None,
                        job_id: Annotated[int | None, Form(ge=1, le=MAX_ID, description="or a pix2pix or cyclegan "
                                                                                         "job")] = None,
                        snapshot: Annotated[str, Form(max_length=200)] = "latest",
                        direction: Annotated[Literal["AtoB", "BtoA"], Form(description="BtoA needs a CycleGAN "
                                                                           "snapshot")] = "AtoB") -> Response:
        """Translate an uploaded image with a shipped translation model or a pix2pix or CycleGAN job's snapshot
        (exactly one of ``model`` and ``job_id``); returns a PNG of the same size."""
        return _translate(image, shipped_or_snapshot(model, job_id, snapshot, "translate"), direction,
                          colorize=False)

    @app.post("/api/infer/colorize", tags=["inference"], response_class=Response,
              responses={200: {"content": {"image/png": {}}}})
    def infer_colorize(image: Annotated[UploadFile, File(description="a gray (or colour) photo")],
                       model: Annotated[str | None, Form(description="a shipped colorization model (GET "
                                                                     "/api/models)")] = None,
                       job_id: Annotated[int | None, Form(ge=1, le=MAX_ID, description="or a colorize job")] = None,
                       snapshot: Annotated[str, Form(max_length=200)] = "latest") -> Response:
        """Colour a photo with a colorization model (pix2pix on derived lab or gray pairs, e.g. preset colorize-64):
        the result keeps the photo's lightness and takes its colours from the model."""
        return _translate(image, shipped_or_snapshot(model, job_id, snapshot, "colorize"), "AtoB", colorize=True)

    # ---- the page ----------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# ---- helpers --------------------------------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, from Content-Length at once, and
    while it streams in when the length is not declared (chunked), before the form parser spools it anywhere."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen, over, started = 0, False, False

        async def counted() -> dict[str, Any]:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            # Once the body crossed the limit, whatever the app answers (FastAPI turns a failed form parse into a
            # generic 400) is replaced by the 413 that says why.
            nonlocal started
            if over:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over the studio's upload limit ({self.limit / 2**20:g} MB); "
                                     "upload less at once or start the studio with a larger --max-upload-mb"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _cross_site(request: Request) -> bool:
    """True when a browser says the request comes from another site's page: Sec-Fetch-Site is cross-site, or the
    Origin (scheme://host:port) is not this server's own. Scripts (curl, httpx) send neither and pass."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def _host_name(header: str) -> str:
    """The host of a Host header without its port: 'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _hide_paths(message: str, data_dir: Path) -> str:
    return message.replace(str(data_dir), "<data-dir>")


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * lines))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _file_in(folder: Path, file: str, suffix: str) -> Path:
    """``folder/file`` for a plain file name with ``suffix`` that exists; 404 otherwise (no traversal)."""
    if not _FILE_RE.match(file) or not file.endswith(suffix):
        raise HTTPException(404, f"no file {file!r}")
    try:
        path = inside(folder, file)
    except UploadError:
        raise HTTPException(404, f"no file {file!r}") from None
    if not path.is_file():
        raise HTTPException(404, f"no file {file!r}")
    return path


def _samples(job_id: JobId, run: Path) -> list[dict[str, Any]]:
    folder = run / "samples"
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.png")):
        m = re.match(r"^fakes(\d+)\.png$", p.name)
        if p.name == "reals.png" or m:
            out.append({"name": p.name, "step": int(m.group(1)) if m else None, "reals": m is None,
                        "url": f"/api/jobs/{job_id}/samples/{p.name}"})
    out.sort(key=lambda s: -1 if s["step"] is None else s["step"])
    return out


def _snapshots(job_id: JobId, run: Path) -> list[dict[str, Any]]:
    from ganforge.infer.translate import COLORIZE_DERIVES

    out = []
    for meta_path in sorted((run / "snapshots").glob("*.json")):
        weights = meta_path.with_suffix(".safetensors")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written, or damaged: the next listing shows it
        if not weights.is_file():
            continue
        out.append({"name": meta_path.stem, "step": meta.get("step"), "kimg": meta.get("kimg"),
                    "task": meta.get("task"), "pipeline": meta.get("pipeline"), "arch": meta.get("arch"),
                    "metrics": meta.get("metrics", {}), "class_names": meta.get("class_names", []),
                    "resolution": (meta.get("dataset") or {}).get("resolution"), "scale": meta.get("scale", 1),
                    "directions": meta.get("directions"), "derive": meta.get("derive"),
                    "colorizer": meta.get("pipeline") == "translate" and meta.get("derive") in COLORIZE_DERIVES,
                    "bytes": weights.stat().st_size, "ganforge_version": meta.get("ganforge_version"),
                    "download": {"safetensors": f"/api/jobs/{job_id}/snapshots/{meta_path.stem}.safetensors",
                                 "json": f"/api/jobs/{job_id}/snapshots/{meta_path.stem}.json",
                                 "onnx": f"/api/jobs/{job_id}/snapshots/{meta_path.stem}/onnx"}})
    return out


def _shipped() -> list[dict[str, Any]]:
    """The shipped models (ganforge.pretrained, each command's default first), with whether this copy has their
    files."""
    from ganforge.pretrained import PRETRAINED

    return [{"name": p.name, "command": p.command, "scale": p.scale, "installed": p.installed,
             "description": p.description, "non_blind": p.non_blind, "preset": p.preset, "default": p.default}
            for p in PRETRAINED.values()]


def _endpoint(command: str) -> str:
    """The inference endpoint for a shipped model of ``command``."""
    from ganforge.pretrained import RESTORE_COMMANDS

    return "/api/infer/restore" if command in RESTORE_COMMANDS else f"/api/infer/{command}"


def _shipped_path(name: str, command: str | tuple[str, ...] | None = None) -> Path:
    """The snapshot of shipped model ``name`` (of ``command``'s kind, or one of several, when given); 422 when
    unknown, of another kind (naming the endpoint that takes it) or absent."""
    from ganforge.pretrained import PRETRAINED, RESTORE_COMMANDS

    p = PRETRAINED.get(name)
    commands = (command,) if isinstance(command, str) else command
    if commands is not None and (p is None or p.command not in commands):
        kind = "restoration" if commands == RESTORE_COMMANDS else "/".join(commands)
        mine = [n for n, q in PRETRAINED.items() if q.command in commands]
        other = f" ({name} is the shipped {p.command} model: use POST {_endpoint(p.command)})" if p else ""
        raise HTTPException(422, f"no shipped {kind} model {name!r}{other}; " + (
            f"shipped {kind} models: {', '.join(mine)}" if mine else
            "none is shipped yet: train one on the Train page and pass job_id"))
    if p is None:
        raise HTTPException(422, f"unknown model {name!r}; shipped models: {', '.join(PRETRAINED)}")
    if not p.installed:
        raise HTTPException(422, f"the shipped model {name} is not installed in this copy of ganforge; train one "
                                 f"(`{p.reproduce}`) or use a job's snapshot")
    return p.path


def _parse_cursor(value: str | None) -> list[int]:
    try:
        parts = [max(0, int(x)) for x in (value or "").split(".")]
    except ValueError:
        parts = []
    return (parts + [0, 0, 0])[:3] if len(parts) == 3 else [0, 0, 0]


def _sse(event: str, data: Any, cursor: list[int]) -> str:
    return f"id: {cursor[0]}.{cursor[1]}.{cursor[2]}\nevent: {event}\ndata: {json.dumps(data)}\n\n"

