"""ADA (Karras et al. 2020): the augmentation pipeline (bgc) and the adaptive strength controller."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.data.ada import (
    ADA_OPS,
    FILTER_BANK,
    AdaAugment,
    AdaController,
    blit_transform,
    filter_transform,
    geometric_transform,
    parse_ops,
)

GROUPS = ("b", "g", "c", "f", "n", "o", "bgc", "bgcfnc")


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, c: int = 3, h: int = 16, w: int | None = None) -> torch.Tensor:
    return torch.rand(n, c, h, w or h, generator=seeded(123)) * 2 - 1


# ---------------------------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("ops", GROUPS)
def test_p0_is_the_identity(ops):
    x = images()
    y = AdaAugment(ops, p=0.0)(x, seeded(0))
    assert torch.equal(y, x)
    assert y is x  # nothing resampled at all


@pytest.mark.parametrize("ops", GROUPS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_p1_changes_every_sample_keeping_shape_dtype_device(ops, channels):
    x = images(8, channels)
    y = AdaAugment(ops, p=1.0)(x, seeded(0))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    changed = (y != x).flatten(1).any(dim=1)
    assert changed.sum() >= 6, f"p=1 should change (nearly) every sample: {changed.tolist()}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_are_kept(dtype):
    x = images().to(dtype)
    y = AdaAugment("bgc", p=1.0)(x, seeded(0))
    assert y.dtype == dtype and torch.isfinite(y).all()
    ref = AdaAugment("bgc", p=1.0)(x.float(), seeded(0))
    torch.testing.assert_close(y.float(), ref, atol=0.05 if dtype == torch.bfloat16 else 1e-5, rtol=0.02)


def test_deterministic_for_a_seed_and_different_across_seeds():
    x = images()
    aug = AdaAugment("bgc", p=0.7)
    a, b = aug(x, seeded(0)), aug(x, seeded(0))
    assert torch.equal(a, b)
    assert not torch.allclose(a, aug(x, seeded(1)))


@pytest.mark.parametrize("ops", ["bgc", "bgcfnc"])
def test_generator_stream_does_not_depend_on_p(ops):
    x = images()
    after = []
    for p in (0.0, 0.5, 1.0):
        gen = seeded(0)
        AdaAugment(ops, p=p)(x, gen)
        after.append(torch.rand(4, generator=gen))
    assert torch.equal(after[0], after[1]) and torch.equal(after[0], after[2])


@pytest.mark.parametrize("ops", GROUPS)
def test_gradient_flows_to_the_input(ops):
    x = images().requires_grad_(True)
    AdaAugment(ops, p=1.0)(x, seeded(0)).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_r1_through_the_augmentation_is_twice_differentiable():
    # StyleGAN2-ADA takes R1 on augmented reals: d/dw |grad_x D(aug(x))|^2 needs the backward of the backward.
    conv = torch.nn.Conv2d(3, 1, 3)
    x = images().requires_grad_(True)
    score = conv(AdaAugment("bgc", p=1.0)(x, seeded(0))).sum()
    (g,) = torch.autograd.grad(score, x, create_graph=True)
    g.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_invalid_ops_and_weights_are_rejected():
    with pytest.raises(ValueError, match="'x'"):
        AdaAugment("bgx")
    with pytest.raises(ValueError, match="'z'"):
        parse_ops("bgcz")
    with pytest.raises(ValueError, match="'shear'"):
        AdaAugment("bgc", weights={"shear": 1.0})
    with pytest.raises(ValueError, match="'hue'"):
        AdaAugment("bg", weights={"hue": 1.0})
    with pytest.raises(ValueError, match="p must be in"):
        AdaAugment("bgc", p=1.5)
    assert parse_ops("cgb") == ("b", "g", "c")
    assert parse_ops("bgcfnc") == ("b", "g", "c", "f", "n", "o")  # NVlabs: the second c is cutout
    assert parse_ops("bgcfn") == ("b", "g", "c", "f", "n") and parse_ops("co") == ("c", "o")
    assert len(ADA_OPS) == 15


# ----------------------------------------------------------------------------------------------- pixel blitting


def blit_candidates(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Every flip x quarter-turn x integer shift of one image x [C, S, S], reflect-padded: [K, C, S, S]."""
    s = x.shape[-1]
    out = []
    for flip in (False, True):
        for k in range(4):
            r = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            pad = F.pad(r[None], [max_shift] * 4, mode="reflect")[0]
            for dy in range(-max_shift, max_shift + 1):
                for dx in range(-max_shift, max_shift + 1):
                    out.append(pad[:, max_shift - dy : max_shift - dy + s, max_shift - dx : max_shift - dx + s])
    return torch.stack(out)


def test_blit_is_an_exact_integer_transform():
    n, s = 32, 16
    x = images(n, 2, s)
    y = AdaAugment("b", p=1.0)(x, seeded(0))
    for i in range(n):
        cands = blit_candidates(x[i], max_shift=round(s * 0.125))
        assert (cands == y[i]).flatten(1).all(dim=1).any(), f"sample {i} is not an exact flip/rotation/shift"
        assert torch.isin(y[i], x[i]).all()  # only existing pixel values


def test_blit_without_translation_permutes_the_pixels():
    x = images(32, 3)
    y = AdaAugment("b", p=1.0, weights={"xint": 0.0})(x, seeded(0))
    assert torch.equal(y.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    assert (y != x).flatten(1).any(dim=1).sum() >= 24  # 7/8 of the flip x rotation draws are not the identity


def test_blit_transform_matches_torch_ops():
    x = images(3, 1, 8)
    flip, rot = torch.tensor([True, False, False]), torch.tensor([0, 2, 0])
    shift = torch.tensor([[0, 0], [0, 0], [1, -1]])
    y = blit_transform(x, flip, rot, shift)
    assert torch.equal(y[0], x[0].flip(-1))
    assert torch.equal(y[1], torch.rot90(x[1], 2, dims=(-2, -1)))
    # dx = +1 moves content right, dy = -1 moves it up; reflect padding without edge repeat.
    pad = F.pad(x[2:3], [1, 1, 1, 1], mode="reflect")[0]
    assert torch.equal(y[2], pad[:, 2:10, 0:8])


def test_blit_on_non_square_images_keeps_the_shape():
    for h, w in ((8, 12), (8, 11)):  # even and odd H - W (odd: half turns only)
        x = images(16, 3, h, w)
        y = AdaAugment("b", p=1.0)(x, seeded(0))
        assert y.shape == x.shape and torch.isin(y, x).all()
    with pytest.raises(ValueError, match="H - W even"):
        blit_transform(images(1, 1, 8, 11), torch.tensor([False]), torch.tensor([1]), torch.zeros(1, 2))


def test_blit_at_small_p_does_not_dominate():
    # Non-leaking sanity (sec. 2.2): with p = 0.2 the average augmented image still looks like the original.
    s = 16
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    x = ((xx.float() / s) * 2 - 1 + (yy < 4).float())[None, None]  # ramp in x, bright band on top
    mean = AdaAugment("b", p=0.2)(x.expand(2000, 1, s, s), seeded(0)).mean(dim=0, keepdim=True)
    d_orig, d_flip = (mean - x).abs().mean(), (mean - x.flip(-1)).abs().mean()
    d_rot = (mean - torch.rot90(x, 1, dims=(-2, -1))).abs().mean()
    assert d_orig < 0.5 * d_flip and d_orig < 0.5 * d_rot


# ------------------------------------------------------------------------------------------------- geometric


def test_geometric_with_tiny_p_is_the_identity():
    x = images(64)
    assert torch.equal(AdaAugment("g", p=1e-9)(x, seeded(0)), x)


def test_geometric_resample_of_identity_parameters_is_the_identity_up_to_rounding():
    x = images(8, 3, 16, 12)
    aug = AdaAugment("g", p=1.0, scale_std=0.0, rotate_max=0.0, aniso_std=0.0, xfrac_std=0.0)
    torch.testing.assert_close(aug(x, seeded(0)), x, atol=1e-5, rtol=0)


def test_geometric_transform_conventions():
    x = images(2, 3, 10)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    shift = torch.tensor([[1.0, 0.0, -2.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # out -> in
    y = geometric_transform(x, torch.stack([quarter, shift]))
    exact = blit_transform(x, torch.tensor([False, False]), torch.tensor([0, 0]), torch.tensor([[0, 0], [2, -1]]))
    torch.testing.assert_close(y[1], exact[1], atol=1e-5, rtol=0)  # integer shift = exact blit, same reflection
    rotated = torch.rot90(x[0], 1, dims=(-2, -1))
    assert torch.allclose(y[0], rotated, atol=1e-5) or torch.allclose(y[0], torch.rot90(x[0], -1, (-2, -1)), atol=1e-5)


def test_geometric_keeps_the_value_range_roughly():
    # Bilinear interpolation of reflected pixels is a convex combination: no new extremes.
    x = images(32)
    y = AdaAugment("g", p=1.0)(x, seeded(0))
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6


# --------------------------------------------------------------------------------------------------------- color


def test_color_on_gray_and_alpha_images():
    for c in (1, 2, 4):
        x = images(16, c)
        y = AdaAugment("c", p=1.0)(x, seeded(0))
        assert (y != x).flatten(1).any(dim=1).sum() >= 12
        if c in (2, 4):
            assert torch.equal(y[:, -1], x[:, -1]), "alpha is untouched by color ops"
    with pytest.raises(ValueError, match="C=5"):
        AdaAugment("c", p=1.0)(images(2, 5), seeded(0))


def test_gray_color_is_brightness_and_contrast_only():
    x = images(16, 1)
    y = AdaAugment("c", p=1.0)(x, seeded(0))
    for i in range(16):  # y = a x + b per sample, a > 0 (no luma flip / inversion)
        a = torch.linalg.lstsq(torch.stack([x[i].flatten(), torch.ones(x[i].numel())], 1), y[i].flatten()[:, None])
        coef = a.solution.flatten()
        torch.testing.assert_close(coef[0] * x[i] + coef[1], y[i], atol=1e-5, rtol=0)
        assert coef[0] > 0


def test_hue_rotation_preserves_luma_and_chroma_magnitude():
    x = images(16, 3)
    y = AdaAugment("c", p=1.0, weights={"brightness": 0, "contrast": 0, "lumaflip": 0, "saturation": 0})(x, seeded(0))
    assert (y != x).flatten(1).any(dim=1).all()
    torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-5, rtol=0)
    chroma = lambda t: (t - t.mean(dim=1, keepdim=True)).norm(dim=1)  # noqa: E731
    torch.testing.assert_close(chroma(y), chroma(x), atol=1e-5, rtol=0)


def test_brightness_adds_one_offset_per_sample():
    x = images(16, 3)
    only = {op: 0 for op in ("contrast", "lumaflip", "hue", "saturation")}
    d = AdaAugment("c", p=1.0, weights=only)(x, seeded(0)) - x
    torch.testing.assert_close(d, d[:, :1, :1, :1].expand_as(d), atol=1e-6, rtol=0)
    assert 0.1 < d[:, 0, 0, 0].std() < 0.4  # normal(0, 0.2)


def test_partial_strength_leaves_unselected_samples_bit_identical():
    x = images(64)
    y = AdaAugment("bgc", p=0.1)(x, seeded(0))
    same = (y == x).flatten(1).all(dim=1)
    # P(untouched) = (1 - 0.1)^12 ~ 0.28 per sample (the rotations share one p)
    assert 5 <= same.sum() <= 40 and (~same).sum() > 0


# -------------------------------------------------------------------------------------- filter, noise, cutout


def test_filter_bank_splits_an_impulse_into_octave_bands():
    bank = FILTER_BANK
    taps = bank.shape[1]
    delta = torch.zeros(taps, dtype=torch.float64)
    delta[taps // 2] = 1
    torch.testing.assert_close(bank.sum(0), delta, atol=1e-15, rtol=0)  # equal gains: the identity
    torch.testing.assert_close(bank, bank.flip(1), atol=0, rtol=0)  # symmetric: no shift
    # Frequency responses (real, symmetric filters): at DC only the lowest band passes, at Nyquist only the
    # highest; each band peaks in its own octave, lowest first.
    k = torch.arange(taps, dtype=torch.float64) - taps // 2
    omega = torch.linspace(0, math.pi, 257, dtype=torch.float64)
    resp = bank @ torch.cos(k[:, None] * omega[None])  # [4, 257]
    torch.testing.assert_close(resp[:, 0], torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(resp[:, -1], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64), atol=1e-12, rtol=0)
    peaks = omega[resp.abs().argmax(dim=1)]
    assert peaks.tolist() == sorted(peaks.tolist()) and len(set(peaks.tolist())) == 4


def test_filter_scales_dc_and_nyquist_by_their_band_gains():
    # h = sum_i g_i B_i: a constant image is scaled by g_0 along x and along y (g_0^2), a checkerboard by g_3^2.
    g = torch.tensor([[0.5, 1.0, 1.0, 2.0]], dtype=torch.float64)
    h = g @ FILTER_BANK
    const = torch.full((1, 1, 16, 16), 0.3)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2 - 1).float()[None, None] * 0.4
    torch.testing.assert_close(filter_transform(const, h), const * 0.25, atol=1e-6, rtol=0)
    torch.testing.assert_close(filter_transform(checker, h), checker * 4.0, atol=1e-6, rtol=0)


def test_filter_with_unit_gains_is_the_identity_and_leaves_alpha_alone():
    x = images(6, 4)
    y = AdaAugment("f", p=1.0, filter_std=0.0)(x, seeded(0))
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
    y = AdaAugment("f", p=1.0)(x, seeded(0))
    assert torch.equal(y[:, 3], x[:, 3]) and not torch.allclose(y[:, :3], x[:, :3])
    with pytest.raises(ValueError, match="larger than 7 pixels"):
        AdaAugment("f", p=1.0)(images(2, 3, 4), seeded(0))


def test_noise_is_additive_with_one_std_per_sample():
    x = images(16, 4, 32)
    y = AdaAugment("n", p=1.0, noise_std=0.1)(x, seeded(0))
    assert torch.equal(y[:, 3], x[:, 3])  # alpha untouched
    std = (y - x)[:, :3].flatten(1).std(dim=1)
    assert (std > 0).all() and std.max() < 0.5 and 0.02 < std.mean() < 0.15  # |N(0, 0.1^2)|: mean 0.08
    assert torch.equal(y, AdaAugment("n", p=1.0, noise_std=0.1)(x, seeded(0)))  # the same seed, the same noise


def test_cutout_zeroes_one_square_of_half_the_side():
    x = images(32, 3, 16) * 0.5 + 0.6  # strictly positive, so every zero is cut out
    y = AdaAugment("o", p=1.0)(x, seeded(0))
    cut = (y == 0).all(dim=1)  # [N, H, W]: all channels together
    assert ((y == x) | (y == 0)).all()
    for m in cut:  # one axis-aligned box of at most 8x8, clipped by the border
        rows, cols = m.any(dim=1).nonzero().flatten(), m.any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert m.sum() == len(rows) * len(cols)
    assert cut.float().mean() > 0.1  # about a quarter of the pixels on average, less at the borders


# ---------------------------------------------------------------------------------------------------- controller


def test_controller_raises_p_when_d_overfits_and_clamps_at_one():
    ctrl = AdaController(interval=4, speed_kimg=0.1)  # 100 images for 0 -> 1
    step = 8 * 4 / (0.1 * 1000)
    adjusted = []
    for i in range(40):
        ctrl.accumulate(torch.ones(8))  # sign(D_real) = +1: r_t = 1 > 0.6
        adjusted.append(ctrl.update(batch=8))
        if i == 3:
            assert ctrl.p == step and ctrl.r_t == 1.0
        if i == 7:
            assert ctrl.p == step + step
    assert adjusted == [i % 4 == 3 for i in range(40)]
    assert ctrl.p == 1.0


def test_controller_lowers_p_when_d_does_not_overfit_and_clamps_at_zero():
    ctrl = AdaController(p=0.5, speed_kimg=0.1)
    step = 8 * 4 / (0.1 * 1000)
    for _ in range(4):
        ctrl.accumulate(-torch.ones(8, 1))
        ctrl.update(batch=8)
    assert ctrl.p == 0.5 - step
    for _ in range(40):
        ctrl.accumulate(-torch.ones(8, 1))
        ctrl.update(batch=8)
    assert ctrl.p == 0.0


def test_controller_speed_and_cap():
    ctrl = AdaController()  # defaults: target 0.6, 4 steps, 500 kimg
    for _ in range(4):
        ctrl.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # r_t = 0.5 < 0.6: stays at 0
        ctrl.update(batch=64)
    assert ctrl.p == 0.0 and ctrl.r_t == 0.5
    capped = AdaController(p_max=0.3, speed_kimg=0.01)
    for _ in range(8):
        capped.accumulate(torch.ones(4))
        capped.update(batch=4)
    assert capped.p == 0.3
    assert not AdaController().update(batch=4)  # nothing accumulated, never adjusts
    with pytest.raises(ValueError, match="interval"):
        AdaController(interval=0)


def test_controller_state_dict_round_trip_continues_identically():
    scores = [torch.randn(8, generator=seeded(i)) + 0.85 for i in range(30)]  # r_t around the target
    full = AdaController(p=0.5, speed_kimg=0.5)
    for s in scores:
        full.accumulate(s)
        full.update(batch=8)

    first = AdaController(p=0.5, speed_kimg=0.5)
    for s in scores[:13]:  # stop mid-interval, with a non-empty accumulator
        first.accumulate(s)
        first.update(batch=8)
    first.accumulate(scores[13])  # accumulated but not yet counted as a step
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert all(isinstance(v, (int, float)) for v in state.values())
    resumed = AdaController(p=0.5, speed_kimg=0.5)
    resumed.load_state_dict(state)
    resumed.update(batch=8)
    for s in scores[14:]:
        resumed.accumulate(s)
        resumed.update(batch=8)
    assert resumed.state_dict() == pytest.approx(full.state_dict(), nan_ok=True)
    assert resumed.p == full.p and resumed.step == full.step == 30
    assert 0 < full.p < 1 and full.p != 0.5 and not math.isnan(full.r_t)


def test_controller_accumulator_is_a_reducible_pair_of_floats():
    ctrl = AdaController(interval=1)
    ctrl.accumulate(torch.tensor([1.0, -1.0, 1.0]))
    assert (ctrl.sign_sum, ctrl.count) == (1.0, 3.0)
    ctrl.sign_sum, ctrl.count = ctrl.sign_sum + 3.0, ctrl.count + 3.0  # as if all-reduced with another process
    assert ctrl.update(batch=6) and ctrl.r_t == pytest.approx(4 / 6)


def test_config_mirrors_ada_groups():
    """config.py (torch-free) keeps its own copy of the ADA group letters; it must match the pipeline's."""
    from ganforge import config
    from ganforge.data import ada

    assert tuple(config.ADA_GROUPS) == tuple(ada.ADA_GROUPS)
    cfg = config.resolve_config("stylegan2-32", {"loss": {"ada": "bgcfnc"}})
    assert cfg.loss.ada == "bgcfno"  # NVlabs' spelling, stored canonically
    with pytest.raises(config.ConfigError, match="loss.ada"):
        config.resolve_config("stylegan2-32", {"loss": {"ada": "bgq"}})
