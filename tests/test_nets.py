"""Networks: shapes, ranges, conditioning, errors, golden slices, rebuild from config, SN gradients,
channels_last and autocast. Tiny widths (8..32) so the whole file runs in a few seconds on CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from ganforge.nets import DISCRIMINATORS, GENERATORS, build_discriminator, build_generator, resolution_plan
from ganforge.nets.layers import ConditionalBatchNorm2d, channels_at

ARCHS = ["dcgan", "sngan"]
RESOLUTIONS = [8, 16, 28, 32]
Z_DIM, K, N = 16, 3, 4
TINY = dict(width=8, max_width=32)


def tiny_g(arch: str, resolution: int = 16, num_classes: int = 0, channels: int = 3):
    return build_generator(
        arch, z_dim=Z_DIM, resolution=resolution, channels=channels, num_classes=num_classes, **TINY
    )


def tiny_d(arch: str, resolution: int = 16, cond: str = "none", channels: int = 3, **kwargs):
    num_classes = K if cond != "none" else 0
    return build_discriminator(
        arch, resolution=resolution, channels=channels, num_classes=num_classes, cond=cond, **TINY, **kwargs
    )


def fixed_inputs(resolution: int = 16, channels: int = 3):
    """Fixed z [N, Z_DIM], x [N, C, R, R] in [-1, 1] and labels c [N], independent of the global seed."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(N, Z_DIM, generator=gen)
    x = torch.rand(N, channels, resolution, resolution, generator=gen) * 2 - 1
    c = torch.tensor([0, 1, 2, 1])
    return z, x, c


# ---- plans ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resolution, plan", [(8, (4, 1)), (12, (6, 1)), (16, (4, 2)), (28, (7, 2)), (48, (6, 3)), (128, (4, 5))]
)
def test_resolution_plan(resolution, plan):
    assert resolution_plan(resolution) == plan


@pytest.mark.parametrize("resolution", [30, 4, 7, 9, 0, -16, 18, 16.0])
def test_resolution_plan_rejects(resolution):
    with pytest.raises(ValueError, match=r"r0\*2\^n with r0 in 4..7"):
        resolution_plan(resolution)


def test_channels_at():
    assert [channels_at(level, 8, 32) for level in range(5)] == [8, 16, 32, 32, 32]
    with pytest.raises(ValueError, match="width"):
        channels_at(0, 64, 32)


# ---- shapes, range, conditioning ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_unconditional_shapes_and_range(arch, resolution):
    torch.manual_seed(0)
    G, D = tiny_g(arch, resolution), tiny_d(arch, resolution)
    z, _, _ = fixed_inputs(resolution)
    x = G(z)
    assert x.shape == (N, 3, resolution, resolution)
    assert x.abs().max() <= 1
    score, logits = D(x)
    assert score.shape == (N,) and logits is None


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels", [1, 4])
def test_channels(arch, channels):
    G, D = tiny_g(arch, 8, channels=channels), tiny_d(arch, 8, channels=channels)
    x = G(torch.randn(N, Z_DIM))
    assert x.shape == (N, channels, 8, 8)
    assert D(x)[0].shape == (N,)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("resolution", [8, 28])
def test_conditional_projection(arch, resolution):
    torch.manual_seed(0)
    G, D = tiny_g(arch, resolution, num_classes=K).eval(), tiny_d(arch, resolution, cond="projection").eval()
    z, x, c = fixed_inputs(resolution)
    # Perturb the CBN embeddings (init gamma=1, beta=0 makes every class identical at step 0).
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.beta.weight.normal_()
    fake = G(z, c)
    assert fake.shape == (N, 3, resolution, resolution) and fake.abs().max() <= 1
    assert not torch.allclose(fake, G(z, (c + 1) % K))
    score, logits = D(x, c)
    assert score.shape == (N,) and logits is None
    assert not torch.allclose(score, D(x, (c + 1) % K)[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_acgan_head(arch):
    D = tiny_d(arch, 16, cond="acgan").eval()  # eval: no SN power iteration between the two calls
    _, x, c = fixed_inputs(16)
    score, logits = D(x, c)
    assert score.shape == (N,) and logits.shape == (N, K)
    score_no_c, _ = D(x)  # the AC-GAN discriminator does not read labels
    assert torch.allclose(score, score_no_c)


@pytest.mark.parametrize("arch", ARCHS)
def test_label_errors(arch):
    z, x, c = fixed_inputs(16)
    with pytest.raises(ValueError, match="conditional"):
        tiny_g(arch, num_classes=K)(z)
    with pytest.raises(ValueError, match="unconditional"):
        tiny_g(arch)(z, c)
    with pytest.raises(ValueError, match="conditional"):
        tiny_d(arch, cond="projection")(x)
    with pytest.raises(ValueError, match="num_classes"):
        build_discriminator(arch, resolution=16, num_classes=0, cond="projection", **TINY)
    with pytest.raises(ValueError, match="none, projection, acgan"):
        build_discriminator(arch, resolution=16, num_classes=K, cond="proj", **TINY)


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_resolution_and_shapes(arch):
    with pytest.raises(ValueError, match="got 30"):
        tiny_g(arch, 30)
    with pytest.raises(ValueError, match="got 30"):
        tiny_d(arch, 30)
    with pytest.raises(AssertionError, match="expected z"):
        tiny_g(arch)(torch.randn(N, Z_DIM + 1))
    with pytest.raises(AssertionError, match="expected x"):
        tiny_d(arch)(torch.randn(N, 3, 32, 32))


def test_registry_errors():
    assert set(GENERATORS) == set(DISCRIMINATORS) == {"dcgan", "sngan", "stylegan2"}
    with pytest.raises(ValueError, match="valid: dcgan, sngan, stylegan2"):
        build_generator("biggan")
    with pytest.raises(ValueError, match="valid: dcgan, sngan, stylegan2"):
        build_discriminator("patchgan")


# ---- golden slices -------------------------------------------------------------------------------------
# Built under torch.manual_seed(0), G and D in train mode: G's BN normalises with batch statistics (in eval
# mode the initial running stats would shrink DCGAN's N(0, 0.02) activations to ~1e-4, below the tolerance),
# D runs one spectral-norm power iteration per forward, as in training. Values produced by this code once
# (torch 2.13 CPU) and pasted.

GOLDEN = {
    "dcgan": {
        "x": [-0.019377, -0.027333, -0.052815, -0.009909],
        "score": [-0.036149, 0.162640, 0.351044, 0.157666],
        "logits": [-0.150138, -0.223306, 0.043604],
    },
    "sngan": {
        "x": [-0.217154, -0.142528, -0.141479, 0.114661],
        "score": [-0.194954, 0.247668, -1.288288, 0.290694],
        "logits": [0.283695, 0.041763, 0.043136],
    },
}


def _golden_outputs(arch: str):
    kw = {"spectral_norm": True} if arch == "dcgan" else {}
    torch.manual_seed(0)
    G = tiny_g(arch, 16, num_classes=K).train()
    D_proj = tiny_d(arch, 16, cond="projection", **kw).train()
    D_ac = tiny_d(arch, 16, cond="acgan", **kw).train()
    z, x, c = fixed_inputs(16)
    with torch.no_grad():
        return G(z, c).flatten()[:4], D_proj(x, c)[0], D_ac(x)[1][0]


@pytest.mark.parametrize("arch", ARCHS)
def test_golden_slice(arch):
    x, score, logits = _golden_outputs(arch)
    expected = GOLDEN[arch]
    torch.testing.assert_close(x, torch.tensor(expected["x"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(score, torch.tensor(expected["score"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), atol=1e-4, rtol=0)


# ---- rebuild, gradients, memory format, autocast -------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_rebuild_from_config(arch):
    G, D = tiny_g(arch, 28, num_classes=K), tiny_d(arch, 28, cond="projection")
    z, x, c = fixed_inputs(28)
    for net, inputs in [(G, (z, c)), (D, (x, c))]:
        config = json.loads(json.dumps(net.config))  # the snapshot round trip
        rebuilt = type(net)(**config)
        rebuilt.load_state_dict(net.state_dict())
        net.eval(), rebuilt.eval()
        out, out2 = net(*inputs), rebuilt(*inputs)
        out, out2 = (out, out2) if isinstance(out, torch.Tensor) else (out[0], out2[0])
        torch.testing.assert_close(out, out2, atol=0, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_flow_with_spectral_norm(arch):
    kw = {"spectral_norm": True} if arch == "dcgan" else {}
    G, D = tiny_g(arch, 16, num_classes=K), tiny_d(arch, 16, cond="projection", **kw)
    z, _, c = fixed_inputs(16)
    score, _ = D(G(z, c), c)
    score.sum().backward()
    sn_weights = [p for name, p in D.named_parameters() if name.endswith("parametrizations.weight.original")]
    assert sn_weights, "expected spectrally normalised layers in D"
    for p in [*sn_weights, *G.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.grad.abs().sum() > 0 for p in sn_weights)


@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_matches_contiguous(arch):
    torch.manual_seed(0)
    G, D = tiny_g(arch, 28, num_classes=K), tiny_d(arch, 28, cond="projection")
    G_cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
    D_cl = copy.deepcopy(D).to(memory_format=torch.channels_last)  # copy before any SN power iteration
    z, x, c = fixed_inputs(28)
    torch.testing.assert_close(G_cl(z, c), G(z, c), atol=1e-5, rtol=0)
    score_cl, _ = D_cl(x.contiguous(memory_format=torch.channels_last), c)
    torch.testing.assert_close(score_cl, D(x, c)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_autocast_bf16(arch):
    G, D = tiny_g(arch, 8, num_classes=K), tiny_d(arch, 8, cond="acgan")
    z, _, c = fixed_inputs(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score, logits = D(G(z, c))
    assert torch.isfinite(score).all() and torch.isfinite(logits).all()


def test_dcgan_batchnorm_discriminator():
    D = tiny_d("dcgan", 16, batchnorm=True, spectral_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert D(fixed_inputs(16)[1])[0].shape == (N,)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_d("dcgan", 16).modules())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "loop"])
def test_gemm_convs_match_torchs_on_small_maps_forward_and_backward(layout):
    """nets/layers.py GemmConv2d / GemmConvTranspose2d (the NHWC products of nets/gemm_conv.py): on maps up to
    GEMM_MAX_ROWS they give nn.Conv2d's / nn.ConvTranspose2d's output and gradients, the output in the input's
    layout and each weight gradient in its parameter's (no copy); larger maps take torch's op. "loop" is the training
    loop's layout: channels_last, except contiguous transposed-conv weights (training/loop.py set_memory_format)."""
    from ganforge.nets.layers import GEMM_MAX_ROWS, GemmConv2d, GemmConvTranspose2d
    from ganforge.training.loop import set_memory_format

    torch.manual_seed(0)
    fmt = torch.contiguous_format if layout == "contiguous" else torch.channels_last
    for ours, ref, n, side in (
            (GemmConv2d(24, 16, 4, 2, 1), torch.nn.Conv2d(24, 16, 4, 2, 1), 3, 4),
            (GemmConv2d(24, 16, 3, 1, 1, bias=False), torch.nn.Conv2d(24, 16, 3, 1, 1, bias=False), 3, 5),
            (GemmConv2d(12, 20, 4, 1, 1), torch.nn.Conv2d(12, 20, 4, 1, 1), 1, 16),  # PatchGAN's 16 -> 15
            (GemmConv2d(8, 8, (3, 2), (2, 1), (0, 1)), torch.nn.Conv2d(8, 8, (3, 2), (2, 1), (0, 1)), 2, 7),
            (GemmConvTranspose2d(24, 16, 4, 2, 1), torch.nn.ConvTranspose2d(24, 16, 4, 2, 1), 3, 2),
            (GemmConvTranspose2d(24, 16, 4, 2, 1), torch.nn.ConvTranspose2d(24, 16, 4, 2, 1), 3, 1),
            (GemmConvTranspose2d(16, 8, 3, 2, 0, bias=False), torch.nn.ConvTranspose2d(16, 8, 3, 2, 0, bias=False),
             2, 5)):
        ref.load_state_dict(ours.state_dict())
        set_memory_format(ours, fmt) if layout == "loop" else ours.to(memory_format=fmt)
        x = torch.randn(n, ours.in_channels, side, side).contiguous(memory_format=fmt).requires_grad_()
        x_ref = x.detach().contiguous().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        rows = x if isinstance(ours, torch.nn.ConvTranspose2d) else y  # a transposed conv's rows: its inputs
        assert n * rows.shape[-1] * rows.shape[-2] <= GEMM_MAX_ROWS
        assert type(y.grad_fn).__name__.startswith("_Gemm")
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        # a 1x1 input is in both layouts: then the output is channels_last (training's default)
        assert y.is_contiguous(memory_format=fmt) or side == 1 and y.is_contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(y_ref)
        y.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-5)
            assert p.grad.stride() == p.stride()
    big = GemmConv2d(4, 4, 3, 1, 1)
    ref = torch.nn.Conv2d(4, 4, 3, 1, 1)
    ref.load_state_dict(big.state_dict())
    x = torch.randn(1, 4, 32, 32)
    assert torch.equal(big(x), ref(x))  # 1024 positions: torch's own convolution
    up = GemmConvTranspose2d(4, 4, 4, 2, 1)
    assert type(up(torch.randn(1, 4, 16, 16, requires_grad=True)).grad_fn).__name__.startswith("_Gemm")  # 256 rows
    assert not type(up(torch.randn(2, 4, 16, 16, requires_grad=True)).grad_fn).__name__.startswith("_Gemm")  # 512
    wide = GemmConvTranspose2d(4, 2**12, 4, 2, 1, bias=False)  # 16 rows x 4096 x 16 taps: 2**20 columns per sample
    assert type(wide(torch.randn(1, 4, 4, 4, requires_grad=True)).grad_fn).__name__.startswith("_Gemm")
    assert not type(wide(torch.randn(2, 4, 4, 4, requires_grad=True)).grad_fn).__name__.startswith("_Gemm")


def test_gemm_conv_weight_used_twice_accumulates_in_place():
    """A GEMM layer's weight gradient is a tensor of its own (not a view), so autograd adds the second gradient of
    a weight used twice (PatchGAN's D(real) and D(fake)) into the first in place rather than into a new tensor;
    the sum is torch's."""
    from torch.profiler import profile

    from ganforge.nets.layers import GemmConv2d

    torch.manual_seed(0)
    ours, ref = GemmConv2d(8, 16, 4, 1, 1), torch.nn.Conv2d(8, 16, 4, 1, 1)
    ref.load_state_dict(ours.state_dict())
    ours.to(memory_format=torch.channels_last)
    x1, x2 = (torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last) for _ in range(2))
    with profile(record_shapes=True) as prof:
        (ours(x1).square().sum() + ours(x2).sum()).backward()
    (ref(x1).square().sum() + ref(x2).sum()).backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-5)
    assert ours.weight.grad.stride() == ours.weight.stride()
    adds = {e.key for e in prof.key_averages(group_by_input_shape=True)
            if e.input_shapes and e.input_shapes[0] == list(ours.weight.shape)}
    assert "aten::add_" in adds and "aten::add" not in adds


def test_cat_channels_hands_out_dense_gradients():
    """nets/layers.py cat_channels: torch.cat's values and gradients, but each input's gradient arrives dense in
    its layout (torch.cat's backward hands out channel slices, strided under channels_last), also to a second
    derivative; nothing is hooked without grad."""
    from ganforge.nets.layers import cat_channels

    torch.manual_seed(0)
    for fmt in (torch.channels_last, torch.contiguous_format):
        a = torch.randn(2, 3, 5, 4).contiguous(memory_format=fmt).requires_grad_()
        b = torch.randn(2, 6, 5, 4).contiguous(memory_format=fmt).requires_grad_()
        seen = []
        a1, b1 = a * 1, b * 1
        y = cat_channels([a1, b1])
        y_ref = torch.cat([a, b], 1)
        assert torch.equal(y, y_ref)
        for t in (a1, b1):  # a later hook sees what reaches the inputs of the concatenation
            t.register_hook(seen.append)
        g = torch.randn_like(y)
        ga, gb = torch.autograd.grad((y.square() * g).sum(), [a, b], create_graph=True)
        ra, rb = torch.autograd.grad((y_ref.square() * g).sum(), [a, b])
        assert torch.equal(ga, ra) and torch.equal(gb, rb)
        assert all(s.is_contiguous(memory_format=fmt) for s in seen) and len(seen) == 2
        (ga.sum() + gb.sum()).backward()  # differentiable (create_graph): no error
    with torch.no_grad():
        assert torch.equal(cat_channels([a, b]), torch.cat([a, b], 1))


@pytest.mark.parametrize("transposed", [False, True])
def test_gemm_convs_second_derivatives_in_place_use_and_fallbacks(transposed):
    """The GEMM form's backward is differentiable: a gradient penalty through the layer (R1's |dD/dx|^2, and the
    norm of a weight gradient, which needs d(dW)/dx) gets torch's second derivatives. Its output is a tensor of its
    own, so an in-place op may follow it (ReLU(inplace=True)). CPU autocast, bfloat16, an empty batch and
    padding='same' take torch's op."""
    from ganforge.nets.layers import GemmConv2d, GemmConvTranspose2d

    torch.manual_seed(0)
    if transposed:
        ours, ref = GemmConvTranspose2d(6, 4, 4, 2, 1), torch.nn.ConvTranspose2d(6, 4, 4, 2, 1)
    else:
        ours, ref = GemmConv2d(6, 4, 3, 2, 1), torch.nn.Conv2d(6, 4, 3, 2, 1)
    ref.load_state_dict(ours.state_dict())
    x0 = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    grads = []
    for net in (ours, ref):
        x = x0.clone().requires_grad_()
        y = net(x)
        assert type(y.grad_fn).__name__.startswith("_Gemm") == (net is ours)
        (gx,) = torch.autograd.grad(torch.tanh(y).square().sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(torch.tanh(net(x)).sum(), net.weight, create_graph=True)
        (gx.square().sum() + gw.square().sum()).backward()
        grads.append([x.grad, net.weight.grad, net.bias.grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    x = x0.clone().requires_grad_()
    torch.nn.ReLU(inplace=True)(ours(x)).sum().backward()  # in place on the layer's output
    assert x.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    assert y.dtype == torch.bfloat16 and "Convolution" in type(y.grad_fn).__name__
    assert "Convolution" in type(ours.to(torch.bfloat16)(x.bfloat16()).grad_fn).__name__
    ours.float()
    assert ours(x0[:0]).shape[0] == 0
    if not transposed:
        same = GemmConv2d(6, 4, 3, padding="same")
        assert same(x0).shape == (2, 4, 5, 5)
