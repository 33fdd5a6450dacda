"""StyleGAN2 (nets/stylegan2.py): shapes, conditioning, truncation and w_avg, demodulation, equalized lr, noise,
style mixing, minibatch stddev, double backward (R1, path length), golden slices, rebuild from config, parameter
counts against NVlabs, channels_last and autocast. Tiny widths (8..16), so the file runs in seconds on CPU."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import resolve_config
from ganforge.losses import r1_penalty
from ganforge.nets import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator
from ganforge.nets import stylegan2 as sg
from ganforge.nets.layers import channels_at
from ganforge.tasks.gan import GanTask

Z_DIM, W_DIM, K, N = 16, 16, 3, 4
TINY = dict(width=8, max_width=16)


def tiny_g(resolution: int = 16, num_classes: int = 0, channels: int = 3, **kwargs) -> sg.Generator:
    return build_generator("stylegan2", resolution=resolution, channels=channels, z_dim=Z_DIM, w_dim=W_DIM,
                           num_classes=num_classes, mapping_layers=2, **{**TINY, **kwargs})


def tiny_d(resolution: int = 16, num_classes: int = 0, channels: int = 3, **kwargs) -> sg.Discriminator:
    return build_discriminator("stylegan2", resolution=resolution, channels=channels, num_classes=num_classes,
                               mapping_layers=2, **{**TINY, **kwargs})


def fixed_inputs(resolution: int = 16, channels: int = 3, n: int = N):
    """Fixed z [n, Z_DIM], x [n, C, R, R] in [-1, 1] and labels c [n], independent of the global seed."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(n, Z_DIM, generator=gen)
    x = torch.rand(n, channels, resolution, resolution, generator=gen) * 2 - 1
    c = torch.arange(n) % K
    return z, x, c


def set_noise_strength(G: sg.Generator, value: float) -> None:
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, sg.SynthesisLayer):
                m.noise_strength.fill_(value)


# ---- registry, shapes, channel plan ---------------------------------------------------------------------------


def test_registry_and_task_kwargs():
    assert GENERATORS["stylegan2"] is sg.Generator and DISCRIMINATORS["stylegan2"] is sg.Discriminator
    # The kwargs tasks/gan.py passes to every architecture.
    G = build_generator("stylegan2", z_dim=Z_DIM, resolution=16, channels=3, width=8, max_width=32, num_classes=K)
    D = build_discriminator("stylegan2", resolution=16, channels=3, width=8, max_width=32, num_classes=K,
                            cond="projection")
    z, x, c = fixed_inputs(16)
    assert G(z, c).shape == (N, 3, 16, 16)
    score, logits = D(x, c)
    assert score.shape == (N,) and logits is None


@pytest.mark.parametrize("resolution", [8, 28, 32, 64, 128])
def test_shapes(resolution):
    torch.manual_seed(0)
    G, D = tiny_g(resolution), tiny_d(resolution)
    r0, n_up = sg.resolution_plan(resolution)
    assert G.num_ws == 2 * n_up + 2  # NVlabs: 2 * log2(res) - 2 for r0 = 4 (18 at 1024)
    z, _, _ = fixed_inputs(resolution)
    x = G(z)
    assert x.shape == (N, 3, resolution, resolution) and torch.isfinite(x).all()
    assert 0.2 < x.std() < 5  # roughly unit scale, not clamped
    score, logits = D(x)
    assert score.shape == (N,) and logits is None and torch.isfinite(score).all()


def test_large_resolutions():
    for resolution in (256, 512):
        G = tiny_g(resolution, width=2, max_width=4)
        D = tiny_d(resolution, width=2, max_width=4)
        x = G(torch.randn(1, Z_DIM), noise_mode="none")
        assert x.shape == (1, 3, resolution, resolution)
        assert D(x)[0].shape == (1,)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels(channels):
    G, D = tiny_g(16, channels=channels), tiny_d(16, channels=channels)
    x = G(torch.randn(N, Z_DIM))
    assert x.shape == (N, channels, 16, 16)
    assert D(x)[0].shape == (N,)


def test_channel_plan_matches_nvlabs():
    # width=None is config F: channels(res) = min(32768 // res, max_width), halving as the resolution doubles.
    G = sg.Generator(resolution=512, z_dim=8, w_dim=8, mapping_layers=1, max_width=128)
    D = sg.Discriminator(resolution=512, max_width=128)
    for block in G.synthesis.blocks:
        assert block.conv1.weight.shape[0] == min(32768 // block.resolution, 128)
    assert [b.conv0.weight.shape[0] for b in D.blocks] == [min(32768 // (512 >> i), 128) for i in range(7)]
    assert D.conv.weight.shape[0] == 128
    # An explicit width is the channel count at the output resolution (as dcgan/sngan).
    G = tiny_g(32)
    assert [b.conv1.weight.shape[0] for b in G.synthesis.blocks] == [channels_at(lv, 8, 16) for lv in (3, 2, 1, 0)]


@pytest.mark.parametrize("preset,cbase", [("stylegan2-128", 16384), ("stylegan2-256", 16384),
                                          ("stylegan2-512", 32768)])
def test_presets_follow_nvlabs_auto_channels(preset, cbase):
    # stylegan2-ada-pytorch cfg 'auto': channels(res) = min(cbase // res, 512), with cbase 16384 (fmaps 0.5)
    # below 512 px and 32768 (fmaps 1) from 512 px. Built on the meta device: shapes only, no memory.
    cfg = resolve_config(preset)
    res = cfg.data.resolution
    with torch.device("meta"):
        task = GanTask(cfg.model, cfg.loss, cfg.optim, cfg.data.resolution, channels=3)
    assert [b.conv1.weight.shape[0] for b in task.G.synthesis.blocks] == \
        [min(cbase // b.resolution, 512) for b in task.G.synthesis.blocks]
    assert task.G.synthesis.blocks[-1].resolution == res
    assert [b.conv0.weight.shape[0] for b in task.D.blocks] == \
        [min(cbase // (res >> i), 512) for i in range(len(task.D.blocks))]

def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_nvlabs():
    # Per-layer counts printed by NVlabs stylegan2-ada-pytorch's module summary (config F, 512 channels).
    G = sg.Generator(resolution=8, z_dim=512, w_dim=512, width=512, max_width=512, mapping_layers=2)
    b4, b8 = G.synthesis.blocks
    assert count(G.mapping.fcs[0]) == 262656
    assert count(b4.conv1) == count(b8.conv0) == count(b8.conv1) == 2622465
    assert count(b4.torgb) == count(b8.torgb) == 264195
    assert b4.const.numel() == 8192
    assert count(sg.SynthesisLayer(512, 256, 512, 128, up=2)) == 1442561  # synthesis.b128.conv0 at 256x256
    assert count(G) == 2 * 262656 + 3 * 2622465 + 2 * 264195 + 8192
    # Discriminator, 1024x1024 config: b1024.fromrgb 128, skip 2048, conv0 9248, conv1 18496.
    D = sg.Discriminator(resolution=16, width=32, max_width=64)
    first = D.blocks[0]
    assert (count(first.fromrgb), count(first.skip), count(first.conv0), count(first.conv1)) == (128, 2048, 9248, 18496)
    assert count(D.conv) == (64 + 1) * 64 * 9 + 64 and count(D.fc) == 64 * 16 * 64 + 64 and count(D.out) == 65


# ---- conditioning and label errors ----------------------------------------------------------------------------


def test_label_errors():
    z, x, c = fixed_inputs(16)
    with pytest.raises(ValueError, match="conditional"):
        tiny_g(num_classes=K)(z)
    with pytest.raises(ValueError, match="unconditional"):
        tiny_g()(z, c)
    with pytest.raises(ValueError, match="unconditional"):
        tiny_g().mapping(z, c)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        tiny_g(num_classes=K)(z, c + 1)
    with pytest.raises(ValueError, match="conditional"):
        tiny_d(num_classes=K)(x)
    with pytest.raises(ValueError, match="num_classes"):
        tiny_d(num_classes=0, cond="projection")
    with pytest.raises(ValueError, match="valid: none, projection"):
        tiny_d(num_classes=K, cond="acgan")
    with pytest.raises(ValueError, match="got 30"):
        tiny_g(30)
    with pytest.raises(AssertionError, match="expected z"):
        tiny_g()(torch.randn(N, Z_DIM + 1))
    with pytest.raises(AssertionError, match="expected x"):
        tiny_d()(torch.randn(N, 3, 32, 32))
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_g()(z, noise_mode="fixed")
    with pytest.raises(ValueError, match="mbstd_channels"):
        tiny_d(mbstd_channels=3)  # does not divide the 16 epilogue channels


def test_conditional():
    torch.manual_seed(0)
    G, D = tiny_g(16, num_classes=K), tiny_d(16, num_classes=K)
    assert D.cond == "projection" and D.cmap_dim == 16
    z, x, c = fixed_inputs(16)
    other = (c + 1) % K
    assert not torch.allclose(G(z, c, noise_mode="const"), G(z, other, noise_mode="const"))
    assert not torch.allclose(D(x, c)[0], D(x, other)[0])
    # cond="none" with classes: labels are not read (as sngan).
    D_none = tiny_d(16, num_classes=K, cond="none")
    torch.testing.assert_close(D_none(x, c)[0], D_none(x)[0], atol=0, rtol=0)


# ---- mapping: w_avg, truncation, style mixing -----------------------------------------------------------------


def test_w_avg_updates_only_when_asked():
    torch.manual_seed(0)
    G = tiny_g(16)
    z, _, _ = fixed_inputs(16)
    G(z)
    G.mapping(z)
    assert torch.equal(G.w_avg, torch.zeros(W_DIM))
    w = G.mapping(z, update_w_avg=True)[:, 0]
    torch.testing.assert_close(G.w_avg, 0.005 * w.mean(0))  # lerp(mean, w_avg=0, beta=0.995)
    previous = G.w_avg.clone()
    G(z[:2], update_w_avg=True)
    torch.testing.assert_close(G.w_avg, 0.995 * previous + 0.005 * G.mapping(z[:2])[:, 0].mean(0))
    assert "mapping.w_avg" in G.state_dict()


def test_truncation():
    torch.manual_seed(0)
    G = tiny_g(16, num_classes=K)
    z, _, c = fixed_inputs(16)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    # psi = 0: every sample is the w_avg image.
    x = G(z, c, psi=0.0, noise_mode="const")
    expected = G.synthesis(G.w_avg.expand(1, G.num_ws, W_DIM), noise_mode="const")
    torch.testing.assert_close(x, x[:1].expand(N, -1, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x, expected.expand(N, -1, -1, -1), atol=1e-5, rtol=0)
    ws = G.mapping(z, c)
    half = G.mapping(z, c, psi=0.5)
    torch.testing.assert_close(half, G.w_avg + 0.5 * (ws - G.w_avg))
    cut = G.mapping(z, c, psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], G.w_avg.expand(N, 2, W_DIM))
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_style_mixing():
    torch.manual_seed(0)
    G = tiny_g(32)
    gen = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(2, Z_DIM, generator=gen), torch.randn(2, Z_DIM, generator=gen)
    ws1, ws2 = G.mapping(z1), G.mapping(z2)
    assert ws1.shape == (2, G.num_ws, W_DIM)
    torch.testing.assert_close(G.synthesis(ws1, noise_mode="const"), G(z1, noise_mode="const"), atol=0, rtol=0)
    cutoff = 4  # coarse styles (4x4, 8x8) from z1, the rest from z2
    mixed = torch.cat([ws1[:, :cutoff], ws2[:, cutoff:]], dim=1)
    x_mixed = G.synthesis(mixed, noise_mode="const")
    for x in (G.synthesis(ws1, noise_mode="const"), G.synthesis(ws2, noise_mode="const")):
        assert (x_mixed - x).abs().mean() > 1e-3


# ---- layer math: demodulation, equalized lr, resampling, noise ------------------------------------------------


def test_demodulation_keeps_unit_std():
    gen = torch.Generator().manual_seed(0)
    f = sg._resample_filter()
    x = torch.randn(8, 32, 24, 24, generator=gen)  # unit-variance input
    weight = torch.randn(16, 32, 3, 3, generator=gen) * 3.0
    styles = torch.rand(8, 32, generator=gen) * 10 + 0.1  # arbitrary per-sample scales
    y = sg.modulated_conv2d(x, weight, styles, f)[:, :, 1:-1, 1:-1]  # interior: no zero padding
    assert abs(y.std().item() - 1) < 0.03
    per_channel = y.transpose(0, 1).flatten(1).std(dim=1)
    assert ((per_channel - 1).abs() < 0.1).all(), per_channel
    # Without demodulation the scale follows the weights and styles.
    assert sg.modulated_conv2d(x, weight, styles, f, demodulate=False).std() > 10


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_matches_per_sample_weights(up):
    # Karras et al. 2020, eqs. 1-3 applied literally, one sample at a time.
    gen = torch.Generator().manual_seed(0)
    f = sg._resample_filter()
    x = torch.randn(3, 5, 8, 8, generator=gen)
    weight, styles = torch.randn(6, 5, 3, 3, generator=gen), torch.randn(3, 5, generator=gen)
    y = sg.modulated_conv2d(x, weight, styles, f, up=up)
    torch.testing.assert_close(sg.modulated_conv2d(x, weight, styles, f, up=up, fused=True), y, atol=1e-5, rtol=0)
    if up == 1:
        for i in range(3):
            w = weight * styles[i][None, :, None, None]  # w'
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()  # w''
            torch.testing.assert_close(F.conv2d(x[i : i + 1], w, padding=1), y[i : i + 1], atol=1e-5, rtol=0)


def test_resampling_filters():
    f = sg._resample_filter()
    assert f.shape == (4, 4) and math.isclose(f.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(f[0], torch.tensor([1.0, 3.0, 3.0, 1.0]) / 64)
    ones = torch.ones(1, 2, 8, 8)
    up = sg.upsample2d(ones, f)
    assert up.shape == (1, 2, 16, 16)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12))  # DC gain 1 away from borders
    w = torch.randn(4, 2, 3, 3)
    assert sg.conv2d_resample(ones, w, f, up=2).shape == (1, 4, 16, 16)
    assert sg.conv2d_resample(ones, w, f, down=2).shape == (1, 4, 4, 4)
    assert sg.conv2d_resample(ones, w[:, :, :1, :1], f, down=2).shape == (1, 4, 4, 4)


def test_equalized_lr():
    torch.manual_seed(0)
    fc = sg.FullyConnectedLayer(256, 128, lr_mul=0.01)
    assert abs(fc.weight.std().item() * 0.01 - 1) < 0.02  # stored N(0, 1) / lr_mul
    with torch.no_grad():
        fc.bias.normal_()
    x = torch.randn(4, 256)
    torch.testing.assert_close(fc(x), F.linear(x, fc.weight * 0.01 / 16, fc.bias * 0.01))
    fc_act = sg.FullyConnectedLayer(256, 128, lrelu=True)
    expected = F.leaky_relu(F.linear(x, fc_act.weight / 16, fc_act.bias), 0.2) * math.sqrt(2)
    torch.testing.assert_close(fc_act(x), expected)

    conv = sg.Conv2dLayer(64, 32, 3, lrelu=False)
    assert abs(conv.weight.std().item() - 1) < 0.02  # stored N(0, 1), effective N(0, 1 / fan_in)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight / math.sqrt(64 * 9), conv.bias, padding=1),
                               atol=1e-5, rtol=0)
    # The mapping network runs at lr multiplier 0.01; affine (style) layers start at bias 1.
    G = tiny_g(16)
    assert all(m.weight_gain == 0.01 / math.sqrt(m.in_features) for m in G.mapping.fcs)
    assert torch.equal(G.synthesis.blocks[0].conv1.affine.bias, torch.ones(16))


def test_noise_modes():
    torch.manual_seed(0)
    G = tiny_g(16)
    z, _, _ = fixed_inputs(16)
    torch.testing.assert_close(G(z, noise_mode="random"), G(z, noise_mode="none"))  # strength 0 at init
    set_noise_strength(G, 0.5)
    const = G(z, noise_mode="const")
    torch.testing.assert_close(G(z, noise_mode="const"), const, atol=0, rtol=0)
    none = G(z, noise_mode="none")
    assert (const - none).abs().mean() > 1e-3
    torch.manual_seed(5)
    r1 = G(z)
    r2 = G(z)
    torch.manual_seed(5)
    torch.testing.assert_close(G(z), r1, atol=0, rtol=0)  # random noise comes from the seeded global RNG
    assert (r1 - r2).abs().mean() > 1e-3


# ---- discriminator: minibatch stddev --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 6, 8])
def test_minibatch_std(n):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, 3, 3, generator=gen)
    y = sg.MinibatchStdLayer(group_size=4)(x)
    assert y.shape == (n, 5, 3, 3)
    torch.testing.assert_close(y[:, :4], x, atol=0, rtol=0)
    stat = y[:, 4]
    assert (stat == stat[:, :1, :1]).all()  # constant over pixels
    group = {1: 1, 3: 3, 6: 3, 8: 4}[n]  # largest divisor of n up to 4
    for i in range(n):
        members = x[i % (n // group) :: n // group]  # NVlabs: sample i is in group i % (n / G)
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(stat[i, 0, 0], expected)
    D = tiny_d(16)
    score, _ = D(torch.randn(n, 3, 16, 16, generator=gen))
    assert score.shape == (n,) and torch.isfinite(score).all()


# ---- gradients: R1 (double backward through D), path length (grad w.r.t. ws) ----------------------------------


def test_r1_double_backward():
    torch.manual_seed(0)
    D = tiny_d(16, num_classes=K)
    _, x, c = fixed_inputs(16)
    x.requires_grad_(True)
    penalty = r1_penalty(D(x, c)[0], x)
    assert penalty.shape == (N,) and (penalty > 0).all()
    penalty.mean().backward()
    weights = [p for name, p in D.named_parameters() if name.endswith("weight") and not name.startswith("out.")]
    assert weights
    for p in weights:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_path_length_gradients():
    # Karras et al. 2020, sec. 3.2: J_w^T y with y ~ N(0, I) / sqrt(H W), back-propagated into G.
    torch.manual_seed(0)
    G = tiny_g(16)
    z, _, _ = fixed_inputs(16)
    ws = G.mapping(z).detach().requires_grad_(True)
    x = G.synthesis(ws)
    y = torch.randn_like(x) / math.sqrt(16 * 16)
    (grad,) = torch.autograd.grad((x * y).sum(), ws, create_graph=True)
    assert grad.shape == ws.shape and grad.abs().sum() > 0
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [N]
    lengths.mean().backward()
    for name, p in G.synthesis.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---- golden slices ---------------------------------------------------------------------------------------------
# Built under torch.manual_seed(0), conditional G (noise_mode="const", noise strength 0.1 so the noise buffers count)
# and projection D at 16x16. Values produced by this code once (torch 2.13 CPU) and pasted.

GOLDEN = {
    "ws": [0.488977, -0.181199, -0.224869, 1.804701],
    "x": [-0.762368, -1.028607, -1.034157, -1.128875],
    "score": [-0.001588, 0.084802, -0.158078, 0.014578],
}


def _golden_outputs():
    torch.manual_seed(0)
    G = tiny_g(16, num_classes=K)
    D = tiny_d(16, num_classes=K)
    set_noise_strength(G, 0.1)
    z, x, c = fixed_inputs(16)
    with torch.no_grad():
        return G.mapping(z, c)[0, 0, :4], G(z, c, noise_mode="const").flatten()[:4], D(x, c)[0]


def test_golden_slice():
    ws, x, score = _golden_outputs()
    torch.testing.assert_close(ws, torch.tensor(GOLDEN["ws"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(x, torch.tensor(GOLDEN["x"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(score, torch.tensor(GOLDEN["score"]), atol=1e-4, rtol=0)


# ---- rebuild, memory format, autocast --------------------------------------------------------------------------


def test_rebuild_from_config():
    G, D = tiny_g(28, num_classes=K), tiny_d(28, num_classes=K)
    set_noise_strength(G, 0.3)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    assert not any("resample_filter" in key for key in G.state_dict())
    assert any(key.endswith("noise_const") for key in G.state_dict())
    z, x, c = fixed_inputs(28)
    for arch, net in [("stylegan2", G), ("stylegan2", D)]:
        config = json.loads(json.dumps(net.config))  # the snapshot round trip
        builder = build_generator if net is G else build_discriminator
        rebuilt = builder(arch, **config)
        rebuilt.load_state_dict(net.state_dict())
        if net is G:
            out, out2 = net(z, c, psi=0.7, noise_mode="const"), rebuilt(z, c, psi=0.7, noise_mode="const")
        else:
            out, out2 = net(x, c)[0], rebuilt(x, c)[0]
        torch.testing.assert_close(out, out2, atol=0, rtol=0)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    G, D = tiny_g(28, num_classes=K), tiny_d(28, num_classes=K)
    G_cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
    D_cl = copy.deepcopy(D).to(memory_format=torch.channels_last)
    z, x, c = fixed_inputs(28)
    torch.testing.assert_close(G_cl(z, c, noise_mode="const"), G(z, c, noise_mode="const"), atol=1e-5, rtol=0)
    score_cl, _ = D_cl(x.contiguous(memory_format=torch.channels_last), c)
    torch.testing.assert_close(score_cl, D(x, c)[0], atol=1e-5, rtol=0)


def test_autocast_bf16():
    torch.manual_seed(0)
    G, D = tiny_g(16, num_classes=K), tiny_d(16, num_classes=K)
    z, x, c = fixed_inputs(16)
    reference = G(z, c, noise_mode="const")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(z, c, noise_mode="const", update_w_avg=True)
        score, _ = D(fake, c)
    assert fake.dtype == torch.float32  # the RGB skip path stays fp32
    assert torch.isfinite(score).all() and torch.isfinite(G.w_avg).all()
    torch.testing.assert_close(fake, reference, atol=0.1, rtol=0)
    score.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def _block_dtypes(G: sg.Generator, D: sg.Discriminator) -> tuple[list, list, list]:
    """The dtype of every G block's feature output and every D block's output, from forward hooks."""
    seen_g, seen_d = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: seen_g.append(o[0].dtype)) for b in G.synthesis.blocks]
    hooks += [b.register_forward_hook(lambda m, i, o: seen_d.append(o.dtype)) for b in D.blocks]
    return seen_g, seen_d, hooks


@pytest.mark.parametrize("amp_res", [0, 1, 2, 9])
def test_reduced_precision_only_in_the_highest_resolutions(amp_res):
    # 16x16: G blocks at 4, 8, 16; D blocks at 16, 8 and the 4x4 epilogue. NVlabs num_fp16_res semantics.
    torch.manual_seed(0)
    G, D = tiny_g(16, num_classes=K, amp_res=amp_res), tiny_d(16, num_classes=K, amp_res=amp_res)
    z, x, c = fixed_inputs(16)
    ref_img, ref_score = G(z, c, noise_mode="const"), D(x, c)[0]
    seen_g, seen_d, hooks = _block_dtypes(G, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(z, c)
        img = G.synthesis(ws, noise_mode="const")
        score, _ = D(x, c)
    for h in hooks:
        h.remove()
    low = torch.bfloat16
    assert seen_g == [low if level < amp_res else torch.float32 for level in (2, 1, 0)]
    assert seen_d == [low if level < amp_res else torch.float32 for level in (0, 1)]
    assert ws.dtype == img.dtype == score.dtype == torch.float32  # mapping, RGB path and epilogue stay fp32
    if amp_res == 0:  # nothing reduced: bit-identical to running without autocast
        torch.testing.assert_close(img, ref_img, atol=0, rtol=0)
        torch.testing.assert_close(score, ref_score, atol=0, rtol=0)
    else:
        torch.testing.assert_close(img, ref_img, atol=0.1, rtol=0)
        torch.testing.assert_close(score, ref_score, atol=0.1, rtol=0.05)
        assert (img - ref_img).abs().max() > 0  # something did run in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = D(G(z, c), c)[0].sum()
    loss.backward()
    grads = [p.grad for p in [*G.parameters(), *D.parameters()] if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_task_builds_stylegan2_with_amp_res_and_conv_clamp():
    cfg = resolve_config("stylegan2-32", {"data": {"source": "shapes"}, "model": {"amp_res": 2}})
    task = GanTask(cfg.model, cfg.loss, cfg.optim, cfg.data.resolution, channels=3)
    assert task.G.config["amp_res"] == task.D.config["amp_res"] == 2
    assert task.G.config["conv_clamp"] == task.D.config["conv_clamp"] == 256
    assert [b.amp for b in task.G.synthesis.blocks] == [False, False, True, True]  # 4, 8 | 16, 32
    assert [b.amp for b in task.D.blocks] == [True, True, False]  # 32, 16 | 8
