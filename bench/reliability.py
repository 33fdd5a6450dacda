"""Fault trials of training safety: SIGKILL at random moments (some mid-write), double kills, and a full disk.

ARCHITECTURE.md promises: writes are atomic (a kill at any moment leaves the last good checkpoint readable) and
`--resume` continues exactly (on CPU with a fixed seed, the losses after a resume equal an uninterrupted run's).
This script tests that promise on real `python -m ganforge train` processes.

1. Kill trials. Each trial starts a tiny training run (DCGAN; StyleGAN2 with --aug ada; the denoise-25
   restoration preset on three scikit-image photos), SIGKILLs it at a seeded random moment, sometimes kills the
   resumed process again, then `--resume`s to completion. Kill moments ("modes"):
     time      a random delay after the process's first new checkpoint, spread over the rest of the run
     ckpt-tmp  as soon as a checkpoint temp file (checkpoints/.ckpt-*.tmp) of step >= k appears (mid-write)
     ckpt-new  as soon as a new ckpt-<step>.pt with step >= k appears (just after its rename)
     snap-tmp  as soon as a snapshot temp file (snapshots/.*.tmp) of step >= k appears (mid-write)
     startup   (second kill only) a random delay after the resumed process starts, while it loads and rewrites
               stats.jsonl / config.json
   Checks, per trial:
     (a) after each kill, every ckpt-*.pt loads (load_checkpoint) and every snapshot with its JSON loads
         (load_snapshot);
     (b) after the resume, the `step` and `loss/*` values of every stats.jsonl record equal those of an
         uninterrupted reference run of the same config, exactly;
     (c) the final checkpoint's module weights equal the reference's, exactly;
     (d) no temp file (*.tmp) is left in the run folder.
   Also recorded (not pass/fail): the temp files a kill left (what was being written), a torn last line of
   stats.jsonl, whether snapshots/latest.{safetensors,json} belong to the same step, and whether the optimizer
   and task (ADA) state also equal the reference's.
2. Disk-full trials. The run folder lives on a small tmpfs (`mount -t tmpfs -o size=N`); training must stop with
   exit code 1 and a one-line "disk full" message (no traceback), log.txt says "stopped:", earlier checkpoints
   stay readable; then the mount is enlarged (`mount -o remount,size=64m`) and `--resume` must finish with the
   reference's losses and weights. Without permission to mount, the child process instead gets an in-process
   patch that makes atomic writes raise ENOSPC after N bytes (`--disk-method patch`); the JSON says which.

    python bench/reliability.py                    # 30 kill trials + 3 disk-full trials -> results/reliability.json
    python bench/reliability.py --trials 6 --keep  # a short run; keep the run folders to inspect
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from ganforge.core.snapshot import load_snapshot  # noqa: E402
from ganforge.training.checkpoint import CHECKPOINT_RE, list_checkpoints, load_checkpoint  # noqa: E402
from ganforge.training.rundir import read_jsonl  # noqa: E402

torch.set_num_threads(1)  # the checks are small; the CPUs are for the training processes
PYTHON = sys.executable
COMMON = ["--no-progress", "--set", "run.sample_every_kimg=1"]
CONFIGS: dict[str, dict[str, Any]] = {
    # A checkpoint and a snapshot at every step (50 steps each), so that most moments are near a write.
    "dcgan": {"data": "classes", "steps": 50, "args": [
        "--preset", "dcgan-32", "--resolution", "16", "--batch", "8", "--kimg", "0.4",
        "--set", "model.z_dim=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "model.max_width=32", "--set", "run.tick_kimg=0.008", "--set", "run.checkpoint_every_kimg=0.008",
        "--set", "run.snapshot_every_kimg=0.008"]},
    "stylegan2-ada": {"data": "classes", "steps": 50, "args": [
        "--preset", "stylegan2-32", "--aug", "ada", "--resolution", "16", "--batch", "8", "--kimg", "0.4",
        "--set", "model.z_dim=16", "--set", "model.w_dim=16", "--set", "model.g_width=8",
        "--set", "model.d_width=8", "--set", "model.max_width=32", "--set", "run.tick_kimg=0.008",
        "--set", "run.checkpoint_every_kimg=0.008", "--set", "run.snapshot_every_kimg=0.008"]},
    # For the "disk filled by another process" trial: a snapshot and a checkpoint every 5 steps, so that some
    # steps write nothing but their stats.jsonl record.
    "dcgan-ckpt5": {"data": "classes", "steps": 50, "every": 5, "args": [
        "--preset", "dcgan-32", "--resolution", "16", "--batch", "8", "--kimg", "0.4",
        "--set", "model.z_dim=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "model.max_width=32", "--set", "run.tick_kimg=0.008", "--set", "run.checkpoint_every_kimg=0.04",
        "--set", "run.snapshot_every_kimg=0.04"]},
    "denoise": {"data": "photos", "steps": 50, "args": [
        "--preset", "denoise-25", "--resolution", "24", "--batch", "4", "--kimg", "0.2",
        "--set", "model.width=8", "--set", "model.depth=3", "--set", "run.tick_kimg=0.004",
        "--set", "run.checkpoint_every_kimg=0.004", "--set", "run.snapshot_every_kimg=0.004"]},
}
FIRST_MODES = ["time", "ckpt-tmp", "ckpt-new", "snap-tmp"]
SECOND_MODES = ["startup", "time", "ckpt-tmp", "snap-tmp"]
STEP_RE = re.compile(r"(\d{9})")


# ---------------------------------------------------------------------------------------------------------
# Data and processes
# ---------------------------------------------------------------------------------------------------------

def make_data(root: Path) -> dict[str, Path]:
    """The tests' class folder (tests/conftest.py make_class_folder) and three scikit-image photos at 1/4 size."""
    import skimage.data
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_class_folder

    classes = make_class_folder(root / "classes")
    photos = root / "photos"
    photos.mkdir(parents=True)
    for name in ("astronaut", "coffee", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()[::4, ::4]).save(photos / f"{name}.png")
    return {"classes": classes, "photos": photos}


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "200"
    return env


def train_cmd(cfg: str, data: dict[str, Path], out: Path) -> list[str]:
    c = CONFIGS[cfg]
    return [PYTHON, "-m", "ganforge", "train", "--data", str(data[c["data"]]), *c["args"], *COMMON, "--out", str(out)]


def resume_cmd(run: Path) -> list[str]:
    return [PYTHON, "-m", "ganforge", "train", "--resume", str(run), "--no-progress"]


def find_run(out: Path) -> Path | None:
    try:
        runs = [p for p in out.iterdir() if p.name[:1].isdigit()]
    except FileNotFoundError:
        return None
    return runs[0] if runs else None


def temps(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*.tmp"))


def ckpt_steps(folder: Path) -> list[int]:
    try:
        return sorted(int(m.group(1)) for n in os.listdir(folder) if (m := CHECKPOINT_RE.match(n)))
    except FileNotFoundError:
        return []


def snap_temp_step(folder: Path, ignore: set[str]) -> int | None:
    """Step of a snapshot being written: from the temp file's name, or for `latest` the newest step snapshot.
    Temp files in ``ignore`` (left by an earlier kill, present before this process started) do not count."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return None
    tmp = [n for n in names if n.endswith(".tmp") and n not in ignore]
    if not tmp:
        return None
    steps = [int(m.group(1)) for n in tmp if (m := STEP_RE.search(n))]
    if steps:
        return max(steps)
    done = [int(m.group(1)) for n in names if n.endswith(".safetensors") and (m := STEP_RE.search(n))]
    return max(done, default=0)


def kill_when(proc: subprocess.Popen, out: Path, spec: dict[str, Any], start_step: int, t0: float,
              timeout: float = 300) -> dict[str, Any]:
    """Poll the run folder every ~0.5 ms and SIGKILL ``proc`` when ``spec`` says; returns what happened.
    Temp files that exist when this is called (left by an earlier kill) are not triggers."""
    mode, k, delay = spec["mode"], spec.get("k", 0), spec.get("delay_s", 0.0)
    armed_at, trigger, run = None, None, find_run(out)
    old = {p.name for p in run.rglob("*.tmp")} if run is not None else set()
    while True:
        if proc.poll() is not None:
            return {"killed": False, "exit_code": proc.returncode, "note": "the process ended before the kill"}
        now = time.perf_counter()
        if now - t0 > timeout:
            trigger = "timeout"
            break
        run = run or find_run(out)
        if run is not None or mode == "startup":
            if mode == "startup":
                if now - t0 >= delay:
                    trigger = f"{delay:.3f} s after start"
                    break
            elif mode == "time":
                if armed_at is None and any(s > start_step for s in ckpt_steps(run / "checkpoints")):
                    armed_at = now
                if armed_at is not None and now - armed_at >= delay:
                    trigger = f"{delay:.3f} s after the first new checkpoint"
                    break
            elif mode == "ckpt-tmp":
                names = [n for n in os.listdir(run / "checkpoints") if n.endswith(".tmp") and n not in old] \
                    if (run / "checkpoints").is_dir() else []
                hit = [n for n in names if (m := STEP_RE.search(n)) and int(m.group(1)) >= k]
                if hit:
                    trigger = f"saw {hit[0]}"
                    break
            elif mode == "ckpt-new":
                new = [s for s in ckpt_steps(run / "checkpoints") if s >= k]
                if new:
                    trigger = f"saw ckpt-{new[0]:09d}.pt"
                    break
            elif mode == "snap-tmp":
                s = snap_temp_step(run / "snapshots", old)
                if s is not None and s >= k:
                    trigger = f"saw a snapshot temp file of step {s}"
                    break
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"killed": True, "kill_time_s": round(time.perf_counter() - t0, 3), "trigger": trigger}


# ---------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inspect_after_kill(run: Path) -> dict[str, Any]:
    """Check (a) and what the kill left behind."""
    errors = []
    ckpts = list_checkpoints(run / "checkpoints")
    for _, p in ckpts:
        try:
            load_checkpoint(p)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            errors.append(f"{p.name}: {type(exc).__name__}: {exc}")
    snaps, orphans = 0, []
    for w in sorted((run / "snapshots").glob("*.safetensors")):
        if not w.with_suffix(".json").exists():
            orphans.append(w.name)  # weights written, JSON not yet: incomplete by design (complete once JSON exists)
            continue
        snaps += 1
        try:
            load_snapshot(w)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{w.name}: {type(exc).__name__}: {exc}")
    latest = run / "snapshots" / "latest"
    latest_consistent = None
    if latest.with_suffix(".json").exists() and latest.with_suffix(".safetensors").exists():
        step = json.loads(latest.with_suffix(".json").read_text())["step"]
        twin = run / "snapshots" / f"step{step:09d}.safetensors"
        if twin.exists():
            latest_consistent = sha256(twin) == sha256(latest.with_suffix(".safetensors"))
    stats_text = (run / "stats.jsonl").read_text() if (run / "stats.jsonl").exists() else ""
    return {"checkpoints": [s for s, _ in ckpts], "snapshots_complete": snaps, "snapshot_weights_without_json": orphans,
            "temp_files": temps(run), "stats_torn_last_line": bool(stats_text) and not stats_text.endswith("\n"),
            "latest_pair_consistent": latest_consistent, "unreadable": errors, "a_readable": not errors and bool(ckpts)}


def losses(run: Path) -> list[dict[str, Any]]:
    records = read_jsonl(run / "stats.jsonl")
    return [{k: v for k, v in r.items() if k.startswith("loss/") or k == "step"} for r in records]


def deep_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def final_checks(run: Path, ref: dict[str, Any]) -> dict[str, Any]:
    """Checks (b), (c), (d) against the reference run."""
    got = losses(run)
    b = got == ref["losses"]
    first_diff = None
    if not b:
        i = next((i for i, (x, y) in enumerate(zip(got, ref["losses"], strict=False)) if x != y), None)
        first_diff = {"records": len(got), "reference_records": len(ref["losses"]), "index": i,
                      "got": got[i] if i is not None else None, "want": ref["losses"][i] if i is not None else None}
    steps = list_checkpoints(run / "checkpoints")
    c, diff_tensors, other_equal = False, [], None
    if steps and steps[-1][0] == ref["final_step"]:
        state = load_checkpoint(steps[-1][1])
        mods, want = state["modules"], ref["state"]["modules"]
        diff_tensors = [f"{m}.{k}" for m in want for k in want[m]
                        if m not in mods or k not in mods[m] or not torch.equal(mods[m][k], want[m][k])]
        c = mods.keys() == want.keys() and not diff_tensors
        other_equal = {key: deep_equal(state.get(key), ref["state"].get(key)) for key in ("optimizers", "task")}
    d_left = temps(run)
    return {"b_losses_equal": b, "b_first_difference": first_diff, "c_weights_equal": c,
            "c_final_step": steps[-1][0] if steps else None, "c_differing_tensors": diff_tensors[:10],
            "optimizer_and_task_state_equal": other_equal, "d_no_temp_files": not d_left, "d_temp_files": d_left}


# ---------------------------------------------------------------------------------------------------------
# Reference runs and kill trials
# ---------------------------------------------------------------------------------------------------------

def reference(cfg: str, data: dict[str, Path], root: Path) -> dict[str, Any]:
    """An uninterrupted run, timed: seconds to its first checkpoint and to its end (for spreading kill times)."""
    out = root / f"ref-{cfg}"
    cmd = train_cmd(cfg, data, out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_first = None
    while proc.poll() is None:
        run = find_run(out)
        if t_first is None and run is not None and ckpt_steps(run / "checkpoints"):
            t_first = time.perf_counter() - t0
        time.sleep(0.002)
    t_end = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"reference run {cfg} failed ({proc.returncode}): {err[-2000:]}")
    run = find_run(out)
    steps = list_checkpoints(run / "checkpoints")
    return {"cmd": cmd, "run": run, "losses": losses(run), "final_step": steps[-1][0],
            "state": load_checkpoint(steps[-1][1]), "t_first_ckpt_s": t_first or t_end, "t_end_s": t_end}


def plan_trials(n: int, seed: int) -> list[dict[str, Any]]:
    """Seeded: configs cycle dcgan/stylegan2-ada/dcgan/denoise/dcgan, first-kill modes cycle over FIRST_MODES,
    every third trial kills the resumed process again."""
    rng = np.random.default_rng(seed)
    cycle = ["dcgan", "stylegan2-ada", "dcgan", "denoise", "dcgan"]
    plans = []
    for i in range(n):
        cfg = cycle[i % len(cycle)]
        first = {"mode": FIRST_MODES[i % len(FIRST_MODES)], "k": int(rng.integers(2, 41)),
                 "u": float(rng.uniform(0.0, 0.9))}
        second = None
        if i % 3 == 2:
            second = {"mode": SECOND_MODES[int(rng.integers(0, len(SECOND_MODES)))], "dk": int(rng.integers(1, 8)),
                      "u": float(rng.uniform(0.0, 0.9))}
        plans.append({"trial": i, "config": cfg, "first": first, "second": second})
    return plans


def kill_spec(plan: dict[str, Any], ref: dict[str, Any], steps: int, start_step: int, second: bool) -> dict[str, Any]:
    """Turn a plan's draws into a concrete kill: a step threshold or a delay in seconds."""
    mode, u = plan["mode"], plan["u"]
    train_s = max(ref["t_end_s"] - ref["t_first_ckpt_s"], 0.5)
    if mode == "startup":
        return {"mode": mode, "delay_s": round(0.3 + u * ref["t_first_ckpt_s"], 3)}
    if mode == "time":
        return {"mode": mode, "delay_s": round(u * train_s * (steps - start_step) / steps, 3)}
    k = start_step + plan["dk"] if second else plan["k"]
    return {"mode": mode, "k": min(k, steps - 5)}


def run_trial(plan: dict[str, Any], data: dict[str, Path], refs: dict[str, dict[str, Any]], root: Path) -> dict:
    cfg, ref = plan["config"], refs[plan["config"]]
    steps = CONFIGS[cfg]["steps"]
    out = root / f"trial{plan['trial']:03d}-{cfg}"
    cmd = train_cmd(cfg, data, out)
    result: dict[str, Any] = {"trial": plan["trial"], "config": cfg, "train_cmd": cmd, "kills": [], "failures": []}
    t_trial = time.perf_counter()
    spec = kill_spec(plan["first"], ref, steps, 0, second=False)
    for attempt in range(1, 4):
        # A run faster than its reference (the machine is shared) can end before a "time" kill: start again
        # with half the delay, so that every trial has a kill.
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill = {"which": "first", "spec": spec, "attempt": attempt, **kill_when(proc, out, spec, 0, t0)}
        if kill["killed"] or attempt == 3:
            break
        shutil.rmtree(out)
        spec = {**spec, "delay_s": round(spec.get("delay_s", 0.0) / 2, 3)}
    run = find_run(out)
    result["run"] = str(run)
    if run is None:
        result["failures"].append("no run folder after the first kill")
        return result
    kill.update(inspect_after_kill(run))
    kill["temp_files_new"] = kill["temp_files"]  # what this kill interrupted (a second kill may find older ones)
    result["kills"].append(kill)
    if plan["second"] is not None and kill["checkpoints"]:
        start = kill["checkpoints"][-1]
        spec = kill_spec(plan["second"], ref, steps, start, second=True)
        before = set(kill["temp_files"])
        t0 = time.perf_counter()
        proc = subprocess.Popen(resume_cmd(run), env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill2 = {"which": "second (the resumed process)", "resumed_from_step": start, "spec": spec,
                 **kill_when(proc, out, spec, start, t0)}
        kill2.update(inspect_after_kill(run))
        kill2["temp_files_new"] = [f for f in kill2["temp_files"] if f not in before]
        result["kills"].append(kill2)
    result["resume_cmd"] = resume_cmd(run)
    t0 = time.perf_counter()
    done = subprocess.run(resume_cmd(run), env=python_env(), capture_output=True, text=True, timeout=600)
    result["resume_s"] = round(time.perf_counter() - t0, 2)
    result["resume_exit_code"] = done.returncode
    for i, k in enumerate(result["kills"]):
        if not k["a_readable"]:
            result["failures"].append(f"(a) after kill {i + 1}: unreadable {k['unreadable'] or 'no checkpoint'}")
    if done.returncode != 0:
        result["failures"].append(f"resume exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    else:
        checks = final_checks(run, ref)
        result.update(checks)
        if not checks["b_losses_equal"]:
            result["failures"].append(f"(b) losses differ from the reference: {checks['b_first_difference']}")
        if not checks["c_weights_equal"]:
            result["failures"].append(f"(c) weights differ (final step {checks['c_final_step']}): "
                                      f"{checks['c_differing_tensors']}")
        if not checks["d_no_temp_files"]:
            result["failures"].append(f"(d) temp files left: {checks['d_temp_files']}")
    result["passed"] = not result["failures"]
    result["wall_s"] = round(time.perf_counter() - t_trial, 2)
    k0 = result["kills"][0]
    again = f" + 2nd kill, left {result['kills'][1]['temp_files_new'] or '-'}" if len(result["kills"]) > 1 else ""
    print(f"trial {plan['trial']:2d} {cfg:14s} {k0['spec']['mode']:8s} "
          f"{'kill ' + str(k0.get('kill_time_s')) + ' s' if k0['killed'] else 'NOT KILLED':14s} "
          f"left {k0['temp_files'] or '-'}{again}: "
          f"{'pass' if result['passed'] else 'FAIL ' + '; '.join(result['failures'])}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------------------
# Disk full
# ---------------------------------------------------------------------------------------------------------

PATCH_CHILD = """
import errno, os, sys
from ganforge.core import files
limit, used, real = int(os.environ['RELIABILITY_FULL_BYTES']), [0], os.fdopen
class Full:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *a): self.f.close()
    def flush(self): self.f.flush()
    def fileno(self): return self.f.fileno()
    def write(self, b):
        if used[0] + len(b) > limit: raise OSError(errno.ENOSPC, 'No space left on device')
        used[0] += len(b); return self.f.write(b)
files.os.fdopen = lambda fd, mode: Full(real(fd, mode))
from ganforge.cli import main
sys.argv = ['ganforge', *sys.argv[1:]]
main()
"""


def can_mount(root: Path) -> bool:
    d = root / "mount-probe"
    d.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(d)], check=True)
    return ok


def fill_disk(path: Path, leave: int = 0) -> int:
    """Another process fills the filesystem: grow ``path`` until ``leave`` bytes are free (posix_fallocate, one
    fast call, so that the run cannot take the last pages meanwhile), then, for leave=0, write 4 KiB pieces until
    ENOSPC. Returns the file's size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        st = os.statvfs(path.parent)
        size = os.fstat(fd).st_size
        grow = st.f_bavail * st.f_frsize - leave
        while grow > 0:
            try:
                os.posix_fallocate(fd, size, grow)
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                grow -= 4096
        if leave == 0:
            os.lseek(fd, 0, os.SEEK_END)
            while True:
                try:
                    os.write(fd, b"\0" * 4096)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def fill_when_next_stats_append_needs_a_page(proc: subprocess.Popen, out: Path, mnt: Path, every: int) -> dict:
    """Fill the disk right after a stats.jsonl append at a step with no snapshot/checkpoint, when the next append
    will cross a 4 KiB page boundary: so the next write that needs space is that append (not an atomic write)."""
    prev = 0
    while proc.poll() is None:
        run = find_run(out)
        size = (run / "stats.jsonl").stat().st_size if run and (run / "stats.jsonl").exists() else 0
        if size != prev:
            text = (run / "stats.jsonl").read_bytes()
            if text.endswith(b"\n"):
                step = json.loads(text.splitlines()[-1])["step"]
                last_len = size - prev
                if step % every and prev and size % 4096 + last_len - 16 > 4096:
                    filled = fill_disk(mnt / "filler")
                    return {"filled_after_stats_of_step": step, "stats_bytes": size, "filler_bytes": filled}
            prev = size
        time.sleep(0.0005)
    return {"filled_after_stats_of_step": None, "note": "the run ended before the trigger"}


def disk_full_trial(i: int, kind: str, size: int, method: str, data: dict[str, Path], refs: dict[str, dict],
                    root: Path) -> dict:
    """kind "small-mount": the run folder is on a filesystem of ``size`` bytes. kind "filled": another process
    fills the (``size``-byte) filesystem mid-run, timed so that a stats.jsonl append is the write that fails."""
    mnt = root / f"full{i}"
    mnt.mkdir()
    out = mnt / "runs"
    cfg = "dcgan" if kind == "small-mount" else "dcgan-ckpt5"
    ref = refs[cfg]
    cmd = train_cmd(cfg, data, out)
    result: dict[str, Any] = {"trial": i, "kind": kind, "config": cfg, "method": method, "size_bytes": size,
                              "train_cmd": cmd, "failures": []}
    mounted = False
    try:
        if method == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
            mounted = True
            result["mount_cmd"] = f"mount -t tmpfs -o size={size} tmpfs {mnt}"
            if kind == "filled":
                fill_disk(mnt / "filler", leave=4 << 20)  # most of it now; the rest in one call mid-run
                proc = subprocess.Popen(cmd, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                result.update(fill_when_next_stats_append_needs_a_page(proc, out, mnt, CONFIGS[cfg]["every"]))
                stdout, stderr = proc.communicate(timeout=600)
                full = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
            else:
                full = subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=600)
        else:
            env = {**python_env(), "RELIABILITY_FULL_BYTES": str(size)}
            full = subprocess.run([PYTHON, "-c", PATCH_CHILD, *cmd[3:]], env=env, capture_output=True, text=True,
                                  timeout=600)
        run = find_run(out)
        lines = [ln for ln in full.stderr.splitlines() if ln.strip()]
        full_lines = [ln for ln in lines if "disk full" in ln]
        log = (run / "log.txt").read_text() if run and (run / "log.txt").exists() else ""
        after = inspect_after_kill(run) if run else {}
        if method == "tmpfs":
            df = subprocess.run(["df", "-B1", str(mnt)], capture_output=True, text=True).stdout.splitlines()[-1].split()
            result["df_used_avail_bytes"] = [int(df[2]), int(df[3])]
        written = re.search(r"disk full while writing (\S+?):", full.stderr)
        result.update({
            "exit_code": full.returncode, "stderr_lines": lines[-5:], "disk_full_lines": len(full_lines),
            "traceback": "Traceback" in full.stderr,
            "traceback_frames": re.findall(r"([\w.-]+\.py):(\d+) in (\w+)", full.stderr)[-3:],
            "log_stopped_line": next(
                (ln for ln in log.splitlines() if "stopped:" in ln), None),
            "file_being_written": Path(written.group(1)).relative_to(run).as_posix() if written and run else None,
            "checkpoints_left": after.get("checkpoints"), "readable": after.get("a_readable"),
            "unreadable": after.get("unreadable"), "temp_files_left": after.get("temp_files")})
        if full.returncode != 1:
            result["failures"].append(f"exit code {full.returncode}, want 1")
        if len(full_lines) != 1 or not full_lines[0].startswith("error:"):
            result["failures"].append(f"want one 'error: ... disk full' line on stderr, got {full_lines}")
        if result["traceback"]:
            result["failures"].append("a traceback was printed")
        if not result["log_stopped_line"]:
            result["failures"].append("log.txt has no 'stopped:' line")
        if not after.get("a_readable"):
            result["failures"].append(f"checkpoints not readable: {after.get('unreadable')} {after.get('checkpoints')}")
        if run is None:
            return result
        if method == "tmpfs" and kind == "filled":
            (mnt / "filler").unlink(missing_ok=True)
            result["free_space_by"] = "deleting the filler file"
        elif method == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            result["free_space_by"] = "mount -o remount,size=64m"
        else:
            result["free_space_by"] = "resume without the patch"
        t0 = time.perf_counter()
        done = subprocess.run(resume_cmd(run), env=python_env(), capture_output=True, text=True, timeout=600)
        result["resume_cmd"] = resume_cmd(run)
        result["resume_s"] = round(time.perf_counter() - t0, 2)
        result["resume_exit_code"] = done.returncode
        if done.returncode != 0:
            result["failures"].append(f"resume exited {done.returncode}: {done.stderr.strip()[-1500:]}")
        else:
            checks = final_checks(run, ref)
            result.update(checks)
            for key, name in (("b_losses_equal", "(b) losses"), ("c_weights_equal", "(c) weights"),
                              ("d_no_temp_files", "(d) temp files")):
                if not checks[key]:
                    result["failures"].append(f"{name} check failed after the resume")
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
    result["passed"] = not result["failures"]
    print(f"disk-full {i} ({kind}, {method}, {size / 2**20:.2f} MiB): exit {result.get('exit_code')}, "
          f"{result.get('file_being_written')}, ckpts {result.get('checkpoints_left')}: "
          f"{'pass' if result['passed'] else 'FAIL ' + '; '.join(result['failures'])}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), None) if Path("/proc/cpuinfo").exists() else None
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_model": cpu,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def load() -> dict[str, Any]:
    return {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="trials run at once (each training process: 1 thread)")
    ap.add_argument("--disk-trials", type=int, default=3)
    ap.add_argument("--disk-method", choices=["auto", "tmpfs", "patch"], default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "reliability.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    args = ap.parse_args()

    t_start = time.perf_counter()
    load_before = load()
    root = Path(tempfile.mkdtemp(prefix="ganforge-reliability-"))
    try:
        data = make_data(root / "data")
        plans = plan_trials(args.trials, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        method = args.disk_method
        if method == "auto":
            method = "tmpfs" if can_mount(root) else "patch"
        n = args.disk_trials
        if method == "tmpfs":
            # 1.5-3 MiB, one draw in each of n equal bins: room for about 1 to 15 steps of this run (two 0.37 MB
            # checkpoints and a new 0.08 MB snapshot per step); then one 16 MiB mount filled by another process.
            disks = [("small-mount", int(1536 + (i + rng.uniform(0, 1)) * 1536 / n) * 1024) for i in range(n)]
            disks += [("filled", 16 << 20)] if n else []
        else:  # atomic writes raise ENOSPC after this many bytes
            disks = [("small-mount", int(rng.integers(1, 20)) * 460_000) for _ in range(n)]
        needed = sorted({p["config"] for p in plans} | ({"dcgan"} if disks else set())
                        | ({"dcgan-ckpt5"} if any(k == "filled" for k, _ in disks) else set()))
        with ThreadPoolExecutor(args.jobs) as pool:
            refs = dict(zip(needed, pool.map(lambda c: reference(c, data, root), needed), strict=True))
        for c, r in refs.items():
            print(f"reference {c}: first checkpoint {r['t_first_ckpt_s']:.1f} s, end {r['t_end_s']:.1f} s, "
                  f"{len(r['losses'])} stats records", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            futs = [pool.submit(run_trial, p, data, refs, root) for p in plans]
            futs += [pool.submit(disk_full_trial, i, kind, size, method, data, refs, root)
                     for i, (kind, size) in enumerate(disks)]
            results = [f.result() for f in futs]
        trials, disk = results[:len(plans)], results[len(plans):]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    load_after = load()

    def count(pred) -> int:
        return sum(1 for t in trials if pred(t))

    first = [t["kills"][0] for t in trials if t["kills"]]
    all_kills = [k for t in trials for k in t["kills"]]
    summary = {
        "trials": len(trials), "passed": count(lambda t: t.get("passed")),
        "failed": count(lambda t: not t.get("passed")),
        "by_config": {c: {"trials": count(lambda t, c=c: t["config"] == c),
                          "passed": count(lambda t, c=c: t["config"] == c and t.get("passed"))}
                      for c in CONFIGS if any(t["config"] == c for t in trials)},
        "by_first_kill_mode": {m: {"trials": sum(1 for k in first if k["spec"]["mode"] == m),
                                   "killed_with_temp_file_left": sum(1 for k in first if k["spec"]["mode"] == m
                                                                     and k.get("temp_files_new"))}
                               for m in FIRST_MODES},
        "double_kills": count(lambda t: len(t["kills"]) > 1),
        "second_kill_modes": [t["kills"][1]["spec"]["mode"] for t in trials if len(t["kills"]) > 1],
        "kills": len(all_kills), "kills_not_landed": sum(1 for k in all_kills if not k["killed"]),
        "first_kills_retried": sum(1 for k in first if k.get("attempt", 1) > 1),
        "kills_mid_write": sum(1 for k in all_kills if k.get("temp_files_new")),
        "kills_mid_checkpoint_write": sum(1 for k in all_kills if any(f.startswith("checkpoints/")
                                                                      for f in k.get("temp_files_new", []))),
        "kills_mid_snapshot_write": sum(1 for k in all_kills if any(f.startswith("snapshots/")
                                                                    for f in k.get("temp_files_new", []))),
        "kills_with_torn_stats_line": sum(1 for k in all_kills if k.get("stats_torn_last_line")),
        "kills_leaving_snapshot_weights_without_json": sum(1 for k in all_kills
                                                           if k.get("snapshot_weights_without_json")),
        "kills_leaving_latest_pair_inconsistent": sum(1 for k in all_kills if k.get("latest_pair_consistent") is False),
        "optimizer_and_task_state_equal": count(lambda t: bool(t.get("optimizer_and_task_state_equal")) and all(
            t["optimizer_and_task_state_equal"].values())),
        "disk_full": {"method": method, **{kind: {"trials": sum(1 for d in disk if d["kind"] == kind),
                                                  "passed": sum(1 for d in disk if d["kind"] == kind and d["passed"])}
                                           for kind in ("small-mount", "filled")}},
    }
    result = {
        "bench": "reliability", "command": " ".join([Path(sys.executable).name, *sys.argv]), "argv": sys.argv,
        "seed": args.seed, "jobs": args.jobs, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_before": load_before, "load_after": load_after, "wall_s": round(time.perf_counter() - t_start, 1),
        "references": {c: {"cmd": r["cmd"], "t_first_ckpt_s": round(r["t_first_ckpt_s"], 2),
                           "t_end_s": round(r["t_end_s"], 2), "records": len(r["losses"]),
                           "final_step": r["final_step"]} for c, r in refs.items()},
        "summary": summary, "trials": trials, "disk_full": disk,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"load before: {load_before['uptime']}\nload after:  {load_after['uptime']}\nwall {result['wall_s']} s; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
