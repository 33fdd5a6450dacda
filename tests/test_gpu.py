"""CUDA path: AMP (bf16 and fp16 with loss scaling) and channels_last. Skipped on machines without a GPU."""

from __future__ import annotations

import pytest
import torch

from ganforge.config import resolve_config
from ganforge.training import checkpoint as ckpt
from ganforge.training.loop import train
from ganforge.training.rundir import read_jsonl
from tests.conftest import tiny_overrides

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_cuda_amp_channels_last_and_exact_resume(class_folder, tmp_path, amp):
    def cfg(out, kimg):
        return resolve_config("sngan-cond-32", tiny_overrides(
            str(class_folder), out, kimg, run={"device": "cuda", "amp": amp, "channels_last": "on"},
            loss={"r1_gamma": 1.0, "r1_every_steps": 2}))

    full = train(cfg(tmp_path / "a", 0.064), progress=False)
    stats = read_jsonl(full / "stats.jsonl")
    assert all(abs(v) < 1e4 for r in stats for k, v in r.items() if k.startswith("loss/"))
    assert stats[-1]["memory/peak_gb"] > 0
    part = train(cfg(tmp_path / "b", 0.032), progress=False)
    train(cfg(tmp_path / "b", 0.064), resume=part, progress=False)
    a = ckpt.load_latest_checkpoint(full / "checkpoints")[1]
    b = ckpt.load_latest_checkpoint(part / "checkpoints")[1]
    assert a["step"] == b["step"] == 8
    # GPU kernels may be non-deterministic (atomics in conv backward); resume must still track closely.
    a, b = a["modules"], b["modules"]
    for k, v in a["G_ema"].items():
        if v.is_floating_point():
            assert torch.allclose(v, b["G_ema"][k], atol=1e-2, rtol=1e-2), k


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_stylegan2_mixed_precision_in_the_top_resolutions(class_folder, tmp_path, amp):
    # 16x16 G blocks at 4, 8, 16: amp_res=1 puts only the 16x16 blocks of G and D in reduced precision.
    cfg = resolve_config("stylegan2-32", tiny_overrides(
        str(class_folder), tmp_path, 0.064, data={"resolution": 16}, model={"w_dim": 16, "amp_res": 1},
        loss={"ada": "bgc", "r1_every_steps": 2, "pl_every_steps": 2},
        run={"device": "cuda", "amp": amp, "channels_last": "on"}))
    run = train(cfg, progress=False)
    stats = read_jsonl(run / "stats.jsonl")
    assert all(abs(v) < 1e4 for r in stats for k, v in r.items() if k.startswith("loss/"))
    state = ckpt.load_latest_checkpoint(run / "checkpoints")[1]
    assert all(torch.isfinite(v).all() for v in state["modules"]["G_ema"].values() if v.is_floating_point())
