"""The faceswap-GAN v2.2 training augmentation (`read_image`, reference §5.4), batched in torch.

One call turns a batch of cached uint8 faces into the three tensors the trainer needs:

1. random colour match against a random face of A ∪ B (p = 0.5; half of the time in CIE XYZ);
2. ``random_transform``: rotation ±10°, zoom ±10 %, shift ±5 %, horizontal flip (p = 0.5);
3. ``random_warp_rev``: a 5×5 grid of control points with Gaussian noise gives the *warped* input
   (non-rigid), and the Umeyama similarity from the noisy points back to the regular grid gives the
   *target* (rigid), so target ≈ warped up to a smooth non-rigid field;
4. optional motion blur, identical on warped and target.

Everything runs on the device of the input tensors (CPU in tests, CUDA in training), without Python
loops over pixels or samples, and is a pure function of the given ``torch.Generator``.

Coordinates. All geometry lives in grid_sample's normalised coordinates (align_corners=False: −1 and
+1 are the outer edges of the image). The original's pixel numbers (coverage 78 + randint(20), noise
σ ~ U(5, 6.2), both in pixels of the 256-px image) are divided by 128 once, which is the same thing as
scaling them by work_size/256 at any other work size.

Deviations from the original, on purpose:

* random_transform and the warp are composed into ONE resampling of the source image instead of two
  (cv2.warpAffine then cv2.remap): the same geometry with one bilinear blur less. Borders are
  replicated (``padding_mode="border"``), as the original's BORDER_REPLICATE.
* The original's target grid {0, 16r, …, 64r} sits half an output pixel off the warped map's grid
  (cv2.resize uses pixel centres, warpAffine pixel corners); here both use pixel centres, so with zero
  noise the warped image and the target are exactly the same image.
* The grid is centred on the image centre (127.5 in pixel-centre terms), not on pixel 128.
* Colour matching works on float values and keeps XYZ unclipped (OpenCV's 8-bit XYZ saturates Z);
  the result is clamped to [0, 255] after converting back, as OpenCV's uint8 conversion does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Augmenter",
    "random_transform_params",
    "apply_affine",
    "compose_affine",
    "invert_affine",
    "random_warp",
    "umeyama_batch",
    "color_match",
    "rgb_to_xyz",
    "xyz_to_rgb",
    "motion_blur_kernels",
    "motion_blur",
]

# OpenCV's RGB -> XYZ matrix (sRGB primaries, D65), applied to the raw 0..255 values without gamma
# decoding, which is what cv2.cvtColor(..., COLOR_BGR2XYZ) does in the original.
_RGB2XYZ = torch.tensor([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
], dtype=torch.float64)

# The original measures colour statistics on the central crop [60:-60, 60:-60] of the 256-px face
# (136 x 136), i.e. mostly skin, not background.
_COLOR_MARGIN_256 = 60


# ---------------------------------------------------------------------------------------------
# Random numbers: drawn on the generator's own device, then moved, so one generator works for any
# input device and the parameters of a batch do not depend on where the images live.

# The small per-image parameter maths (angles, 5x5 points, Umeyama) also runs there, in float64 where
# it matters; only the image-sized work runs on the images' device.

def _gen_device(gen: torch.Generator | None) -> torch.device:
    return gen.device if gen is not None else torch.device("cpu")


def _rand(gen: torch.Generator | None, *shape: int, device: torch.device | None = None) -> Tensor:
    out = torch.rand(shape, generator=gen, device=_gen_device(gen))
    return out if device is None else out.to(device)


def _randn(gen: torch.Generator | None, *shape: int) -> Tensor:
    return torch.randn(shape, generator=gen, device=_gen_device(gen))


# ---------------------------------------------------------------------------------------------
# Affine helpers. A "theta" is a [B, 2, 3] matrix mapping OUTPUT normalised coordinates to SOURCE
# normalised coordinates, exactly what F.affine_grid expects.

def compose_affine(outer: Tensor, inner: Tensor) -> Tensor:
    """Return the [B,2,3] affine x ↦ outer(inner(x)) of two [B,2,3] (or [2,3]) affines."""
    a = outer[..., :2] @ inner[..., :2]
    b = (outer[..., :2] @ inner[..., 2:]).squeeze(-1) + outer[..., 2]
    return torch.cat([a, b.unsqueeze(-1)], dim=-1)


def invert_affine(theta: Tensor) -> Tensor:
    """Inverse of a batch of invertible [B,2,3] affines."""
    a_inv = torch.linalg.inv(theta[..., :2])
    b_inv = -(a_inv @ theta[..., 2:])
    return torch.cat([a_inv, b_inv], dim=-1)


def apply_affine(images: Tensor, theta: Tensor, size: int | None = None, *,
                 padding_mode: str = "border") -> Tensor:
    """Resample ``images`` [B,C,H,W] with the output→source affine ``theta`` [B,2,3].

    ``size`` is the output side (default: the input height). Bilinear, borders replicated by
    default (the original's BORDER_REPLICATE). Integer inputs are converted to float32.
    """
    if not images.is_floating_point():
        images = images.float()
    b, c, h, _ = images.shape
    size = h if size is None else size
    grid = F.affine_grid(theta.to(images), [b, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_transform_params(batch: int, generator: torch.Generator | None = None, *,
                            rotation: float = 10.0, scale: float = 0.1, shift: float = 0.05,
                            flip: float = 0.5, device: torch.device | str | None = None) -> Tensor:
    """Sampling thetas [B,2,3] of the original's ``random_transform`` (§5.4 step 5).

    Rotation U(−rotation, rotation) degrees and zoom U(1−scale, 1+scale) about the image centre,
    translation U(−shift, shift) × side in x and y, then a horizontal flip with probability ``flip``.
    The forward map is y = Flip(s·Rot·x + t) (OpenCV's getRotationMatrix2D convention); the returned
    matrix is its inverse, which is what resampling needs.
    """
    u = _rand(generator, batch, 5).double()
    angle = torch.deg2rad((2 * u[:, 0] - 1) * rotation)
    s = 1 + (2 * u[:, 1] - 1) * scale
    t = (2 * u[:, 2:4] - 1) * shift * 2  # a fraction of the side is twice that in [-1, 1] units
    fl = torch.where(u[:, 4] < flip, -1.0, 1.0).double()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # x = Rot^T (Flip y − t) / s
    a = torch.stack([torch.stack([cos * fl, -sin], -1), torch.stack([sin * fl, cos], -1)], -2) / s[:, None, None]
    rt = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # Rot^T
    b = -(rt @ t.unsqueeze(-1)).squeeze(-1) / s[:, None]
    return torch.cat([a, b.unsqueeze(-1)], -1).to(device=device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Umeyama similarity, batched.

def umeyama_batch(src: Tensor, dst: Tensor, estimate_scale: bool = True) -> Tensor:
    """Least-squares similarity dst ≈ s·R·src + t for each batch item (Umeyama 1991).

    ``src``, ``dst``: [B, N, D] point sets. Returns [B, D, D+1] = [s·R | t] (the top rows of the
    original's homogeneous matrix). R is a proper rotation (reflections are excluded as in the paper).
    Computed in float64 for robustness and returned in the input dtype.
    """
    dtype = src.dtype
    src, dst = src.double(), dst.double()
    n = src.shape[-2]
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    sc, dc = src - mu_s.unsqueeze(-2), dst - mu_d.unsqueeze(-2)
    cov = dc.transpose(-1, -2) @ sc / n  # [B, D, D]
    d = torch.ones(cov.shape[:-1], dtype=cov.dtype, device=cov.device)
    d[..., -1] = torch.where(torch.linalg.det(cov) < 0, -1.0, 1.0)
    u, sv, vh = torch.linalg.svd(cov)
    rot = u @ torch.diag_embed(d) @ vh
    if estimate_scale:
        var_s = (sc ** 2).sum(-1).mean(-1).clamp_min(1e-12)
        scale = (sv * d).sum(-1) / var_s
    else:
        scale = torch.ones(cov.shape[:-2], dtype=cov.dtype, device=cov.device)
    t = mu_d - scale[..., None] * (rot @ mu_s.unsqueeze(-1)).squeeze(-1)
    return torch.cat([scale[..., None, None] * rot, t.unsqueeze(-1)], -1).to(dtype)


# ---------------------------------------------------------------------------------------------
# random_warp_rev

def random_warp(batch: int, resolution: int, generator: torch.Generator | None = None, *,
                coverage: float = 78.0, coverage_jitter: int = 20, noise_sigma: tuple[float, float] = (5.0, 6.2),
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """The original's ``random_warp_rev`` (§5.4 step 6) as sampling grids.

    ``coverage`` + randint(0, coverage_jitter) is the half-width of the 5×5 control grid and
    σ ~ U(*noise_sigma) the per-image noise, both in pixels of a 256-px image. Returns

    * ``grid`` [B, R, R, 2]: the warped input's source coordinates (for F.grid_sample): the noisy
      5×5 x/y maps bilinearly resized to (80r)² and cropped to [8r:72r] (r = R/64), as the original;
    * ``theta`` [B, 2, 3]: the target's output→source affine, the inverse of the Umeyama similarity
      from the noisy points to the regular grid.
    """
    if resolution % 8:
        raise ValueError(f"resolution must be a multiple of 8 (got {resolution})")
    u = _rand(generator, batch, 2)
    noise = _randn(generator, batch, 2, 5, 5)
    jitter = torch.floor(u[:, 0] * coverage_jitter) if coverage_jitter > 0 else torch.zeros_like(u[:, 0])
    half = (coverage + jitter) / 128.0  # 256-px units -> normalised units
    sigma = (noise_sigma[0] + u[:, 1] * (noise_sigma[1] - noise_sigma[0])) / 128.0

    base = torch.linspace(-1.0, 1.0, 5, device=u.device)
    gx = base.view(1, 5).expand(5, 5)  # x varies along columns
    gy = base.view(5, 1).expand(5, 5)  # y varies along rows
    regular = torch.stack([gx, gy])  # [2, 5, 5]
    src = regular.unsqueeze(0) * half.view(-1, 1, 1, 1) + noise * sigma.view(-1, 1, 1, 1)  # [B, 2, 5, 5]

    # Dense map: resize 5x5 -> (80r)^2 with pixel-centre bilinear (cv2.resize == align_corners=False)
    # and keep [8r:72r]; that crop spans exactly control point 0 to control point 4.
    big, lo = resolution * 5 // 4, resolution // 8
    dense = F.interpolate(src.to(device), size=(big, big), mode="bilinear", align_corners=False)
    grid = dense[:, :, lo:lo + resolution, lo:lo + resolution].permute(0, 2, 3, 1)

    # Target: similarity noisy points -> regular grid, where control point j sits at output
    # normalised coordinate j/2 - 1 (the same pixel-centre convention as the dense map).
    pts_src = src.flatten(2).transpose(1, 2)  # [B, 25, 2] (x, y)
    pts_dst = regular.flatten(1).t().unsqueeze(0).expand(batch, -1, -1)
    forward = umeyama_batch(pts_src.double(), pts_dst.double())
    return grid.contiguous(), invert_affine(forward).to(device=device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Colour matching

def rgb_to_xyz(images: Tensor) -> Tensor:
    """[B,3,H,W] RGB (0..255) -> CIE XYZ with OpenCV's linear matrix (no gamma), same scale."""
    return _mix(_RGB2XYZ.to(images).expand(images.shape[0], 3, 3), images.contiguous())


def xyz_to_rgb(images: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_xyz`."""
    return _mix(torch.linalg.inv(_RGB2XYZ).to(images).expand(images.shape[0], 3, 3), images.contiguous())


def _crop_stats(x: Tensor, margin: int) -> tuple[Tensor, Tensor]:
    h, w = x.shape[-2:]
    crop = x[..., margin:h - margin, margin:w - margin]
    # Two plain passes: population std as numpy's, and several times faster than torch.var_mean on CPU.
    mean = crop.mean(dim=(-2, -1), keepdim=True)
    return mean, (crop - mean).square().mean(dim=(-2, -1), keepdim=True).sqrt()


def _mix(mats: Tensor, x: Tensor) -> Tensor:
    """Apply a 3x3 matrix per image to [B,3,H,W] (one bmm; einsum would permute and copy)."""
    return torch.bmm(mats, x.reshape(x.shape[0], 3, -1)).view(x.shape)


def _color_space(use_xyz: Tensor, like: Tensor) -> Tensor:
    """[B,3,3]: OpenCV's RGB->XYZ matrix where use_xyz, the identity elsewhere."""
    m = _RGB2XYZ.to(like)
    return torch.where(use_xyz.view(-1, 1, 1), m, torch.eye(3, dtype=like.dtype, device=like.device))


def color_match(images: Tensor, refs: Tensor, u: Tensor, use_xyz: Tensor | bool = False, *,
                margin: int | None = None) -> Tensor:
    """The original's random colour match (§5.4 step 2), for given references and draws.

    ``images``, ``refs``: float [B,3,S,S] in 0..255. Per channel, mean/std are measured on the
    central crop (``margin`` defaults to 60/256 of the side) of both; the effective target stats are
    u·ref + (1−u)·own (``u`` [B] in [0, 1]); then x ↦ (x − μs)/σs·σt + μt, shifted up if any value is
    negative and rescaled if any exceeds 255, per image, as the original. ``use_xyz`` ([B] bool or a
    bool) does this in CIE XYZ. Returns float [B,3,S,S] in [0, 255].
    """
    b, s = images.shape[0], images.shape[-1]
    margin = round(_COLOR_MARGIN_256 * s / 256) if margin is None else margin
    use_xyz = torch.as_tensor(use_xyz, device=images.device).expand(b)
    # One 3x3 matrix per image (identity or RGB->XYZ) instead of converting every image both ways.
    space = _color_space(use_xyz, images)
    src = _mix(space, images.contiguous())
    ref_crop = refs[..., margin:refs.shape[-2] - margin, margin:refs.shape[-1] - margin]
    mu_s, sd_s = _crop_stats(src, margin)
    mu_r, sd_r = _crop_stats(_mix(space, ref_crop.contiguous()), 0)
    u = u.to(images).view(b, 1, 1, 1)
    mu_t = u * mu_r + (1 - u) * mu_s
    sd_t = u * sd_r + (1 - u) * sd_s
    # A flat crop (σ below one grey level) has no contrast to rescale: only the mean is moved, instead
    # of amplifying rounding noise by 1/σ as a tiny epsilon would.
    gain = torch.where(sd_s < 1.0, torch.ones_like(sd_s), sd_t / sd_s.clamp_min(1.0))
    out = src.sub_(mu_s).mul_(gain).add_(mu_t)
    low = out.amin(dim=(1, 2, 3), keepdim=True)
    high = out.amax(dim=(1, 2, 3), keepdim=True) - low.clamp(max=0)
    scale = torch.where(high > 255, 255 / high.clamp_min(1e-6), torch.ones_like(high))
    out = out.sub_(low.clamp(max=0)).mul_(scale)
    out = _mix(torch.linalg.inv(space), out)
    return out.clamp_(0, 255)


# ---------------------------------------------------------------------------------------------
# Motion blur

def motion_blur_kernels(lengths: Tensor, angles: Tensor, size: int = 11) -> Tensor:
    """Line kernels [B,1,size,size]: a centred horizontal line of ``lengths`` [B] (odd) pixels rotated
    by ``angles`` [B] degrees (bilinear), normalised to sum 1, as the original's motion blur."""
    b = lengths.shape[0]
    device = angles.device
    c = size // 2
    col = torch.arange(size, device=device).view(1, size)
    half = (lengths.to(device).view(b, 1) // 2)
    line = ((col - c).abs() <= half).float()  # [B, size]
    k = torch.zeros(b, 1, size, size, device=device)
    k[:, 0, c, :] = line
    rad = torch.deg2rad(angles.float())
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    k = apply_affine(k, theta, padding_mode="zeros")
    return k / k.sum(dim=(-2, -1), keepdim=True)


def motion_blur(images: Tensor, kernels: Tensor) -> Tensor:
    """Filter each image [B,C,H,W] with its own kernel [B,1,k,k] (reflect border, as cv2.filter2D)."""
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    weight = kernels.to(images).repeat_interleave(c, dim=0)  # [B*C, 1, k, k]
    x = F.pad(images.reshape(1, b * c, h, w), (k // 2,) * 4, mode="reflect")
    return F.conv2d(x, weight, groups=b * c).view(b, c, h, w)


# ---------------------------------------------------------------------------------------------

@dataclass
class Augmenter:
    """The v2.2 ``read_image`` augmentation; call it on a uint8 batch (see :meth:`__call__`).

    Defaults are the original's; pixel quantities are in pixels of a 256-px face and scale with
    ``work_size``.
    """

    resolution: int = 64                         # R, output side; multiple of 16 (r = R/64 in §5.4)
    work_size: int = 256                         # S, side the faces are cached/augmented at (original: 256)
    prob_color_match: float = 0.5                # p of the random colour match against a face of A ∪ B
    color_match_xyz_prob: float = 0.5            # p that a colour match works in CIE XYZ instead of RGB
    color_match_target: bool = True              # v2.2 matches input AND target; False: input only (ganlib),
    #                                              so the encoder learns to ignore skin tone while each
    #                                              decoder keeps its identity's own colours
    rotation: float = 10.0                       # degrees, U(−rotation, rotation)
    scale: float = 0.1                           # zoom U(1 − scale, 1 + scale)
    shift: float = 0.05                          # translation U(−shift, shift) × side, in x and y
    flip: float = 0.5                            # p of a horizontal flip
    coverage: float = 78.0                       # warp grid half-width, 256-px units (v2.2 since 1d604c5)
    coverage_jitter: int = 20                    # + randint(0, jitter): numpy randint(20) is 0..19
    noise_sigma: tuple[float, float] = (5.0, 6.2)  # grid noise σ ~ U(lo, hi), 256-px units
    motion_blur: bool = False                    # use_da_motion_blur
    motion_blur_prob: float = 0.25               # p of blur when motion_blur is on
    motion_blur_lengths: tuple[int, ...] = (5, 7, 9, 11)  # line lengths in output pixels

    def __post_init__(self):
        self.noise_sigma = tuple(float(v) for v in self.noise_sigma)
        self.motion_blur_lengths = tuple(int(v) for v in self.motion_blur_lengths)
        if self.resolution < 16 or self.resolution % 16:
            raise ValueError(f"resolution must be a positive multiple of 16 (got {self.resolution})")
        if self.work_size < 16:
            raise ValueError(f"work_size must be at least 16 (got {self.work_size})")
        for name in ("prob_color_match", "color_match_xyz_prob", "flip", "motion_blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (got {getattr(self, name)})")
        if not 0 <= self.noise_sigma[0] <= self.noise_sigma[1]:
            raise ValueError(f"noise_sigma must be (lo, hi) with 0 <= lo <= hi (got {self.noise_sigma})")
        if self.coverage <= 0 or self.coverage_jitter < 0:
            raise ValueError("coverage must be > 0 and coverage_jitter >= 0")
        if not self.motion_blur_lengths or any(v < 1 or v % 2 == 0 for v in self.motion_blur_lengths):
            raise ValueError(f"motion_blur_lengths must be odd positive ints (got {self.motion_blur_lengths})")

    @classmethod
    def identity(cls, resolution: int = 64, work_size: int = 256, coverage: float = 128.0) -> "Augmenter":
        """No randomness at all: outputs are a plain resize of the central region of half-width
        ``coverage`` (256-px units; 128 = the whole face), warped == target. For tests and previews."""
        return cls(resolution=resolution, work_size=work_size, prob_color_match=0.0, color_match_xyz_prob=0.0,
                   rotation=0.0, scale=0.0, shift=0.0, flip=0.0, coverage=coverage, coverage_jitter=0,
                   noise_sigma=(0.0, 0.0), motion_blur=False)

    def to_dict(self) -> dict:
        """Plain-type dict (JSON / weights_only-safe)."""
        d = asdict(self)
        d["noise_sigma"] = list(d["noise_sigma"])
        d["motion_blur_lengths"] = list(d["motion_blur_lengths"])
        return d

    def _fit(self, x: Tensor) -> Tensor:
        """uint8/float [B,C,H,W] -> a new float32 tensor at work_size (antialiased resize if needed)."""
        if x.shape[-2:] != (self.work_size, self.work_size):
            return F.interpolate(x.float(), size=(self.work_size, self.work_size), mode="bilinear",
                                 align_corners=False, antialias=True)
        return x.to(torch.float32, copy=True)  # always a copy: colour matching writes into it

    def __call__(self, images: Tensor, eye_masks: Tensor | None = None, generator: torch.Generator | None = None,
                 pool: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Augment a batch.

        Args:
            images: uint8 [B,3,S,S] RGB faces (resized to work_size if S differs).
            eye_masks: uint8 [B,K,S,S] (0..255) or None (zeros, K = 1). K is normally 1; extra
                channels (e.g. a face mask) are resampled exactly like the eye mask.
            generator: the torch.Generator all random draws come from (any device).
            pool: uint8 [P,3,S',S'] faces to draw colour-match references from (A ∪ B, may live on CPU);
                None disables colour matching.

        Returns:
            warped [B,3,R,R] and target [B,3,R,R] in [−1, 1], eye_mask [B,K,R,R] in [0, 1]; the
            mask follows the target geometry, as in the original.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,S,S], got {tuple(images.shape)}")
        dev, b, r = images.device, images.shape[0], self.resolution
        x = self._fit(images)  # float 0..255; scaled to [-1, 1] only at R x R (resampling is linear)
        if eye_masks is None:
            m = torch.zeros(b, 1, self.work_size, self.work_size, device=dev)
        else:
            m = self._fit(eye_masks.to(dev))  # any number of channels; all follow the target path

        # Fixed number of draws per batch whatever the flags, so the stream stays aligned.
        uc = _rand(generator, b, 4)  # on the generator's device
        x_target = x  # the target keeps the original colours when color_match_target is off
        if pool is not None and len(pool) > 0 and self.prob_color_match > 0:
            # Only the faces drawn for matching are processed (the choice is known on the generator's
            # device, so this costs no GPU sync when the generator is on the CPU).
            sel = torch.nonzero(uc[:, 0] < self.prob_color_match).flatten()
            if len(sel):
                ref_idx = (uc[sel, 1] * len(pool)).long().clamp_max(len(pool) - 1)
                refs = self._fit(pool[ref_idx.to(pool.device)].to(dev))
                sel_d = sel.to(dev)
                use_xyz = (uc[sel, 2] < self.color_match_xyz_prob).to(dev)
                matched = color_match(x[sel_d], refs, uc[sel, 3].to(dev), use_xyz)
                x = x.index_copy(0, sel_d, matched)
                if self.color_match_target:
                    x_target = x

        tf = random_transform_params(b, generator, rotation=self.rotation, scale=self.scale, shift=self.shift,
                                     flip=self.flip, device=dev)
        grid, theta_t = random_warp(b, r, generator, coverage=self.coverage, coverage_jitter=self.coverage_jitter,
                                    noise_sigma=self.noise_sigma, device=dev)
        # One resampling each: output -> (warp or similarity) -> random_transform -> source.
        grid = (grid @ tf[:, None, :, :2].transpose(-1, -2)) + tf[:, None, None, :, 2]
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        tgrid = F.affine_grid(compose_affine(tf, theta_t), [b, 1, r, r], align_corners=False)
        target = F.grid_sample(x_target, tgrid, mode="bilinear", padding_mode="border", align_corners=False)
        mask = F.grid_sample(m, tgrid, mode="bilinear", padding_mode="border", align_corners=False)

        ub = _rand(generator, b, 3, device=dev)  # apply, length, angle
        if self.motion_blur:
            lengths = torch.tensor(self.motion_blur_lengths, device=dev)
            pick = (ub[:, 1] * len(lengths)).long().clamp_max(len(lengths) - 1)
            blur_len = torch.where(ub[:, 0] < self.motion_blur_prob, lengths[pick], torch.ones_like(pick))
            k = motion_blur_kernels(blur_len, ub[:, 2] * 360 - 180, size=max(self.motion_blur_lengths))
            warped, target = motion_blur(warped, k), motion_blur(target, k)

        warped, target, mask = warped / 127.5 - 1, target / 127.5 - 1, mask / 255
        return warped.clamp(-1, 1), target.clamp(-1, 1), mask.clamp(0, 1)
