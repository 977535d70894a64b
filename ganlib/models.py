"""The faceswap-GAN v2.2 networks in PyTorch: shared encoder, two decoders, two patch discriminators.

Layout facts follow the original (reference §1): normalisation comes *after* the activation, the
decoder's residual block is never normalised, pixel-shuffle upscales ("standard") or nearest-neighbour
upscales ("lite"), SAGAN self-attention with gamma starting at 0, and a conditional PatchGAN that sees
``cat(image, warped input)`` (6 channels) and always answers with an 8x8 map.

ganlib works in RGB and NCHW with pixels in [-1, 1]; the original was BGR and NHWC. Only pretrained
backbones (``ganlib.perceptual``) convert to BGR where their weights expect it.

Decoder output: a list ``[side@64, (side@128), final]``; ``final`` has 4 channels, channel 0 = alpha
(sigmoid, 1 = use the generated pixel) and channels 1..3 = RGB (tanh). Side outputs (R >= 128) only
feed the reconstruction loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


# ---- initialisations (reference §9.6) ------------------------------------------------------------
def he_normal_(w: torch.Tensor) -> torch.Tensor:
    """Keras 2.1 ``he_normal``: truncated normal (+-2 sigma), sigma = sqrt(2 / fan_in)."""
    fan_in = w[0].numel()
    std = math.sqrt(2.0 / fan_in)
    return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def icnr_(w: torch.Tensor, scale: int = 2, std: float = 0.02) -> torch.Tensor:
    """ICNR init for a conv feeding ``nn.PixelShuffle(scale)``.

    PyTorch's PixelShuffle reads input channel ``c * scale**2 + offset`` for output channel ``c`` (the
    sub-pixel offset is the *fast* index; Keras' PixelShuffler had it as the slow one). So the base
    kernel of final channel c is repeated on the ``scale**2`` consecutive channels, and the upscale
    starts as a nearest-neighbour upsample of one conv. Base kernel ~ N(0, 0.02^2) as icnr_keras.
    """
    out_c = w.shape[0] // (scale * scale)
    base = torch.randn((out_c, *w.shape[1:]), dtype=w.dtype) * std
    with torch.no_grad():
        w.copy_(base.repeat_interleave(scale * scale, dim=0))
    return w


def _conv(cin, cout, k, stride=1, padding="same", bias=False, init="he", l2=True):
    """A conv with the original's init; ``l2`` marks kernels that carry the 1e-4 L2 regulariser."""
    if padding == "same" and stride != 1:
        padding = (k - 1) // 2  # Keras "same" with stride 2 on even sizes halves exactly, as here.
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)
    if init == "he":
        he_normal_(conv.weight)
    elif init == "glorot":
        nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    conv.weight.ganlib_l2 = l2  # read by ganlib.losses.l2_penalty
    return conv


def _linear(cin, cout):
    lin = nn.Linear(cin, cout)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


# ---- normalisation with v2.2's meanings (reference §1.2) -----------------------------------------
class V22InstanceNorm(nn.Module):
    """v2.2's "instancenorm": per sample over (C, H, W) together, population std, ``std + eps``,
    one scalar gamma (init 1) and beta (init 0). A LayerNorm with scalar affine, not InstanceNorm2d."""

    def __init__(self, eps: float = 1e-3, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1)) if affine else None
        self.beta = nn.Parameter(torch.zeros(1)) if affine else None

    def forward(self, x):
        return v22_instance_norm(x, self.eps, self.gamma, self.beta)


def v22_instance_norm(x, eps=1e-3, gamma=None, beta=None):
    """Normalise each sample over all non-batch axes: (x - mean) / (std + eps) (population std)."""
    dims = tuple(range(1, x.dim()))
    xf = x.float()
    mean = xf.mean(dim=dims, keepdim=True)
    std = xf.var(dim=dims, keepdim=True, unbiased=False).sqrt()
    y = ((xf - mean) / (std + eps)).to(x.dtype)
    if gamma is not None:
        y = y * gamma + beta
    return y


class HybridNorm(nn.Module):
    """v2.2's "hybrid": the first floor(C/2) channels through a 1x1 conv (bias, he_normal, L2), the rest
    through the v2.2 instancenorm, concatenated."""

    def __init__(self, channels: int, split: int | None = None):
        super().__init__()
        self.split = channels // 2 if split is None else split
        self.conv = _conv(self.split, self.split, 1, bias=True)
        self.norm = V22InstanceNorm()

    def forward(self, x):
        a, b = x[:, : self.split], x[:, self.split:]
        return torch.cat([self.conv(a), self.norm(b)], dim=1)


def make_norm(norm: str, channels: int, filters: int | None = None) -> nn.Module:
    """The normalisation layer for ``norm`` (v2.2 names) over ``channels`` channels.

    ``filters`` is the block's filter count f when it differs from ``channels``: in upscale_ps the norm
    sees 4f channels, and v2.2 then built "layernorm" as f groups (of 4 channels: the sub-pixels of one
    output channel, consecutive in PyTorch's PixelShuffle order) and "hybrid" as an f/2 split.
    """
    f = channels if filters is None else filters
    if norm == "none":
        return nn.Identity()
    if norm == "instancenorm":
        return V22InstanceNorm()
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # Keras momentum 0.99
    if norm == "layernorm":
        return nn.GroupNorm(f, channels, eps=1e-6)  # group = f: one group per channel = instance norm
    if norm == "groupnorm":
        return nn.GroupNorm(math.gcd(16, channels), channels, eps=1e-6)
    if norm == "hybrid":
        return HybridNorm(channels, split=f // 2)
    raise ValueError(f"unknown norm {norm!r}")


# ---- blocks (reference §1.1) ----------------------------------------------------------------------
class ConvBlock(nn.Sequential):
    """conv_block: Conv 3x3 (no bias, he_normal, L2) -> ReLU -> norm (norm after activation)."""

    def __init__(self, cin, cout, norm="none", stride=2):
        super().__init__(_conv(cin, cout, 3, stride=stride), nn.ReLU(inplace=True), make_norm(norm, cout))


class ConvBlockD(nn.Sequential):
    """conv_block_d: Conv 4x4 stride 2 (no bias) -> LeakyReLU 0.2 -> norm."""

    def __init__(self, cin, cout, norm="none"):
        super().__init__(_conv(cin, cout, 4, stride=2), nn.LeakyReLU(0.2, inplace=True), make_norm(norm, cout))


class ResBlock(nn.Module):
    """res_block: conv -> LReLU -> norm -> conv -> + input -> LReLU -> norm (v2.2 decoder: no norm)."""

    def __init__(self, channels, norm="none"):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = _conv(channels, channels, 3)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x):
        y = self.norm1(F.leaky_relu(self.conv1(x), 0.2))
        y = self.conv2(y) + x
        return self.norm2(F.leaky_relu(y, 0.2))


class UpscalePS(nn.Sequential):
    """upscale_ps ("standard"): Conv 3x3 to 4f (bias, ICNR, L2) -> LReLU 0.2 -> norm(4f) -> PixelShuffle."""

    def __init__(self, cin, cout, norm="none"):
        conv = _conv(cin, cout * 4, 3, bias=True, init=None)
        icnr_(conv.weight)
        super().__init__(conv, nn.LeakyReLU(0.2, inplace=True), make_norm(norm, cout * 4, cout),
                         nn.PixelShuffle(2))


class UpscaleNN(nn.Sequential):
    """upscale_nn ("lite"): nearest x2 -> reflect pad 1 -> Conv 3x3 valid (bias) -> norm. No activation
    at all, exactly as v2.2."""

    def __init__(self, cin, cout, norm="none"):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                         _conv(cin, cout, 3, padding=0, bias=True), make_norm(norm, cout))


class SelfAttention(nn.Module):
    """SAGAN self-attention: softmax(g f^T) h over all H*W positions, scaled by gamma (init 0), plus x.

    Uses ``scaled_dot_product_attention`` (scale 1) so the N x N map is never materialised on GPUs with
    fused kernels; the maths equals the original's explicit softmax.
    """

    def __init__(self, channels):
        super().__init__()
        inner = max(1, channels // 8)
        self.f = _conv(channels, inner, 1, bias=True, init="glorot")
        self.g = _conv(channels, inner, 1, bias=True, init="glorot")
        self.h = _conv(channels, channels, 1, bias=True, init="glorot")
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, hh, ww = x.shape
        q = self.g(x).flatten(2).transpose(1, 2).unsqueeze(1)  # [N,1,HW,c/8]
        k = self.f(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.h(x).flatten(2).transpose(1, 2).unsqueeze(1)  # [N,1,HW,C]
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        o = o.squeeze(1).transpose(1, 2).reshape(n, c, hh, ww)
        return self.gamma * o + x


# ---- channel plan ---------------------------------------------------------------------------------
def _ch(c: float, width: float) -> int:
    """Scale a v2.2 channel count by the width multiplier; at least 8 and even (hybrid needs even)."""
    if width == 1.0:
        return int(c)
    return max(8, int(round(c * width / 8)) * 8)


def _coef(cfg: ModelConfig) -> int:
    return 2 if cfg.model_capacity == "lite" else 1


def encoder_out_channels(cfg: ModelConfig) -> int:
    """enc_nc_out: 512 standard / 256 lite (times width)."""
    return _ch(512 if cfg.model_capacity == "standard" else 256, cfg.width)


# ---- networks (reference §1.3) --------------------------------------------------------------------
class Encoder(nn.Module):
    """Shared encoder: R x R x 3 -> 8 x 8 x enc_nc_out."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        R, c, w, norm = cfg.resolution, _coef(cfg), cfg.width, cfg.norm
        lite = cfg.model_capacity == "lite"
        self.conv_in = _conv(3, _ch(64 // c, w), 5, init="glorot", l2=False)  # no bias, no activation, no L2
        plan = [(_ch(128 // c, w), False, False), (_ch(256 // c, w), True, True),
                (_ch(512 // c, w), True, True), (_ch(1024 // c // c, w), True, False)]
        n_down = int(math.log2(R // 4))  # stride-2 blocks until the map is 4x4
        layers, cin = [], _ch(64 // c, w)
        for i in range(n_down):
            cout, use_norm, attn = plan[i] if i < len(plan) else plan[-1]
            if R == 32 and i == n_down - 1:
                use_norm, attn = True, False  # 32 px (ganlib test size): last block as v2.2's block 5
            layers.append(ConvBlock(cin, cout, norm if use_norm else "none"))
            if attn and cfg.use_self_attn:
                layers.append(SelfAttention(cout))
            cin = cout
        self.down = nn.Sequential(*layers)
        latent = 2048 if (lite and R >= 128) else 1024
        self.latent = cfg.latent_dim or _ch(latent, w)
        self.c_dense = _ch(256 if lite else 1024, w)
        self.dense1 = _linear(cin * 16, self.latent)
        self.dense2 = _linear(self.latent, 16 * self.c_dense)
        up = UpscaleNN if lite else UpscalePS
        self.up = up(self.c_dense, encoder_out_channels(cfg), norm)

    def forward(self, x):
        x = self.down(self.conv_in(x))
        x = self.dense2(self.dense1(x.flatten(1)))
        return self.up(x.view(x.shape[0], self.c_dense, 4, 4))


class Decoder(nn.Module):
    """One identity's decoder: 8 x 8 x enc_nc_out -> list of outputs, the last R x R x 4 (alpha, RGB)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        R, c, w, norm = cfg.resolution, _coef(cfg), cfg.width, cfg.norm
        up = UpscaleNN if cfg.model_capacity == "lite" else UpscalePS
        chans = [_ch(256 // c, w), _ch(128 // c, w), _ch(64 // c, w)]
        n_main = min(3, int(math.log2(R // 8)))  # 3 upscales reach 64; 32 px uses the last two
        chans = chans[-n_main:]
        layers, cin, size = [], encoder_out_channels(cfg), 8
        for i, cout in enumerate(chans):
            layers.append(up(cin, cout, norm))
            size *= 2
            if i == len(chans) - 2 and cfg.use_self_attn:  # attention after the 128/c upscale
                layers.append(SelfAttention(cout))
            cin = cout
        layers.append(ResBlock(cin))  # never normalised in v2.2
        layers.append(SelfAttention(cin) if cfg.use_self_attn else ConvBlock(cin, cin, "none", stride=1))
        self.body = nn.Sequential(*layers)
        self.sides, self.ups = nn.ModuleList(), nn.ModuleList()
        while size < R:  # R >= 128: a side output at each intermediate size
            self.sides.append(_conv(cin, 3, 5, bias=True, init="glorot", l2=False))
            self.ups.append(nn.Sequential(up(cin, _ch(64 // c, w), norm),
                                          ConvBlock(_ch(64 // c, w), _ch(64 // c, w), "none", stride=1)))
            cin, size = _ch(64 // c, w), size * 2
        self.alpha_head = _conv(cin, 1, 5, bias=True, init="glorot", l2=False)
        self.rgb_head = _conv(cin, 3, 5, bias=True, init="glorot", l2=False)

    def forward(self, z) -> list[torch.Tensor]:
        x = self.body(z)
        outs = []
        for side, up in zip(self.sides, self.ups):
            outs.append(torch.tanh(side(x)))
            x = up(x)
        outs.append(torch.cat([torch.sigmoid(self.alpha_head(x)), torch.tanh(self.rgb_head(x))], dim=1))
        return outs


class Discriminator(nn.Module):
    """Conditional PatchGAN: cat(image, warped input) (6 channels) -> 8 x 8 x 1 at every R."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        R, w, norm = cfg.resolution, cfg.width, cfg.norm
        plan = [(_ch(64, w), False, False), (_ch(128, w), True, False), (_ch(256, w), True, True)]
        n_down = int(math.log2(R // 8))
        layers, cin = [], 6
        for i in range(n_down):
            cout, use_norm, attn = plan[i] if i < len(plan) else (_ch(256, w), True, True)
            layers.append(ConvBlockD(cin, cout, norm if use_norm else "none"))
            if attn and cfg.use_self_attn:
                layers.append(SelfAttention(cout))
            cin = cout
        self.body = nn.Sequential(*layers)
        # 4x4 stride 1 "same", no bias, linear. TF pads an even kernel 1 before and 2 after.
        self.pad = nn.ZeroPad2d((1, 2, 1, 2))
        self.out = _conv(cin, 1, 4, padding=0, init="glorot", l2=False)

    def forward(self, x):
        return self.out(self.pad(self.body(x)))


class Generator(nn.Module):
    """Shared encoder plus decoder A and decoder B.

    ``forward(x, "a")`` returns decoder A's output list. ``swap(x, to)`` gives the final (rgb, alpha)
    of decoder ``to``: ``swap(face_of_A, to="b")`` is the A->B swap (v2.2's ``path_abgr_B``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder_a = Decoder(cfg)
        self.decoder_b = Decoder(cfg)

    def decoder(self, domain: str) -> Decoder:
        d = str(domain).lower()
        if d not in ("a", "b"):
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        return self.decoder_a if d == "a" else self.decoder_b

    def forward(self, x, domain: str = "a") -> list[torch.Tensor]:
        return self.decoder(domain)(self.encoder(x))

    @torch.no_grad()
    def swap(self, x, to: str):
        """(rgb in [-1,1], alpha in [0,1]) of decoder ``to`` for faces ``x`` (RGB, [-1,1])."""
        rgb, alpha = split_output(self(x, to)[-1])
        return rgb, alpha


def split_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final 4-channel decoder output -> (rgb [N,3,R,R], alpha [N,1,R,R])."""
    return out[:, 1:4], out[:, 0:1]


def composite(rgb, alpha, background):
    """v2.2's masked output: alpha * rgb + (1 - alpha) * background (alpha = 1 uses the generated pixel)."""
    return alpha * rgb + (1 - alpha) * background


def build_models(cfg: ModelConfig) -> dict[str, nn.Module]:
    """The five networks: encoder, decoder_a, decoder_b (inside ``generator``), disc_a, disc_b."""
    gen = Generator(cfg)
    return {"generator": gen, "disc_a": Discriminator(cfg), "disc_b": Discriminator(cfg)}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
