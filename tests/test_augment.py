"""DiffAugment: shapes, determinism from the generator, differentiability and what each op does."""

from __future__ import annotations

import pytest
import torch

from ganforge.data.augment import DIFFAUGMENT_OPS, color, cutout, diff_augment, parse_policy, translation

ALL = ("color", "translation", "cutout")


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, c: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=seeded(123)) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [8, 28])
def test_shapes_preserved(channels, size):
    x = images(4, channels, size)
    for op in ALL:
        assert diff_augment(x, [op], seeded(0)).shape == x.shape
    assert diff_augment(x, ALL, seeded(0)).shape == x.shape


def test_deterministic_for_a_seed_and_different_across_seeds():
    x = images()
    a, b = diff_augment(x, ALL, seeded(0)), diff_augment(x, ALL, seeded(0))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, diff_augment(x, ALL, seeded(1)))


def test_differentiable():
    x = images().requires_grad_(True)
    diff_augment(x, ALL, seeded(0)).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_empty_policy_is_identity():
    x = images()
    assert torch.equal(diff_augment(x, (), seeded(0)), x)
    assert torch.equal(diff_augment(x, parse_policy(""), seeded(0)), x)


def test_translation_moves_pixels_and_pads_with_zeros():
    n, c, s = 64, 2, 16
    # Every pixel has a unique positive value that encodes where it came from.
    ch = torch.arange(c)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    x = (1 + 1000 * ch + s * yy + xx).float().expand(n, c, s, s).contiguous()
    y = translation(x, seeded(0))
    max_shift = int(s / 8 + 0.5)  # 2 pixels at 16 px
    shifts = set()
    for i in range(n):
        src = y[i, 0]
        inside = src > 0
        assert inside.any()
        assert torch.equal(y[i, 1][inside], src[inside] + 1000)  # channels move together
        sy, sx = (src[inside].long() - 1) // s, (src[inside].long() - 1) % s
        dy, dx = (sy - yy[inside]).unique(), (sx - xx[inside]).unique()
        assert len(dy) == 1 and len(dx) == 1, "one integer shift per image"
        assert abs(dy.item()) <= max_shift and abs(dx.item()) <= max_shift
        assert (~inside).sum() == s * s - (s - abs(dy.item())) * (s - abs(dx.item()))  # zero-padded border
        shifts.add((dy.item(), dx.item()))
    assert len(shifts) > 5


def test_cutout_zeroes_one_square_per_image():
    n, s = 256, 16
    y = cutout(torch.ones(n, 1, s, s), seeded(0))
    zero = y[:, 0] == 0
    for i in range(n):
        rows, cols = zero[i].any(dim=1), zero[i].any(dim=0)
        assert zero[i].sum() == rows.sum() * cols.sum(), "the zeros form one axis-aligned rectangle"
        assert 0 < rows.sum() <= s // 2 and 0 < cols.sum() <= s // 2
    frac = zero.float().mean().item()
    # A (s/2 x s/2) square is 1/4 of the image, clipped at the borders as in the official code: the mean
    # clipped side is 116/17 px at 16 px, so E[fraction] = (116 / 17 / 16)^2 = 0.182.
    assert 0.15 < frac <= 0.25
    assert (zero.flatten(1).float().mean(1) == 0.25).any()


def test_color_changes_values_keeps_alpha():
    x = images(4, 4)
    y = color(x, seeded(0))
    assert not torch.allclose(y[:, :3], x[:, :3])
    torch.testing.assert_close(y[:, 3], x[:, 3], atol=0, rtol=0)
    gray = images(4, 1)
    assert torch.isfinite(color(gray, seeded(0))).all()


def test_color_on_gray_is_brightness_then_contrast():
    # With one channel saturation is the identity: y = (x + b - m) * k + m, i.e. an affine map per image.
    x = images(2, 1)
    y = color(x, seeded(0))
    for i in range(2):
        a = torch.stack([x[i].flatten(), torch.ones(x[i].numel())], dim=1)
        coef = torch.linalg.lstsq(a, y[i].flatten()[:, None]).solution
        torch.testing.assert_close(a @ coef, y[i].flatten()[:, None], atol=1e-5, rtol=0)


def test_parse_policy():
    assert parse_policy("color,translation,cutout") == ALL
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="valid: color, translation, cutout"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="valid: color, translation, cutout"):
        diff_augment(images(), ["rotate"])
    with pytest.raises(TypeError, match="parse_policy"):
        diff_augment(images(), "color")
    assert list(DIFFAUGMENT_OPS) == list(ALL)
