"""Snapshot v2 (several named modules, task and pipeline in the JSON), v1 compatibility, and the pipeline table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge.core.files import CheckpointError
from ganforge.core.snapshot import SNAPSHOT_FORMAT, load_snapshot, save_snapshot
from ganforge.infer.pipelines import PIPELINES, load_pipeline
from ganforge.infer.snapshot import LoadedGenerator, load_generator
from ganforge.nets import NETS, build_net, net_name

DATA = Path(__file__).with_name("data")
V1 = DATA / "v1-sngan-cond"


def test_v1_snapshot_written_before_tasks_still_loads_and_generates_the_same_images():
    """tests/data/v1-sngan-cond.* was written by ganforge before snapshot v2; its outputs are golden."""
    golden = json.loads((DATA / "v1-sngan-cond.golden.json").read_text())
    tensors, meta = load_snapshot(V1)
    assert meta["format"] == SNAPSHOT_FORMAT and meta["pipeline"] == "generate" and meta["task"] == "gan"
    assert meta["modules"]["G"]["net"] == "sngan.G" and set(tensors) == {"G"}
    G = ganforge.load(str(V1))
    assert isinstance(G, LoadedGenerator) and G.num_classes == 3 and G.class_names == ["bar", "disc", "square"]
    x = G.generate(golden["seeds"], labels=golden["labels"])
    assert x[:, :, 5, 5:9].flatten().tolist() == pytest.approx(golden["slice"], abs=1e-6)
    assert float(x.double().sum()) == pytest.approx(golden["sum"], abs=1e-4)


def test_v2_roundtrip_holds_several_named_modules(tmp_path):
    a = build_net("rescnn", channels=1, width=4, depth=3, batch_norm=False)
    b = build_net("rescnn", channels=3, width=8, depth=2, batch_norm=True)
    meta = {"task": "restore", "pipeline": "restore", "arch": "rescnn",
            "modules": {"A": {"net": net_name(a), "config": a.config}, "B": {"net": net_name(b), "config": b.config}}}
    save_snapshot(tmp_path, "two", {"A": a.state_dict(), "B": b.state_dict()}, meta)
    on_disk = json.loads((tmp_path / "two.json").read_text())
    assert on_disk["format"] == "ganforge-snapshot/2" and set(on_disk["modules"]) == {"A", "B"}
    tensors, back = load_snapshot(tmp_path / "two.safetensors")
    assert set(tensors) == {"A", "B"} and back["modules"]["B"]["config"]["width"] == 8
    for name, m in (("A", a), ("B", b)):
        assert all(torch.equal(v, tensors[name][k]) for k, v in m.state_dict().items())


def test_save_refuses_meta_that_does_not_describe_every_module(tmp_path):
    net = build_net("rescnn", channels=1, width=4, depth=2)
    with pytest.raises(ValueError, match="one modules entry per module"):
        save_snapshot(tmp_path, "x", {"net": net.state_dict()}, {"task": "restore", "pipeline": "restore",
                                                                  "modules": {}})


def test_bad_snapshots_are_clear_errors(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(V1.with_suffix(suffix), tmp_path / f"s{suffix}")
    meta = json.loads((tmp_path / "s.json").read_text())
    (tmp_path / "s.json").write_text(json.dumps({**meta, "format": "ganforge-snapshot/9"}))
    with pytest.raises(CheckpointError, match="unknown snapshot format 'ganforge-snapshot/9'"):
        load_snapshot(tmp_path / "s")
    (tmp_path / "s.json").write_text(json.dumps({**meta, "task": "gizmo", "arch": "x"}))
    with pytest.raises(CheckpointError, match="pipeline 'gizmo'.*known: generate, restore"):
        load_pipeline(tmp_path / "s")
    (tmp_path / "s.json").write_text(json.dumps({**meta, "arch": "nope"}))
    with pytest.raises(CheckpointError, match="unknown network 'nope.G'"):
        load_generator(tmp_path / "s")
    (tmp_path / "s.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_snapshot(tmp_path / "s")
    with pytest.raises(CheckpointError, match="missing"):
        load_snapshot(tmp_path / "nothing")


def test_tables_are_explicit():
    assert set(PIPELINES) == {"generate", "restore", "inpaint", "translate"}
    from ganforge.config import TASK_ARCHS
    from ganforge.tasks import TASKS

    assert set(TASKS) == set(TASK_ARCHS)
    assert {t.pipeline for t in TASKS.values()} <= set(PIPELINES)
    for task, archs in TASK_ARCHS.items():
        assert all(a in NETS or f"{a}.G" in NETS for a in archs), task


def test_int8_shipping_format_round_trips_within_half_a_step(tmp_path):
    from ganforge.core.snapshot import INT8_SCALE, quantize_int8

    gen = torch.Generator().manual_seed(0)
    sd = {"conv.weight": torch.randn(64, 32, 3, 3, generator=gen) * torch.linspace(0.01, 1, 64)[:, None, None, None],
          "conv.bias": torch.randn(64, generator=gen), "norm.num_batches_tracked": torch.tensor(7)}
    q = quantize_int8(sd)
    assert q["conv.weight"].dtype == torch.int8 and q["conv.weight" + INT8_SCALE].shape == (64,)
    assert q["conv.bias"].dtype == torch.float16 and q["norm.num_batches_tracked"].dtype == torch.int64
    meta = {"format": SNAPSHOT_FORMAT, "task": "restore", "pipeline": "restore", "step": 1,
            "modules": {"G": {"net": "rescnn", "config": {}}}, "tensor_dtype": "int8"}
    path = save_snapshot(tmp_path, "q", {"G": q}, meta)
    back, _ = load_snapshot(path)
    w = back["G"]["conv.weight"]
    assert set(back["G"]) == set(sd) and w.dtype == torch.float32
    step = sd["conv.weight"].abs().amax(dim=(1, 2, 3)) / 127  # per output channel, so small channels stay precise
    assert ((w - sd["conv.weight"]).abs().amax(dim=(1, 2, 3)) <= step * 0.5 + 1e-3 * step + 1e-6).all()
    assert torch.equal(back["G"]["norm.num_batches_tracked"], torch.tensor(7))
