"""Data safety in the training loop (issue "Hardening"): non-finite state is never written, a resume may lower
learning rates and loss weights, the tick in progress survives a resume, Ctrl-C/SIGTERM stop cleanly with a
checkpoint, stale temp files are removed, files get the umask's mode, disk full before the first checkpoint says
so, pickles are refused in ganforge's words, and the kimg target is rounded up."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import torch

from ganforge.config import resolve_config
from ganforge.core import files
from ganforge.core.snapshot import load_snapshot
from ganforge.tasks.gan import GanTask
from ganforge.training import checkpoint as ckpt
from ganforge.training.guard import StopRequest, first_nonfinite
from ganforge.training.loop import TrainingDiverged, train
from ganforge.training.resume import resume_config
from ganforge.training.rundir import read_jsonl
from tests.conftest import PYTHON, python_env, tiny_overrides


def _cfg(source, out, kimg, preset="dcgan-32", **sections):
    return resolve_config(preset, tiny_overrides(str(source), out, kimg, **sections))


def _all_finite(state) -> bool:
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, list | tuple):
        return all(_all_finite(v) for v in state)
    return True


def test_nonfinite_buffers_are_never_written(class_folder, tmp_path, monkeypatch):
    """A BatchNorm running_var becomes inf while every loss stays finite: the next checkpoint and snapshot are
    refused, and every file on disk is finite (so --resume and --init-from only ever see good state)."""
    original = GanTask.g_main

    def poisoned(self, inp):
        if inp.step == 5:
            bn = next(m for m in self.G.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))
        return original(self, inp)

    monkeypatch.setattr(GanTask, "g_main", poisoned)
    cfg = _cfg(class_folder, tmp_path, 0.08, run={"checkpoint_every_kimg": 0.016, "snapshot_every_kimg": 0.016})
    with pytest.raises(TrainingDiverged, match=r"G .*running_var became non-finite at step 6.*ckpt-000000004.pt"):
        train(cfg, progress=False)
    run = next(tmp_path.glob("0*"))
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [2, 4]
    for _, path in ckpt.list_checkpoints(run / "checkpoints"):
        assert _all_finite(ckpt.load_checkpoint(path))
    assert _all_finite(load_snapshot(run / "snapshots" / "latest")[0])
    assert "stopped: G " in (run / "log.txt").read_text()


def test_first_nonfinite_sees_optimizer_state():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    assert first_nonfinite({"D": net}, {"D": opt}) is None
    opt.state[net.weight]["exp_avg_sq"][0, 0] = float("inf")
    assert first_nonfinite({"D": net}, {"D": opt}) == "optimizer D state exp_avg_sq of parameter 0"


def test_init_from_refuses_nonfinite_weights(class_folder, tmp_path):
    source = train(_cfg(class_folder, tmp_path / "a", 0.016), progress=False)
    state = ckpt.load_latest_checkpoint(source / "checkpoints")[1]
    state["modules"]["G"][next(iter(state["modules"]["G"]))].fill_(float("nan"))
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(files.CheckpointError, match="holds NaN/inf values"):
        train(_cfg(class_folder, tmp_path / "b", 0.016, run={"init_from": str(bad)}), progress=False)


def test_resume_may_lower_learning_rates_and_records_it(class_folder, tmp_path):
    part = train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    cfg = resume_config(part, {"optim": {"g_lr": 5e-5, "d_lr": 5e-5}, "loss": {"r1_gamma": 0.5},
                               "run": {"kimg": 0.064}})
    train(cfg, resume=part, progress=False)
    saved = json.loads((part / "config.json").read_text())
    assert saved["optim"]["g_lr"] == 5e-5
    assert {"step": 4, "field": "optim.g_lr", "old": 2e-4, "new": 5e-5} in saved["changes"]
    assert {"step": 4, "field": "loss.r1_gamma", "old": 0.0, "new": 0.5} in saved["changes"]
    log = (part / "log.txt").read_text()
    assert "from step 4: optim.d_lr 0.0002 -> 5e-05" in log
    state = ckpt.load_latest_checkpoint(part / "checkpoints")[1]
    assert all(g["lr"] == 5e-5 for g in state["optimizers"]["G"]["param_groups"])
    with pytest.raises(ValueError, match="cannot change data.resolution"):
        resume_config(part, {"data": {"resolution": 32}})


def test_stats_after_resume_equal_uninterrupted_line_for_line(class_folder, tmp_path):
    """Ticks every 3 steps, checkpoints every 2: resuming from step 4 (mid-tick) continues the tick."""
    kw = dict(run={"tick_kimg": 0.024, "checkpoint_every_kimg": 0.016, "keep_checkpoints": 20})
    full = train(_cfg(class_folder, tmp_path / "a", 0.096, **kw), progress=False)
    copy = tmp_path / "b" / full.name
    shutil.copytree(full, copy)
    for s, p in ckpt.list_checkpoints(copy / "checkpoints"):
        if s > 4:
            p.unlink()  # as if killed right after the step-4 checkpoint
    train(_cfg(class_folder, tmp_path / "b", 0.096, **kw), resume=copy, progress=False)

    def losses(run):
        return [{k: v for k, v in r.items() if k.startswith("loss/") or k in ("step", "kimg")}
                for r in read_jsonl(run / "stats.jsonl")]

    assert [r["step"] for r in losses(full)] == [3, 6, 9, 12]
    assert losses(copy) == losses(full)


def _start(cmd: list[str], out: Path) -> tuple[subprocess.Popen, Path]:
    # A test run in the background (or by a CI runner) may start with SIGINT ignored, which the child would keep
    # ignoring (as it should); give it the terminal's default so Ctrl-C is what a user's Ctrl-C is.
    proc = subprocess.Popen(cmd + ["--out", str(out)], env=python_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list(out.glob("0*"))
        if runs and ckpt.list_checkpoints(runs[0] / "checkpoints"):
            return proc, runs[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint within 120 s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_with_a_checkpoint(class_folder, tmp_path, sig):
    cmd = [PYTHON, "-m", "ganforge", "train", "--data", str(class_folder), "--preset", "dcgan-32", "--resolution",
           "16", "--batch", "8", "--kimg", "50", "--set", "model.z_dim=16", "--set", "model.g_width=8",
           "--set", "model.d_width=8", "--set", "model.max_width=32", "--set", "run.checkpoint_every_kimg=0.04",
           "--no-progress"]
    proc, run = _start(cmd, tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "stopped by the user at step" in err and f"--resume {run}" in err and "Traceback" not in err
    log = (run / "log.txt").read_text()
    line = next(x for x in log.splitlines() if "stopped by the user" in x)
    step = int(line.split(" at step ")[1].split()[0])
    assert ckpt.list_checkpoints(run / "checkpoints")[-1][0] == step  # the last step's state is saved
    assert json.loads((run / "snapshots" / "latest.json").read_text())["step"] == step


def test_second_signal_aborts_at_once():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with SIGINT ignored
    try:
        stop = StopRequest().install()
        try:
            signal.raise_signal(signal.SIGINT)
            assert stop.requested and stop.signal_name == "SIGINT"
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        finally:
            stop.restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_ignored_sigint_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup / a background job
    try:
        stop = StopRequest().install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        stop.restore()
    finally:
        signal.signal(signal.SIGINT, before)


def test_resume_removes_stale_temp_files(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    stale = [run / "checkpoints" / ".ckpt-000000006.pt.x1y2.tmp", run / "snapshots" / ".latest.safetensors.a.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    train(_cfg(class_folder, tmp_path, 0.048), resume=run, progress=False)
    assert not any(p.exists() for p in stale)
    assert "removed .ckpt-000000006.pt.x1y2.tmp" in (run / "log.txt").read_text()


def test_written_files_get_the_umask_mode(class_folder, tmp_path):
    old = os.umask(0o022)
    try:
        run = train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    finally:
        os.umask(old)
    for p in [run / "config.json", run / "snapshots" / "latest.safetensors", run / "samples" / "reals.png",
              ckpt.list_checkpoints(run / "checkpoints")[-1][1]]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_disk_full_before_the_first_checkpoint_says_so(class_folder, tmp_path, monkeypatch):
    real_write = files.atomic_write

    def full(path, write):
        if Path(path).suffix == ".pt":
            raise files.CheckpointError(f"disk full while writing {path}: it was not changed, and the other "
                                        "files are intact. Free some space and try again.")
        return real_write(path, write)

    monkeypatch.setattr(files, "atomic_write", full)
    with pytest.raises(files.CheckpointError, match="No checkpoint was written yet") as info:
        train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    assert "--resume" not in str(info.value)
    run = next(tmp_path.glob("0*"))
    assert "stopped: disk full while writing" in (run / "log.txt").read_text()


def test_disk_full_at_the_os_level_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 1, {"step": 1, "w": torch.ones(3)}, keep=2)

    def no_space(fd, mode):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", no_space)
    with pytest.raises(files.CheckpointError, match="disk full"):
        ckpt.save_checkpoint(folder, 2, {"step": 2}, keep=2)
    monkeypatch.undo()
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [1] and not list(folder.glob(".*.tmp"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_checkpoint_is_refused_in_ganforges_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ckpt-000000001.pt"
    buf = io.BytesIO()
    torch.save({"step": 1, "x": _Evil()}, buf, pickle_module=pickle)
    path.write_bytes(buf.getvalue())
    with pytest.raises(files.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert "ganforge never unpickles" in str(info.value) and "weights_only=False" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_kimg_is_rounded_up_and_said(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.064, optim={"batch": 7}), progress=False)
    assert read_jsonl(run / "stats.jsonl")[-1]["step"] == 10  # 64 images need 10 steps of 7 (70 images)
    assert "training 10 steps, 0.07 kimg" in (run / "log.txt").read_text()
    train(_cfg(class_folder, tmp_path, 0.064, optim={"batch": 7}), resume=run, progress=False)
    assert read_jsonl(run / "stats.jsonl")[-1]["step"] == 10


def test_train_device_cuda_without_cuda_is_one_clear_line(class_folder, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = subprocess.run([PYTHON, "-m", "ganforge", "train", "--data", str(class_folder), "--device", "cuda",
                          "--out", str(tmp_path)], env=python_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "run.device (--device) cuda" in res.stderr and "--device cpu" in res.stderr
    assert not list(tmp_path.glob("0*"))


def test_disk_full_while_appending_stats_stops_cleanly(class_folder, tmp_path, monkeypatch):
    """Found by bench/reliability.py: a disk that fills between checkpoints hit the stats.jsonl append (a
    traceback, and no "stopped:" line)."""
    import builtins

    from ganforge.training import rundir

    appends = {"n": 0}

    def filling_open(path, mode="r", **kwargs):
        if Path(path).name == "stats.jsonl" and mode == "a":
            appends["n"] += 1
            if appends["n"] > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
        return builtins.open(path, mode, **kwargs)

    monkeypatch.setattr(rundir, "open", filling_open, raising=False)  # found before the builtin
    with pytest.raises(files.CheckpointError, match=r"disk full while appending to .*stats.jsonl.*ckpt-000000004"):
        train(_cfg(class_folder, tmp_path, 0.064), progress=False)
    run = next(tmp_path.glob("0*"))
    assert "stopped: disk full while appending" in (run / "log.txt").read_text()
    assert all(_all_finite(ckpt.load_checkpoint(p)) for _, p in ckpt.list_checkpoints(run / "checkpoints"))


def test_runlog_turns_enospc_into_a_clear_error(tmp_path, monkeypatch):
    from ganforge.training import rundir

    log = rundir.RunLog(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "open", no_space, raising=False)
    with pytest.raises(files.CheckpointError, match="disk full while appending to .*stats.jsonl"):
        log.stats({"step": 1})


def test_snapshot_weights_carry_their_metadata(class_folder, tmp_path):
    """A kill between the weights' rename and the JSON's leaves new weights beside old JSON: loading reads the
    metadata from the weights file's own header, so the pair is never mixed."""
    run = train(_cfg(class_folder, tmp_path, 0.032), progress=False)
    snap = run / "snapshots"
    old = json.loads((snap / "latest.json").read_text())
    (snap / "latest.json").write_text(json.dumps({**old, "step": 1, "kimg": 0.008}))  # the previous step's JSON
    meta = load_snapshot(snap / "latest")[1]
    assert meta["step"] == old["step"] == 4
    (snap / "latest.json").write_text(json.dumps({**old, "class_names": ["edited"]}))  # a user's edit is honoured
    assert load_snapshot(snap / "latest")[1]["class_names"] == ["edited"]


@pytest.mark.parametrize("damage,message", [
    ("dir", "is not a file"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list"),
    ('{"model": {"arch": "dcgan", "g_width": -3}}', "model.g_width"),
])
def test_damaged_config_json_on_resume_names_the_file(class_folder, tmp_path, damage, message):
    from typer.testing import CliRunner

    from ganforge.cli import app

    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    cfg = run / "config.json"
    cfg.unlink()
    if damage == "dir":
        cfg.mkdir()
    else:
        cfg.write_text(damage)
    res = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 1 and message in res.output and "config.json" in res.output, res.output
    assert "Traceback" not in res.output


def test_config_json_edited_to_another_width_is_a_clear_error_on_resume(class_folder, tmp_path):
    from typer.testing import CliRunner

    from ganforge.cli import app

    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    saved = json.loads((run / "config.json").read_text())
    saved["model"]["g_width"] = 16
    (run / "config.json").write_text(json.dumps(saved))
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--kimg", "0.032"])
    assert res.exit_code == 1 and "does not fit this run's G" in res.output and "config.json" in res.output
    assert "Traceback" not in res.output


def test_eta_is_never_negative(capsys):
    from rich.console import Console

    from ganforge.training.stats import ProgressDisplay

    display = ProgressDisplay(0.064, console=Console(file=io.StringIO(), force_terminal=False))
    display.update({"kimg": 0.07, "timing/img_per_s": 100.0, "timing/sec_per_kimg": 10.0, "loss/D": 1.0})
    err = capsys.readouterr().err
    assert "ETA 0m00s" in err and "-" not in err.split("ETA")[1].split()[0]


def test_checkpoint_without_a_module_is_a_clear_error_on_resume(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    path = ckpt.list_checkpoints(run / "checkpoints")[-1][1]
    state = ckpt.load_checkpoint(path)
    del state["modules"]["G"]
    torch.save(state, path)
    with pytest.raises(files.CheckpointError, match=r"ckpt-000000002.pt has no weights for G \(it holds D, G_ema\)"):
        train(_cfg(class_folder, tmp_path, 0.032), resume=run, progress=False)


def test_the_issues_divergence_recipe_never_writes_nonfinite_state(class_folder, tmp_path):
    """The fault trial's recipe: --loss wgan --lr 1 --set loss.gp_weight=10000 --set optim.beta2=0."""
    cfg = _cfg(class_folder, tmp_path, 0.4, loss={"adversarial": "wgan", "gp_weight": 10000.0},
               optim={"g_lr": 1.0, "d_lr": 1.0, "beta2": 0.0},
               run={"checkpoint_every_kimg": 0.008, "snapshot_every_kimg": 0.008, "keep_checkpoints": 100})
    with pytest.raises(TrainingDiverged):
        train(cfg, progress=False)
    run = next(tmp_path.glob("0*"))
    for _, path in ckpt.list_checkpoints(run / "checkpoints"):
        assert _all_finite(ckpt.load_checkpoint(path)), path
    for meta in (run / "snapshots").glob("*.json"):
        assert _all_finite(load_snapshot(meta)[0]), meta


def test_library_resume_refuses_math_changes_too(class_folder, tmp_path):
    """The CLI goes through resume_config; a Python caller of train(cfg, resume=...) gets the same rule."""
    from ganforge.config import ConfigError

    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    with pytest.raises(ConfigError, match="cannot change optim.batch"):
        train(_cfg(class_folder, tmp_path, 0.032, optim={"batch": 4}), resume=run, progress=False)
    with pytest.raises(ConfigError, match="cannot change run.seed"):
        train(_cfg(class_folder, tmp_path, 0.032, run={"seed": 9}), resume=run, progress=False)


def test_change_history_comes_from_the_checkpoint(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    # A resume that changes the lr but writes no checkpoint (nothing to do) must not leave the change on record.
    train(_cfg(class_folder, tmp_path, 0.016, optim={"g_lr": 1e-4}), resume=run, progress=False)
    train(_cfg(class_folder, tmp_path, 0.032), resume=run, progress=False)
    changes = json.loads((run / "config.json").read_text())["changes"]
    assert [c["field"] for c in changes] == ["run.kimg"]


def test_pruning_never_keeps_a_damaged_newer_checkpoint_over_good_ones(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (100, 150):
        ckpt.save_checkpoint(folder, step, {"step": step}, keep=5)
    ckpt.checkpoint_path(folder, 200).write_bytes(b"damaged by a disk error")
    assert ckpt.load_latest_checkpoint(folder, warn=lambda m: None)[0].name == "ckpt-000000150.pt"
    ckpt.save_checkpoint(folder, 175, {"step": 175}, keep=1)  # resumed from 150, keep_checkpoints=1
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [175]
    assert ckpt.load_latest_checkpoint(folder)[1]["step"] == 175
