"""The v2.2 networks (ganlib.models) against reference §1 and §9.

Full-width models are only built on the meta device (parameter counts and shapes, no memory, no
compute); real forward passes use ``width=0.125`` so the whole file runs in seconds on a CPU.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganlib.config import ModelConfig
from ganlib.models import (
    ConvBlock,
    ConvBlockD,
    Decoder,
    Discriminator,
    Encoder,
    Generator,
    HybridNorm,
    ResBlock,
    SelfAttention,
    UpscaleNN,
    UpscalePS,
    V22InstanceNorm,
    composite,
    count_params,
    encoder_out_channels,
    make_norm,
    split_output,
    v22_instance_norm,
)

PAIRS = [(cap, r) for cap in ("standard", "lite") for r in (64, 128, 256)]
PAIRS_WITH_TEST_SIZE = PAIRS + [("standard", 32), ("lite", 32)]
NORMS = ["none", "instancenorm", "batchnorm", "layernorm", "groupnorm", "hybrid"]

# Reference §1.5 (analytic count, norm=instancenorm, self-attention on), in millions:
# (encoder, one decoder, one discriminator, whole system = enc + 2 dec + 2 D).
PARAM_TABLE = {
    ("standard", 64): ("59.1", "6.30", "0.75", "73.2"),
    ("standard", 128): ("68.6", "6.49", "1.88", "85.3"),
    ("standard", 256): ("78.0", "6.68", "3.01", "97.4"),
    ("lite", 64): ("10.1", "0.42", "0.75", "12.4"),
    ("lite", 128): ("19.0", "0.44", "1.88", "23.7"),
    ("lite", 256): ("19.6", "0.46", "3.01", "26.6"),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run fastest on one thread (and the test machine's cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(cap="standard", r=64, norm="instancenorm", attn=True, width=1.0) -> ModelConfig:
    return ModelConfig(resolution=r, model_capacity=cap, norm=norm, use_self_attn=attn, width=width)


def _meta_nets(cfg):
    with torch.device("meta"):
        return Encoder(cfg), Decoder(cfg), Discriminator(cfg)


def _assert_matches_table(count: int, printed: str, what: str):
    """Within 1 %, or within the table's own rounding (half a unit of its last printed digit).

    The table prints 2-3 significant digits: the lite decoders (415 460 / 436 329 / 457 198 params by a
    hand count of the §1.3 layers) print as 0.42 / 0.44 / 0.46 M, which is 1.1 % / 0.8 % / 0.6 % off.
    """
    ref = float(printed) * 1e6
    decimals = len(printed.split(".")[1])
    half_unit = 0.5 * 10 ** (-decimals) * 1e6
    tol = max(0.01 * ref, half_unit)
    assert abs(count - ref) <= tol, f"{what}: {count} params vs table {printed} M (tol {tol:.0f})"


# ---- parameter counts (§1.5) -------------------------------------------------------------------------
@pytest.mark.parametrize("cap,r", PAIRS)
def test_parameter_counts_match_reference_table(cap, r):
    enc, dec, disc = _meta_nets(_cfg(cap, r))
    n_enc, n_dec, n_d = count_params(enc), count_params(dec), count_params(disc)
    t_enc, t_dec, t_d, t_all = PARAM_TABLE[(cap, r)]
    _assert_matches_table(n_enc, t_enc, f"{cap} {r} encoder")
    _assert_matches_table(n_dec, t_dec, f"{cap} {r} decoder")
    _assert_matches_table(n_d, t_d, f"{cap} {r} discriminator")
    _assert_matches_table(n_enc + 2 * n_dec + 2 * n_d, t_all, f"{cap} {r} whole system")


def test_lite_64_decoder_hand_count():
    """Exact count of the lite 64 decoder, layer by layer from §1.3 (instancenorm: 2 params per norm)."""
    expected = (
        (256 * 128 * 9 + 128 + 2)  # upscale_nn 256->128 (bias) + norm
        + (128 * 64 * 9 + 64 + 2)  # upscale_nn 128->64 + norm
        + (2 * (64 * 8 + 8) + 64 * 64 + 64 + 1)  # self-attn(64): f, g (nc/8), h (nc), gamma
        + (64 * 32 * 9 + 32 + 2)  # upscale_nn 64->32 + norm
        + 2 * (32 * 32 * 9)  # res_block: two 3x3 convs, no bias, no norm
        + (2 * (32 * 4 + 4) + 32 * 32 + 32 + 1)  # self-attn(32)
        + (32 * 1 * 25 + 1) + (32 * 3 * 25 + 3)  # 5x5 heads alpha, rgb (bias)
    )
    assert expected == 415_460
    _, dec, _ = _meta_nets(_cfg("lite", 64))
    assert count_params(dec) == expected


def test_two_dense_layers_are_most_of_the_standard_encoder():
    """§1.5: ~57 % of the standard (64) encoder is the two Dense layers 16384 <-> 1024."""
    enc, _, _ = _meta_nets(_cfg("standard", 64))
    dense = count_params(enc.dense1) + count_params(enc.dense2)
    assert enc.dense1.in_features == 16384 and enc.dense1.out_features == 1024
    assert enc.dense2.out_features == 16384
    assert 0.55 < dense / count_params(enc) < 0.59


@pytest.mark.parametrize("cap,r,latent", [("standard", 64, 1024), ("standard", 256, 1024),
                                          ("lite", 64, 1024), ("lite", 128, 2048), ("lite", 256, 2048)])
def test_latent_size(cap, r, latent):
    enc, _, _ = _meta_nets(_cfg(cap, r))
    assert enc.dense1.out_features == latent


# ---- shapes (§1.3) ------------------------------------------------------------------------------------
def _side_sizes(r):
    return [s for s in (64, 128) if s < r]


def _check_shapes(cfg, enc, dec, disc, n, device=None):
    r = cfg.resolution
    x = torch.zeros(n, 3, r, r, device=device)
    z = enc(x)
    c_out = encoder_out_channels(cfg)
    assert tuple(z.shape) == (n, c_out, 8, 8)
    outs = dec(z)
    assert isinstance(outs, list)
    sides = _side_sizes(r)
    assert len(outs) == len(sides) + 1
    for o, s in zip(outs[:-1], sides):
        assert tuple(o.shape) == (n, 3, s, s)
    assert tuple(outs[-1].shape) == (n, 4, r, r)
    d = disc(torch.zeros(n, 6, r, r, device=device))
    assert tuple(d.shape) == (n, 1, 8, 8)
    return outs


@pytest.mark.parametrize("cap,r", PAIRS_WITH_TEST_SIZE)
def test_full_width_shapes_on_meta_device(cap, r):
    cfg = _cfg(cap, r)
    assert encoder_out_channels(cfg) == (512 if cap == "standard" else 256)
    enc, dec, disc = _meta_nets(cfg)
    with torch.device("meta"):
        _check_shapes(cfg, enc, dec, disc, n=2)


@pytest.mark.parametrize("cap,r", PAIRS_WITH_TEST_SIZE)
def test_narrow_shapes_and_output_ranges_on_cpu(cap, r):
    torch.manual_seed(0)
    cfg = _cfg(cap, r, width=0.125)
    enc, dec, disc = Encoder(cfg), Decoder(cfg), Discriminator(cfg)
    assert encoder_out_channels(cfg) == int((512 if cap == "standard" else 256) * 0.125)
    with torch.no_grad():
        outs = _check_shapes(cfg, enc, dec, disc, n=1)
        # Big inputs saturate the heads: still alpha in [0, 1], rgb and side outputs in [-1, 1].
        outs = dec(enc(torch.randn(1, 3, r, r) * 50))
    rgb, alpha = split_output(outs[-1])
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert rgb.min() >= -1 and rgb.max() <= 1
    for side in outs[:-1]:
        assert side.min() >= -1 and side.max() <= 1


# ---- which layers are normalised (§1.2) ----------------------------------------------------------------
@pytest.mark.parametrize("cap,r", PAIRS)
def test_normalised_layers(cap, r):
    """Encoder: blocks 3, 4, 5, the extra downsamplings and the final upscale; decoder: its upscales;
    D: blocks 2, 3 and the extras. Never the first convs, res_block, stride-1 conv_blocks or heads."""
    enc, dec, disc = _meta_nets(_cfg(cap, r))
    extra = {64: 0, 128: 1, 256: 2}[r]

    def n_norms(m):
        return sum(isinstance(x, V22InstanceNorm) for x in m.modules())

    assert n_norms(enc) == 3 + extra + 1
    assert n_norms(dec) == 3 + extra  # one upscale per side output
    assert n_norms(disc) == 2 + extra
    assert not isinstance(enc.down[0][2], V22InstanceNorm)  # first conv_block (128/coef)
    assert isinstance(disc.body[0][2], nn.Identity)  # first D block
    # decoder res_block and the stride-1 conv_blocks after each side upscale
    for m in dec.modules():
        if isinstance(m, ResBlock):
            assert isinstance(m.norm1, nn.Identity) and isinstance(m.norm2, nn.Identity)
        if isinstance(m, ConvBlock):
            assert m[0].stride == (1, 1) and isinstance(m[2], nn.Identity)


def test_decoder_res_block_has_no_norm_even_with_norm_on():
    dec = Decoder(_cfg("lite", 64, norm="instancenorm", width=0.125))
    res = [m for m in dec.modules() if isinstance(m, ResBlock)]
    assert len(res) == 1
    assert not any(isinstance(m, (V22InstanceNorm, nn.GroupNorm, nn.BatchNorm2d)) for m in res[0].modules())


@pytest.mark.parametrize("attn", [True, False])
def test_self_attention_placement(attn):
    """Encoder: after blocks 3 and 4; decoder: after the 128/coef upscale and (instead of a stride-1
    conv_block) after the res_block; D: after block 3 and each extra block."""
    enc, dec, disc = _meta_nets(_cfg("standard", 256, attn=attn))

    def n_attn(m):
        return sum(isinstance(x, SelfAttention) for x in m.modules())

    assert (n_attn(enc), n_attn(dec), n_attn(disc)) == ((2, 2, 3) if attn else (0, 0, 0))
    if attn:
        assert isinstance(dec.body[2], SelfAttention) and dec.body[2].h.out_channels == 128
        assert isinstance(dec.body[-1], SelfAttention)
    else:
        assert isinstance(dec.body[-1], ConvBlock) and dec.body[-1][0].stride == (1, 1)


# ---- blocks (§1.1) -------------------------------------------------------------------------------------
def test_conv_block_module_order_norm_after_activation():
    blk = ConvBlock(4, 8, "instancenorm")
    conv, act, norm = list(blk)
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (2, 2)
    assert conv.bias is None
    assert isinstance(act, nn.ReLU)
    assert isinstance(norm, V22InstanceNorm)
    assert conv.weight.ganlib_l2 is True


def test_conv_block_norm_after_relu_functionally():
    """Norm after ReLU: the output is normalised (mean 0, so negative values exist); a ReLU after the norm
    would leave nothing negative."""
    torch.manual_seed(0)
    blk = ConvBlock(3, 8, "instancenorm")
    y = blk(torch.randn(2, 3, 16, 16))
    assert y.min() < 0
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    # and the block equals norm(relu(conv(x))) computed here
    x = torch.randn(1, 3, 8, 8)
    c = F.relu(F.conv2d(x, blk[0].weight, stride=2, padding=1))
    ref = (c - c.mean()) / (c.std(unbiased=False) + 1e-3)
    assert torch.allclose(blk(x), ref, atol=1e-5)


def test_conv_block_d_module_order():
    blk = ConvBlockD(6, 8, "instancenorm")
    conv, act, norm = list(blk)
    assert conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.bias is None
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert isinstance(norm, V22InstanceNorm)
    assert blk(torch.zeros(1, 6, 16, 16)).shape == (1, 8, 8, 8)


def test_upscale_ps_module_order():
    blk = UpscalePS(8, 4, "instancenorm")
    conv, act, norm, ps = list(blk)
    assert conv.out_channels == 16 and conv.kernel_size == (3, 3) and conv.bias is not None
    assert torch.all(conv.bias == 0)
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert isinstance(norm, V22InstanceNorm)
    assert isinstance(ps, nn.PixelShuffle) and ps.upscale_factor == 2
    assert blk(torch.zeros(1, 8, 5, 5)).shape == (1, 4, 10, 10)


def test_upscale_nn_has_no_activation():
    blk = UpscaleNN(8, 4, "instancenorm")
    up, pad, conv, norm = list(blk)
    assert isinstance(up, nn.Upsample) and up.mode == "nearest" and up.scale_factor == 2
    assert isinstance(pad, nn.ReflectionPad2d) and tuple(pad.padding) == (1, 1, 1, 1)
    assert conv.kernel_size == (3, 3) and conv.padding == (0, 0) and conv.bias is not None
    assert isinstance(norm, V22InstanceNorm)
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)) for m in blk.modules())
    # linear in its input when norm is off: f(2x) == 2 f(x) - f(0) (no hidden activation)
    torch.manual_seed(0)
    lin = UpscaleNN(3, 2, "none")
    nn.init.normal_(lin[2].bias)
    x = torch.randn(1, 3, 4, 4)
    assert torch.allclose(lin(2 * x), 2 * lin(x) - lin(torch.zeros_like(x)), atol=1e-5)


def test_res_block_computation():
    torch.manual_seed(0)
    blk = ResBlock(4)
    x = torch.randn(1, 4, 6, 6)
    y = F.leaky_relu(F.conv2d(x, blk.conv1.weight, padding=1), 0.2)
    y = F.leaky_relu(F.conv2d(y, blk.conv2.weight, padding=1) + x, 0.2)
    assert blk.conv1.bias is None and blk.conv2.bias is None
    assert torch.allclose(blk(x), y, atol=1e-5)


# ---- initialisations (§1.1, §9.5, §9.6) ---------------------------------------------------------------
def test_icnr_sub_pixel_channels_start_identical_for_pytorch_layout():
    torch.manual_seed(0)
    f = 16
    blk = UpscalePS(8, f, "none")
    w = blk[0].weight  # (4f, cin, 3, 3); PixelShuffle reads channel c*4 + offset for final channel c
    groups = w.view(f, 4, *w.shape[1:])
    for k in range(1, 4):
        assert torch.equal(groups[:, k], groups[:, 0])
    # the different final channels are not copies of each other
    assert not torch.equal(groups[0, 0], groups[1, 0])


def test_icnr_upscale_is_nearest_neighbour_like():
    """With the sub-pixel channels identical and zero bias, every 2x2 output block is constant (for any
    input) before and after a per-sample norm: the upscale starts as a nearest-neighbour upsample."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5)
    for norm in ("none", "instancenorm"):
        y = UpscalePS(8, 6, norm)(x)
        assert y.shape == (2, 6, 10, 10)
        assert y.abs().sum() > 0
        nearest = F.interpolate(y[:, :, ::2, ::2], scale_factor=2, mode="nearest")
        assert torch.allclose(y, nearest, atol=1e-6)
    # constant-per-channel input: the interior (away from the zero padding) is constant per channel
    xc = torch.arange(8.0).view(1, 8, 1, 1).expand(1, 8, 6, 6) / 8
    y = UpscalePS(8, 3, "none")(xc)
    inner = y[:, :, 2:10, 2:10]
    assert torch.allclose(inner, inner[:, :, :1, :1].expand_as(inner), atol=1e-6)


def test_icnr_base_std_is_0_02():
    torch.manual_seed(0)
    w = UpscalePS(256, 256, "none")[0].weight.detach()
    base = w[::4]  # one copy per final channel: 256*256*9 = 589 824 draws of N(0, 0.02^2)
    assert abs(base.mean().item()) < 1e-3
    assert base.std().item() == pytest.approx(0.02, rel=0.02)
    # plain normal (not truncated): some draws beyond 2 sigma (4.6 % expected)
    assert 0.03 < (base.abs() > 0.04).float().mean().item() < 0.06


def test_he_normal_truncated_at_two_sigma():
    """Keras 2.1 he_normal: truncated normal in +-2 sigma with sigma = sqrt(2 / fan_in); the std of a
    normal truncated at 2 sigma is 0.8796 sigma."""
    torch.manual_seed(0)
    w = ConvBlock(256, 256, "none")[0].weight.detach()  # 589 824 draws, fan_in = 256*3*3
    sigma = math.sqrt(2.0 / (256 * 9))
    assert w.abs().max().item() <= 2 * sigma * (1 + 1e-6)
    assert w.abs().max().item() > 1.95 * sigma  # truncated at 2 sigma, not tighter
    assert abs(w.mean().item()) < 0.01 * sigma
    assert w.std().item() / sigma == pytest.approx(0.8796, abs=0.01)


def test_glorot_heads_and_zero_biases():
    torch.manual_seed(0)
    dec = Decoder(_cfg("standard", 128, width=0.125))
    for conv in (dec.alpha_head, dec.rgb_head, dec.sides[0]):
        fan_in, fan_out = conv.in_channels * 25, conv.out_channels * 25
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert conv.weight.abs().max() <= bound
        assert conv.weight.abs().max() > 0.8 * bound
        assert torch.all(conv.bias == 0)
    disc = Discriminator(_cfg("standard", 64, width=0.125))
    assert disc.out.bias is None and disc.out.kernel_size == (4, 4)


# ---- self-attention --------------------------------------------------------------------------------------
def test_self_attention_gamma_starts_at_zero_identity():
    torch.manual_seed(0)
    sa = SelfAttention(16)
    assert sa.gamma.shape == (1,) and sa.gamma.item() == 0.0
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(sa(x), x)


def test_self_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    sa = SelfAttention(16)
    with torch.no_grad():
        sa.gamma.fill_(1.0)
        for conv in (sa.f, sa.g, sa.h):
            nn.init.normal_(conv.bias, std=0.5)
    x = torch.randn(2, 16, 5, 3) * 2  # non-square map; softmax far from uniform
    n, c, h, w = x.shape
    fx = F.conv2d(x, sa.f.weight, sa.f.bias).view(n, 2, h * w)  # nc/8 = 2 channels
    gx = F.conv2d(x, sa.g.weight, sa.g.bias).view(n, 2, h * w)
    hx = F.conv2d(x, sa.h.weight, sa.h.bias).view(n, c, h * w)
    s = gx.transpose(1, 2) @ fx  # S = g f^T : (n, HW, HW), row = query position
    beta = torch.exp(s - s.max(-1, keepdim=True).values)
    beta = beta / beta.sum(-1, keepdim=True)  # softmax over the last axis
    o = (beta @ hx.transpose(1, 2)).transpose(1, 2).reshape(n, c, h, w)
    assert beta.max() > 0.5  # the map is not trivially uniform
    assert torch.allclose(sa(x), o + x, atol=1e-4)
    with torch.no_grad():
        sa.gamma.fill_(0.5)
    assert torch.allclose(sa(x), 0.5 * o + x, atol=1e-4)


# ---- normalisations (§1.2, §9.2, §9.8) ---------------------------------------------------------------------
def test_v22_instance_norm_by_hand():
    # sample 0: values 1, 3, 5, 7 over (C=2, H=1, W=2): mean 4, population var (9+1+1+9)/4 = 5
    # sample 1: 10x sample 0: mean 40, population std 10*sqrt(5) -> normalised on its own
    x = torch.tensor([[[[1.0, 3.0]], [[5.0, 7.0]]]])
    x = torch.cat([x, 10 * x])
    d0 = math.sqrt(5) + 1e-3  # population std + eps (eps added to the std, not inside the sqrt)
    d1 = 10 * math.sqrt(5) + 1e-3
    want = torch.tensor([[[[-3 / d0, -1 / d0]], [[1 / d0, 3 / d0]]],
                         [[[-30 / d1, -10 / d1]], [[10 / d1, 30 / d1]]]])
    assert torch.allclose(want[0, 0, 0], torch.tensor([-1.341040, -0.447013]), atol=1e-6)
    norm = V22InstanceNorm()
    assert sum(p.numel() for p in norm.parameters()) == 2  # one scalar gamma and beta
    assert norm.gamma.item() == 1.0 and norm.beta.item() == 0.0
    assert torch.allclose(norm(x), want, atol=1e-6)
    assert torch.allclose(v22_instance_norm(x), want, atol=1e-6)
    with torch.no_grad():
        norm.gamma.fill_(2.0)
        norm.beta.fill_(0.5)
    assert torch.allclose(norm(x), 2 * want + 0.5, atol=1e-6)
    assert isinstance(make_norm("instancenorm", 64), V22InstanceNorm)


def test_layernorm_is_per_channel_instance_norm():
    # channel 0: 1, 3 (mean 2, var 1); channel 1: 5, 9 (mean 7, var 4); eps 1e-6 inside the sqrt
    x = torch.tensor([[[[1.0, 3.0]], [[5.0, 9.0]]]])
    want = torch.tensor([[[[-1 / math.sqrt(1 + 1e-6), 1 / math.sqrt(1 + 1e-6)]],
                          [[-2 / math.sqrt(4 + 1e-6), 2 / math.sqrt(4 + 1e-6)]]]])
    norm = make_norm("layernorm", 2)
    assert sum(p.numel() for p in norm.parameters()) == 4  # per-channel gamma and beta
    assert torch.allclose(norm(x), want, atol=1e-6)


def test_groupnorm_and_batchnorm_options():
    gn = make_norm("groupnorm", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 16 and gn.eps == 1e-6
    bn = make_norm("batchnorm", 8)
    assert isinstance(bn, nn.BatchNorm2d) and bn.eps == 1e-3
    assert bn.momentum == pytest.approx(0.01)  # Keras momentum 0.99
    assert isinstance(make_norm("none", 8), nn.Identity)
    with pytest.raises(ValueError, match="norm"):
        make_norm("bogus", 8)


def test_hybrid_splits_channels():
    torch.manual_seed(0)
    hyb = make_norm("hybrid", 8)
    assert isinstance(hyb, HybridNorm)
    assert hyb.conv.in_channels == hyb.conv.out_channels == 4 and hyb.conv.kernel_size == (1, 1)
    assert hyb.conv.bias is not None and hyb.conv.weight.ganlib_l2 is True
    x = torch.randn(2, 8, 3, 3) * 3 + 1
    y = hyb(x)
    assert y.shape == x.shape
    assert torch.allclose(y[:, :4], F.conv2d(x[:, :4], hyb.conv.weight, hyb.conv.bias), atol=1e-5)
    rest = x[:, 4:]
    mean = rest.mean(dim=(1, 2, 3), keepdim=True)
    std = rest.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    assert torch.allclose(y[:, 4:], (rest - mean) / (std + 1e-3), atol=1e-5)


@pytest.mark.parametrize("cap", ["standard", "lite"])
@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_builds_and_runs(cap, norm):
    torch.manual_seed(0)
    cfg = _cfg(cap, 32, norm=norm, width=0.125)
    gen, disc = Generator(cfg), Discriminator(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = gen(x, "a")[-1]
    d = disc(torch.cat([out[:, 1:], x], dim=1))
    assert out.shape == (2, 4, 32, 32) and d.shape == (2, 1, 8, 8)
    assert torch.isfinite(out).all() and torch.isfinite(d).all()
    out.sum().backward()
    assert all(p.grad is not None for p in gen.decoder_a.parameters())


def test_layernorm_in_upscale_ps_uses_f_groups():
    blk = UpscalePS(8, 16, "layernorm")
    norm = blk[2]
    assert isinstance(norm, nn.GroupNorm) and norm.num_channels == 64
    assert norm.num_groups == 16


def test_hybrid_in_upscale_ps_splits_f_over_2():
    blk = UpscalePS(8, 16, "hybrid")
    norm = blk[2]
    assert norm.conv.in_channels == norm.conv.out_channels == 8
    assert blk(torch.zeros(1, 8, 3, 3)).shape == (1, 16, 6, 6)


# ---- generator ----------------------------------------------------------------------------------------------
def test_generator_shares_encoder_and_swap_uses_named_decoder():
    torch.manual_seed(0)
    gen = Generator(_cfg("lite", 32, width=0.125))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = gen.encoder(x)
        out_a = gen.decoder_a(z)[-1]
        out_b = gen.decoder_b(z)[-1]
    assert not torch.allclose(out_a, out_b)
    rgb, alpha = gen.swap(x, to="b")
    assert rgb.shape == (2, 3, 32, 32) and alpha.shape == (2, 1, 32, 32)
    assert torch.allclose(rgb, out_b[:, 1:]) and torch.allclose(alpha, out_b[:, :1])
    rgb_a, alpha_a = gen.swap(x, to="A")  # case-insensitive domain names
    assert torch.allclose(rgb_a, out_a[:, 1:]) and torch.allclose(alpha_a, out_a[:, :1])
    assert alpha.min() >= 0 and alpha.max() <= 1 and rgb.min() >= -1 and rgb.max() <= 1
    assert torch.allclose(gen(x, "b")[-1], out_b)
    assert gen.decoder("b") is gen.decoder_b


def test_split_output_and_composite():
    out = torch.arange(8.0).view(1, 4, 1, 2)
    rgb, alpha = split_output(out)
    assert torch.equal(alpha, out[:, :1]) and torch.equal(rgb, out[:, 1:])
    rgb = torch.full((1, 3, 1, 2), 1.0)
    bg = torch.full((1, 3, 1, 2), -1.0)
    alpha = torch.tensor([[[[1.0, 0.25]]]])
    # alpha = 1 uses the generated pixel; alpha = 0.25 -> 0.25*1 + 0.75*(-1) = -0.5
    want = torch.tensor([1.0, -0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert torch.allclose(composite(rgb, alpha, bg), want)
