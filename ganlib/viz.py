"""What the user sees: the original's printed loss block, the three preview grids, notebook display.

The grids follow v2.2's ``showG`` / ``showG_mask`` layout (reference §4.5): (batch/2) rows x 12 tiles,
four groups of three tiles per row — A samples 0..b/2-1, A samples b/2..b-1, B first half, B second
half — row i holding the i-th sample of each group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

GRID_TITLES = {
    "preprocessed": "Transformed (masked) results:",
    "masked": "Masks:",
    "reconstruction": "Reconstruction results:",
}
GRID_FILES = {
    "preprocessed": "train_preprocessed_{step}.png",
    "masked": "train_masked_{step}.png",
    "reconstruction": "train_reconstruction_{step}.png",
}
SEP = "----------"


# ---- the printed block (reference §4.4) --------------------------------------------------------------
def format_flags(flags: Mapping) -> str:
    """The seven ``key = value`` loss-config lines, in the original's order."""
    return "\n".join(f"{k} = {v}" for k, v in flags.items())


def format_block(step: int, flags: Mapping, means: Mapping[str, float], elapsed: float) -> str:
    """The text v2.2 printed every display_iters.

    ``means`` holds window averages: DA, DB, GA, GB and adv_A/adv_B, recon_A/B, edge_A/B, pl_A/B.
    The perceptual pair appears only when use_PL is on.
    """
    lines = [format_flags(flags), SEP,
             "[iter %d] Loss_DA: %f Loss_DB: %f Loss_GA: %f Loss_GB: %f time: %f"
             % (step, means["DA"], means["DB"], means["GA"], means["GB"], elapsed),
             SEP, "Generator loss details:"]
    names = [("adv", "[Adversarial loss]"), ("recon", "[Reconstruction loss]"), ("edge", "[Edge loss]")]
    if flags.get("use_PL"):
        names.append(("pl", "[Perceptual loss]"))
    for key, title in names:
        lines += [title, "GA: %.4f GB: %.4f" % (means[f"{key}_A"], means[f"{key}_B"])]
    lines.append(SEP)
    return "\n".join(lines)


# ---- grids (reference §4.5) ---------------------------------------------------------------------------
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, 3, H, W); single-channel maps (alpha, [0,1]) become grey."""
    x = x.detach().float().cpu()
    if x.shape[1] == 1:
        x = (x * 2 - 1).repeat(1, 3, 1, 1)  # alpha in [0,1]: white = generated pixel
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def triplet_grid(a_tiles: list[torch.Tensor], b_tiles: list[torch.Tensor]) -> Image.Image:
    """Lay out triplets as v2.2 did. ``a_tiles``/``b_tiles``: three tensors (N, C, R, R) each, the
    tiles of each A / B sample in order. Returns a PIL image of (N/2) rows x 12 tiles."""
    a = [to_uint8(t) for t in a_tiles]
    b = [to_uint8(t) for t in b_tiles]
    n = a[0].shape[0]
    half = n // 2
    tiles = []
    for i in range(half):
        for group, j in ((a, i), (a, half + i), (b, i), (b, half + i)):
            tiles += [group[0][j], group[1][j], group[2][j]]
    grid = make_grid(torch.stack(tiles), nrow=12, padding=0)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def preview_grids(p: Mapping[str, torch.Tensor]) -> dict[str, Image.Image]:
    """The three grids from the preview tensors of :meth:`ganlib.trainer.Trainer.preview_tensors`.

    Keys of ``p`` (X in a, b): ``target_X``, ``warped_X``, ``masked_self_X``/``masked_swap_X``
    (composites with the tile's own target), ``alpha_self_X``/``alpha_swap_X``, ``raw_self_X``/
    ``raw_swap_X`` (raw colour output for the warped input).
    """
    out = {}
    out["preprocessed"] = triplet_grid([p["target_a"], p["masked_self_a"], p["masked_swap_a"]],
                                       [p["target_b"], p["masked_self_b"], p["masked_swap_b"]])
    out["masked"] = triplet_grid([p["target_a"], p["alpha_self_a"], p["alpha_swap_a"]],
                                 [p["target_b"], p["alpha_self_b"], p["alpha_swap_b"]])
    out["reconstruction"] = triplet_grid([p["warped_a"], p["raw_self_a"], p["raw_swap_a"]],
                                         [p["warped_b"], p["raw_self_b"], p["raw_swap_b"]])
    return out


def image_grid(images: torch.Tensor, nrow: int = 8) -> Image.Image:
    """Any (N, C, H, W) batch in [-1, 1] as one PIL image."""
    grid = make_grid(to_uint8(images), nrow=nrow, padding=2)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


# ---- display ------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What the trainer hands to a callback every display_iters."""

    step: int
    text: str
    grids: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    means: dict = field(default_factory=dict)


class NotebookView:
    """Shows the three grids in a notebook, updated in place through IPython display handles (no
    clear_output, so the progress bar and the printed blocks stay). Use ``view.update`` as the
    trainer's callback. Outside IPython it does nothing."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.handles = {}

    def update(self, trainer, report: Report):
        try:
            from IPython.display import display
        except ImportError:
            return
        for key, title in GRID_TITLES.items():
            img = report.grids.get(key)
            if img is None:
                continue
            if self.scale != 1.0:
                img = img.resize((int(img.width * self.scale), int(img.height * self.scale)), Image.NEAREST)
            if key not in self.handles:
                display(title + f" (iter {report.step})", display_id=False)
                self.handles[key] = display(img, display_id=True)
            else:
                self.handles[key].update(img)


def plot_history(history: list[dict], keys=("DA", "DB", "GA", "GB")):
    """Loss curves (window means logged every display_iters) as a matplotlib Figure."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _in_ipython():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    steps = [h["step"] for h in history]
    for k in keys:
        ys = [h.get(k, np.nan) for h in history]
        ax.plot(steps, ys, label=f"Loss_{k}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (window mean)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None
    except ImportError:
        return False
