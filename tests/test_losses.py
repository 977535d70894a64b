"""The v2.2 losses (ganlib.losses) against numbers worked out by hand from reference §2.

Every expected value below is written out (with the arithmetic in a comment) for tiny tensors such as
1x1x2x2 or 1x3x2x2, never recomputed with the code under test. Real networks appear only at width 0.125
and 32 px (gradient isolation and the assembled totals).
"""
from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from torch import nn

from ganlib.config import LossConfig, ModelConfig
from ganlib.losses import (
    cyclic_loss,
    d_loss_mixup_lsgan,
    d_loss_relativistic,
    discriminator_loss,
    edge_loss,
    first_order,
    g_loss_mixup_lsgan,
    g_loss_relativistic,
    generator_forward,
    generator_loss,
    l2_params,
    l2_penalty,
    mask_loss,
    perceptual_input,
    perceptual_loss,
    reconstruction_loss,
    sample_lambda,
    tv_loss,
)
from ganlib.models import Discriminator, Generator


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run fastest on one thread (and the test machine's cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def t(rows, shape=None):
    """A float tensor from nested lists, optionally reshaped."""
    x = torch.tensor(rows, dtype=torch.float32)
    return x.view(shape) if shape else x


# A 3x3 single-channel image used by several tests:
#   0 1 3
#   2 2 2
#   5 0 1
# FO_y on the 2x2 grid = |x[1:, :-1] - x[:-1, :-1]| = |[[2,2],[5,0]] - [[0,1],[2,2]]| = [[2,1],[3,2]]  (mean 2)
# FO_x on the 2x2 grid = |x[:-1, 1:] - x[:-1, :-1]| = |[[1,3],[2,2]] - [[0,1],[2,2]]| = [[1,2],[0,0]]  (mean 0.75)
IMG3 = t([[0, 1, 3], [2, 2, 2], [5, 0, 1]], (1, 1, 3, 3))


# ---- first-order differences --------------------------------------------------------------------------
def test_first_order_2x2():
    dy, dx = first_order(t([[1, 2], [4, 8]], (1, 1, 2, 2)))
    assert dy.shape == dx.shape == (1, 1, 1, 1)
    assert dy.item() == 3.0  # |4 - 1|
    assert dx.item() == 1.0  # |2 - 1|  (the last row and column are not used)


def test_first_order_3x3_absolute_on_r_minus_1_grid():
    dy, dx = first_order(IMG3)
    assert torch.equal(dy, t([[2, 1], [3, 2]], (1, 1, 2, 2)))
    assert torch.equal(dx, t([[1, 2], [0, 0]], (1, 1, 2, 2)))
    # absolute values: the sign of the image does not matter
    ndy, ndx = first_order(-IMG3)
    assert torch.equal(ndy, dy) and torch.equal(ndx, dx)


# ---- reconstruction (§2.2) ---------------------------------------------------------------------------------
def test_reconstruction_by_hand():
    rgb = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, 0, 0, 0] = 1.0
    target[0, 1, 0, 1] = 0.5
    target[0, 2, 1, 1] = -1.0
    # L1 over all 12 elements: (1 + 0.5 + 1) / 12
    assert reconstruction_loss(rgb, target, w_recon=1.0).item() == pytest.approx(2.5 / 12)
    assert reconstruction_loss(rgb, target, w_recon=2.0).item() == pytest.approx(5.0 / 12)
    # eye mask on pixels (0,0) and (1,1): |m*(b-t)| = 1 (ch0 at (0,0)) + 1 (ch2 at (1,1)) = 2, divided by
    # ALL 12 elements (not by the 6 masked ones): 2.5/12 + 30 * 2/12 = 62.5/12 = 5.208333
    eyes = t([[1, 0], [0, 1]], (1, 1, 2, 2))
    assert reconstruction_loss(rgb, target, eyes, w_recon=1.0, w_eyes=30.0).item() == pytest.approx(62.5 / 12)
    # a 3-channel mask means the same thing
    assert reconstruction_loss(rgb, target, eyes.expand(1, 3, 2, 2), w_eyes=30.0).item() == \
        pytest.approx(62.5 / 12)
    # w_eyes = 0 or no mask: eye term gone
    assert reconstruction_loss(rgb, target, eyes, w_eyes=0.0).item() == pytest.approx(2.5 / 12)


def test_reconstruction_compares_raw_output_not_composite():
    """The loss takes the raw colour output: a composite with alpha would change nothing here, so we
    check the value depends on rgb exactly as L1(rgb, t)."""
    target = torch.zeros(1, 3, 2, 2)
    rgb = torch.full((1, 3, 2, 2), 0.5)
    assert reconstruction_loss(rgb, target, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.5)


def test_reconstruction_side_outputs_vs_resized_target():
    # 4x4 target, block-constant in 2x2 blocks so any bilinear 4->2 resize gives the block values:
    # channel 0 blocks [[1, 0], [0, 0]], channels 1 and 2 zero.
    target = torch.zeros(1, 3, 4, 4)
    target[0, 0, :2, :2] = 1.0
    side = torch.zeros(1, 3, 2, 2)
    # main term 0 (rgb == target); side term L1(0, resized t) = 1 / 12 per unit of w_recon
    loss = reconstruction_loss(target.clone(), target, None, [side], w_recon=2.0)
    assert loss.item() == pytest.approx(2.0 / 12)
    # two side outputs add up; a side equal to the resized target costs nothing
    side_ok = torch.zeros(1, 3, 2, 2)
    side_ok[0, 0, 0, 0] = 1.0
    loss = reconstruction_loss(target.clone(), target, None, [side, side_ok], w_recon=1.0)
    assert loss.item() == pytest.approx(1.0 / 12)


def test_reconstruction_and_edge_zero_at_identity():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8) * 2 - 1
    eyes = (torch.rand(2, 1, 8, 8) > 0.5).float()
    sides = [torch.nn.functional.interpolate(target, size=(4, 4), mode="bilinear", align_corners=False)]
    assert reconstruction_loss(target.clone(), target, eyes, sides).item() == 0.0
    assert edge_loss(target.clone(), target, eyes).item() == 0.0


# ---- edge (§2.3) ---------------------------------------------------------------------------------------------
def test_edge_loss_by_hand_3x3():
    target = torch.zeros(1, 1, 3, 3)
    # w_edge * (mean FO_y + mean FO_x) = 0.1 * (2 + 0.75) = 0.275
    assert edge_loss(IMG3, target, None, w_edge=0.1).item() == pytest.approx(0.275)
    # eye mask of ones (3x3, resized to the 2x2 difference grid): + 30 * (2 + 0.75) = 82.5
    ones = torch.ones(1, 1, 3, 3)
    assert edge_loss(IMG3, target, ones, w_edge=0.1, w_eyes=30.0).item() == pytest.approx(82.775)
    # constant 0.5 mask: + 30 * 0.5 * 2.75 = 41.25
    half = torch.full((1, 1, 3, 3), 0.5)
    assert edge_loss(IMG3, target, half, w_edge=0.1, w_eyes=30.0).item() == pytest.approx(41.525)
    # zero mask: eye term vanishes (use_bm_eyes=False feeds zeros)
    assert edge_loss(IMG3, target, torch.zeros(1, 1, 3, 3)).item() == pytest.approx(0.275)


def test_edge_loss_resizes_the_eye_mask_instead_of_cropping():
    """m' is the mask bilinearly resized to (R-1)x(R-1): an eye mask that lives only on the last row and
    column still weighs the edges (any bilinear convention samples beyond row R-2; a crop would not)."""
    torch.manual_seed(0)
    rgb, target = torch.rand(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 3, :] = 1.0
    mask[..., :, 3] = 1.0
    plain = edge_loss(rgb, target, None).item()
    assert plain < edge_loss(rgb, target, mask).item() < edge_loss(rgb, target, torch.ones(1, 1, 4, 4)).item()


def test_edge_loss_by_hand_2x2_three_channels():
    # rgb channel 1 = [[0, 2], [1, 1]]: FO_y = |1 - 0| = 1, FO_x = |2 - 0| = 2; other channels 0.
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[0, 1] = t([[0, 2], [1, 1]])
    target = torch.zeros(1, 3, 2, 2)
    # L1 over the 3 elements of each 1x3x1x1 grid: (1/3 + 2/3) * 0.1 = 0.1
    assert edge_loss(rgb, target, w_edge=0.1).item() == pytest.approx(0.1)


def test_edge_loss_matches_gradient_magnitudes():
    """FO is absolute: an image and its negative have the same edges, so edge loss(x, -x) == 0."""
    assert edge_loss(IMG3, -IMG3, torch.ones(1, 1, 3, 3)).item() == 0.0
    assert edge_loss(IMG3, IMG3 + 5.0).item() == 0.0


# ---- alpha mask and TV (§2.6) -----------------------------------------------------------------------------
ALPHA = t([[0.0, 0.25], [0.5, 1.0]], (1, 1, 2, 2))


def test_mask_l1_by_hand():
    # 0.01 * mean(|alpha|) = 0.01 * 1.75 / 4 = 0.004375
    assert mask_loss(ALPHA).item() == pytest.approx(0.004375)
    assert mask_loss(ALPHA, use_hinge=False, m_mask=0.9).item() == pytest.approx(0.004375)


def test_mask_hinge_by_hand():
    # m_mask 0.4: max(0, 0.4 - alpha) = [0.4, 0.15, 0, 0] -> mean 0.1375 -> * 0.1 = 0.01375
    assert mask_loss(ALPHA, use_hinge=True, m_mask=0.4).item() == pytest.approx(0.01375)
    # m_mask 0: never penalised (alpha >= 0)
    assert mask_loss(ALPHA, use_hinge=True, m_mask=0.0).item() == 0.0


def test_tv_by_hand():
    # TV = 0.1 * (mean FO_y + mean FO_x) = 0.1 * (2 + 0.75) on IMG3
    assert tv_loss(IMG3).item() == pytest.approx(0.275)
    # alpha in [0, 1]:  0 .5 1 / 1 1 1 / 0 0 0
    # FO_y = |[[1,1],[0,0]] - [[0,.5],[1,1]]| = [[1,.5],[1,1]] mean 0.875; FO_x = [[.5,.5],[0,0]] mean 0.25
    a = t([[0, 0.5, 1], [1, 1, 1], [0, 0, 0]], (1, 1, 3, 3))
    assert tv_loss(a).item() == pytest.approx(0.1 * 1.125)
    assert tv_loss(a, w_tv=1.0).item() == pytest.approx(1.125)


# ---- perceptual (§2.5) --------------------------------------------------------------------------------------
def test_perceptual_loss_by_hand():
    s = math.sqrt(1.25) + 1e-3  # population std of 1,2,3,4 is sqrt(1.25); eps added to the std
    # tap 1: fake 1,2,3,4 vs real 4,3,2,1 -> IN difference = [-3,-1,1,3]/s -> mean square 5/s^2 = 3.992854
    f1, r1 = t([1, 2, 3, 4], (1, 1, 2, 2)), t([4, 3, 2, 1], (1, 1, 2, 2))
    # tap 2: two samples, the second 10x the first; real = two copies of the first. Normalised per sample
    # they agree up to the eps: differences v*(10/(10*sqrt(1.25)+1e-3) - 1/s) for v = +-1.5, +-0.5.
    f2 = t([[1, 2, 3, 4], [10, 20, 30, 40]], (2, 1, 2, 2))
    r2 = t([[1, 2, 3, 4], [1, 2, 3, 4]], (2, 1, 2, 2))
    k = 10 / (math.sqrt(125) + 1e-3) - 1 / s
    tap2 = (2 * 1.5 ** 2 + 2 * 0.5 ** 2) * k ** 2 / 8  # = 3.2336e-07
    # tap 3: normalisation runs over C too: channels [0,2] and [4,6] vs zeros -> values 0,2,4,6 (mean 3,
    # population var 5) -> mean square 5/(sqrt(5)+1e-3)^2 = 0.999106 (per channel it would be ~0.998)
    f3, r3 = t([[0, 2], [4, 6]], (1, 2, 1, 2)), torch.zeros(1, 2, 1, 2)
    # tap 4: an affine change of the real features (scale 3, shift 7) is normalised away -> ~0
    f4 = t([1, -2, 0.5, 3], (1, 1, 2, 2))
    r4 = 3 * f4 + 7
    w = (0.01, 0.1, 0.3, 0.1)
    assert perceptual_loss([f1], [r1], [1.0]).item() == pytest.approx(3.992854, rel=1e-5)
    assert perceptual_loss([f2], [r2], [1.0]).item() == pytest.approx(tap2, rel=2e-2)
    assert tap2 == pytest.approx(3.2336e-07, rel=1e-3)
    assert perceptual_loss([f3], [r3], [1.0]).item() == pytest.approx(0.999106, rel=1e-5)
    assert perceptual_loss([f4], [r4], [1.0]).item() < 1e-5
    total = perceptual_loss([f1, f2, f3, f4], [r1, r2, r3, r4], w)
    assert total.item() == pytest.approx(0.01 * 3.992854 + 0.1 * tap2 + 0.3 * 0.999106, rel=1e-5, abs=1e-6)
    # a zero weight drops its tap
    assert perceptual_loss([f1, f3], [r1, r3], [0.0, 1.0]).item() == pytest.approx(0.999106, rel=1e-5)


def test_perceptual_input_mix():
    rgb, masked = torch.full((1, 3, 1, 1), 1.0), torch.full((1, 3, 1, 1), -1.0)
    # 0.25 * 1 + 0.75 * (-1) = -0.5
    assert torch.allclose(perceptual_input(rgb, masked, 0.25), torch.full((1, 3, 1, 1), -0.5))


# ---- cyclic (§2.7) -------------------------------------------------------------------------------------------
def test_cyclic_loss_by_hand():
    target = torch.zeros(1, 3, 1, 2)
    target[0, 0] = t([[1.0, -1.0]])
    target[0, 1] = t([[0.5, 0.0]])
    seen = {}

    def gen_other(x):  # y: alpha 0.25, rgb -x; with a side output in front that must be ignored
        n, _, h, w = x.shape
        return [torch.full((n, 3, 1, 1), 9.0), torch.cat([torch.full((n, 1, h, w), 0.25), -x], dim=1)]

    def gen_self(x):  # z: alpha 0.75, rgb 0.5 x
        seen["input"] = x
        n, _, h, w = x.shape
        return [torch.cat([torch.full((n, 1, h, w), 0.75), 0.5 * x], dim=1)]

    # rgb(z) = 0.5 * (-t) -> L1(-0.5 t, t) = 1.5 * mean|t| = 1.5 * (1 + 1 + 0.5) / 6 = 0.625
    # alpha term 0.1 * |0.75 - 0.25| = 0.05 -> 0.675
    assert cyclic_loss(gen_self, gen_other, target).item() == pytest.approx(0.675)
    assert torch.equal(seen["input"], -target)  # G_self gets the RAW rgb of y, not a composite


# ---- weight decay (§2.8) ----------------------------------------------------------------------------------
def test_l2_penalty_by_hand():
    marked = nn.Conv2d(1, 1, 2, bias=True)
    with torch.no_grad():
        marked.weight.copy_(t([1, 2, 3, 4], (1, 1, 2, 2)))
        marked.bias.fill_(100.0)
    marked.weight.ganlib_l2 = True
    unmarked = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        unmarked.weight.fill_(50.0)
    model = nn.Sequential(marked, unmarked)
    params = l2_params(model, model)  # the same module twice counts once
    assert len(params) == 1 and params[0] is marked.weight
    # 1e-4 * (1 + 4 + 9 + 16) = 0.003
    assert l2_penalty(params).item() == pytest.approx(0.003)
    assert l2_penalty(params, w_l2=1.0).item() == pytest.approx(30.0)
    assert l2_penalty([]).item() == 0.0


def test_l2_params_select_the_regularised_kernels():
    cfg = ModelConfig(resolution=128, model_capacity="standard", norm="hybrid", use_self_attn=True, width=0.125)
    gen, disc = Generator(cfg), Discriminator(cfg)
    enc, dec = gen.encoder, gen.decoder_a
    ids = {id(p) for p in l2_params(enc, dec)}
    excluded = [enc.conv_in.weight, enc.dense1.weight, enc.dense1.bias, enc.dense2.weight, enc.dense2.bias,
                dec.alpha_head.weight, dec.rgb_head.weight, dec.alpha_head.bias, dec.sides[0].weight]
    for p in excluded:
        assert id(p) not in ids
    included = [enc.down[0][0].weight,  # first conv_block kernel
                enc.down[1][0].weight,
                enc.down[2].f.weight, enc.down[2].h.weight,  # self-attention 1x1 convs (L2 in v2.2)
                enc.up[0].weight,  # upscale conv
                enc.down[1][2].conv.weight,  # the hybrid norm's 1x1 conv
                dec.body[0][0].weight]
    for p in included:
        assert id(p) in ids
    assert all(p.dim() == 4 for p in l2_params(enc, dec))  # kernels only: no biases, gammas, dense
    assert not any(id(p) in ids for p in gen.decoder_b.parameters())
    d_ids = {id(p) for p in l2_params(disc)}
    assert id(disc.body[0][0].weight) in d_ids and id(disc.out.weight) not in d_ids


# ---- adversarial (§2.1) ---------------------------------------------------------------------------------------
class TinyD(nn.Module):
    """A deterministic 'discriminator': a 1x1 conv (6 -> 1, no bias) with set weights, optionally squared
    so that mixing inputs differs from mixing outputs."""

    def __init__(self, weights, square=False):
        super().__init__()
        self.conv = nn.Conv2d(6, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weights, dtype=torch.float32).view(1, 6, 1, 1))
        self.square = square

    def forward(self, x):
        y = self.conv(x)
        return y * y if self.square else y


def _px(values):
    """One 1x1 RGB pixel as a 1x3x1x1 tensor."""
    return t(values, (1, 3, 1, 1))


def test_mixup_d_and_g_loss_by_hand():
    # D(x) = (x_img0 + x_img1 + 0.5 * x_warp0)^2
    disc = TinyD([1, 1, 0, 0.5, 0, 0], square=True)
    target, warped = _px([0.2, 0.4, 0.0]), _px([1.0, 0.0, 0.0])
    fake, raw = _px([-0.2, 0.0, 0.6]), _px([0.0, 0.0, 0.0])
    lam = 0.3
    # pre-square scores: real 0.2+0.4+0.5 = 1.1, masked fake -0.2+0+0.5 = 0.3, raw fake 0.5
    # mixed inputs (the warped half is unchanged by mixing):
    #   masked: 0.3*1.1 + 0.7*0.3 = 0.54 -> D = 0.2916 -> (0.2916 - 0.3)^2 = 7.056e-05
    #   raw:    0.3*1.1 + 0.7*0.5 = 0.68 -> D = 0.4624 -> (0.4624 - 0.3)^2 = 0.02637376
    assert d_loss_mixup_lsgan(disc, target, warped, fake, raw, lam).item() == \
        pytest.approx(7.056e-05 + 0.02637376, rel=1e-5)
    # G: w_D * ((0.3^2 - 1)^2 + (0.5^2 - 1)^2) = 0.1 * (0.8281 + 0.5625) = 0.13906
    assert g_loss_mixup_lsgan(disc, warped, fake, raw, w_D=0.1).item() == pytest.approx(0.13906, rel=1e-5)


def test_mixup_d_loss_with_real_discriminator_matches_formula():
    torch.manual_seed(0)
    disc = Discriminator(ModelConfig(resolution=32, model_capacity="lite", width=0.125))
    target, warped, fake, raw = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(4))
    lam = 0.8
    with torch.no_grad():
        real_pair = torch.cat([target, warped], 1)
        out_f = disc(lam * real_pair + (1 - lam) * torch.cat([fake, warped], 1))
        out_b = disc(lam * real_pair + (1 - lam) * torch.cat([raw, warped], 1))
        want = ((out_f - lam) ** 2).mean() + ((out_b - lam) ** 2).mean()
        got = d_loss_mixup_lsgan(disc, target, warped, fake, raw, lam)
    assert out_f.shape == (2, 1, 8, 8)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def _relativistic_inputs():
    """N=2 samples of 1x2 pixels; D reads image channel 0. Scores (sample: [pixel0, pixel1]):
    d_r = s0 [1, 0], s1 [0, 0]   -> E_b d_r = [0.5, 0]
    d_f = s0 [0.5, 0], s1 [0, -1]
    d_b = s0 [0, 0], s1 [0, 2]   -> E_b d_b = [0, 1]"""
    def img(s0, s1):
        x = torch.zeros(2, 3, 1, 2)
        x[0, 0, 0], x[1, 0, 0] = torch.tensor(s0), torch.tensor(s1)
        x[:, 1:] = 0.7  # other channels are ignored by D
        return x

    disc = TinyD([1, 0, 0, 0, 0, 0])
    warped = torch.full((2, 3, 1, 2), -0.3)
    return disc, img([1.0, 0.0], [0.0, 0.0]), warped, img([0.5, 0.0], [0.0, -1.0]), img([0.0, 0.0], [0.0, 2.0])


def test_relativistic_d_loss_by_hand():
    disc, target, warped, fake, raw = _relativistic_inputs()
    # 1/2 mean((d_r - 1)^2)               = 1/2 * (0 + 1 + 1 + 1)/4            = 0.375
    # 1/2 mean(d_f^2)                     = 1/2 * (0.25 + 0 + 0 + 1)/4         = 0.15625
    # 1/2 mean((d_r - E d_b - 1)^2)       : s0 [0, -2], s1 [-1, -2] -> 9/4/2   = 1.125
    # 1/2 mean((d_b - E d_r)^2)           : s0 [-.5, 0], s1 [-.5, 2] -> 4.5/4/2 = 0.5625
    # (E_b over the batch only: a mean over everything would give other numbers)
    assert d_loss_relativistic(disc, target, warped, fake, raw).item() == pytest.approx(2.21875)


def test_relativistic_g_loss_by_hand():
    disc, target, warped, fake, raw = _relativistic_inputs()
    # mean((d_f - 1)^2)                   = (0.25 + 1 + 1 + 4)/4               = 1.5625
    # 1/2 mean((d_r - E d_b)^2)           : s0 [1, -1], s1 [0, -1] -> 3/4/2    = 0.375
    # 1/2 mean((d_b - E d_r - 1)^2)       : s0 [-1.5, -1], s1 [-1.5, 1] -> 6.5/4/2 = 0.8125
    # sum 2.75, times w_D
    assert g_loss_relativistic(disc, target, warped, fake, raw, w_D=1.0).item() == pytest.approx(2.75)
    assert g_loss_relativistic(disc, target, warped, fake, raw, w_D=0.1).item() == pytest.approx(0.275)


# ---- gradient isolation and totals with the real networks -----------------------------------------------
def _real_setup(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(resolution=32, model_capacity="lite", norm="instancenorm", use_self_attn=True, width=0.125)
    gen, disc = Generator(cfg), Discriminator(cfg)
    batch = {"warped": torch.rand(2, 3, 32, 32) * 2 - 1, "target": torch.rand(2, 3, 32, 32) * 2 - 1,
             "eye_mask": (torch.rand(2, 1, 32, 32) > 0.7).float()}
    return gen, disc, batch


def _val(v) -> float:
    return float(v.detach()) if torch.is_tensor(v) else float(v)


def _grads(params):
    return [p.grad for p in params]


@pytest.mark.parametrize("gan", ["mixup_LSGAN", "relativistic_avg_LSGAN"])
def test_d_loss_gives_no_gradient_to_generator(gan):
    gen, disc, batch = _real_setup()
    out = generator_forward(lambda x: gen(x, "a"), batch["warped"])
    total, parts = discriminator_loss(disc, batch, out, LossConfig(gan_training=gan), lam=0.3)
    assert set(parts) == {"adv", "l2"}
    assert total.item() == pytest.approx((parts["adv"] + parts["l2"]).item())
    # D's weight decay: 1e-4 * sum of squares of its marked kernels (all but the last conv)
    want_l2 = 1e-4 * sum((p.detach() ** 2).sum() for p in l2_params(disc))
    assert parts["l2"].item() == pytest.approx(want_l2.item(), rel=1e-5) and parts["l2"].item() > 0
    total.backward()
    assert all(g is None for g in _grads(gen.parameters()))
    d_grads = _grads(disc.parameters())
    assert all(g is not None for g in d_grads)
    assert sum(g.abs().sum() for g in d_grads) > 0


@pytest.mark.parametrize("gan", ["mixup_LSGAN", "relativistic_avg_LSGAN"])
def test_g_loss_gives_no_gradient_to_discriminator(gan):
    gen, disc, batch = _real_setup()
    out = generator_forward(lambda x: gen(x, "a"), batch["warped"])
    total, _ = generator_loss(disc, batch, out, LossConfig(gan_training=gan),
                              l2_modules=(gen.encoder, gen.decoder_a))
    total.backward()
    assert all(g is None for g in _grads(disc.parameters()))
    assert all(p.requires_grad for p in disc.parameters())  # restored after the frozen forward
    own = _grads(list(gen.encoder.parameters()) + list(gen.decoder_a.parameters()))
    assert all(g is not None for g in own)
    assert sum(g.abs().sum() for g in own) > 0
    assert all(g is None for g in _grads(gen.decoder_b.parameters()))


def test_generator_loss_parts_and_total():
    gen, disc, batch = _real_setup()
    cfg = LossConfig(use_PL=True, use_cyclic_loss=True, use_mask_hinge_loss=True, m_mask=0.5)

    def features(x):  # a hand-made 4-tap "perceptual net"
        return [x, torch.nn.functional.avg_pool2d(x, 2), x ** 2, x.mean(1, keepdim=True)]

    out = generator_forward(lambda x: gen(x, "a"), batch["warped"])
    total, parts = generator_loss(disc, batch, out, cfg, lam_pl=0.3, features=features,
                                  gen_self=lambda x: gen(x, "a"), gen_other=lambda x: gen(x, "b"),
                                  l2_modules=(gen.encoder, gen.decoder_a))
    assert set(parts) == {"adv", "recon", "edge", "pl", "mask", "tv", "cyclic", "l2"}
    assert total.item() == pytest.approx(sum(_val(v) for v in parts.values()), rel=1e-6)
    for name in ("adv", "recon", "edge", "pl", "mask", "tv", "cyclic", "l2"):
        assert _val(parts[name]) > 0, name
    t_, m = batch["target"], batch["eye_mask"]
    assert parts["recon"].item() == pytest.approx(
        reconstruction_loss(out["rgb"], t_, m, out["sides"]).item(), rel=1e-6)
    assert parts["mask"].item() == pytest.approx(0.1 * torch.relu(0.5 - out["alpha"]).mean().item(), rel=1e-5)
    want_l2 = 1e-4 * sum((p.detach() ** 2).sum() for p in l2_params(gen.encoder, gen.decoder_a))
    assert parts["l2"].item() == pytest.approx(want_l2.item(), rel=1e-5)
    # the defaults (PL, cyclic off) give zeros for those parts
    total0, parts0 = generator_loss(disc, batch, out, LossConfig())
    assert _val(parts0["pl"]) == 0 and _val(parts0["cyclic"]) == 0 and _val(parts0["l2"]) == 0
    assert total0.item() == pytest.approx(sum(_val(v) for v in parts0.values()), rel=1e-6)


def test_use_pl_without_features_raises_clear_error():
    gen, disc, batch = _real_setup()
    out = generator_forward(lambda x: gen(x, "a"), batch["warped"])
    with pytest.raises(ValueError, match="perceptual"):
        generator_loss(disc, batch, out, LossConfig(use_PL=True), features=None)


def test_generator_forward_composite():
    def fake_decoder(x):
        n, _, h, w = x.shape
        return [torch.zeros(n, 3, h // 2, w // 2),
                torch.cat([torch.full((n, 1, h, w), 0.25), torch.ones(n, 3, h, w)], dim=1)]

    warped = torch.full((1, 3, 2, 2), -1.0)
    out = generator_forward(fake_decoder, warped)
    assert torch.equal(out["alpha"], torch.full((1, 1, 2, 2), 0.25))
    assert torch.equal(out["rgb"], torch.ones(1, 3, 2, 2))
    # 0.25 * 1 + 0.75 * (-1) = -0.5
    assert torch.allclose(out["masked"], torch.full((1, 3, 2, 2), -0.5))
    assert len(out["sides"]) == 1 and out["sides"][0].shape == (1, 3, 1, 1)


# ---- lambda and defaults (§2.1, §2.9, §9.4) -------------------------------------------------------------
def test_sample_lambda_is_beta_0_2_shaped_and_seeded():
    xs = [sample_lambda(random.Random(7)) for _ in range(3)]
    assert xs[0] == xs[1] == xs[2]  # same seed, same value
    rng = random.Random(0)
    draws = [sample_lambda(rng) for _ in range(4000)]
    again = random.Random(0)
    assert [sample_lambda(again) for _ in range(4000)] == draws
    other = random.Random(1)
    assert [sample_lambda(other) for _ in range(10)] != draws[:10]
    assert all(0.0 <= x <= 1.0 for x in draws)
    n = len(draws)
    mean = sum(draws) / n
    assert 0.47 < mean < 0.53  # Beta(0.2, 0.2): mean 0.5, std 0.42 -> std of the mean 0.007
    var = sum((x - mean) ** 2 for x in draws) / n
    assert var == pytest.approx(0.04 / (0.16 * 1.4), rel=0.1)  # ab / ((a+b)^2 (a+b+1)) = 0.1786
    ends = sum(x < 0.1 or x > 0.9 for x in draws) / n  # ~0.67 for Beta(0.2, 0.2)
    middle = sum(0.4 < x < 0.6 for x in draws) / n  # ~0.064 (0.2 for a uniform)
    assert ends > 0.6 and middle < 0.1
    assert sum(x < 0.1 for x in draws) / n > 0.28 and sum(x > 0.9 for x in draws) / n > 0.28  # both ends


def test_loss_config_defaults_match_reference():
    c = LossConfig()
    assert c.gan_training == "mixup_LSGAN"
    assert (c.w_D, c.w_recon, c.w_edge, c.w_eyes) == (0.1, 1.0, 0.1, 30.0)
    assert list(c.w_pl) == [0.01, 0.1, 0.3, 0.1]
    assert (c.w_mask_l1, c.w_mask_hinge, c.w_tv) == (0.01, 0.1, 0.1)
    assert c.w_cyclic == 10.0 and c.w_l2 == 1e-4
    # the schedule's starting flags (§4.3) and the train notebook's PL_before_activ
    assert (c.use_PL, c.use_mask_hinge_loss, c.m_mask, c.lr_factor, c.use_cyclic_loss) == \
        (False, False, 0.0, 1.0, False)
    assert c.PL_before_activ is False
    assert c.w_mask_face == 0.0  # ganlib extension off by default
    assert LossConfig().w_pl is not c.w_pl  # no shared mutable default
    assert {f.name for f in dataclasses.fields(LossConfig)} >= {"w_D", "w_recon", "w_edge", "w_eyes", "w_pl"}


def test_generator_loss_uses_config_weights():
    """Doubling a weight in the config doubles that part (recon/edge/tv), leaving the others."""
    gen, disc, batch = _real_setup()
    with torch.no_grad():
        out = generator_forward(lambda x: gen(x, "a"), batch["warped"])
        _, p1 = generator_loss(disc, batch, out, LossConfig())
        _, p2 = generator_loss(disc, batch, out, LossConfig(w_recon=2.0, w_eyes=60.0, w_edge=0.2, w_tv=0.2,
                                                            w_D=0.2))
    for k in ("recon", "edge", "tv", "adv"):
        assert p2[k].item() == pytest.approx(2 * p1[k].item(), rel=1e-5), k
    assert p2["mask"].item() == pytest.approx(p1["mask"].item(), rel=1e-6)
