"""The judge-feature perceptual distance (metrics/perceptual.py) and Perceptual Path Length (metrics/ppl.py)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ganforge
from ganforge.core.latent import slerp
from ganforge.infer.snapshot import LoadedGenerator
from ganforge.metrics.judge import save_judge
from ganforge.metrics.perceptual import DISTANCE_NAME, PerceptualDistance, image_distance, level_activations
from ganforge.metrics.ppl import filtered_mean, path_distances, perceptual_path_length, unit
from ganforge.nets import build_generator
from ganforge.nets.classifier import Classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_judge(folder: Path, channels: int = 3, resolution: int = 16) -> Path:
    """A randomly initialised judge (no training): random conv features still give a structural distance."""
    torch.manual_seed(0)
    net = Classifier(resolution=resolution, channels=channels, num_classes=3, width=4)
    return save_judge(net, folder, "judge", {})


@pytest.fixture(scope="module")
def rgb_judge(tmp_path_factory) -> Path:
    return random_judge(tmp_path_factory.mktemp("judge_rgb"))


@pytest.fixture(scope="module")
def dist(rgb_judge) -> PerceptualDistance:
    return PerceptualDistance(rgb_judge)


def smooth_images(n: int = 4, channels: int = 3, size: int = 16) -> torch.Tensor:
    """[n, C, size, size] in [-1, 1]: gradients plus a bright square, different per image."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b = torch.rand(2, generator=g) * 2 - 1
        img = (0.5 * (a * xx + b * yy))[None].repeat(channels, 1, 1) + 0.1 * torch.rand(channels, 1, 1, generator=g)
        side = max(2, size // 3)
        y0, x0 = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=g))
        img[:, y0:y0 + side, x0:x0 + side] = 0.8
        out.append(img)
    return torch.stack(out).clamp(-1, 1)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------------------------------------------
# The perceptual distance


def test_taps_are_the_last_relu_of_each_level(dist):
    feats = level_activations(dist.net, torch.zeros(2, 3, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
    assert dist.num_layers == 3


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_distance_is_the_lpips_recipe_without_weights(rgb_judge, floor):
    # Reference: Zhang et al. eq. 1 with w_l = 1, averaged over the layers; floor 0 is LPIPS's normalisation.
    d = PerceptualDistance(rgb_judge, floor=floor)
    x = smooth_images(3)
    y = x.flip(-1)
    ref = torch.zeros(3)
    for fa, fb in zip(level_activations(d.net, x), level_activations(d.net, y), strict=True):
        na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)  # [N, 1, H, W]
        delta = floor * ((na.square() + nb.square()).mean(dim=(1, 2, 3), keepdim=True) / 2).sqrt()
        # clamp: an all-zero vector (every ReLU off) stays zero, as in LPIPS
        ya = fa / (na.square() + delta.square()).sqrt().clamp_min(1e-10)
        yb = fb / (nb.square() + delta.square()).sqrt().clamp_min(1e-10)
        ref += (ya - yb).square().sum(dim=1).mean(dim=(1, 2)) / 3
    assert torch.allclose(d(x, y), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="floor"):
        PerceptualDistance(rgb_judge, floor=-1)


def test_distance_identity_symmetry_and_range(dist):
    x = smooth_images(4)
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    assert torch.equal(dist(x, x), torch.zeros(4))
    dxy, dyx = dist(x, y), dist(y, x)
    assert dxy.shape == (4,) and torch.equal(dxy, dyx)
    assert (dxy > 0).all() and (dxy <= 4).all()


def test_distance_grows_with_noise_strength(dist):
    x = smooth_images(4)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))  # one fixed direction, scaled
    d = torch.stack([dist(x, x + s * n) for s in (0.01, 0.03, 0.1, 0.3, 1.0)])  # [5, N]
    assert (d[1:] > d[:-1]).all(), d


def test_gray_rgb_and_sizes(tmp_path, dist):
    gray = smooth_images(3, channels=1, size=24)
    # An RGB judge sees a gray image as its 3-channel repetition, at the judge's 16 px.
    assert torch.allclose(dist(gray, gray.repeat(1, 3, 1, 1)), torch.zeros(3), atol=1e-6)
    noisy = gray + 0.2 * torch.randn(gray.shape, generator=torch.Generator().manual_seed(4))
    assert (dist(gray, noisy) > 0).all()
    big = torch.nn.functional.interpolate(smooth_images(2), size=(40, 40), mode="bilinear")
    assert dist(big, smooth_images(2, size=8)).shape == (2,)
    gray_judge = PerceptualDistance(random_judge(tmp_path / "g", channels=1, resolution=8))
    rgb = smooth_images(2)
    d = gray_judge(rgb, (rgb + 0.3).clamp(-1, 1))
    assert d.shape == (2,) and torch.isfinite(d).all() and (d > 0).all()
    with pytest.raises(ValueError, match="same number of images"):
        dist(rgb, rgb[:1])


def test_gradients_flow_to_a(dist):
    b = smooth_images(2)
    a = (b + 0.3 * torch.randn(b.shape, generator=torch.Generator().manual_seed(5))).requires_grad_(True)
    loss = dist(a, b).sum()
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # Usable as a loss: a small step against the gradient brings a closer to b.
    with torch.no_grad():
        assert dist(a - 1e-2 * a.grad / a.grad.norm(), b).sum() < loss
    assert all(not p.requires_grad for p in dist.net.parameters())


def test_name_and_protocol(dist, rgb_judge):
    sha = hashlib.sha256(rgb_judge.with_suffix(".safetensors").read_bytes()).hexdigest()
    assert dist.name == DISTANCE_NAME == "judge-feature distance (not LPIPS)"
    assert dist.sha256 == sha and sha in dist.protocol and "not LPIPS" in dist.protocol
    with pytest.raises(ValueError, match="missing"):
        PerceptualDistance(rgb_judge.parent / "nope")


def test_image_distance_on_uint8(dist, rgb_judge):
    x = smooth_images(2)
    a = ((x + 1) * 127.5).round().to(torch.uint8)  # [N, 3, H, W]
    b = ((x.flip(-1) + 1) * 127.5).round().to(torch.uint8)
    expected = dist(a.float() / 127.5 - 1, b.float() / 127.5 - 1)
    assert torch.allclose(image_distance(a, b, rgb_judge), expected, atol=1e-6)
    assert torch.allclose(image_distance(a.numpy(), b.numpy(), dist), expected, atol=1e-6)
    hwc = a[0].permute(1, 2, 0).numpy()  # [H, W, C] uint8, as PIL and skimage give it
    assert torch.allclose(image_distance(hwc, b[0].permute(1, 2, 0).numpy(), dist), expected[:1], atol=1e-6)
    assert image_distance(hwc, hwc, dist).item() == 0
    with pytest.raises(ValueError, match="same shape"):
        image_distance(a, b[:, :, :8], dist)


# ---------------------------------------------------------------------------------------------------------
# Perceptual path length


class LinearStyleNet(torch.nn.Module):
    """A 'StyleGAN' with known path lengths: mapping = identity (broadcast to num_ws), synthesis = reshape."""

    def __init__(self, z_dim: int = 6, num_ws: int = 2):
        super().__init__()
        self.config = {"z_dim": z_dim}
        self.num_ws = num_ws

    def mapping(self, z, c=None, psi=1.0):
        return z[:, None].repeat(1, self.num_ws, 1)  # [N, num_ws, z_dim]

    def synthesis(self, ws, noise_mode="random"):
        return ws[:, None]  # [N, 1, num_ws, z_dim]


class Doubled(torch.nn.Module):
    """A snapshot's network whose images are multiplied by 2."""

    def __init__(self, net):
        super().__init__()
        self.inner, self.config, self.mapping = net, net.config, net.mapping

    def synthesis(self, ws, noise_mode="random"):
        return 2 * self.inner.synthesis(ws, noise_mode=noise_mode)


@pytest.fixture(scope="module")
def G(style_run) -> LoadedGenerator:
    return ganforge.load(style_run)


def test_ppl_deterministic_and_nonnegative(G):
    r = perceptual_path_length(G, mse, num_samples=64, batch=32, seed=0)
    assert r == perceptual_path_length(G, mse, num_samples=64, batch=32, seed=0)
    assert r["ppl"] >= 0 and r["std"] >= 0 and 0 < r["count"] <= 64
    assert perceptual_path_length(G, mse, num_samples=64, batch=32, seed=1)["ppl"] != r["ppl"]
    # All draws are made up front: the batch size does not change the values.
    assert torch.allclose(path_distances(G, mse, num_samples=64, batch=64),
                          path_distances(G, mse, num_samples=64, batch=10), rtol=1e-3)
    p = r["protocol"]
    assert (p["space"], p["sampling"], p["epsilon"], p["num_samples"], p["seed"], p["distance"]) == \
           ("w", "end", 1e-4, 64, 0, "mse")


def test_percentile_filter_matches_numpy(G):
    def reference(v):
        lo = np.percentile(v, 1, method="lower")
        hi = np.percentile(v, 99, method="higher")
        kept = v[(v >= lo) & (v <= hi)]
        return kept.mean(), kept.std(), kept.size

    raw = path_distances(G, mse, num_samples=64, batch=32, seed=0).numpy()
    r = perceptual_path_length(G, mse, num_samples=64, batch=32, seed=0)
    assert np.allclose((r["ppl"], r["std"], r["count"]), reference(raw), rtol=1e-12)
    rng = np.random.default_rng(0)
    for n in (1, 2, 64, 100, 101, 250, 1000):
        v = rng.exponential(size=n)
        v[: max(1, n // 50)] *= 1e3  # outliers
        mean, std, count = filtered_mean(v)
        assert np.allclose((mean, std, count), reference(v), rtol=1e-12), n
    v = np.arange(1000.0)  # 1st percentile (lower) is 9, 99th (higher) is 990
    assert filtered_mean(v)[2] == 982 and filtered_mean(v)[0] == pytest.approx(499.5)


def test_ppl_scales_with_the_square_of_the_image_scale(G):
    # Pixel MSE is quadratic in the image difference: doubling the images multiplies every value (and PPL) by 4.
    G2 = LoadedGenerator(Doubled(G.net), G.meta, G.device)
    for space in ("w", "z"):
        r1 = perceptual_path_length(G, mse, num_samples=32, batch=32, space=space)
        r2 = perceptual_path_length(G2, mse, num_samples=32, batch=32, space=space)
        assert r2["ppl"] == pytest.approx(4 * r1["ppl"], rel=1e-6) and r2["count"] == r1["count"]


@pytest.mark.parametrize("epsilon", [1e-4, 1e-3])
def test_eps_squared_normalisation_on_a_linear_generator(epsilon):
    # Images = ws, so d/eps^2 is the squared speed of the path per pixel: ||w1 - w0||^2 / z_dim along a lerp in
    # w, omega^2 / z_dim along a unit-speed slerp in z (omega: the angle between z0 and z1), for any eps and t.
    S, z_dim = 50, 6
    G = LoadedGenerator(LinearStyleNet(z_dim), {"arch": "linear"}, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(S, z_dim, generator=g), torch.randn(S, z_dim, generator=g)  # path_distances's draws
    speed_w = (z1 - z0).square().sum(1) / z_dim
    cos = torch.nn.functional.cosine_similarity(z0, z1)
    speed_z = torch.acos(cos).square() / z_dim
    for space, expected in (("w", speed_w), ("z", speed_z)):
        for sampling in ("end", "full"):
            v = path_distances(G, mse, num_samples=S, epsilon=epsilon, space=space, sampling=sampling)
            assert torch.allclose(v.float(), expected, rtol=1e-2), (space, sampling)


def test_slerp_endpoints():
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(unit(slerp(a, b, torch.zeros(3, 1))), a / a.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(unit(slerp(a, b, torch.ones(3, 1))), b / b.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(slerp(a, b, torch.ones(3, 1)), b, atol=1e-5)
    assert torch.allclose(slerp(unit(a), unit(b), torch.rand(3, 1)).norm(dim=1), torch.ones(3), atol=1e-5)


def test_ppl_spaces_sampling_labels_and_perceptual_distance(G, dist):
    rz = perceptual_path_length(G, mse, num_samples=32, space="z", sampling="full")
    rw = perceptual_path_length(G, mse, num_samples=32, space="w", sampling="full")
    assert math.isfinite(rz["ppl"]) and math.isfinite(rw["ppl"]) and rz["ppl"] != rw["ppl"]
    r0 = perceptual_path_length(G, mse, num_samples=16, labels=0)
    assert r0["ppl"] != perceptual_path_length(G, mse, num_samples=16, labels=1)["ppl"]
    assert r0["protocol"]["classes"].startswith("given")
    with pytest.raises(ValueError, match="out of range"):
        perceptual_path_length(G, mse, num_samples=16, labels=7)
    r = perceptual_path_length(G, dist, num_samples=16, crop=True)
    assert r["ppl"] >= 0 and math.isfinite(r["ppl"])
    assert r["protocol"]["distance"] == DISTANCE_NAME and dist.sha256 in r["protocol"]["distance_protocol"]


def test_ppl_with_the_perceptual_distance_does_not_depend_on_epsilon(G, dist):
    # The soft normalisation floor keeps the distance quadratic in small image changes, so d / eps^2 is stable.
    small, large = (perceptual_path_length(G, dist, num_samples=32, epsilon=e, sampling="full")["ppl"]
                    for e in (1e-4, 1e-3))
    assert small == pytest.approx(large, rel=0.03)


def test_ppl_rejects_non_style_snapshots_and_bad_arguments(G):
    net = build_generator("dcgan", z_dim=8, resolution=16, channels=3, width=8, max_width=16)
    dcgan = LoadedGenerator(net.eval(), {"arch": "dcgan"}, torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a StyleGAN2 snapshot.*dcgan"):
        perceptual_path_length(dcgan, mse, num_samples=8)
    with pytest.raises(ValueError, match="space must be one of z, w"):
        perceptual_path_length(G, mse, num_samples=8, space="w+")
    with pytest.raises(ValueError, match="sampling must be one of full, end"):
        perceptual_path_length(G, mse, num_samples=8, sampling="mid")
    with pytest.raises(ValueError, match="epsilon"):
        perceptual_path_length(G, mse, num_samples=8, epsilon=0)
