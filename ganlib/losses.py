"""The v2.2 losses as pure functions (reference §2).

Notation per domain X: ``warped`` = distorted input w, ``target`` = t, ``eye_mask`` = m (N x 1 x R x R
in [0, 1], broadcast over the three colour channels exactly like the original's 3-channel mask),
generator output (alpha, rgb); masked fake ``f = alpha * rgb + (1 - alpha) * w``. Every "mean" runs over
all elements (batch, channels, H, W) as in the original.

``generator_loss`` and ``discriminator_loss`` assemble the totals of one domain and return the parts
under the names the original printed (adv, recon, edge, pl) plus mask, tv, cyclic and l2.
"""
from __future__ import annotations

import contextlib
import random
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig
from .models import composite, split_output, v22_instance_norm


# ---- helpers ------------------------------------------------------------------------------------------
def first_order(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute first-order differences on the (R-1) x (R-1) grid: (|d/dy|, |d/dx|) (v2.2's FO_y, FO_x)."""
    dy = (x[:, :, 1:, :-1] - x[:, :, :-1, :-1]).abs()
    dx = (x[:, :, :-1, 1:] - x[:, :, :-1, :-1]).abs()
    return dy, dx


def sample_lambda(rng: random.Random, alpha: float = 0.2) -> float:
    """One mixup coefficient per training step, lambda ~ Beta(0.2, 0.2) (a single scalar for the batch).

    Drawn on the host from a dedicated ``random.Random`` (its state goes into the checkpoint), so runs
    are reproducible and no device sync is needed.
    """
    return rng.betavariate(alpha, alpha)


def _resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@contextlib.contextmanager
def frozen(module: nn.Module | None):
    """Temporarily stop gradients into ``module``'s parameters (gradients still flow through it)."""
    if module is None:
        yield
        return
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def l1(a, b):
    return (a - b).abs().mean()


def mse(a, b):
    return ((a - b) ** 2).mean()


# ---- reconstruction, edge, eyes (§2.2-§2.4) ---------------------------------------------------------
def reconstruction_loss(rgb, target, eye_mask=None, sides: Sequence[torch.Tensor] = (), *, w_recon=1.0,
                        w_eyes=30.0):
    """``w_recon*L1(rgb, t) + w_eyes*mean(|m*(rgb-t)|) + sum_k w_recon*L1(side_k, resize(t))``.

    Compared against the RAW colour output (not the masked composite); the eye term is normalised by
    all pixels, not by the mask area; side outputs (R >= 128) against the bilinearly resized target.
    """
    loss = w_recon * l1(rgb, target)
    if eye_mask is not None and w_eyes:
        loss = loss + w_eyes * (eye_mask * (rgb - target)).abs().mean()
    for side in sides:
        loss = loss + w_recon * l1(side, _resize(target, side.shape[-2:]))
    return loss


def edge_loss(rgb, target, eye_mask=None, *, w_edge=0.1, w_eyes=30.0):
    """Match the absolute first-order differences of output and target (plus the eye-weighted term,
    with the mask resized to (R-1) x (R-1)). Only the final output is used."""
    gy, gx = first_order(rgb)
    ty, tx = first_order(target)
    loss = w_edge * (l1(gy, ty) + l1(gx, tx))
    if eye_mask is not None and w_eyes:
        m = _resize(eye_mask, gy.shape[-2:])
        loss = loss + w_eyes * ((m * (gy - ty)).abs().mean() + (m * (gx - tx)).abs().mean())
    return loss


# ---- alpha mask (§2.6) -----------------------------------------------------------------------------
def mask_loss(alpha, *, use_hinge=False, m_mask=0.0, w_l1=0.01, w_hinge=0.1):
    """Hinge off: ``w_l1*mean(|alpha|)`` pushes alpha to 0 (prefer input pixels). Hinge on:
    ``w_hinge*mean(max(0, m_mask - alpha))`` pushes alpha up to at least m_mask."""
    if use_hinge:
        return w_hinge * F.relu(m_mask - alpha).mean()
    return w_l1 * alpha.abs().mean()


def tv_loss(alpha, *, w_tv=0.1):
    """Total variation of alpha: ``w_tv*(mean(|d/dy|) + mean(|d/dx|))``."""
    dy, dx = first_order(alpha)
    return w_tv * (dy.mean() + dx.mean())


def face_mask_loss(alpha, face_mask, *, weight=1.0):
    """ganlib extension: two-sided L1 between alpha and a known face mask (SyntheticFaces gives one).
    Keeps the mask from collapsing to all-input or all-generated on short runs."""
    return weight * l1(alpha, face_mask)


# ---- adversarial (§2.1) -------------------------------------------------------------------------------
def _pair(img, warped):
    return torch.cat([img, warped], dim=1)


def d_loss_mixup_lsgan(disc, target, warped, fake_masked, fake_raw, lam: float):
    """Mixup LSGAN for D: mixes real and fake pairs with one lambda and regresses D on lambda.

    ``MSE(D(l*P_r + (1-l)*P_f), l) + MSE(D(l*P_r + (1-l)*P_b), l)``; fakes are detached so the loss
    gives no gradient to the generator.
    """
    real = _pair(target, warped)
    fake = _pair(fake_masked.detach(), warped)
    raw = _pair(fake_raw.detach(), warped)
    out_f = disc(lam * real + (1 - lam) * fake)
    out_b = disc(lam * real + (1 - lam) * raw)
    return mse(out_f, torch.full_like(out_f, lam)) + mse(out_b, torch.full_like(out_b, lam))


def g_loss_mixup_lsgan(disc, warped, fake_masked, fake_raw, *, w_D=0.1):
    """Generator side of mixup LSGAN: ``w_D*(MSE(D(P_f), 1) + MSE(D(P_b), 1))``. No gradient reaches D."""
    with frozen(disc):
        out_f = disc(_pair(fake_masked, warped))
        out_b = disc(_pair(fake_raw, warped))
    return w_D * (mse(out_f, torch.ones_like(out_f)) + mse(out_b, torch.ones_like(out_b)))


def d_loss_relativistic(disc, target, warped, fake_masked, fake_raw):
    """Relativistic average LSGAN for D (E_b = mean over the batch axis, keeping the patch map)."""
    d_r = disc(_pair(target, warped))
    d_f = disc(_pair(fake_masked.detach(), warped))
    d_b = disc(_pair(fake_raw.detach(), warped))
    return 0.5 * (((d_r - 1) ** 2).mean() + (d_f ** 2).mean()
                  + ((d_r - d_b.mean(0, keepdim=True) - 1) ** 2).mean()
                  + ((d_b - d_r.mean(0, keepdim=True)) ** 2).mean())


def g_loss_relativistic(disc, target, warped, fake_masked, fake_raw, *, w_D=0.1):
    """Relativistic average LSGAN for G: plain LSGAN on the masked fake, relativistic on the raw one."""
    with frozen(disc):
        d_r = disc(_pair(target, warped))
        d_f = disc(_pair(fake_masked, warped))
        d_b = disc(_pair(fake_raw, warped))
    return w_D * (((d_f - 1) ** 2).mean()
                  + 0.5 * ((d_r - d_b.mean(0, keepdim=True)) ** 2).mean()
                  + 0.5 * ((d_b - d_r.mean(0, keepdim=True) - 1) ** 2).mean())


# ---- perceptual (§2.5) --------------------------------------------------------------------------------
def perceptual_loss(feats_fake: Sequence[torch.Tensor], feats_real: Sequence[torch.Tensor],
                    w_pl: Sequence[float]):
    """``sum_k w_pl[k] * MSE(IN(phi_k(fake)), IN(phi_k(real)))`` with IN = v2.2's per-sample
    normalisation over (C, H, W) (eps 1e-3 on the std, no affine)."""
    loss = feats_fake[0].new_zeros((), dtype=torch.float32)
    for w, a, b in zip(w_pl, feats_fake, feats_real):
        if w:
            loss = loss + w * mse(v22_instance_norm(a.float()), v22_instance_norm(b.float()))
    return loss


def perceptual_input(rgb, fake_masked, lam_pl: float):
    """The single fake the perceptual net sees: ``l'*raw + (1-l')*masked`` with l' ~ Beta(0.2, 0.2)."""
    return lam_pl * rgb + (1 - lam_pl) * fake_masked


# ---- cyclic (§2.7) ---------------------------------------------------------------------------------------
def cyclic_loss(gen_self: Callable, gen_other: Callable, target):
    """For G_A: y = G_B(t_A); z = G_A(rgb(y)); ``L1(rgb(z), t_A) + 0.1*L1(alpha(z), alpha(y))``.

    ``gen_self`` / ``gen_other`` map images to the decoder's output list. Weighted by ``w_cyclic``
    in :func:`generator_loss`.
    """
    rgb_y, a_y = split_output(gen_other(target)[-1])
    rgb_z, a_z = split_output(gen_self(rgb_y)[-1])
    return l1(rgb_z, target) + 0.1 * l1(a_z, a_y)


# ---- weight decay (§2.8) -------------------------------------------------------------------------------
def l2_params(*modules: nn.Module) -> list[torch.Tensor]:
    """Kernels that carry v2.2's Keras ``l2(1e-4)`` regulariser (marked ``ganlib_l2`` in models.py):
    all conv kernels except the first encoder conv, the heads, side outputs and D's last conv; no Dense."""
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if getattr(p, "ganlib_l2", False) and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def l2_penalty(params: Sequence[torch.Tensor], w_l2=1e-4):
    """``w_l2 * sum(W^2)`` over the given kernels (a loss term, as Keras regularisers are)."""
    if not params or not w_l2:
        return torch.zeros(())
    return w_l2 * sum((p.float() ** 2).sum() for p in params)


# ---- totals (§2.9) ---------------------------------------------------------------------------------------
def discriminator_loss(disc, batch: dict, out: dict, cfg: LossConfig, lam: float):
    """``L_D_X = adversarial + L2 of D``. ``batch`` has warped/target; ``out`` has rgb/alpha/masked.

    Returns (total, {"adv": ..., "l2": ...}).
    """
    w, t = batch["warped"], batch["target"]
    if cfg.gan_training == "mixup_LSGAN":
        adv = d_loss_mixup_lsgan(disc, t, w, out["masked"], out["rgb"], lam)
    else:
        adv = d_loss_relativistic(disc, t, w, out["masked"], out["rgb"])
    l2 = l2_penalty(l2_params(disc), cfg.w_l2).to(adv.device)
    return adv + l2, {"adv": adv, "l2": l2}


def generator_forward(decoder_fn: Callable, warped) -> dict:
    """Run a generator path and derive what the losses need: rgb, alpha, masked, sides."""
    outs = decoder_fn(warped)
    rgb, alpha = split_output(outs[-1])
    return {"rgb": rgb, "alpha": alpha, "masked": composite(rgb, alpha, warped), "sides": outs[:-1]}


def generator_loss(disc, batch: dict, out: dict, cfg: LossConfig, *, lam_pl: float = 0.5, features=None,
                   gen_self: Callable | None = None, gen_other: Callable | None = None,
                   l2_modules: Sequence[nn.Module] = ()):
    """``L_G_X = adv + recon + edge + pl + [w_cyclic*cyc] + mask + tv (+ face mask) + L2_G``.

    ``batch``: warped, target, eye_mask (and optionally face_mask); ``out`` from
    :func:`generator_forward`; ``features``: a perceptual extractor (used when ``cfg.use_PL``);
    ``gen_self``/``gen_other``: decoder paths for the cyclic loss; ``l2_modules``: encoder and this
    domain's decoder. Returns (total, parts) with parts named as the original printed them.
    """
    w, t = batch["warped"], batch["target"]
    m = batch.get("eye_mask")
    rgb, alpha, masked = out["rgb"], out["alpha"], out["masked"]
    if cfg.gan_training == "mixup_LSGAN":
        adv = g_loss_mixup_lsgan(disc, w, masked, rgb, w_D=cfg.w_D)
    else:
        adv = g_loss_relativistic(disc, t, w, masked, rgb, w_D=cfg.w_D)
    parts = {
        "adv": adv,
        "recon": reconstruction_loss(rgb, t, m, out.get("sides", ()), w_recon=cfg.w_recon, w_eyes=cfg.w_eyes),
        "edge": edge_loss(rgb, t, m, w_edge=cfg.w_edge, w_eyes=cfg.w_eyes),
    }
    zero = adv.new_zeros(())
    if cfg.use_PL:
        if features is None:
            raise ValueError("use_PL is on but no perceptual backbone was given (train.perceptual)")
        fake_in = perceptual_input(rgb, masked, lam_pl)
        parts["pl"] = perceptual_loss(features(fake_in), features(t), cfg.w_pl)
    else:
        parts["pl"] = zero
    parts["mask"] = mask_loss(alpha, use_hinge=cfg.use_mask_hinge_loss, m_mask=cfg.m_mask,
                              w_l1=cfg.w_mask_l1, w_hinge=cfg.w_mask_hinge)
    parts["tv"] = tv_loss(alpha, w_tv=cfg.w_tv)
    if cfg.w_mask_face and batch.get("face_mask") is not None:
        parts["mask"] = parts["mask"] + face_mask_loss(alpha, batch["face_mask"], weight=cfg.w_mask_face)
    if cfg.use_cyclic_loss:
        if gen_self is None or gen_other is None:
            raise ValueError("use_cyclic_loss is on but gen_self / gen_other (the two decoder paths) were not given")
        # Gradient also reaches the other decoder; the trainer clears it before that decoder's own step,
        # so as in v2.2 only G_X's optimiser applies this term.
        parts["cyclic"] = cfg.w_cyclic * cyclic_loss(gen_self, gen_other, t)
    else:
        parts["cyclic"] = zero
    parts["l2"] = l2_penalty(l2_params(*l2_modules), cfg.w_l2).to(adv.device) if l2_modules else zero
    total = sum(parts.values())
    return total, parts
