"""End-to-end training: run folder contract, exact resume, kill safety, NaN guard, snapshots."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge.config import resolve_config
from ganforge.core import files
from ganforge.tasks.gan import GanTask
from ganforge.training import checkpoint as ckpt
from ganforge.training.loop import TrainingDiverged, train
from ganforge.training.rundir import read_jsonl
from tests.conftest import PYTHON, kill_after_checkpoints, python_env, tiny_overrides


def _cfg(source, out, kimg, preset="dcgan-32", **sections):
    return resolve_config(preset, tiny_overrides(str(source), out, kimg, **sections))


def _losses(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("loss/") or k in ("step", "kimg")}
            for r in read_jsonl(run / "stats.jsonl")]


def test_run_folder_contract(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path / "runs", 0.064), progress=False)
    assert run.name == "00000-data-dcgan-32"
    assert json.loads((run / "config.json").read_text())["run"]["kimg"] == 0.064
    stats = read_jsonl(run / "stats.jsonl")
    assert [r["step"] for r in stats] == list(range(1, 9))
    assert all({"loss/D_adv", "loss/G_adv", "timing/img_per_s", "timing/data_share"} <= r.keys() for r in stats)
    assert (run / "samples" / "reals.png").exists()
    assert sorted(p.name for p in (run / "samples").glob("fakes*.png")) == ["fakes000000004.png", "fakes000000008.png"]
    assert {p.name for p in (run / "snapshots").iterdir()} >= {"latest.safetensors", "latest.json",
                                                               "step000000008.safetensors"}
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [4, 8]  # keep_checkpoints=2
    meta = json.loads((run / "snapshots" / "latest.json").read_text())
    assert meta["dataset"]["fingerprint"] and meta["ganforge_version"] == ganforge.__version__
    assert meta["format"] == "ganforge-snapshot/2" and meta["task"] == "gan" and meta["pipeline"] == "generate"
    assert meta["modules"]["G"]["net"] == "dcgan.G" and meta["modules"]["G"]["config"]["resolution"] == 16
    assert "new run" in (run / "log.txt").read_text()
    # A second run gets the next number.
    run2 = train(_cfg(class_folder, tmp_path / "runs", 0.008), progress=False)
    assert run2.name.startswith("00001-")


@pytest.mark.parametrize("preset,extra", [
    ("dcgan-32", {"loss": {"r1_gamma": 1.0, "r1_every_steps": 3, "diffaugment": "color,translation,cutout"}}),
    ("sngan-cond-32", {"optim": {"d_steps": 2}}),
    ("acgan-32", {}),
    ("wgan-gp-32", {}),
])
def test_resume_is_exact(class_folder, tmp_path, preset, extra):
    """Losses after a resume equal those of an uninterrupted run, step for step, and so do the weights."""
    full = train(_cfg(class_folder, tmp_path / "a", 0.096, preset, **extra), progress=False)
    part = train(_cfg(class_folder, tmp_path / "b", 0.048, preset, **extra), progress=False)
    resumed = train(_cfg(class_folder, tmp_path / "b", 0.096, preset, **extra), resume=part, progress=False)
    assert resumed == part
    assert _losses(resumed) == _losses(full)
    a = ckpt.load_latest_checkpoint(full / "checkpoints")[1]
    b = ckpt.load_latest_checkpoint(resumed / "checkpoints")[1]
    for k, v in a["modules"]["G_ema"].items():
        assert torch.equal(v, b["modules"]["G_ema"][k]), k
    assert "resumed from ckpt-000000006.pt" in (resumed / "log.txt").read_text()


def test_kill_mid_run_then_resume(class_folder, tmp_path):
    """SIGKILL at an arbitrary moment (possibly mid-write); --resume finishes with the uninterrupted losses."""
    args = ["--data", str(class_folder), "--preset", "dcgan-32", "--resolution", "16", "--batch", "8",
            "--set", "model.z_dim=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
            "--set", "model.max_width=32", "--set", "run.tick_kimg=0.008",
            "--set", "run.checkpoint_every_kimg=0.008", "--set", "run.snapshot_every_kimg=0.008",
            "--set", "run.sample_every_kimg=1", "--no-progress"]
    cmd = [PYTHON, "-m", "ganforge", "train", *args]
    ref = subprocess.run(cmd + ["--kimg", "0.4", "--out", str(tmp_path / "ref")], env=python_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    run = kill_after_checkpoints(cmd + ["--kimg", "0.4"], tmp_path / "k")
    done = subprocess.run([PYTHON, "-m", "ganforge", "train", "--resume", str(run), "--kimg", "0.4", "--no-progress"],
                          env=python_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref_run = next((tmp_path / "ref").glob("0*"))
    assert _losses(run) == _losses(ref_run)
    assert not list(run.rglob("*.tmp")) or all(p.name.startswith(".") for p in run.rglob("*.tmp"))


def test_nan_guard_keeps_last_checkpoint(class_folder, tmp_path, monkeypatch):
    original = GanTask.g_main

    def poisoned(self, inp):
        out = original(self, inp)
        if inp.step >= 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(GanTask, "g_main", poisoned)
    cfg = _cfg(class_folder, tmp_path, 0.08, run={"checkpoint_every_kimg": 0.016})
    with pytest.raises(TrainingDiverged, match=r"G loss is nan at step 5 .*ckpt-000000004\.pt.*learning rate"):
        train(cfg, progress=False)
    run = next(tmp_path.glob("0*"))
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [2, 4]
    assert ckpt.load_latest_checkpoint(run / "checkpoints")[1]["step"] == 4
    assert "stopped: G loss is nan" in (run / "log.txt").read_text()


def test_atomic_write_interrupted_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.bin"
    files.atomic_write_bytes(target, b"old")

    def boom(fd):
        raise KeyboardInterrupt  # a kill between write and rename

    monkeypatch.setattr(files.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_disk_full_is_a_clear_error_and_keeps_checkpoints(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 1, {"w": torch.ones(3)}, keep=2)
    import errno
    import os

    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: FullFile(real_fdopen(fd, mode)))
    with pytest.raises(ckpt.CheckpointError, match="disk full while writing .*ckpt-000000002.pt: it was not changed"):
        ckpt.save_checkpoint(folder, 2, {"w": torch.zeros(3)}, keep=2)
    monkeypatch.undo()
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [1]
    assert torch.equal(ckpt.load_latest_checkpoint(folder)[1]["w"], torch.ones(3))
    assert len(list(folder.iterdir())) == 1  # no temp file left behind


def test_corrupt_newest_checkpoint_falls_back(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 1, {"step": 1}, keep=5)
    ckpt.save_checkpoint(folder, 2, {"step": 2}, keep=5)
    p2 = ckpt.checkpoint_path(folder, 2)
    p2.write_bytes(p2.read_bytes()[:20])  # torn by a disk error
    (folder / ".ckpt-000000003.pt.x.tmp").write_bytes(b"partial")  # a kill mid-write
    warnings = []
    path, state = ckpt.load_latest_checkpoint(folder, warn=warnings.append)
    assert state["step"] == 1 and path.name == "ckpt-000000001.pt"
    assert "ckpt-000000002.pt" in warnings[0]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_loading_never_unpickles(tmp_path):
    path = tmp_path / "ckpt-000000001.pt"
    torch.save({"step": 1, "payload": Evil()}, path)
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(path)


def test_snapshot_load_and_generate(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.032, "sngan-cond-32"), progress=False)
    for name in ("snapshots/latest", "snapshots/latest.safetensors", "snapshots/latest.json", ""):
        G = ganforge.load(str(run / name))
        assert G.num_classes == 3 and G.class_names == ["bar", "disc", "square"]
    a = G.generate([0, 1, 2], labels=1)
    assert a.shape == (3, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    # A seed's image does not depend on its batch (up to float reordering in batched convs).
    assert torch.allclose(G.generate([1], labels=1), a[1:2], atol=1e-5)
    assert not torch.allclose(G.generate([1], labels=2), a[1:2], atol=1e-3)
    with pytest.raises(ValueError, match="class-conditional"):
        G.generate([0])
    with pytest.raises(ValueError, match=r"class 7 out of range: valid classes are 0\.\.2"):
        G.generate([0], labels=7)
    walk = G.interpolate(0, 7, frames=5, labels=0)
    assert walk.shape[0] == 5 and torch.allclose(walk[0], G.generate([0], labels=0)[0], atol=1e-5)
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ganforge.load(str(run / "snapshots" / "nope"))


def test_resume_refuses_changed_data(class_folder, tmp_path):
    run = train(_cfg(class_folder, tmp_path, 0.016), progress=False)
    from PIL import Image
    Image.new("RGB", (20, 20), "white").save(class_folder / "disc" / "000.png")
    with pytest.raises(ValueError, match="changed since this run started"):
        train(_cfg(class_folder, tmp_path, 0.032), resume=run, progress=False)


def test_cond_needs_labels(tmp_path, class_folder):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in list((class_folder / "disc").iterdir())[:8]:
        p.rename(flat / p.name)
    with pytest.raises(ValueError, match="needs class labels"):
        train(_cfg(flat, tmp_path / "r", 0.016, "sngan-cond-32"), progress=False)


def test_two_process_gloo_training(class_folder, tmp_path):
    """torchrun with 2 CPU processes (gloo): trains, and both ranks end with identical weights."""
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "ganforge",
           "train", "--data", str(class_folder), "--preset", "dcgan-32", "--resolution", "16", "--batch", "8",
           "--kimg", "0.048", "--out", str(tmp_path), "--device", "cpu",
           "--set", "model.g_width=8", "--set", "model.d_width=8",
           "--set", "model.max_width=32", "--set", "model.z_dim=16", "--set", "run.tick_kimg=0.008",
           "--no-progress"]
    res = subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = next(tmp_path.glob("0*"))
    log = (run / "log.txt").read_text()
    assert "2 processes" in log and "parameters identical across ranks" in log
    assert [r["step"] for r in read_jsonl(run / "stats.jsonl")] == list(range(1, 7))


def test_tensorboard_mirrors_stats(class_folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(_cfg(class_folder, tmp_path, 0.032, run={"tensorboard": True}), progress=False)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    stats = read_jsonl(run / "stats.jsonl")
    events = acc.Scalars("loss/G_adv")
    assert [e.step for e in events] == [int(r["kimg"] * 1000) for r in stats]
    assert [e.value for e in events] == pytest.approx([r["loss/G_adv"] for r in stats], rel=1e-6)


def test_fused_adam_on_channels_last_weights_is_torchs_update_without_the_copies():
    """tasks/base.py Adam hands channels_last weights to the fused kernel as dense NHWC views (torch's step clones
    and copies each one back): the same parameters and state bit for bit over several steps, the state_dicts load
    into each other, and the weights keep their layout."""
    from ganforge.tasks.base import Adam

    torch.manual_seed(0)
    make = lambda: [torch.nn.Parameter(torch.randn(8, 6, 3, 3).contiguous(memory_format=torch.channels_last)),  # noqa: E731
                    torch.nn.Parameter(torch.randn(8)), torch.nn.Parameter(torch.randn(5, 4, 1, 2))]
    ours, ref = make(), make()
    for a, b in zip(ours, ref, strict=True):
        b.data.copy_(a.data)
    opt_ours, opt_ref = Adam(ours, 1e-2, betas=(0.5, 0.99), fused=True), torch.optim.Adam(ref, 1e-2, (0.5, 0.99),
                                                                                          fused=True)
    for step in range(4):
        for a, b in zip(ours, ref, strict=True):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(memory_format=torch.preserve_format), g.clone(memory_format=torch.preserve_format)
        ours[2].grad = ref[2].grad = None if step == 1 else ours[2].grad  # a parameter without a gradient is skipped
        opt_ours.step()
        opt_ref.step()
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)
    assert ours[0].is_contiguous(memory_format=torch.channels_last) and not ours[0].is_contiguous()
    s_ours, s_ref = opt_ours.state_dict(), opt_ref.state_dict()
    for k in s_ref["state"]:
        assert all(torch.equal(s_ours["state"][k][n], s_ref["state"][k][n]) for n in ("step", "exp_avg", "exp_avg_sq"))
    opt_ref.load_state_dict(s_ours)
    opt_ours.load_state_dict(s_ref)


def test_cpu_transposed_conv_weights_stay_contiguous_under_channels_last():
    from ganforge.training.loop import set_memory_format

    net = set_memory_format(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.ConvTranspose2d(8, 4, 4, 2)),
                            torch.channels_last)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last) and not net[0].weight.is_contiguous()
    assert net[1].weight.is_contiguous()  # oneDNN's deconvolution re-lays a channels_last weight every backward
    x = torch.randn(2, 4, 12, 12).contiguous(memory_format=torch.channels_last)
    ref = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.ConvTranspose2d(8, 4, 4, 2))
    ref.load_state_dict(net.state_dict())
    assert torch.allclose(net(x), ref(x.contiguous()), atol=1e-5)


def test_fused_adam_relays_moments_restored_in_another_layout():
    """A checkpoint's Adam moments keep the layout they were saved in; resumed with another run.channels_last, the
    weights are re-laid but their moments are not. torch's fused kernel then pairs each weight element with another
    element's moments (a wrong update, no error); Adam re-lays the moments first, so the update stays torch's on
    same-layout tensors, bit for bit, and the moments take their weight's strides."""
    from ganforge.tasks.base import Adam

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 6, 3, 3).contiguous(memory_format=torch.channels_last))
    ref = torch.nn.Parameter(w.detach().contiguous())
    opt, opt_ref = Adam([w], 1e-2, fused=True), torch.optim.Adam([ref], 1e-2, fused=True)
    for step in range(3):
        if step == 1:  # "resume" in the contiguous format: the weight changes layout, its moments do not
            w.data = w.data.contiguous()
            assert opt.state[w]["exp_avg"].stride() != w.stride()
        g = torch.randn(8, 6, 3, 3)
        w.grad, ref.grad = torch.empty_like(w).copy_(g), g.clone()  # a gradient in its weight's layout
        opt.step()
        opt_ref.step()
        assert torch.equal(w, ref)
    assert all(opt.state[w][k].stride() == w.stride() for k in ("exp_avg", "exp_avg_sq"))
    assert all(torch.equal(opt.state[w][k], opt_ref.state[ref][k]) for k in ("exp_avg", "exp_avg_sq"))


def test_resume_with_another_memory_format_relays_the_adam_moments(class_folder, tmp_path):
    """run.channels_last may change on --resume (RESUME_CHANGEABLE); the weights change layout with it, and the
    Adam moments restored from the checkpoint must follow them (see the test above): the checkpoint written after
    the resume holds moments in the weights' new layout."""
    part = train(_cfg(class_folder, tmp_path, 0.048, run={"channels_last": "on"}), progress=False)
    opts = ckpt.checkpoint_optimizers(ckpt.load_latest_checkpoint(part / "checkpoints")[1])[0]
    moments = [t for o in opts.values() for st in o["state"].values() for k, t in st.items() if k == "exp_avg"]
    assert any(t.dim() == 4 and not t.is_contiguous() for t in moments)  # D's conv weights: channels_last
    resumed = train(_cfg(class_folder, tmp_path, 0.096, run={"channels_last": "off"}), resume=part, progress=False)
    opts = ckpt.checkpoint_optimizers(ckpt.load_latest_checkpoint(resumed / "checkpoints")[1])[0]
    moments = [t for o in opts.values() for st in o["state"].values() for k, t in st.items()
               if k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(t.is_contiguous() for t in moments)


def test_fused_adam_by_default_and_the_loop_on_request(class_folder, tmp_path):
    """New runs use Adam's fused kernel (the same update in another rounding order: losses close, not equal);
    optim.fused_adam=false gives the per-tensor loop of runs before it, and an optimizer restored from such a
    checkpoint keeps the loop (the state carries the flag), so older runs resume bit-exactly."""
    from ganforge.config import OptimConfig
    from ganforge.tasks.base import adam

    p = [torch.nn.Parameter(torch.randn(4))]
    optim = OptimConfig(beta1=0.5, beta2=0.99)
    assert adam(p, 1e-3, optim).param_groups[0]["fused"] is True
    old = adam(p, 1e-3, optim.model_copy(update={"fused_adam": False}))
    assert old.param_groups[0]["fused"] is None
    p[0].grad = torch.ones(4)
    old.step()
    restored = adam(p, 1e-3, optim)
    restored.load_state_dict(old.state_dict())
    assert restored.param_groups[0]["fused"] is None
    loop = train(_cfg(class_folder, tmp_path / "a", 0.096, optim={"fused_adam": False}), progress=False)
    fused = train(_cfg(class_folder, tmp_path / "b", 0.096), progress=False)
    assert _losses(fused) != _losses(loop)
    last_f, last_l = _losses(fused)[-1], _losses(loop)[-1]
    assert all(abs(last_f[k] - last_l[k]) < 0.05 * abs(last_l[k]) + 1e-3 for k in last_l if k.startswith("loss/"))
