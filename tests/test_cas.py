"""Classification Accuracy Score and augmentation uplift, on tiny in-process data and fake generators."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from ganforge.metrics.cas import (
    ArmResult,
    CasConfig,
    CasReport,
    classical_augment,
    mean_std,
    per_class_subset,
    run_cas,
    run_cas_on_dataset,
    synthesize_per_class,
)
from ganforge.metrics.judge import fit_classifier

RES = 16
NAMES = ["hstripes", "vstripes", "blob"]
FAST = dict(steps=60, batch=32, lr=5e-3, width=8)  # about 0.3 s per classifier on two CPU threads


def pattern(k: int, rng: np.random.Generator, size: int = RES, channels: int = 1, sigma: float = 0.5) -> np.ndarray:
    """Float [C, size, size] in [-1, 1]: class 0 horizontal stripes, 1 vertical stripes, 2 a blob, each with a
    random amplitude under heavy noise, so that one or two real images per class do not teach a classifier
    everything (about 70 % test accuracy at one per class, 100 % from 20 clean-pattern samples per class)."""
    yy, xx = (np.mgrid[:size, :size] + 0.5) * (RES / size) - 0.5  # pixel centres: the same pattern at any size
    period, phase, amp = rng.uniform(3.5, 6.0), rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0)
    if k == 0:
        img = np.sin(2 * np.pi * yy / period + phase)
    elif k == 1:
        img = np.sin(2 * np.pi * xx / period + phase)
    else:
        cy, cx, s = rng.uniform(4, 12), rng.uniform(4, 12), rng.uniform(2, 3)
        img = 2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2)) - 1
    img = amp * img + rng.normal(0, sigma, img.shape)
    return np.clip(np.repeat(img[None], channels, 0), -1, 1)


def make_set(per_class: int, seed: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    rng.shuffle(labels)
    x = np.stack([pattern(int(k), rng, channels=channels) for k in labels])
    return ((x + 1) * 127.5).round().astype(np.uint8), labels.astype(np.int64)


class FakeGenerator:
    """Duck-typed like LoadedGenerator: class-correct patterns per seed, or pure noise."""

    def __init__(self, num_classes: int = 3, noise: bool = False, resolution: int = RES, channels: int = 1,
                 class_names: Sequence[str] | None = None, sigma: float = 0.5):
        self.num_classes, self.noise, self.resolution, self.channels = num_classes, noise, resolution, channels
        self.sigma = sigma
        self.class_names = list(class_names) if class_names is not None else NAMES[:num_classes]
        self.meta = {"arch": "fake", "kimg": 1.0, "dataset": {"resolution": resolution, "channels": channels}}
        self.calls: list[tuple[list[int], int, float]] = []

    def generate(self, seeds, labels=None, psi: float = 1.0) -> torch.Tensor:
        seeds = list(seeds)
        self.calls.append((seeds, int(labels), psi))
        out = []
        for s in seeds:
            rng = np.random.default_rng(s)
            if self.noise:
                out.append(rng.uniform(-1, 1, (self.channels, self.resolution, self.resolution)))
            else:
                out.append(pattern(int(labels), rng, self.resolution, self.channels, self.sigma))
        return torch.as_tensor(np.stack(out), dtype=torch.float32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    train_x, train_y = make_set(20, seed=1)
    test_x, test_y = make_set(40, seed=2)
    return train_x, train_y, test_x, test_y


def test_per_class_subset_is_balanced_reproducible_and_nested():
    labels = np.random.default_rng(0).integers(0, 4, 200)
    a = per_class_subset(labels, 5, seed=3)
    assert np.bincount(labels[a], minlength=4).tolist() == [5, 5, 5, 5]
    assert np.array_equal(a, per_class_subset(labels, 5, seed=3))
    assert not np.array_equal(a, per_class_subset(labels, 5, seed=4))
    assert set(a) <= set(per_class_subset(labels, 12, seed=3))  # a larger N only adds images
    assert np.all(np.diff(a) > 0)


def test_per_class_subset_names_the_short_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match=r"class 1 \(vstripes\) has only 3 training images, fewer than the 5"):
        per_class_subset(labels, 5, class_names=NAMES)
    with pytest.raises(ValueError, match="class 3 has only 0"):  # absent classes are caught when K is known
        per_class_subset(labels, 2, num_classes=4)
    with pytest.raises(ValueError, match="at least 1"):
        per_class_subset(labels, 0)


def test_mean_std_over_seeds():
    assert mean_std([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))  # sample std (ddof=1)
    assert mean_std([0.8]) == (0.8, 0.0)
    r = ArmResult("real", 5, 15, [0.25, 0.75])
    assert (r.mean, r.std) == pytest.approx((0.5, np.std([0.25, 0.75], ddof=1)))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_classical_augment_is_seeded_and_in_range(channels):
    x = torch.rand(64, channels, RES, RES) * 2 - 1
    a = classical_augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, classical_augment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, classical_augment(x, torch.Generator().manual_seed(1)))
    if channels == 4:  # alpha is only moved by flip and crop: every output value is an input pixel
        assert torch.isin(a[:, 3], x[:, 3]).all()


def test_classical_augment_flips_crops_and_jitters_within_20_percent():
    n = 400
    half = torch.cat([torch.full((n, 1, RES, RES // 2), -1.0), torch.full((n, 1, RES, RES // 2), 1.0)], 3)
    a = classical_augment(half, torch.Generator().manual_seed(0))
    flipped = a[:, 0, :, 0].mean(1) > a[:, 0, :, -1].mean(1)
    assert 0.4 < flipped.float().mean() < 0.6
    edge = (a[:, 0, 0, 1:] - a[:, 0, 0, :-1]).abs().argmax(1)  # where the step between halves landed
    assert ((edge - (RES // 2 - 1)).abs() <= 2).all()  # a crop moves it by at most 2 px
    grey = classical_augment(torch.zeros(n, 1, RES, RES), torch.Generator().manual_seed(0))  # 0.5 in [0, 1]
    level = (grey + 1) / 2
    assert torch.allclose(level, level[:, :, :1, :1].expand_as(level))  # contrast keeps a flat image flat
    assert level.min() >= 0.5 * 0.8 - 1e-6 and level.max() <= 0.5 * 1.2 + 1e-6
    assert level.std() > 0.02  # brightness does vary


def test_fit_classifier_takes_exactly_steps_even_on_a_set_smaller_than_the_batch():
    x, y = make_set(2, seed=0)  # 6 images, batch 32
    seen = []
    net = fit_classifier(x, y, 3, steps=7, batch=32, width=8, progress_every=1, on_progress=lambda s, _: seen.append(s))
    assert seen == list(range(1, 8)) and not net.training
    w0 = fit_classifier(x, y, 3, steps=1, batch=32, width=8, lr=1e-12, seed=5).state_dict()
    w1 = fit_classifier(x[::-1].copy(), y[::-1].copy(), 3, steps=1, batch=32, width=8, lr=1e-12, seed=5).state_dict()
    assert torch.allclose(w0["head.weight"], w1["head.weight"])  # same seed -> same initial weights, any data
    with pytest.raises(ValueError, match="at least one training step"):
        fit_classifier(x, y, 3, steps=0)


def test_synthesize_per_class_layout_resize_and_truncation():
    G = FakeGenerator(resolution=2 * RES)
    x, y = synthesize_per_class(G, 5, first_seed=100, trunc=0.7, batch=2, resolution=RES, channels=1, num_classes=3)
    assert x.dtype == np.uint8 and x.shape == (15, 1, RES, RES)
    assert y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert G.calls[0] == ([100, 101], 0, 0.7) and G.calls[-1] == ([114], 2, 0.7)  # class k: seeds 100 + 5k ...
    again, _ = synthesize_per_class(FakeGenerator(resolution=2 * RES), 5, 100, 0.7, resolution=RES)
    assert np.array_equal(x, again)  # batching does not change the images
    big, _ = synthesize_per_class(FakeGenerator(resolution=2 * RES, sigma=0), 5, 100, resolution=RES)
    native, _ = synthesize_per_class(FakeGenerator(sigma=0), 5, 100)
    assert np.abs(big.astype(float) - native).mean() < 10  # clean 32 px patterns shrunk look like the 16 px ones


def test_generator_and_data_must_match():
    with pytest.raises(ValueError, match="class-conditional generator; this snapshot is unconditional"):
        synthesize_per_class(FakeGenerator(num_classes=0), 2)
    with pytest.raises(ValueError, match="generator has 3 classes but the dataset has 4"):
        synthesize_per_class(FakeGenerator(), 2, num_classes=4)
    with pytest.raises(ValueError, match="not the dataset's"):
        synthesize_per_class(FakeGenerator(), 2, class_names=["blob", "hstripes", "vstripes"])
    with pytest.raises(ValueError, match="makes 3-channel images but the dataset has 1 channels"):
        synthesize_per_class(FakeGenerator(channels=3), 2, channels=1)


def test_run_cas_good_generator(data):
    logs: list[str] = []
    report = run_cas(*data, FakeGenerator(), real_per_class=[1, 4], synthetic_per_class=20, seeds=[0, 1],
                     config=CasConfig(**FAST), class_names=NAMES, log=logs.append)
    synth = report.result("synthetic")
    assert synth.train_images == 60 and len(synth.accuracies) == 2
    assert synth.mean > 0.9  # class-correct samples teach the real classes
    for n in (1, 4):
        a, b, d = (report.result(arm, n) for arm in ("real", "real+synthetic", "real+classical"))
        assert (a.train_images, b.train_images, d.train_images) == (3 * n, 3 * n + 60, 3 * n)
        assert b.mean >= a.mean - 0.03
        assert (a.mean, a.std) == pytest.approx((np.mean(a.accuracies), np.std(a.accuracies, ddof=1)))
        assert report.uplift("real+synthetic", n)["mean"] == pytest.approx(b.mean - a.mean)
    assert report.uplift("real+synthetic", 1)["mean"] > 0.1  # one real image per class: samples help a lot
    assert len(report.results) == 1 + 2 * 3 and len(logs) == 2 * 7 + 2

    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["protocol"]["steps"] == 60 and d["protocol"]["seeds"] == [0, 1] and d["data"]["resolution"] == RES
    assert d["generator"]["arch"] == "fake" and d["generator"]["resized"] is False
    assert CasReport.from_dict(json.loads(json.dumps(d))).to_dict() == d
    rows = report.table_rows()
    assert rows[0][:5] == ["real/class", "(a) real", "(b) real+synthetic", "(c) synthetic", "(d) real+classical"]
    assert [r[0] for r in rows[1:]] == ["1", "4"] and rows[1][3] == rows[2][3]  # (c) does not depend on N
    assert len(report.summary_lines()) == 3


def test_run_cas_noise_generator_is_near_chance(data):
    report = run_cas(*data, FakeGenerator(noise=True), real_per_class=[], synthetic_per_class=20, seeds=[0],
                     config=CasConfig(**FAST, arms=("synthetic",)), log=lambda s: None)
    assert report.result("synthetic").mean < 0.55  # chance is 1/3
    assert [r[0] for r in report.table_rows()[1:]] == ["-"]
    assert report.to_dict()["uplift"] == []


def test_run_cas_checks_everything_before_training(data):
    logs: list[str] = []
    with pytest.raises(ValueError, match=r"class 0 \(hstripes\) has only \d+ training images, fewer than the 50"):
        run_cas(*data, FakeGenerator(), [2, 50], 10, [0], class_names=NAMES, log=logs.append)
    with pytest.raises(ValueError, match="unconditional"):
        run_cas(*data, FakeGenerator(num_classes=0), [2], 10, [0], log=logs.append)
    with pytest.raises(ValueError, match="generator has 4 classes but the dataset has 3"):
        run_cas(*data, FakeGenerator(num_classes=4, class_names=[]), [2], 10, [0], log=logs.append)
    with pytest.raises(ValueError, match="need a generator"):
        run_cas(*data, None, [2], 10, [0], log=logs.append)
    with pytest.raises(ValueError, match="unknown arms"):
        run_cas(*data, FakeGenerator(), [2], 10, [0], CasConfig(arms=("real", "fancy")), log=logs.append)
    assert logs == []  # nothing was trained or drawn
    baseline = run_cas(*data, None, [2], 0, [0], CasConfig(**FAST, arms=("real", "real+classical")),
                       log=logs.append)  # real arms need no generator
    assert [r.arm for r in baseline.results] == ["real", "real+classical"]


def test_run_cas_end_to_end_with_a_stylegan2_snapshot(style_run, tmp_path):
    """The real LoadedGenerator (tiny conditional StyleGAN2, 16 px RGB), resized down to 8 px data."""
    import ganforge
    from ganforge.core.snapshot import snapshot_hash
    from ganforge.data import load_dataset
    from tests.conftest import make_class_folder

    G = ganforge.load(style_run)
    ds = load_dataset(make_class_folder(tmp_path / "data", n_per_class=6), 8)
    report = run_cas(ds.images, ds.labels, ds.images, ds.labels, G, real_per_class=[2], synthetic_per_class=4,
                     seeds=[0], config=CasConfig(steps=5, batch=8, width=8, trunc=0.7), class_names=ds.class_names,
                     snapshot=style_run, log=lambda s: None)
    d = report.to_dict()
    assert d["generator"]["sha256"] == snapshot_hash(style_run) and d["generator"]["arch"] == "stylegan2"
    assert d["generator"]["resolution"] == 16 and d["generator"]["resized"] is True
    assert d["protocol"]["trunc"] == 0.7 and d["data"]["channels"] == 3
    assert all(0 <= a <= 1 for r in report.results for a in r.accuracies)
    assert json.loads(json.dumps(d)) == d


def test_run_cas_on_dataset_loads_both_splits_padded(style_run, tmp_path):
    """The library call behind `ganforge eval cas`: a labelled folder with train/ and test/ at the snapshot's
    resolution (16 px, already a multiple of 8), synthetic images padded like the real ones."""
    from tests.conftest import make_class_folder

    root = tmp_path / "labelled"
    make_class_folder(root / "train", n_per_class=6)
    make_class_folder(root / "test", n_per_class=3)
    report = run_cas_on_dataset(style_run, root, [2], 4, [0], CasConfig(steps=5, batch=8, width=8),
                                log=lambda s: None)
    d = report.to_dict()
    assert d["protocol"]["fit"] == "pad" and d["data"]["resolution"] == 16
    assert (d["data"]["train_images"], d["data"]["test_images"]) == (18, 9)
    assert d["data"]["class_names"] == ["bar", "disc", "square"] and d["generator"]["resized"] is False
    assert {r["arm"] for r in d["results"]} == set(d["protocol"]["arms"])
