"""The studio measured (issue 16): API latency, responsiveness while a training job saturates the CPU, and crash
recovery. Everything runs against a real `ganforge studio` server process (uvicorn) on a scratch data dir, through
HTTP (httpx2, keep-alive), as the page and scripts use it.

    python bench/studio.py all [--quick] [--out bench/results/studio.json]
    python bench/studio.py latency|concurrency|crash [--quick] [--trials 10] [--seconds 30]

Each section merges its record into the output file (``--quick``: studio-quick.json), with the command, the time,
the machine and the load average.

latency. A data dir holding 100 finished job records (written directly with the studio's JobStore, each with a run
folder and a 100-record stats.jsonl, as a real run leaves it). Sequential requests after a warm-up, client wall time:
``GET /api/jobs`` (the 100 jobs) and ``POST /api/infer/restore`` with the shipped ``denoise-blind`` model on a 256x256
RGB PNG (upload, decode, the model, PNG encode). The model alone (the pipeline called in this process on the same
pixels, interleaved with the requests) is timed too, so the API's own share is visible.

concurrency. The same data dir plus a training job (dcgan-32 on the built-in shapes, ``run.threads`` = the number
of cores) that keeps every core busy; once it trains, the list endpoints (``/api/jobs`` with 101 jobs,
``/api/datasets``, ``/api/models``) and the job's own ``/api/jobs/{id}`` are requested in turn for ``--seconds``.
Target: p99 under 200 ms for the list endpoints. The worker's CPU use over the window (from /proc) shows that the
CPU really was saturated.

crash. A user dataset (64 images uploaded as a zip) and a job training on it (checkpoint every 4 steps, a numbered
snapshot every 8). ``--trials`` times: once the worker has written a new checkpoint since its last start, wait a
random 0-2 s, then SIGKILL both the server and the worker (in random order); start a new server; the job must be
``interrupted``, the dataset's files unchanged (sha256), every snapshot seen before the kill still there (the
numbered ones at or below the resumed checkpoint with the same sha256; all loadable), and POST /resume must bring the
job back to running from its last checkpoint. After the last trial the job is resumed to its end: it must finish,
with one unbroken stats history (no gap, no duplicate step), and its final snapshot must generate an image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import httpx2  # noqa: E402

TARGET_MS = 200.0
SEED = 20261201


# ---- helpers --------------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), None) if Path("/proc/cpuinfo").exists() else None
    return {"platform": platform.platform(), "cpu_model": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank, so p99 of 100 samples is the 99th smallest, not an interpolation)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(np.ceil(q / 100 * len(s))) - 1))]


def summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2),
            "max_ms": round(max(ms), 2), "mean_ms": round(float(np.mean(ms)), 2)}


def timed(call: Callable[[], httpx2.Response]) -> float:
    t = time.perf_counter()
    r = call()
    ms = (time.perf_counter() - t) * 1000
    if r.status_code >= 400:
        raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
    return ms


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


class Server:
    """`python -m ganforge studio` on a free port, in its own process group; ``kill()`` is SIGKILL."""

    def __init__(self, data_dir: Path, log: Path):
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = open(log, "ab")  # noqa: SIM115  (the server's output, closed in kill() / stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "ganforge", "studio", "--port", str(self.port),
                                      "--data-dir", str(data_dir)], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.http = httpx2.Client(base_url=self.url, timeout=120)
        deadline = time.time() + 120
        while True:
            try:
                if self.http.get("/api/info", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the studio did not start; see {log}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.http.close()
        self._log.close()

    def stop(self) -> None:
        """Ctrl-C: the server stops its workers with a checkpoint."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.http.close()
        self._log.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 0.2) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def fake_jobs(data_dir: Path, n: int, stats_records: int = 100) -> None:
    """``n`` finished dcgan-32 jobs recorded directly in the studio's database, each with a run folder holding a
    config, a stats.jsonl of ``stats_records`` ticks and a log (no weights: the job list does not read them)."""
    from ganforge.config import resolve_config
    from ganforge.studio import StudioSettings
    from ganforge.studio.store import JobStore

    settings = StudioSettings(data_dir=data_dir)
    settings.ensure_dirs()
    store = JobStore(settings.db_path)
    for i in range(n):
        job_dir_of = lambda job_id: settings.runs_dir / f"job-{job_id:05d}"  # noqa: E731
        cfg = resolve_config("dcgan-32", {"data": {"source": "shapes"}, "run": {"out": "x"}})
        job = store.create(name=f"bench-{i:03d}", task="gan", preset="dcgan-32", dataset="shapes", overrides={},
                           config=cfg.model_dump(mode="json"), job_dir_of=job_dir_of)
        run = Path(job.job_dir) / "00000-shapes-dcgan-32"
        run.mkdir(parents=True)
        (run / "config.json").write_text(cfg.to_json(), encoding="utf-8")
        (run / "log.txt").write_text("finished\n", encoding="utf-8")
        with open(run / "stats.jsonl", "w", encoding="utf-8") as f:
            for t in range(1, stats_records + 1):
                f.write(json.dumps({"step": 40 * t, "kimg": 2.56 * t, "loss/G": 1.2, "loss/D": 0.6,
                                    "img_per_s": 900.0, "time_s": 3.0 * t}) + "\n")
        store.update(job.id, status="finished", started=time.time(), ended=time.time(), exit_code=0)


def photo_256() -> bytes:
    """A 256x256 RGB PNG: scikit-image's astronaut (public domain) when installed, else a textured pattern."""
    try:
        from skimage.data import astronaut

        img = Image.fromarray(astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    except ImportError:
        rng = np.random.default_rng(SEED)
        yy, xx = np.mgrid[:256, :256]
        img = Image.fromarray(np.stack([xx % 256, yy % 256, rng.integers(0, 256, (256, 256))], -1).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat: their deltas give the CPU's busy fraction."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values) - idle), float(sum(values))


def worker_pid(data_dir: Path, job_id: int) -> int | None:
    from ganforge.studio import StudioSettings
    from ganforge.studio.store import JobStore

    job = JobStore(StudioSettings(data_dir=data_dir).db_path).get(job_id)
    return job.pid if job else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- sections -------------------------------------------------------------------------------------------------------
def latency(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from ganforge.core.imageio import read_image
    from ganforge.pretrained import PRETRAINED, load_restorer

    data_dir = scratch / "latency"
    fake_jobs(data_dir, 100)
    n_list, n_infer = (40, 10) if args.quick else (300, 60)
    photo = photo_256()
    model = PRETRAINED["denoise-blind"]
    if not model.installed:
        raise SystemExit("the shipped denoise-blind model is not installed in this copy (src/ganforge/pretrained/)")
    (scratch / "photo.png").write_bytes(photo)
    pixels = read_image(scratch / "photo.png").pixels
    pipe = load_restorer("denoise-blind", "denoise")

    server = Server(data_dir, scratch / "latency-server.log")
    try:
        assert len(server.http.get("/api/jobs").json()) == 100
        for _ in range(5):
            server.http.get("/api/jobs")
        jobs_ms = [timed(lambda: server.http.get("/api/jobs")) for _ in range(n_list)]

        def infer() -> httpx2.Response:
            return server.http.post("/api/infer/restore", data={"model": "denoise-blind"},
                                    files={"image": ("photo.png", photo, "image/png")})

        for _ in range(3):
            infer()
            pipe(pixels)
        infer_ms, direct = [], []
        for _ in range(n_infer):  # interleaved, so that a change in the machine's load hits both alike
            infer_ms.append(timed(infer))
            t = time.perf_counter()
            pipe(pixels)
            direct.append((time.perf_counter() - t) * 1000)
    finally:
        server.stop()
    return {"job_list_100_jobs": summary(jobs_ms),
            "infer_restore_256": {**summary(infer_ms), "model": "denoise-blind (shipped)",
                                  "image": "256x256 RGB PNG", "model_alone": summary(direct)},
            "requests": "sequential, one keep-alive connection, after a warm-up"}


def concurrency(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    data_dir = scratch / "concurrency"
    fake_jobs(data_dir, 100)
    seconds = 8 if args.quick else args.seconds
    threads = os.cpu_count() or 2
    server = Server(data_dir, scratch / "concurrency-server.log")
    try:
        r = server.http.post("/api/jobs", json={"preset": "dcgan-32", "dataset": "shapes", "name": "saturate",
                                                "overrides": {"run": {"kimg": 500, "threads": threads}}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        wait_for("the job to train", lambda: (server.http.get(f"/api/jobs/{job_id}").json()["step"] or 0) > 0)
        pid = worker_pid(data_dir, job_id)
        assert pid is not None
        endpoints = {"/api/jobs": [], "/api/datasets": [], "/api/models": [], f"/api/jobs/{job_id}": []}
        cpu0, t0, load0, (busy0, total0) = cpu_seconds(pid), time.time(), os.getloadavg()[0], cpu_busy()
        while time.time() - t0 < seconds:
            for path, samples in endpoints.items():
                samples.append(timed(lambda p=path: server.http.get(p)))
        cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
        busy1, total1 = cpu_busy()
        machine_busy = (busy1 - busy0) / max(total1 - total0, 1.0)
        step = server.http.get(f"/api/jobs/{job_id}").json()["step"]
        server.http.post(f"/api/jobs/{job_id}/stop")
        wait_for("the job to stop", lambda: server.http.get(f"/api/jobs/{job_id}").json()["status"] in
                 ("stopped", "interrupted", "failed"))
    finally:
        server.stop()
    lists = [ms for path, v in endpoints.items() if path.count("/") == 2 for ms in v]
    result = {path: summary(v) for path, v in endpoints.items()}
    result = {"list_endpoints_all": summary(lists), "per_endpoint": {p.replace(str(job_id), "{id}"): s
                                                                      for p, s in result.items()},
              "seconds": seconds, "jobs_listed": 101, "training": {
                  "preset": "dcgan-32", "dataset": "shapes", "threads": threads, "worker_cpu_cores_used": round(cpu, 2),
                  "cores": os.cpu_count(), "step_at_end": step, "loadavg_1min_start": round(load0, 2),
                  "machine_cpu_busy_fraction": round(machine_busy, 3)},
              "target_p99_ms": TARGET_MS}
    result["pass"] = result["list_endpoints_all"]["p99_ms"] < TARGET_MS
    return result


def shapes_zip(n: int = 64) -> bytes:
    rng = np.random.default_rng(SEED)
    buf = io.BytesIO()
    yy, xx = np.mgrid[:32, :32]
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            img = np.zeros((32, 32, 3), np.uint8) + rng.integers(0, 80, 3, dtype=np.uint8)
            cy, cx, r = rng.integers(8, 24), rng.integers(8, 24), rng.integers(3, 8)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(120, 256, 3, dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(img).save(png, "PNG")
            z.writestr(f"discs/{i:03d}.png", png.getvalue())
    return buf.getvalue()


CRASH_OVERRIDES = {"model": {"z_dim": 32, "g_width": 16, "d_width": 16, "max_width": 64}, "optim": {"batch": 16},
                   "run": {"kimg": 1000, "tick_kimg": 0.032, "checkpoint_every_kimg": 0.064,
                           "snapshot_every_kimg": 0.128, "sample_every_kimg": 0.128, "grid_samples": 16,
                           "threads": 1}}


def snapshots(run: Path) -> dict[str, str]:
    """Snapshot file name -> sha256 (the pairs' files; an atomic write's temporary file is not a snapshot)."""
    return {p.name: sha256(p) for p in sorted((run / "snapshots").glob("*")) if p.is_file()
            and p.suffix in (".json", ".safetensors") and not p.name.startswith(".")}


def newest_checkpoint(run: Path) -> int:
    steps = [int(p.stem[5:]) for p in (run / "checkpoints").glob("ckpt-*.pt") if p.stem[5:].isdigit()]
    return max(steps, default=-1)


def crash(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from ganforge.core.snapshot import load_snapshot
    from ganforge.training.rundir import read_jsonl

    rng = random.Random(SEED)
    data_dir = scratch / "crash"
    trials = 2 if args.quick else args.trials
    server = Server(data_dir, scratch / "crash-server.log")
    r = server.http.post("/api/datasets", data={"name": "discs"},
                         files=[("files", ("discs.zip", shapes_zip(), "application/zip"))])
    assert r.status_code == 201, r.text
    dataset_dir = data_dir / "datasets" / "discs"
    dataset_hashes = tree_hashes(dataset_dir)
    r = server.http.post("/api/jobs", json={"preset": "dcgan-32", "dataset": "discs", "name": "crash",
                                            "overrides": CRASH_OVERRIDES})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    job_dir = data_dir / "runs" / f"job-{job_id:05d}"
    records, since = [], -1  # since: the checkpoint the worker last started from (-1: a fresh start)
    try:
        for trial in range(1, trials + 1):
            run = wait_for("the run folder", lambda: next(job_dir.glob("0*"), None))
            wait_for("a new checkpoint", lambda run=run, since=since: newest_checkpoint(run) > since, timeout=300)
            delay = rng.uniform(0, 2)
            time.sleep(delay)
            before = snapshots(run)
            pid = worker_pid(data_dir, job_id)
            step_at_kill = (read_jsonl(run / "stats.jsonl") or [{"step": 0}])[-1]["step"]
            order = rng.choice(["server first", "worker first"])
            t_kill = time.time()
            if order == "worker first" and pid:
                os.kill(pid, signal.SIGKILL)
            server.kill()
            if order == "server first" and pid:
                os.kill(pid, signal.SIGKILL)
            wait_for("the worker to die", lambda pid=pid: not pid or not alive(pid), timeout=30, every=0.05)
            t_restart = time.time()
            server = Server(data_dir, scratch / "crash-server.log")
            http = server.http
            job = wait_for("the job to be interrupted", lambda http=http: (j := http.get(f"/api/jobs/{job_id}").json())
                           ["status"] != "running" and j, timeout=60)
            recovered_s, kill_to_interrupted = time.time() - t_restart, time.time() - t_kill
            ckpt = newest_checkpoint(run)
            after = snapshots(run)
            lost = sorted(set(before) - set(after))
            dataset_ok = tree_hashes(dataset_dir) == dataset_hashes
            loadable = True
            for name in {p.split(".")[0] for p in after}:
                try:
                    load_snapshot(run / "snapshots" / name)
                except Exception as exc:  # noqa: BLE001  (recorded: a damaged snapshot is the finding)
                    loadable = False
                    print(f"trial {trial}: snapshot {name} does not load: {exc}", file=sys.stderr)
            kept = {n: h for n, h in before.items() if n.startswith("step") and int(n[4:13]) <= ckpt}
            changed = sorted(n for n, h in kept.items() if after.get(n) != h)
            r = server.http.post(f"/api/jobs/{job_id}/resume")
            resumed = r.status_code == 200
            log_before = (run / "log.txt").read_text(encoding="utf-8").count("resumed from")
            if resumed:
                wait_for("the resumed worker to log its checkpoint", lambda log=run / "log.txt", n=log_before:
                         log.read_text(encoding="utf-8").count("resumed from") > n, timeout=300)
            since = ckpt
            rec = {"trial": trial, "kill_delay_s": round(delay, 2), "order": order, "step_at_kill": step_at_kill,
                   "status_after_restart": job["status"], "checkpoint_resumed_from": ckpt,
                   "restart_to_interrupted_s": round(recovered_s, 2), "kill_to_interrupted_s":
                   round(kill_to_interrupted, 2), "dataset_unchanged": dataset_ok, "snapshots_lost": lost,
                   "snapshots_changed": changed, "snapshots_loadable": loadable, "resumed": resumed}
            rec["ok"] = (job["status"] == "interrupted" and dataset_ok and not lost and not changed and loadable
                         and resumed)
            records.append(rec)
            print(json.dumps(rec), flush=True)
        # The end: run to a close target and check the one history and the final snapshot.
        run = next(job_dir.glob("0*"))
        wait_for("the job to run", lambda: server.http.get(f"/api/jobs/{job_id}").json()["status"] == "running")
        server.http.post(f"/api/jobs/{job_id}/stop")
        wait_for("the job to stop", lambda: server.http.get(f"/api/jobs/{job_id}").json()["status"] in
                 ("stopped", "interrupted", "failed"))
        done = server.http.get(f"/api/jobs/{job_id}").json()["kimg"]
        r = server.http.post(f"/api/jobs/{job_id}/resume", json={"kimg": round(done + 0.128, 3)})
        assert r.status_code == 200, r.text
        final = wait_for("the job to finish", lambda: (j := server.http.get(f"/api/jobs/{job_id}").json())[
            "status"] in ("finished", "failed", "interrupted") and j, timeout=300)
        steps = [rec["step"] for rec in read_jsonl(run / "stats.jsonl")]
        tick = steps[0]
        one_history = steps == list(range(tick, steps[-1] + 1, tick))
        gen = server.http.post("/api/infer/generate", json={"job_id": job_id, "seeds": "0-7"})
    finally:
        server.stop()
    ok = all(r["ok"] for r in records)
    return {"trials": records, "passed": sum(r["ok"] for r in records), "of": trials,
            "final": {"status": final["status"], "step": final["step"], "kimg": final["kimg"],
                      "stats_one_history": one_history, "generate_status": gen.status_code,
                      "resumes_logged": (run / "log.txt").read_text(encoding="utf-8").count("resumed from")},
            "dataset_files": len(dataset_hashes), "job": {"preset": "dcgan-32", "overrides": CRASH_OVERRIDES},
            "pass": ok and final["status"] == "finished" and one_history and gen.status_code == 200}


SECTIONS = {"latency": latency, "concurrency": concurrency, "crash": crash}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=[*SECTIONS, "all"])
    ap.add_argument("--quick", action="store_true", help="few samples and trials: checks the bench, not the studio")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the scratch data dirs (printed)")
    args = ap.parse_args()
    out = args.out or REPO / "bench" / "results" / ("studio-quick.json" if args.quick else "studio.json")
    record = json.loads(out.read_text()) if out.is_file() else {}
    scratch = Path(tempfile.mkdtemp(prefix="ganforge-studio-bench-"))
    try:
        for name in (list(SECTIONS) if args.section == "all" else [args.section]):
            t = time.time()
            result = SECTIONS[name](args, scratch)
            record[name] = {**result, "seconds_total": round(time.time() - t, 1),
                            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "command": " ".join(["python", "bench/studio.py", *sys.argv[1:]]),
                            "machine": machine_info()}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=2) + "\n")
            print(json.dumps({name: {k: v for k, v in result.items() if k != "trials"}}, indent=2), flush=True)
    finally:
        if args.keep:
            print(f"scratch: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
