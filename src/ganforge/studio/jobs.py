"""Training jobs: validation, a FIFO queue with a limit on concurrent workers, graceful stop, resume, and recovery
after a server restart.

Each job has a folder ``<data-dir>/runs/job-<id>/`` holding what the studio wrote (``studio-config.json``, the
worker's output ``worker.log``, its outcome ``result.json``) and the standard run folder that ``ganforge.train``
creates inside it (``00000-<dataset>-<preset>/``), which the CLI can read, evaluate and resume like any other.

Training runs in a worker subprocess per job (``python -m ganforge.studio.worker``) in its own session, so a Ctrl-C
in the server's terminal does not reach it; the server stops workers with SIGTERM, which the training loop turns
into "finish the step, write a checkpoint, exit". A worker that dies without reporting (SIGKILL, power loss, a
crash of the server) leaves its job ``interrupted``; resuming continues from the run's last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ganforge.config import PRESETS, TASK_ARCHS, ConfigError, TrainConfig, deep_merge, resolve_config
from ganforge.studio.datasets import DatasetNotFound, DatasetStore
from ganforge.studio.settings import StudioSettings
from ganforge.studio.store import ACTIVE, RESUMABLE, JobRecord, JobStore
from ganforge.training.rundir import RUN_RE, read_jsonl

# Fields a studio user may not set: the studio decides where data comes from and where runs go, and it never
# reads weights from arbitrary paths on the server (transfer learning from a studio job is future work).
CHECKPOINT_NAME = re.compile(r"^ckpt-\d{9}\.pt$")  # training.checkpoint.CHECKPOINT_RE (that module loads torch)
FORBIDDEN_OVERRIDES = {"data.source": "pick a dataset instead", "run.out": "the studio puts runs in its data dir",
                       "run.init_from": "transfer learning is not available in the studio yet"}


class JobError(ValueError):
    """A job request that cannot be served; ``status`` is the HTTP status, ``fields`` the config fields at fault."""

    def __init__(self, message: str, status: int = 422, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.fields = status, fields or []


def config_error_fields(message: str) -> list[str]:
    """The field names in a ConfigError message ("  optim.batch: ..." lines, or "unknown preset")."""
    fields = [line.strip().split(":", 1)[0].split(" ")[0] for line in message.splitlines()[1:] if ":" in line]
    return fields or (["preset"] if "preset" in message else [])


def _leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in tree.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def last_jsonl(path: Path, window: int = 65536) -> dict[str, Any] | None:
    """The last complete record of a JSONL file, read from its end (a job list must not parse every job's whole
    stats history); a torn last line (a kill mid-append) is skipped like ``read_jsonl`` does. None when empty."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - window))
            tail = f.read()
    except OSError:
        return None
    lines = tail.splitlines()
    if size > window:
        lines = lines[1:]  # the first line of the window may be cut
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(record, dict):
            return record
    return (read_jsonl(path) or [None])[-1] if size > window else None  # a record longer than the window


def find_run_dir(job_dir: Path) -> Path | None:
    """The run folder ``ganforge.train`` created inside a job folder (None before the worker got that far)."""
    if not job_dir.is_dir():
        return None
    runs = sorted(p for p in job_dir.iterdir() if p.is_dir() and RUN_RE.match(p.name))
    return runs[-1] if runs else None


def has_checkpoint(run: Path | None) -> bool:
    """Does the run folder hold a complete checkpoint to resume from (training/checkpoint.py's names)?"""
    return run is not None and any(CHECKPOINT_NAME.match(p.name) for p in (run / "checkpoints").glob("ckpt-*.pt"))


def _pid_is_worker(pid: int, job_dir: str) -> bool:
    """Is ``pid`` alive and our worker for this job? (Guards against a pid reused by an unrelated process.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # alive but someone else's: not ours
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    except (OSError, IndexError):
        pass
    return b"ganforge.studio.worker" in cmdline and job_dir.encode() in cmdline


class JobManager:
    """Owns the worker subprocesses. The scheduler thread (``start_scheduler``) reaps finished workers, enforces
    stop timeouts and starts queued jobs; requests only change records and send signals."""

    def __init__(self, settings: StudioSettings, store: JobStore, datasets: DatasetStore):
        self.s, self.store, self.datasets = settings, store, datasets
        self._children: dict[int, subprocess.Popen] = {}
        self._orphans: dict[int, int] = {}  # job id -> pid of a worker left by a previous server process
        self._stop_sent: dict[int, float] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- validation ------------------------------------------------------------------------------------------------
    def resolve(self, task: str, preset: str, dataset: str, overrides: dict[str, Any],
                out: str | None = None) -> TrainConfig:
        """The config a job would train with. Raises JobError (422) naming the field for anything invalid."""
        if task not in TASK_ARCHS:
            raise JobError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_ARCHS)}", fields=["task"])
        if preset not in PRESETS:
            valid = ", ".join(n for n in PRESETS if PRESETS[n].get("task", "gan") == task)
            raise JobError(f"unknown preset {preset!r}; valid presets for task {task}: {valid}", fields=["preset"])
        if PRESETS[preset].get("task", "gan") != task:
            raise JobError(f"preset {preset!r} trains task {PRESETS[preset].get('task', 'gan')!r}, not {task!r}",
                           fields=["preset"])
        if not isinstance(overrides, dict) or any(not isinstance(v, dict) for v in overrides.values()):
            raise JobError("overrides must be {section: {field: value}}, e.g. {\"optim\": {\"batch\": 16}}",
                           fields=["overrides"])
        bad = [f for f in _leaves(overrides) if f in FORBIDDEN_OVERRIDES]
        if bad:
            raise JobError("; ".join(f"{f} cannot be set here: {FORBIDDEN_OVERRIDES[f]}" for f in bad), fields=bad)
        try:
            source = self.datasets.source(dataset)
        except DatasetNotFound:
            raise JobError(f"unknown dataset {dataset!r}; upload it first or pick one of GET /api/datasets",
                           fields=["dataset"]) from None
        fixed = {"data": {"source": source}, "run": {"out": out or str(self.s.runs_dir / "job-new")},
                 **self._data_options(task, overrides.get("data", {}))}
        try:
            return resolve_config(preset, deep_merge(overrides, fixed))
        except ConfigError as exc:
            raise JobError(str(exc), fields=config_error_fields(str(exc))) from None

    def _data_options(self, task: str, data: dict[str, Any]) -> dict[str, Any]:
        """The task-specific data fields the Train page offers, checked here so that a bad value is a 422 naming
        the field before a worker starts: ``data.masks`` (a generated kind, or a user dataset holding mask images,
        which becomes its folder: the studio never reads arbitrary server paths) and ``data.derive`` for pix2pix
        (a named pair from config.PAIRS, or a derive chain). Returns the overrides to merge (possibly none)."""
        from ganforge.config import PAIRS
        from ganforge.data.masks import GENERATED

        out: dict[str, Any] = {}
        masks = data.get("masks")
        if masks is not None and masks not in GENERATED:
            if not isinstance(masks, str) or self.datasets.is_builtin(masks):
                raise JobError(f"data.masks must be one of {', '.join(GENERATED)} or the name of an uploaded dataset "
                               f"of mask images (white = hole); got {masks!r}", fields=["data.masks"])
            try:
                out["masks"] = str(self.datasets.folder(masks))
            except (DatasetNotFound, ValueError):
                raise JobError(f"data.masks: no uploaded dataset {masks!r} to take the masks from; upload a folder of "
                               f"mask images (white = hole) first, or use one of {', '.join(GENERATED)}",
                               fields=["data.masks"]) from None
        derive = data.get("derive")
        if task == "pix2pix" and derive:
            from ganforge.data.derive import parse_derive

            chain = PAIRS.get(derive, derive) if isinstance(derive, str) else derive
            try:
                parse_derive(chain)
            except (ValueError, TypeError, AttributeError) as exc:
                raise JobError(f"data.derive: {exc}; named pairs: {', '.join(PAIRS)}", fields=["data.derive"]) from None
            out["derive"] = chain
        return {"data": out} if out else {}

    # ---- requests --------------------------------------------------------------------------------------------------
    def job_dir(self, job_id: int) -> Path:
        return self.s.runs_dir / f"job-{job_id:05d}"

    def create(self, task: str, preset: str, dataset: str, overrides: dict[str, Any], name: str | None,
               start: bool) -> JobRecord:
        cfg = self.resolve(task, preset, dataset, overrides)
        job = self.store.create(name=(name or f"{dataset}-{preset}")[:100], task=task, preset=preset,
                                dataset=dataset, overrides=overrides, config=cfg.model_dump(mode="json"),
                                job_dir_of=self.job_dir)
        cfg = self.resolve(task, preset, dataset, overrides, out=job.job_dir)
        Path(job.job_dir).mkdir(parents=True, exist_ok=True)
        self.store.update(job.id, config=cfg.model_dump(mode="json"))
        if start:
            self.start(job.id)
        return self.get(job.id)

    def get(self, job_id: int) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id}", 404)
        return job

    def start(self, job_id: int) -> JobRecord:
        """Queue a created job (it starts when a worker slot is free)."""
        job = self.get(job_id)
        if not self.store.update(job_id, expect=("created",), status="queued", queued=time.time(), error=None):
            raise JobError(f"job {job_id} is {job.status}; only a created job can be started (resume a stopped, "
                           "interrupted or finished one)", 409)
        self._wake.set()
        return self.get(job_id)

    def resume(self, job_id: int, kimg: float | None = None) -> JobRecord:
        """Queue a stopped / interrupted / failed / finished job to continue from its last checkpoint, optionally to
        a new ``kimg`` (the only field a resume changes here)."""
        from ganforge.training.resume import resume_config

        with self._lock:
            job = self.get(job_id)
            if job.status not in RESUMABLE:
                raise JobError(f"job {job_id} is {job.status}; only a stopped, interrupted, failed or finished job "
                               "can be resumed", 409)
            run = find_run_dir(Path(job.job_dir))
            if not has_checkpoint(run):
                # Nothing to continue from: the worker died before its first checkpoint. Start it afresh.
                if run is not None:
                    shutil.rmtree(run, ignore_errors=True)
                cfg = TrainConfig.model_validate(job.config)
                if kimg is not None:
                    cfg = resolve_config(None, deep_merge(job.config, {"run": {"kimg": kimg}}))
                self.store.update(job_id, config=cfg.model_dump(mode="json"), resume=False)
            else:
                try:
                    cfg = resume_config(run, {"run": {"kimg": kimg}} if kimg is not None else {})
                except ConfigError as exc:
                    raise JobError(str(exc), fields=config_error_fields(str(exc)) or ["kimg"]) from None
                done = self.progress(run)["kimg"]
                if done is not None and cfg.run.kimg <= done + 1e-9:
                    raise JobError(f"job {job_id} already reached {done:g} kimg; resume with a larger kimg to extend "
                                   "it", fields=["kimg"])
                self.store.update(job_id, config=cfg.model_dump(mode="json"), resume=True)
            if not self.store.update(job_id, expect=tuple(RESUMABLE), status="queued", queued=time.time(),
                                     error=None, exit_code=None):
                raise JobError(f"job {job_id} changed state meanwhile; try again", 409)
        self._wake.set()
        return self.get(job_id)

    def stop(self, job_id: int) -> JobRecord:
        """Queued: leave the queue. Running: SIGTERM; the worker checkpoints and exits (status stopping, then
        stopped). Stopping already: nothing more (the scheduler kills it after ``stop_timeout_s``)."""
        with self._lock:
            job = self.get(job_id)
            if job.status == "queued":
                back = "stopped" if job.resume else "created"
                self.store.update(job_id, expect=("queued",), status=back)
            elif job.status == "running":
                self._signal(job, signal.SIGTERM)
                self._stop_sent[job_id] = time.time()
                self.store.update(job_id, expect=("running",), status="stopping")
            elif job.status != "stopping":
                raise JobError(f"job {job_id} is {job.status}, not running or queued", 409)
        return self.get(job_id)

    def delete(self, job_id: int) -> None:
        """Remove a job that is not active: its record and its folder (run folder, snapshots, logs)."""
        with self._lock:
            job = self.get(job_id)
            if job.status in ACTIVE:
                raise JobError(f"job {job_id} is {job.status}; stop it first", 409)
            self.store.delete(job_id)
        folder = Path(job.job_dir)
        if folder.is_dir():
            trash = self.s.tmp_dir / f"delete-{uuid.uuid4().hex}"
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ---- reading a job's run folder ------------------------------------------------------------------------------
    def run_dir(self, job: JobRecord) -> Path | None:
        return find_run_dir(Path(job.job_dir))

    @staticmethod
    def progress(run: Path | None) -> dict[str, Any]:
        last = last_jsonl(run / "stats.jsonl") if run else None
        return {"step": last.get("step") if last else None, "kimg": last.get("kimg") if last else None,
                "last_stats": last}

    def describe(self, job: JobRecord) -> dict[str, Any]:
        """The API's view of a job: the record, its run folder's name, progress and what can be done with it."""
        run = self.run_dir(job)
        prog = self.progress(run)
        d = job.to_dict()
        d.pop("job_dir")
        d.pop("pid")
        d.update(run_folder=run.name if run else None, **prog, target_kimg=job.config["run"]["kimg"],
                 resumable=job.status in RESUMABLE,
                 has_snapshot=bool(run and (run / "snapshots" / "latest.json").exists()))
        return d

    # ---- workers -----------------------------------------------------------------------------------------------------
    def _signal(self, job: JobRecord, sig: int) -> None:
        proc = self._children.get(job.id)
        pid = proc.pid if proc else self._orphans.get(job.id, job.pid)
        if pid and (proc is not None and proc.poll() is None or _pid_is_worker(pid, job.job_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _launch(self, job: JobRecord) -> None:
        job_dir = Path(job.job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "result.json").unlink(missing_ok=True)
        (job_dir / "studio-config.json").write_text(json.dumps(job.config, indent=2), encoding="utf-8")
        cmd = [sys.executable, "-m", "ganforge.studio.worker", "--job-dir", str(job_dir)]
        run = find_run_dir(job_dir)
        if job.resume and run is not None:
            cmd += ["--resume", str(run)]
        env = dict(os.environ)
        # The worker must import this very ganforge (a source checkout too, not only an installed copy).
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
        env["PYTHONUNBUFFERED"] = "1"
        with open(job_dir / "worker.log", "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} studio: {' '.join(cmd[1:])}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=job_dir, env=env, start_new_session=True)
        self._children[job.id] = proc
        self.store.update(job.id, status="running", pid=proc.pid, started=time.time(), ended=None, exit_code=None)

    def _finish(self, job: JobRecord, code: int | None, recovered: bool = False) -> None:
        """Record how a worker ended: its result.json when it wrote one, else interrupted."""
        result: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            result = json.loads((Path(job.job_dir) / "result.json").read_text(encoding="utf-8"))
        status = result.get("status")
        if recovered:
            status, error = "interrupted", "the studio server stopped while this job ran; resume it to continue " \
                                           "from its last checkpoint"
        elif status in ("finished", "stopped", "failed"):
            error = result.get("error")
        else:
            status = "interrupted"
            error = f"the worker exited without finishing (exit code {code}); resume it to continue from its last " \
                    "checkpoint"
        self.store.update(job.id, status=status, error=error, exit_code=code, ended=time.time(), pid=None)
        self._stop_sent.pop(job.id, None)

    def tick(self) -> None:
        """One scheduler pass: reap workers, kill those past the stop timeout, start queued jobs (FIFO)."""
        with self._lock:
            for job_id, proc in list(self._children.items()):
                code = proc.poll()
                if code is not None:
                    del self._children[job_id]
                    job = self.store.get(job_id)
                    if job is not None:
                        self._finish(job, code)
            for job_id, pid in list(self._orphans.items()):
                job = self.store.get(job_id)
                if job is None or not _pid_is_worker(pid, job.job_dir):
                    del self._orphans[job_id]
                    if job is not None:
                        self._finish(job, None, recovered=True)
            for job_id, sent in list(self._stop_sent.items()):
                if time.time() - sent > self.s.stop_timeout_s:
                    job = self.store.get(job_id)
                    if job is not None:
                        self._signal(job, signal.SIGKILL)
            running = len(self._children) + len(self._orphans)
            while running < self.s.max_jobs:
                job = self.store.next_queued()
                if job is None:
                    break
                try:
                    self._launch(job)
                except OSError as exc:
                    self.store.update(job.id, status="failed", error=f"could not start the worker: {exc}",
                                      ended=time.time())
                running += 1

    def recover(self) -> None:
        """At startup: jobs recorded as running by a previous server. A worker that is gone leaves its job
        interrupted at once; one still alive (it is not our child) is asked to checkpoint and stop (SIGTERM) and
        its job becomes interrupted when it has exited. Either way the job resumes from its last checkpoint."""
        with self._lock:
            for job in self.store.list(("running", "stopping")):
                if job.pid and _pid_is_worker(job.pid, job.job_dir):
                    self._orphans[job.id] = job.pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(job.pid, signal.SIGTERM)
                    self._stop_sent[job.id] = time.time()
                    self.store.update(job.id, status="stopping")
                else:
                    self._finish(job, None, recovered=True)

    # ---- the scheduler thread -------------------------------------------------------------------------------------
    def start_scheduler(self) -> None:
        self.recover()
        self._quit.clear()
        self._thread = threading.Thread(target=self._loop, name="ganforge-studio-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._quit.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the scheduler must survive a bad record; it is logged
                print(f"ganforge studio: scheduler error: {exc!r}", file=sys.stderr)
            self._wake.wait(self.s.poll_s)
            self._wake.clear()

    def shutdown(self, wait_s: float | None = None) -> None:
        """Stop the scheduler and ask every running worker to checkpoint and exit (their jobs become
        interrupted, resumable). Waits up to ``wait_s`` (default the stop timeout) for them."""
        self._quit.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            procs = dict(self._children)
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + (self.s.stop_timeout_s if wait_s is None else wait_s)
            for job_id, proc in procs.items():
                try:
                    code = proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
                job = self.store.get(job_id)
                if job is not None:
                    self._finish(job, code, recovered=True)
            self._children.clear()
