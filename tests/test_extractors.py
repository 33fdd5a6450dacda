from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from ganforge.metrics import extractors as ex
from ganforge.metrics.extractors import (
    EXTRACTORS,
    INCEPTION_FILE,
    INCEPTION_URL,
    get_extractor,
    parse_spec,
)
from ganforge.metrics.features import (
    FeatureSet,
    cache_key,
    compute_features,
    dataset_features,
    default_cache_dir,
)
from ganforge.metrics.judge import judge_input, save_judge, to_float
from ganforge.nets.classifier import Classifier
from tests.conftest import make_class_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_judge(folder: Path, channels: int = 1, resolution: int = 8, seed: int = 0, **meta) -> Path:
    torch.manual_seed(seed)
    net = Classifier(resolution=resolution, channels=channels, num_classes=3, width=4)
    return save_judge(net, folder, "judge", meta)


def images(n: int, c: int, h: int, w: int | None = None, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w or h), dtype=np.uint8)  # [N, C, H, W]


class Counting:
    """Wraps an extractor and counts the calls that reach it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.spec, self.sha256 = inner.name, inner.spec, inner.sha256
        self.feature_dim, self.num_classes = inner.feature_dim, inner.num_classes

    def protocol(self):
        return self.inner.protocol()

    def __call__(self, images, batch=256):
        self.calls += 1
        return self.inner(images, batch=batch)


# ---------------------------------------------------------------------------------------------------------
# A stand-in for NVlabs' inception-2015-12-05.pt: same call signature and submodules (layers, output), records
# what it was given. Features = per-channel means of the normalised input, repeated to D.

class _FakeLayers(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.register_buffer("seen", torch.zeros(5, dtype=torch.long))  # N, C, H, W, is_uint8

    def forward(self, x: Tensor) -> Tensor:
        self.seen.copy_(torch.tensor([x.shape[0], x.shape[1], x.shape[2], x.shape[3], int(x.dtype == torch.uint8)]))
        m = x.float().mean(dim=(2, 3))  # [N, 3]
        return m.repeat(1, self.d // 3 + 1)[:, :self.d].reshape(-1, self.d, 1, 1)


class _FakeInception(nn.Module):
    def __init__(self, d: int = 12, k: int = 7):
        super().__init__()
        self.layers = _FakeLayers(d)
        self.output = nn.Linear(d, k)
        self.register_buffer("seen", torch.zeros(5, dtype=torch.long))

    def forward(self, img: Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> Tensor:
        self.seen.copy_(torch.tensor([img.shape[0], img.shape[1], img.shape[2], img.shape[3],
                                      int(img.dtype == torch.uint8)]))
        f = self.layers((img.to(torch.float32) - 128) / 128).reshape(img.shape[0], -1)
        if return_features:
            return f
        logits = F.linear(f, self.output.weight) if no_output_bias else self.output(f)
        return torch.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def fake_inception(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; NVlabs' file is TorchScript
        torch.jit.script(_FakeInception()).save(str(path))
    return path


# ---------------------------------------------------------------------------------------------------------
# Registry and specs


def test_registry_and_specs():
    assert set(EXTRACTORS) == {"judge", "inception"}
    assert parse_spec("judge") == ("judge", None, None)
    assert parse_spec("judge:runs/j/snapshots/latest") == ("judge", "runs/j/snapshots/latest", None)
    assert parse_spec("judge:pad") == ("judge", None, "pad")
    assert parse_spec("judge:/a/b:resize") == ("judge", "/a/b", "resize")
    assert parse_spec("inception:clean") == ("inception", None, "clean")
    assert parse_spec("inception:/m/x.pt:nvlabs") == ("inception", "/m/x.pt", "nvlabs")
    assert parse_spec(r"inception:C:\m\x.pt") == ("inception", r"C:\m\x.pt", None)  # a drive colon is a path
    assert parse_spec("inception:./clean") == ("inception", "./clean", None)
    with pytest.raises(ValueError, match="valid: judge, inception"):
        get_extractor("vgg")
    assert "torchvision" not in sys.modules


# ---------------------------------------------------------------------------------------------------------
# judge


def test_shipped_judge_pads_fashion_mnist():
    e = get_extractor("judge")
    weights = ex.SHIPPED_JUDGE.with_suffix(".safetensors")
    assert (e.name, e.spec, e.fit, e.feature_dim, e.num_classes) == ("judge", "judge", "pad", 128, 10)
    assert e.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    p = e.protocol()
    assert p["sha256"] == e.sha256 and p["weights"] == str(weights) and p["input_resolution"] == 32
    assert p["fit"] == "pad" and "bilinear" in p["resize_filter"] and "alpha" in p["channel_conversion"]
    json.dumps(p)

    x = images(3, 1, 28)
    feats, logits = e(x)
    assert feats.dtype == logits.dtype == torch.float32 and feats.shape == (3, 128) and logits.shape == (3, 10)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))  # what load_dataset(28 -> 32, resize="pad") gives
    want, want_logits = e.net.predict(to_float(padded))
    assert torch.allclose(feats, want, atol=1e-5) and torch.allclose(logits, want_logits, atol=1e-5)
    # Same images as RGB and as opaque RGBA: the luma of a gray pixel repeated to RGB is the pixel itself.
    rgb = np.repeat(x, 3, axis=1)
    rgba = np.concatenate([rgb, np.full_like(x, 255)], axis=1)
    for other in (rgb, rgba, torch.from_numpy(rgba)):
        assert torch.allclose(e(other)[0], feats, atol=1e-4)
    assert get_extractor("judge:resize").fit == "resize"


def test_shipped_judge_is_package_data_of_the_wheel(tmp_path):
    # A wheel install has the judge (and its domain statistics): build one offline from a copy of the sources (so
    # nothing is written into the checkout), unpack it, and resolve `judge` from there in a fresh interpreter.
    import subprocess
    import zipfile

    from tests.conftest import PYTHON, REPO, python_env

    pytest.importorskip("setuptools", reason="--no-build-isolation builds with the environment's setuptools")
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    res = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("ganforge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for suffix in (".safetensors", ".json", ".domain.safetensors"):
        assert f"ganforge/metrics/assets/judge-fashion-mnist{suffix}" in names
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**python_env(), "PYTHONPATH": str(tmp_path / "site")}
    res = subprocess.run([PYTHON, "-c", "from ganforge.metrics.extractors import get_extractor; "
                          "print(get_extractor('judge').weights)"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip().startswith(str(tmp_path / "site")), res.stderr[-2000:]


def test_shipped_judge_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(ex, "SHIPPED_JUDGE", tmp_path / "judge-fashion-mnist")
    with pytest.raises(ValueError, match=r"judge:PATH.*ganforge judge train"):
        get_extractor("judge")


def test_judge_snapshot_any_channels_and_size(tmp_path):
    path = tiny_judge(tmp_path / "j", channels=3, resolution=8)
    e = get_extractor(f"judge:{path}")
    assert (e.fit, e.feature_dim, e.num_classes, e.spec) == ("resize", 16, 3, f"judge:{path}")
    assert e.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for c, h, w in ((1, 8, 8), (3, 20, 12), (4, 5, 5), (2, 16, 16)):
        x = images(5, c, h, w, seed=c)
        feats, logits = e(x, batch=2)  # three batches
        assert feats.shape == (5, 16) and logits.shape == (5, 3)
        assert torch.allclose(feats, e.net.features(e.preprocess(torch.from_numpy(x))), atol=1e-5)
        assert e.preprocess(torch.from_numpy(x)).shape == (5, 3, 8, 8)
    # Transparent pixels are black whatever their colour; empty input gives empty outputs.
    rgba = images(2, 4, 8)
    rgba[:, 3] = 0
    assert torch.allclose(e(rgba)[0], e(np.zeros((2, 3, 8, 8), np.uint8))[0], atol=1e-6)
    assert e(np.zeros((0, 3, 8, 8), np.uint8))[0].shape == (0, 16)
    with pytest.raises(ValueError, match="uint8"):
        e(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="missing"):
        get_extractor("judge:/nonexistent/judge")


def test_judge_input_conversion():
    gray = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    assert torch.equal(judge_input(gray, 3, 4), gray.repeat(1, 3, 1, 1))
    rgb = torch.tensor([0.2, -0.4, 0.6]).reshape(1, 3, 1, 1).expand(1, 3, 4, 4)
    luma = 0.299 * 0.2 - 0.587 * 0.4 + 0.114 * 0.6
    assert torch.allclose(judge_input(rgb, 1, 4), torch.full((1, 1, 4, 4), luma))
    half_alpha = torch.cat([torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)], dim=1)  # white, alpha 0.5
    assert torch.allclose(judge_input(half_alpha, 1, 4), torch.zeros(1, 1, 4, 4))  # mid gray over black
    assert judge_input(gray, 4, 4)[:, 3].eq(1).all()  # an RGBA judge sees opaque images
    padded = judge_input(gray, 1, 7, fit="pad")  # 4 -> 7: 1 row/column before, 2 after, as np.pad splits
    assert torch.equal(padded[..., 1:5, 1:5], gray)
    assert padded[..., 0, :].eq(-1).all() and padded[..., 5:, :].eq(-1).all() and padded[..., :, 5:].eq(-1).all()
    big = torch.rand(1, 1, 16, 16) * 2 - 1  # larger than the judge: resized (antialiased) even with pad
    assert torch.allclose(judge_input(big, 1, 8, fit="pad"),
                          F.interpolate(big, size=(8, 8), mode="bilinear", align_corners=False, antialias=True))
    with pytest.raises(ValueError, match="resize, pad"):
        judge_input(gray, 1, 8, fit="crop")


# ---------------------------------------------------------------------------------------------------------
# inception (with a TorchScript stand-in; the real file is not downloaded in tests)


def test_inception_missing_file_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.delenv("GANFORGE_INCEPTION", raising=False)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError) as info:
        get_extractor("inception")
    msg = str(info.value)
    assert INCEPTION_FILE in msg and INCEPTION_URL in msg and str(tmp_path / "cache" / INCEPTION_FILE) in msg
    assert "inception:/path" in msg and "'judge'" in msg
    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path / "elsewhere.pt"))
    with pytest.raises(ValueError, match="elsewhere.pt does not exist"):
        get_extractor("inception:clean")
    (tmp_path / "junk.pt").write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="is not NVlabs'"):
        get_extractor(f"inception:{tmp_path / 'junk.pt'}")


def test_inception_nvlabs_feeds_uint8_rgb(fake_inception):
    e = get_extractor(f"inception:{fake_inception}")
    assert (e.name, e.resize, e.feature_dim, e.num_classes) == ("inception", "nvlabs", 12, 7)
    assert e.sha256 == hashlib.sha256(fake_inception.read_bytes()).hexdigest()
    p = e.protocol()
    assert p["sha256"] == e.sha256 and p["weights"] == str(fake_inception) and p["input_resolution"] == 299
    assert p["resize"] == "nvlabs" and "bilinear" in p["resize_filter"]
    json.dumps(p)

    gray = images(2, 1, 20, 24)
    feats, logits = e(gray)
    assert e.model.seen.tolist() == [2, 3, 20, 24, 1]  # uint8 RGB at the native size: the model resizes
    rgb = torch.from_numpy(gray).repeat(1, 3, 1, 1).float()
    want = ((rgb - 128) / 128).mean(dim=(2, 3))  # [2, 3]
    assert feats.dtype == torch.float32 and feats.shape == (2, 12) and torch.allclose(feats[:, :3], want)
    assert torch.allclose(logits, feats @ e.model.output.weight.T)  # IS: no output bias (NVlabs)
    assert torch.allclose(logits.softmax(1), e.model(torch.from_numpy(gray).repeat(1, 3, 1, 1),
                                                     no_output_bias=True), atol=1e-6)

    rgba = images(3, 4, 9)
    e(rgba, batch=2)
    assert e.model.seen.tolist() == [1, 3, 9, 9, 1]  # the last batch
    x = e.preprocess(torch.from_numpy(rgba))
    composite = np.round(rgba[:, :3] * (rgba[:, 3:] / 255.0)).astype(np.uint8)  # over black
    assert x.dtype == torch.uint8 and np.abs(x.numpy().astype(int) - composite).max() <= 1


def test_inception_clean_resizes_with_pil_bicubic(fake_inception, monkeypatch):
    monkeypatch.setenv("GANFORGE_INCEPTION", str(fake_inception))
    e = get_extractor("inception:clean")
    assert e.resize == "clean" and e.protocol()["resize"] == "clean" and e.spec == "inception:clean"
    assert get_extractor(f"inception:{fake_inception}:clean").resize == "clean"
    x = images(2, 3, 17, 23, seed=3)
    feats, _ = e(x)
    assert e.model.layers.seen.tolist() == [2, 3, 299, 299, 0]  # float [N, 3, 299, 299] into the layers
    pre = e.preprocess(torch.from_numpy(x))
    assert pre.dtype == torch.float32 and pre.shape == (2, 3, 299, 299)
    pil = np.stack([np.asarray(Image.fromarray(x[1, c].astype(np.float32)).resize((299, 299), Image.BICUBIC))
                    for c in range(3)]).clip(0, 255)  # clean-fid: per channel, float mode, not quantised
    assert np.abs(pre[1].numpy() - pil).max() < 1e-4
    assert torch.allclose(feats[1, :3], ((torch.from_numpy(pil) - 128) / 128).mean(dim=(1, 2)), atol=1e-5)
    gray = e.preprocess(torch.from_numpy(x[:, :1]))  # gray -> RGB before resizing
    assert torch.equal(gray[:, 0], gray[:, 2])


# ---------------------------------------------------------------------------------------------------------
# Feature cache


def test_cache_hit_is_fast_and_skips_the_extractor(tmp_path):
    # 2,000 32x32 gray images through the shipped judge: computed once, then read back.
    e = Counting(get_extractor("judge"))
    x = images(2000, 1, 32)
    t0 = time.perf_counter()
    first = compute_features(e, x, cache_dir=tmp_path, split="test")
    t1 = time.perf_counter()
    calls = e.calls  # one per batch of 256: compute_features reports progress between batches
    second = compute_features(e, x, cache_dir=tmp_path, split="test")
    t2 = time.perf_counter()
    assert calls == 8 and e.calls == calls and not first.from_cache and second.from_cache
    assert isinstance(second, FeatureSet) and len(second) == 2000 and second.key == first.key
    assert torch.equal(first.features, second.features) and torch.equal(first.logits, second.logits)
    compute, cached = t1 - t0, t2 - t1
    print(f"\nfeature cache: computed in {compute:.3f} s, served in {cached:.4f} s ({compute / cached:.0f}x)")
    assert compute / cached >= 10
    meta = json.loads((tmp_path / f"judge-{first.key}.json").read_text())
    assert meta["protocol"]["data"]["count"] == 2000 and meta["protocol"]["data"]["split"] == "test"
    assert meta["protocol"]["extractor"]["sha256"] == e.sha256 and meta["features_shape"] == [2000, 128]


def test_cache_key_covers_data_extractor_and_protocol(tmp_path):
    path = tiny_judge(tmp_path / "a")
    e = get_extractor(f"judge:{path}")
    x = images(6, 1, 8)
    k = cache_key(e, x)
    assert k == cache_key(e, x.copy()) == cache_key(get_extractor(f"judge:{path}"), torch.from_numpy(x))
    y = x.copy()
    y[0, 0, 0, 0] ^= 1
    assert cache_key(e, y) != k  # one pixel
    assert cache_key(e, x[:5]) != k  # count
    assert cache_key(e, x, split="test") != cache_key(e, x, split="train")
    assert cache_key(get_extractor(f"judge:{path}:pad"), x) != k  # same weights, another protocol
    assert cache_key(get_extractor(f"judge:{tiny_judge(tmp_path / 'b', seed=1)}"), x) != k  # other weights
    shutil.copytree(tmp_path / "a", tmp_path / "moved")  # the weights path is not part of the key
    assert cache_key(get_extractor(f"judge:{tmp_path / 'moved' / 'judge'}"), x) == k
    assert cache_key(e, x, fingerprint="abc") != k and cache_key(e, x, key="mine") != k
    assert cache_key(e, key="mine", count=6) == cache_key(e, x, key="mine")


def test_corrupt_or_mismatched_cache_is_recomputed(tmp_path):
    e = Counting(get_extractor(f"judge:{tiny_judge(tmp_path / 'j')}"))
    x = images(7, 3, 12)
    warnings: list[str] = []
    first = compute_features(e, x, cache_dir=tmp_path / "c", log=warnings.append)
    stem = tmp_path / "c" / f"judge-{first.key}"
    assert e.calls == 1 and not warnings and stem.with_suffix(".safetensors").is_file()

    stem.with_suffix(".safetensors").write_bytes(b"\x80\x04garbage, and certainly not unpickled")
    again = compute_features(e, x, cache_dir=tmp_path / "c", log=warnings.append)
    assert e.calls == 2 and not again.from_cache and len(warnings) == 1 and "SHA-256" in warnings[0]
    assert torch.equal(again.features, first.features)
    assert compute_features(e, x, cache_dir=tmp_path / "c", log=warnings.append).from_cache  # rewritten
    assert len(warnings) == 1

    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["protocol"]["data"]["count"] = 99
    stem.with_suffix(".json").write_text(json.dumps(meta))
    compute_features(e, x, cache_dir=tmp_path / "c", log=warnings.append)
    assert e.calls == 3 and "protocol differs" in warnings[-1]

    stem.with_suffix(".json").write_text("{truncated")
    compute_features(e, x, cache_dir=tmp_path / "c", log=warnings.append)
    assert e.calls == 4 and "JSONDecodeError" in warnings[-1]


def test_cache_location_and_opt_out(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "gc"))
    assert default_cache_dir() == tmp_path / "gc" / "features"
    e = get_extractor(f"judge:{tiny_judge(tmp_path / 'j')}")
    x = images(3, 1, 8)
    fs = compute_features(e, x)
    assert (tmp_path / "gc" / "features" / f"judge-{fs.key}.json").is_file()
    fs = compute_features(e, images(3, 1, 8, seed=5), cache=False)
    assert fs.key is None and fs.logits.shape == (3, 3)
    assert len(list((tmp_path / "gc" / "features").glob("*.json"))) == 1


def test_dataset_features(tmp_path):
    e = Counting(get_extractor(f"judge:{tiny_judge(tmp_path / 'j')}"))  # 8x8 gray, like digits
    fs = dataset_features(e, "digits", "test", num=50, seed=1, cache_dir=tmp_path / "c")
    assert fs.features.shape == (50, 16) and fs.protocol["data"]["count"] == 50
    assert fs.protocol["data"]["split"] == "test" and "fingerprint" in fs.protocol["data"]
    info = {"source": "digits", "resolution": 8, "subset_seed": 1, "num_requested": 50}
    assert fs.protocol["info"].items() >= info.items()
    again = dataset_features(e, "digits", "test", num=50, seed=1, cache_dir=tmp_path / "c")
    assert again.from_cache and e.calls == 1 and torch.equal(again.features, fs.features)
    other = dataset_features(e, "digits", "test", num=50, seed=2, cache_dir=tmp_path / "c")
    assert other.key != fs.key and e.calls == 2

    folder = make_class_folder(tmp_path / "data", n_per_class=3)
    with pytest.raises(ValueError, match="give the resolution"):
        dataset_features(e, str(folder), "train", cache_dir=tmp_path / "c")
    fs = dataset_features(e, str(folder), "train", resolution=12, cache_dir=tmp_path / "c")
    assert fs.features.shape == (9, 16) and fs.protocol["info"]["resolution"] == 12
