"""Inpainting masks (data/masks.py): determinism from the step's generator, golden coverage, the paper's stroke
geometry, boxes, user mask pools, the training data and the coverage lines of the dataset report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import DatasetError, inspect_source
from ganforge.data.masks import (
    InpaintBatches,
    _segments_to_mask,
    box_masks,
    center_masks,
    coverage,
    free_form_masks,
    load_inpaint,
    mask_source,
)
from ganforge.data.pairs import MaskedBatches


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("kind", ["free-form", "box", "center", "free-form+box"])
def test_masks_are_a_function_of_the_generator_state(kind):
    src = mask_source(kind, 32)
    a, b = src(6, gen(3)), src(6, gen(3))
    assert a.shape == (6, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    if kind != "center":
        assert not torch.equal(a, src(6, gen(4)))


def test_free_form_draws_follow_the_documented_order():
    # The generator ends where the documented draws (fixed shapes, whatever the values) leave it.
    n, k, v = 5, 3, 12
    for seed in (0, 1):
        g, ref = gen(seed), gen(seed)
        free_form_masks(n, 32, g)
        for shape in [(n,), (n, k), (n, k, 2), (n, k, v), (n, k, 2)]:
            torch.rand(shape, generator=ref, dtype=torch.float64)
        torch.randn((n, k, v), generator=ref, dtype=torch.float64)
        torch.rand((n, k), generator=ref, dtype=torch.float64)
        torch.rand((n, 2), generator=ref, dtype=torch.float64)
        assert torch.equal(g.get_state(), ref.get_state())


def test_golden_coverage_and_bands():
    # Recorded from this implementation (seed 0, 64 masks at 64 px): a change of the draw order or geometry moves them.
    assert coverage(mask_source("free-form", 64)(64, gen(0))).mean() == pytest.approx(0.155457, abs=2e-4)
    assert coverage(mask_source("box", 64)(64, gen(0))).mean() == pytest.approx(0.089901, abs=2e-4)
    assert coverage(mask_source("free-form+box", 64)(64, gen(0))).mean() == pytest.approx(0.233074, abs=2e-4)
    # The paper's parameters scale with the patch: the coverage distribution does not depend on the size.
    means = [coverage(free_form_masks(128, s, gen(1))).mean() for s in (32, 64, 128)]
    assert max(means) - min(means) < 0.01 and all(0.12 < m < 0.2 for m in means)
    ff = coverage(free_form_masks(256, 64, gen(2)))
    assert 0.25 < ((ff >= 0.1) & (ff < 0.2)).mean() < 0.7 and ff.min() > 0 and ff.max() < 0.6
    box = coverage(box_masks(256, 64, gen(2)))
    assert box.min() >= (8 * 8) / 64**2 - 1e-9 and box.max() <= 0.25 + 1e-9
    assert coverage(center_masks(2, 64)).tolist() == [0.25, 0.25]
    union = mask_source("free-form+box", 64)(16, gen(5))
    assert (union >= free_form_masks(16, 64, gen(5))).all()


def test_strokes_are_round_capsules_around_their_segments():
    a = torch.tensor([[[10.0, 16.0]]], dtype=torch.float64)
    b = torch.tensor([[[30.0, 16.0]]], dtype=torch.float64)
    m = _segments_to_mask(a, b, torch.tensor([[3.0]]), torch.tensor([[True]]), 40)[0]   # [H, W], m[y, x]
    assert m[16, 20] and m[15, 20] and m[18, 20] and not m[19, 20] and not m[12, 20]   # centres 16.5 +- 3
    assert m[16, 8] and not m[16, 6] and m[16, 31] and not m[16, 33]                    # round ends
    assert not m[13, 7] and m[13, 10]                                                   # not a square cap
    off = _segments_to_mask(a, b, torch.tensor([[3.0]]), torch.tensor([[False]]), 40)
    assert not off.any()


def _write_masks(folder: Path, sizes: list[tuple[int, int]], value: int = 255) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        m = np.zeros((h, w), np.uint8)
        m[: h // 2, : w // 3] = value
        m[h // 2 :, w // 3 :] = 100  # below the threshold: not a hole
        Image.fromarray(m).save(folder / f"m{i}.png")
    return folder


def test_mask_pool_crops_thresholds_and_refuses_small_masks(tmp_path):
    pool = _write_masks(tmp_path / "pool", [(40, 40), (64, 48)])
    src = mask_source(str(pool), 32)
    a = src(8, gen(0))
    assert a.shape == (8, 1, 32, 32) and torch.equal(a, src(8, gen(0)))
    assert set(a.unique().tolist()) <= {0.0, 1.0} and 0 < a.mean() < 0.5
    small = _write_masks(tmp_path / "small", [(40, 40), (40, 20)])
    with pytest.raises(DatasetError, match=r"m1\.png is 40x20, smaller than the 32x32"):
        mask_source(str(small), 32)
    with pytest.raises(DatasetError, match="free-form, box, center, free-form\\+box"):
        mask_source(str(tmp_path / "nowhere"), 32)


def _photos(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return root


def test_inpaint_batches_fetch_is_deterministic(tmp_path):
    data = load_inpaint(str(_photos(tmp_path / "photos")), 32, "free-form+box")
    assert isinstance(data, InpaintBatches) and len(data) == 3 and data.channels == 3
    assert any("mask coverage: mean" in n for n in data.report.notes)
    a = data.fetch(np.array([0, 2, 1, 0]), gen(7), torch.device("cpu"))
    b = data.fetch(np.array([0, 2, 1, 0]), gen(7), torch.device("cpu"))
    assert a["image"].shape == (4, 3, 32, 32) and a["mask"].shape == (4, 1, 32, 32)
    assert all(torch.equal(a[k], b[k]) for k in a) and a["image"].min() >= -1 and a["image"].max() <= 1
    assert data.preview(np.array([0, 1])).shape == (2, 3, 32, 32)
    # The fingerprint follows the masks: another kind is another dataset for resume.
    other = load_inpaint(str(tmp_path / "photos"), 32, "box")
    assert other.fingerprint() != data.fingerprint()


def _masked_source(root: Path) -> Path:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, frac in enumerate((0.15, 0.35, 0.5)):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        m = np.zeros((40, 40), np.uint8)
        m[: int(round(40 * frac))] = 255
        Image.fromarray(m).save(root / "masks" / f"{i}.png")
    return root


def test_images_and_masks_folders_bring_their_own_masks_and_coverage(tmp_path):
    src = _masked_source(tmp_path / "masked")
    data = load_inpaint(str(src), 32, "free-form")
    assert isinstance(data, MaskedBatches)
    assert any("its own masks are used" in n and "mean 33.3%" in n for n in data.report.notes)
    report = inspect_source(src)
    assert report.mask_coverage["count"] == 3
    assert report.mask_coverage["mean"] == pytest.approx((0.15 + 0.35 + 0.5) / 3)
    assert report.mask_coverage["band_10_20"] == pytest.approx(1 / 3)
    assert report.mask_coverage["band_30_40"] == pytest.approx(1 / 3)
    assert any(line.startswith("mask coverage: mean 33.3%") for line in report.summary_lines())
    assert report.to_dict()["mask_coverage"]["count"] == 3
