"""Ground-truth swap quality on SyntheticFaces (PRODUCT.md, "Quality with ground truth").

The true A->B swap of an A image is identity B rendered with that image's nuisance (pose, expression,
light, background). Held-out nuisances (a seed never used for training) are rendered for both
identities, cropped to the face region the model is trained on, and the model's masked swap is
compared with the ground truth. Two baselines frame the number: the unchanged input, and the mean B
face. Reconstruction PSNR (A through decoder A) is reported beside it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import composite, split_output

#: Mean half-width of the training crop in 256-px units: v2.2's warp coverage is 78 + randint(20).
COVERAGE = 87.5
HELD_OUT_SEED = 990_001


def center_crop(images: torch.Tensor, size: int, coverage: float = COVERAGE) -> torch.Tensor:
    """Central region of half-width ``coverage``/256 of the side, resized to ``size`` (float in)."""
    s = images.shape[-1]
    c = coverage / 256 * s
    lo, hi = int(round(s / 2 - c)), int(round(s / 2 + c))
    crop = images[..., lo:hi, lo:hi].float()
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float() / 127.5 - 1


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of images in [-1, 1] (computed on the [0, 1] scale), over ``mask`` pixels if given;
    the mean over images of the per-image PSNR."""
    a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
    err = (a - b) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.float().expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03) of images in [-1, 1]."""
    a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
    c = a.shape[1]
    x = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-(x ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).to(a.device)
    blur = lambda t: F.conv2d(t, win, groups=c)
    mu_a, mu_b = blur(a), blur(b)
    s_aa, s_bb, s_ab = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


class SwapBenchmark:
    """Held-out SyntheticFaces pairs with a shared nuisance, ready to score a generator.

    Args:
        resolution: the model's R.
        render_size: size the faces are rendered at (the training data's size).
        n: number of held-out nuisances.
        seed: nuisance seed (never used for training data).
    """

    def __init__(self, resolution: int, render_size: int = 128, n: int = 64, seed: int = HELD_OUT_SEED):
        from .synthetic import SyntheticFaces

        synth = SyntheticFaces(size=render_size)
        a = synth.dataset(0, n, seed=seed, size=render_size)
        b = synth.dataset(1, n, seed=seed, size=render_size)  # same seed: same nuisances
        R = resolution
        self.a = center_crop(a["images"], R) / 127.5 - 1
        self.b = center_crop(b["images"], R) / 127.5 - 1
        face = torch.maximum(a["face_masks"], b["face_masks"])
        self.face = (center_crop(face, R) > 127).float()

    @torch.no_grad()
    def evaluate(self, gen, mean_b: torch.Tensor | None = None, mean_a: torch.Tensor | None = None,
                 device=None, batch: int = 32, autocast_dtype=None) -> dict:
        """Scores (dB / SSIM) of the masked swaps A->B and B->A against ground truth.

        ``mean_b`` / ``mean_a``: the mean training face of B / A in [-1, 1] at R (the mean-face baselines);
        computed from the held-out renders when not given.
        """
        device = device or next(gen.parameters()).device
        was = gen.training
        gen.eval()
        try:
            outs = {}
            for name, x, to in (("ab", self.a, "b"), ("ba", self.b, "a"), ("aa", self.a, "a"), ("bb", self.b, "b")):
                parts = []
                for i in range(0, len(x), batch):
                    xb = x[i:i + batch].to(device)
                    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        rgb, alpha = split_output(gen(xb, to)[-1])
                    parts.append(composite(rgb.float(), alpha.float(), xb).clamp(-1, 1).cpu())
                outs[name] = torch.cat(parts)
        finally:
            gen.train(was)
        mb = (mean_b if mean_b is not None else self.b.mean(0, keepdim=True)).cpu().expand_as(self.b)
        ma = (mean_a if mean_a is not None else self.a.mean(0, keepdim=True)).cpu().expand_as(self.a)
        r = {
            "swap_psnr": psnr(outs["ab"], self.b), "swap_ssim": ssim(outs["ab"], self.b),
            "input_baseline_psnr": psnr(self.a, self.b), "mean_b_baseline_psnr": psnr(mb, self.b),
            "recon_psnr": psnr(outs["aa"], self.a),
            "swap_psnr_face": psnr(outs["ab"], self.b, self.face),
            "input_baseline_psnr_face": psnr(self.a, self.b, self.face),
            "mean_b_baseline_psnr_face": psnr(mb, self.b, self.face),
            "swap_ba_psnr": psnr(outs["ba"], self.a), "input_ba_baseline_psnr": psnr(self.b, self.a),
            "mean_a_baseline_psnr": psnr(ma, self.a),
            "input_baseline_ssim": ssim(self.a, self.b), "mean_b_baseline_ssim": ssim(mb, self.b),
        }
        r["margin_db"] = r["swap_psnr"] - max(r["input_baseline_psnr"], r["mean_b_baseline_psnr"])
        r["margin_face_db"] = r["swap_psnr_face"] - max(r["input_baseline_psnr_face"],
                                                         r["mean_b_baseline_psnr_face"])
        r["margin_ba_db"] = r["swap_ba_psnr"] - max(r["input_ba_baseline_psnr"], r["mean_a_baseline_psnr"])
        return r


def mean_face(images_uint8: torch.Tensor, resolution: int) -> torch.Tensor:
    """Mean training face (cropped like the model's input) in [-1, 1], shape 1 x 3 x R x R."""
    acc = None
    for i in range(0, len(images_uint8), 256):
        c = center_crop(images_uint8[i:i + 256].cpu(), resolution).sum(0, keepdim=True)
        acc = c if acc is None else acc + c
    return acc / len(images_uint8) / 127.5 - 1


def quality_line(r: dict) -> str:
    """The demo's closing line."""
    return ("quality: swap_psnr=%.2f swap_ssim=%.3f input_baseline_psnr=%.2f mean_b_baseline_psnr=%.2f "
            "recon_psnr=%.2f" % (r["swap_psnr"], r["swap_ssim"], r["input_baseline_psnr"],
                                  r["mean_b_baseline_psnr"], r["recon_psnr"]))


def evaluate_trainer(trainer, bench: SwapBenchmark | None = None, n: int = 64) -> dict:
    """Score a :class:`ganlib.trainer.Trainer` trained on SyntheticFaces."""
    cfg = trainer.cfg
    bench = bench or SwapBenchmark(cfg.model.resolution, cfg.data.synthetic_size, n=n)
    mb = mean_face(trainer.faces["b"]["images"], cfg.model.resolution)
    ma = mean_face(trainer.faces["a"]["images"], cfg.model.resolution)
    return bench.evaluate(trainer.gen, mean_b=mb, mean_a=ma, device=trainer.device,
                          autocast_dtype=trainer.amp_dtype)
