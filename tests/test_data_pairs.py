"""Pairs, unpaired domains, masks, derived pairs and the patch cache (ganforge.data.pairs / derive / patches)."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import (
    DatasetError,
    PairBatches,
    inspect_source,
    load_masked,
    load_pairs,
    load_patches,
    load_unpaired,
    parse_derive,
)
from ganforge.data import patches as patches_module
from ganforge.data.decode import fit, read_image, standard_mode, to_array, to_channels
from ganforge.data.derive import downscale, grayscale, sobel_edges
from ganforge.data.patches import crop_positions

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_MAX_MEMORY_MB", raising=False)


def save(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    # pixels: uint8 [H, W, C] or [H, W]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels).save(path, **kwargs)
    return path


def rand_image(h, w, c=3, seed=0, lo=0, hi=256) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, (h, w, c), dtype=np.uint8)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x + 1).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def make_ab(root: Path, n=4, size=(30, 40), ext_b=".png") -> list[np.ndarray]:
    # A/ random, B/ = 255 - A (same stem, any extension): partners are complementary pixel for pixel.
    images = []
    for i in range(n):
        a = rand_image(*size, seed=i)
        save(root / "A" / f"{i:02d}.png", a)
        save(root / "B" / f"{i:02d}{ext_b}", 255 - a)
        images.append(a)
    return images


def dihedral_windows(image: np.ndarray, p: int):
    # Every p x p window of image ([H, W, C]) under the 8 flips/rotations, as [C, p, p].
    chw = image.transpose(2, 0, 1)
    for top in range(image.shape[0] - p + 1):
        for left in range(image.shape[1] - p + 1):
            window = chw[:, top : top + p, left : left + p]
            for flip in (False, True):
                w = window[:, :, ::-1] if flip else window
                for k in range(4):
                    yield (flip, k), np.rot90(w, k, axes=(1, 2))


# --- aligned pairs -----------------------------------------------------------------------------------------


def test_ab_folders_joint_crops_flips_and_rotations(tmp_path):
    originals = make_ab(tmp_path / "ab", ext_b=".bmp")
    data = load_pairs(tmp_path / "ab", patch=16)
    assert isinstance(data, PairBatches) and data.layout == "A/B" and len(data) == 4
    assert data.channels == data.input_channels == 3 and data.num_classes == 0 and data.scale == 1
    seen = set()
    for seed in range(4):
        batch = data.fetch(np.array([0, 1, 2, 3, 0, 1]), gen(seed), CPU)
        assert set(batch) == {"input", "target"}
        x, y = batch["input"], batch["target"]
        assert x.shape == y.shape == (6, 3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
        torch.testing.assert_close(x + y, torch.zeros_like(x), atol=1e-5, rtol=0)  # same window, same transform
        for k, i in enumerate([0, 1, 2, 3]):  # the input is a flipped/rotated window of its own file
            crop = to_uint8(x[k])
            found = [t for t, w in dihedral_windows(originals[i], 16) if np.array_equal(w, crop)]
            assert found
            seen.update(found)
    assert len({k for _, k in seen}) > 1 and {f for f, _ in seen} == {False, True}
    assert data.preview(np.array([1])).shape == (1, 3, 16, 16) and data.preview(np.array([1])).dtype == np.uint8
    json.dumps(data.describe())


def test_pairs_from_a_zip_match_the_folder(tmp_path):
    make_ab(tmp_path / "ab", n=3)
    archive = tmp_path / "ab.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted((tmp_path / "ab").rglob("*.*")):
            zf.write(file, "wrapped/" + file.relative_to(tmp_path / "ab").as_posix())
    folder, zipped = load_pairs(tmp_path / "ab", 16), load_pairs(archive, 16)
    a, b = folder.fetch(np.arange(3), gen(5), CPU), zipped.fetch(np.arange(3), gen(5), CPU)
    torch.testing.assert_close(a["target"], b["target"])
    assert folder.fingerprint() == zipped.fingerprint()


def test_lq_gt_x2_crops_stay_aligned_including_padding(tmp_path):
    root = tmp_path / "sr"
    for i, (h, w) in enumerate([(20, 24), (12, 10), (7, 9)]):  # the last two are padded (lq patch 12)
        lq = rand_image(h, w, seed=i)
        save(root / "lq" / f"{i:04d}x2.png", lq)  # DIV2K naming: 0000x2.png <-> 0000.png
        save(root / "gt" / f"{i:04d}.png", lq.repeat(2, 0).repeat(2, 1))  # nearest x2: a checkable relation
    data = load_pairs(root, patch=24)
    assert data.layout == "lq/gt" and data.scale == 2 and len(data) == 3
    for seed in range(3):
        batch = data.fetch(np.array([0, 1, 2]), gen(seed), CPU)
        x, y = batch["input"], batch["target"]
        assert x.shape == (3, 3, 12, 12) and y.shape == (3, 3, 24, 24)
        torch.testing.assert_close(y, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert data.report.scale == 2 and any("x2" in line for line in data.report.summary_lines())
    with pytest.raises(DatasetError, match="multiple of 2"):
        load_pairs(root, patch=25)


def test_side_by_side_files_split_in_the_middle(tmp_path):
    for i in range(3):
        a = rand_image(20, 20, seed=i)
        save(tmp_path / "sbs" / f"{i}.png", np.concatenate([a, 255 - a], axis=1))  # 40x20: A | B
    data = load_pairs(tmp_path / "sbs", patch=16)
    assert data.layout == "side-by-side" and len(data) == 3
    batch = data.fetch(np.array([0, 1, 2]), gen(1), CPU)
    torch.testing.assert_close(batch["input"] + batch["target"], torch.zeros(3, 3, 16, 16), atol=1e-5, rtol=0)
    left = to_uint8(batch["input"][0])
    assert any(np.array_equal(w, left) for _, w in dihedral_windows(rand_image(20, 20, seed=0), 16))
    reverse = load_pairs(tmp_path / "sbs", patch=16, reverse=True).fetch(np.array([0]), gen(1), CPU)
    torch.testing.assert_close(reverse["target"], batch["input"][:1])

    assert any("side-by-side" in note for note in inspect_source(tmp_path / "sbs").notes)

    # A folder of ordinary photos is not split in half unless asked to.
    save(tmp_path / "sbs" / "photo.png", rand_image(20, 30))
    with pytest.raises(DatasetError, match=r"1 of 4 images are not side-by-side A\|B pairs.*photo.png 30x20"):
        load_pairs(tmp_path / "sbs", patch=16)
    assert len(load_pairs(tmp_path / "sbs", patch=8, side_by_side=True)) == 4


def test_missing_partners_and_size_mismatches(tmp_path):
    root = tmp_path / "p"
    for name in ["a", "b", "c", "d"]:
        save(root / "A" / f"{name}.png", rand_image(16, 16))
    for name in ["a", "b", "e"]:
        save(root / "B" / f"{name}.jpg", rand_image(16, 16))
    save(root / "B" / "c.png", rand_image(12, 16))  # partner of A/c.png, but 16x12 instead of 16x16
    data = load_pairs(root, patch=8)
    assert len(data) == 2  # a, b
    report = data.report
    assert report.missing_partners == {"B": ["d.png"], "A": ["e.jpg"]} and report.missing_counts == {"B": 1, "A": 1}
    assert report.size_mismatch_count == 1 and report.size_mismatches == ["c: A 16x16, B 16x12"]
    text = "\n".join(report.summary_lines())
    assert "no partner in B/: 1 files of A/ (d.png)" in text and "size mismatches: 1" in text

    inspected = inspect_source(root)
    assert inspected.layout == "A/B" and inspected.partner_counts == {"A": 4, "B": 4} and inspected.pairs == 2
    assert inspected.missing_partners == report.missing_partners and inspected.size_mismatch_count == 1
    assert inspected.class_counts == {}
    record = json.loads(json.dumps(inspected.to_dict()))
    assert record["missing_counts"] == {"B": 1, "A": 1} and record["layout"] == "A/B"
    assert "layout: A/B (input A/, target B/)" in inspected.summary_lines()

    lonely = tmp_path / "lonely"
    for i in range(3):
        save(lonely / "A" / f"{i}.png", rand_image(8, 8))
    with pytest.raises(DatasetError, match=r"found A/ with 3 images and B/ with 0"):
        load_pairs(lonely, patch=8)
    for name in ["x", "y"]:
        save(lonely / "B" / f"{name}.png", rand_image(8, 8))
    with pytest.raises(DatasetError, match=r"none of the 3 files in A/ has a partner in B/.*0.png, 1.png, 2.png"):
        load_pairs(lonely, patch=8)

    mismatched = tmp_path / "mm"
    save(mismatched / "lq" / "a.png", rand_image(10, 10))
    save(mismatched / "gt" / "a.png", rand_image(25, 20))
    with pytest.raises(DatasetError, match=r"no usable pair.*a: lq 10x10, gt 20x25"):
        load_pairs(mismatched, patch=8)


def test_inspect_reports_lq_gt_scale_and_unpaired_counts(tmp_path):
    for i in range(2):
        save(tmp_path / "sr" / "LR" / f"{i}.png", rand_image(8, 10))
        save(tmp_path / "sr" / "HR" / f"{i}.png", rand_image(32, 40))
    report = inspect_source(tmp_path / "sr")
    assert report.layout == "lq/gt" and report.scale == 4 and report.pairs == 2
    save(tmp_path / "u" / "trainA" / "a.png", rand_image(8, 8))
    save(tmp_path / "u" / "trainB" / "b.png", rand_image(8, 8))
    save(tmp_path / "u" / "trainB" / "c.png", rand_image(8, 8))
    report = inspect_source(tmp_path / "u")
    assert report.layout == "unpaired" and report.partner_counts == {"trainA": 1, "trainB": 2}
    assert "layout: unpaired (domains trainA/, trainB/)" in report.summary_lines()


def test_small_pairs_are_skipped_below_half_the_patch(tmp_path):
    make_ab(tmp_path / "s", n=2, size=(20, 20))
    save(tmp_path / "s" / "A" / "tiny.png", rand_image(6, 20))
    save(tmp_path / "s" / "B" / "tiny.png", rand_image(6, 20))
    data = load_pairs(tmp_path / "s", patch=16)
    assert len(data) == 2
    assert [s.path for s in data.report.skipped] == ["A/tiny.png"]
    assert "smaller than half the patch" in data.report.skipped[0].reason


# --- unpaired and masked -----------------------------------------------------------------------------------


def test_unpaired_draws_b_partners_from_the_generator(tmp_path):
    root = tmp_path / "h2z"
    for i in range(3):
        save(root / "trainA" / f"{i}.png", np.full((20, 24, 3), 10 * i, np.uint8))
    for i in range(5):
        save(root / "trainB" / f"{i}.jpg", np.full((18, 18, 3), 100 + 30 * i, np.uint8), quality=100)
    save(root / "testA" / "t.png", np.zeros((20, 20, 3), np.uint8))
    save(root / "testB" / "t.png", np.zeros((20, 20, 3), np.uint8))
    data = load_unpaired(root, patch=16)
    assert len(data) == 3 and data.channels == 3
    drawn = set()
    for seed in range(6):
        batch = data.fetch(np.array([2, 0, 1, 2]), gen(seed), CPU)
        assert batch["A"].shape == batch["B"].shape == (4, 3, 16, 16)
        assert to_uint8(batch["A"])[:, 0, 0, 0].tolist() == [20, 0, 10, 20]  # A follows the indices
        drawn.update(to_uint8(batch["B"])[:, 0, 0, 0].tolist())
    assert len(drawn) >= 3 and drawn <= {100, 130, 160, 190, 220}
    assert len(load_unpaired(root, patch=16, split="test")) == 1
    with pytest.raises(DatasetError, match="expected trainA/ and trainB/"):
        load_unpaired(tmp_path / "h2z" / "trainA", patch=16)
    with pytest.raises(DatasetError, match="load_unpaired"):
        load_pairs(root, patch=16)


def test_masks_are_binarised_and_cropped_with_their_image(tmp_path):
    root = tmp_path / "inpaint"
    rng = np.random.default_rng(0)
    for i in range(3):
        mask = rng.choice(np.array([0, 100, 127, 128, 200, 255], np.uint8), size=(24, 20))
        image = rand_image(24, 20, seed=i)
        image[:, :, 0] = mask  # the red channel carries the mask, to check that both got the same window
        save(root / "images" / f"{i}.png", image)
        save(root / "masks" / f"{i}.png", mask)
    data = load_masked(root, patch=16, rot90=True)
    assert len(data) == 3 and data.channels == 3
    for seed in range(3):
        batch = data.fetch(np.array([0, 1, 2]), gen(seed), CPU)
        mask = batch["mask"]
        assert mask.shape == (3, 1, 16, 16) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        red = to_uint8(batch["image"])[:, :1]
        np.testing.assert_array_equal(mask.numpy(), (red > 127).astype(np.float32))
    assert (load_masked(root, patch=16, threshold=199).fetch(np.array([0]), gen(0), CPU)["mask"].mean()
            < batch["mask"][:1].mean() + 1e-6)
    with pytest.raises(DatasetError, match="expected images/ and masks/"):
        load_masked(tmp_path / "inpaint" / "images", patch=16)


# --- derived pairs -----------------------------------------------------------------------------------------


def make_photos(folder: Path, n=4, size=(64, 64), lo=64, hi=192) -> Path:
    for i in range(n):
        save(folder / f"{i}.png", rand_image(*size, seed=i, lo=lo, hi=hi))
    return folder


def test_derived_noise_has_the_requested_sigma(tmp_path):
    data = load_pairs(make_photos(tmp_path / "clean"), patch=64, derive="noise:gaussian:25")
    assert data.layout == "derived" and data.report.layout == "derived"
    batch = data.fetch(np.arange(4), gen(0), CPU)
    noise = batch["input"] - batch["target"]
    assert abs(noise.std().item() / (25 / 127.5) - 1) < 0.1 and abs(noise.mean().item()) < 0.01

    ranged = load_pairs(tmp_path / "clean", patch=64, derive="noise:gaussian:5-50")
    stds = []
    for seed in range(3):
        batch = ranged.fetch(np.arange(4), gen(seed), CPU)
        stds += (batch["input"] - batch["target"]).flatten(1).std(1).mul(127.5).tolist()  # 0..255 units
    assert min(stds) > 5 * 0.9 and max(stds) < 50 * 1.1 and max(stds) / min(stds) > 1.5


def test_derived_gray_edges_downscale_shapes(tmp_path):
    folder = make_photos(tmp_path / "c", n=2, size=(40, 48), lo=0, hi=256)
    for spec, channels, side in [("gray", 3, 32), ("gray:1", 1, 32), ("edges", 3, 32), ("edges:1", 1, 32),
                                 ("downscale:2", 3, 16), ("downscale:4", 3, 8)]:
        data = load_pairs(folder, patch=32, derive=spec)
        batch = data.fetch(np.array([0, 1]), gen(0), CPU)
        assert batch["input"].shape == (2, channels, side, side), spec
        assert batch["target"].shape == (2, 3, 32, 32) and data.input_channels == channels
        assert batch["input"].min() >= -1 and batch["input"].max() <= 1
    with pytest.raises(DatasetError, match="multiple of 3"):
        load_pairs(folder, patch=32, derive="downscale:3")

    x = torch.full((1, 3, 8, 8), -1.0)
    x[:, 0] = 1.0  # pure red
    y = grayscale(x, gen())
    torch.testing.assert_close(y, torch.full_like(x, 0.299 - 0.587 - 0.114))  # BT.601 luma, replicated
    assert grayscale(x, gen(), one_channel=True).shape == (1, 1, 8, 8)
    flat = sobel_edges(torch.zeros(2, 1, 8, 8), gen())
    torch.testing.assert_close(flat, torch.ones_like(flat))  # no edges: white
    step = torch.full((1, 1, 8, 8), -1.0)
    step[..., 4:] = 1.0
    edges = sobel_edges(step, gen())
    assert edges[0, 0, :, 3:5].max() < -0.9 and edges[0, 0, :, 0].min() == 1.0  # dark line at the step
    torch.testing.assert_close(downscale(torch.full((1, 3, 8, 8), 0.25), gen(), 2), torch.full((1, 3, 4, 4), 0.25))


def test_derive_spec_errors_name_the_spec():
    with pytest.raises(ValueError, match=r"unknown derive 'sharpen'.*noise:gaussian, .*gray, edges, downscale"):
        parse_derive("sharpen:3")
    for spec, message in [("noise:gaussian:abc", "sigma must be"), ("noise:speckle:3", "noise:poisson"),
                          ("noise:gaussian:50-5", "LO <= HI"), ("downscale:5", "2, 3, 4"), ("gray:2", "gray:1")]:
        with pytest.raises(ValueError, match=message) as info:
            parse_derive(spec)
        assert repr(spec) in str(info.value)
    assert [step.kwargs for step in parse_derive("noise:gaussian:5-50").steps] == [{"sigma": (5.0, 50.0)}]


def test_derived_pairs_from_a_builtin():
    data = load_pairs("digits", patch=8, derive="noise:gaussian:10", max_images=20)
    batch = data.fetch(np.arange(5), gen(0), CPU)
    assert batch["target"].shape == (5, 1, 8, 8) and data.name == "digits"


# --- the patch cache ---------------------------------------------------------------------------------------


def make_large_photos(folder: Path) -> Path:
    for i, (w, h) in enumerate([(300, 200), (200, 300), (1000, 700), (700, 1000)]):
        save(folder / f"photo{i}.jpg", rand_image(h, w, seed=i), quality=90)
    save(folder / "small.png", rand_image(40, 50, seed=7))  # 50x40: under the patch, over half: padded
    save(folder / "tiny.png", rand_image(20, 20, seed=8))  # under half the patch: skipped
    return folder


def test_patch_cache_crops_reuse_and_bounded_memory(tmp_path, monkeypatch):
    folder = make_large_photos(tmp_path / "photos")
    patches = load_patches(folder, patch=64)
    cache = patches.store
    assert isinstance(cache.pixels, np.memmap) and len(patches) == 5
    assert cache.pixels.size == 3 * (2 * 300 * 200 + 2 * 1000 * 700 + 50 * 40 + 20 * 20)
    assert [s.path for s in patches.report.skipped] == ["tiny.png"]
    assert "smaller than half the patch" in patches.report.skipped[0].reason
    assert any("mirror-padded" in note for note in patches.report.notes)

    # Crops are the decoded pixels at the drawn positions.
    rows = patches.rows[[0, 2, 3]]
    crops = patches.random_crops(np.array([0, 2, 3]), gen(3))
    assert crops.shape == (3, 3, 64, 64) and crops.dtype == np.uint8
    positions = crop_positions(np.array([cache.size(int(r)) for r in rows]), 64, gen(3))
    for crop, row, (top, left) in zip(crops, rows, positions, strict=True):
        decoded = to_array(read_image(folder / cache.names[row], channels=3))
        np.testing.assert_array_equal(crop, decoded[:, top : top + 64, left : left + 64])

    # Second load: the same files are not decoded again, and the cache file is not rewritten.
    files = sorted((tmp_path / "cache" / "patches").iterdir())
    assert [f.suffix for f in files] == [".json", ".u8"]
    mtime = files[1].stat().st_mtime_ns

    def no_decode(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(patches_module, "read_entry", no_decode)
    again = load_patches(folder, patch=64)
    assert files[1].stat().st_mtime_ns == mtime and again.store.digest == cache.digest
    one = np.array([1])
    np.testing.assert_array_equal(again.random_crops(one, gen(0)), patches.random_crops(one, gen(0)))


def test_patch_cache_is_never_trusted_half_written(tmp_path, monkeypatch):
    folder = tmp_path / "p"
    for i in range(4):
        save(folder / f"{i}.png", rand_image(40, 40, seed=i))
    real = patches_module.read_entry
    calls = []

    def killed_midway(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill while the pixel file is being written
        return real(*args)

    monkeypatch.setattr(patches_module, "read_entry", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        load_patches(folder, patch=32)
    assert not list((tmp_path / "cache" / "patches").iterdir())  # no partial file, no index

    monkeypatch.setattr(patches_module, "read_entry", real)
    first = load_patches(folder, patch=32)
    index = next((tmp_path / "cache" / "patches").glob("*.json"))
    index.unlink()  # a kill between publishing the pixels and the index: the pixels are not trusted alone
    monkeypatch.setattr(patches_module, "read_entry", killed_midway)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        load_patches(folder, patch=32)
    monkeypatch.setattr(patches_module, "read_entry", real)
    assert load_patches(folder, patch=32).store.digest == first.store.digest


# --- determinism and fingerprints --------------------------------------------------------------------------


def test_fetch_is_a_function_of_indices_and_generator_state(tmp_path):
    make_ab(tmp_path / "ab")
    make_photos(tmp_path / "clean", size=(40, 40))
    for data in [load_pairs(tmp_path / "ab", 16), load_pairs(tmp_path / "clean", 16, derive="noise:gaussian:5-50")]:
        idx = np.array([3, 1, 1, 0])
        a, b, c = data.fetch(idx, gen(7), CPU), data.fetch(idx, gen(7), CPU), data.fetch(idx, gen(8), CPU)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert not torch.equal(a["input"], c["input"])
    fingerprints = [load_pairs(tmp_path / "ab", patch).fingerprint() for patch in (16, 16, 8)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_decode_is_public_and_matches_intake(tmp_path):
    # infer reads single images with the same functions as intake (no private helpers).
    path = save(tmp_path / "x.png", rand_image(30, 50))
    with Image.open(path) as im:
        im.load()
        image = fit(to_channels(standard_mode(im), 1), 16, "crop")
    assert to_array(image).shape == (1, 16, 16)
    assert to_array(read_image(path), channels_last=True).shape == (30, 50, 3)
