"""Nothing moves: every preset's first 50 steps give the losses recorded before the task-protocol refactor.

The golden file was written by tests/golden/record_presets.py on the pre-refactor code (commit in its header).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden import record_presets as rec

GOLDEN = json.loads((Path(rec.__file__).with_name("preset_losses.json")).read_text())


def test_every_preset_is_recorded():
    assert set(GOLDEN) == set(rec.cases()), "a preset was added or removed: re-record only if its math is new"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_first_50_steps_match_golden(name, tmp_path, one_torch_thread):
    got = rec.run_case(name, tmp_path)
    want = GOLDEN[name]
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), (g["step"], sorted(g), sorted(w))
        for k in w:
            # Same machine: bit-identical. The tolerance only absorbs another CPU's summation order.
            assert g[k] == pytest.approx(w[k], rel=1e-4, abs=1e-6), (name, g["step"], k)
