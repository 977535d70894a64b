"""Procedural synthetic faces with ground truth: ``SyntheticFaces``.

Two made-up identities (no real person) are drawn by a small numpy renderer: a head ellipsoid is
ray-cast under the pose (yaw, pitch, roll), every facial feature is painted in the head's own
surface coordinates (so it foreshortens and turns with the head), and a relief height field
(face shape, nose, brow ridge, cheeks, lips, chin) gives Lambert + specular shading from the
nuisance light. Edges are anti-aliased analytically: every shape is a scalar field whose zero level
is the edge, and pixel coverage is ``clip(0.5 - f / |grad f|, 0, 1)`` (distance in pixels).

What changes between the identities (``Identity``): face shape, skin tone, hair style and colour,
eye size and iris colour, brows, nose, mouth, ears. What changes between images (``Nuisance``):
pose, expression (mouth opening, smile, blink, gaze), light, background and a small framing jitter.
Rendering identity B with the nuisance of an A image gives the true swap of that image, which is
what the swap-quality benchmark measures against.

Framing follows the aligned crops of faceswap-GAN v2.2 (5-point template, reference §5.1): at the
neutral pose the pupils sit at row 0.31 / cols 0.33 and 0.72, the nose tip at (0.55, 0.52) and
the mouth corners at row 0.775, and the face fills the crop from the hairline to the chin.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "Identity",
    "Nuisance",
    "Rendered",
    "SyntheticFaces",
    "TEMPLATE",
    "get_identity",
    "render",
    "sample_nuisance",
]

# 5-point alignment template of faceswap-GAN v2.2 as (row, col) fractions of the crop
# (eye 1, eye 2, nose tip, mouth corner 1, mouth corner 2); reference §5.1.
TEMPLATE = np.array(
    [[0.31339, 0.32593], [0.31075, 0.72285], [0.55237, 0.51873], [0.77524, 0.37262], [0.77596, 0.67730]],
    dtype=np.float32,
)

# Head-local coordinates are fractions of the crop; at the neutral pose local (X, Y) = image
# (col - CX, row - CY). The centre column is the mean column of the template points.
CX, CY = 0.5235, 0.50
EYE_X = 0.1985          # half the template eye distance (0.72285 - 0.32593) / 2
EYE_Y = 0.312 - CY      # template eye row
NOSE_Y = 0.5524 - CY    # template nose-tip row
MOUTH_Y = 0.7756 - CY   # template mouth-corner row
# Head ellipsoid used for the ray cast (local units). Tall enough that the crown lies above the crop.
HEAD_A, HEAD_B, HEAD_C = 0.47, 0.62, 0.42
# Yaw/pitch pivot, in local coordinates: close to the depth of the eyes, so a turned head stays
# roughly on the template as it would in an aligned crop (alignment re-centres the landmarks).
PIVOT = np.array([0.0, 0.05, 0.24])


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Fixed traits of one synthetic person. Lengths are in crop fractions, colours RGB in [0, 1]."""

    name: str
    face_hw: float          # half-width of the face outline at the cheekbones
    face_cy: float          # local row of the outline centre
    face_hh: float          # half-height of the outline (chin = face_cy + face_hh)
    jaw_power: float        # super-ellipse exponent: 2 = oval, ~3 = square jaw
    chin_taper: float       # narrowing of the lower face: 0 = none, 0.45 = pointed chin
    skin: tuple
    blush: tuple
    hair: tuple
    hair_style: str         # "fringe" (short, straight bangs) or "bob" (side part, chin length)
    eye_w: float            # eye half-width
    eye_open: float         # upper-lid height relative to eye_w
    eye_tilt: float         # outer corner lift
    iris: tuple
    iris_r: float           # iris radius relative to eye_w
    brow_thick: float
    brow_arch: float
    brow_gap: float         # brow height above the eye centre
    brow_color: tuple
    nose_w: float           # half-width of the nose wings
    nose_h: float           # nose protrusion (relief height)
    mouth_w: float          # mouth half-width
    lip_up: float           # upper-lip thickness
    lip_lo: float           # lower-lip thickness
    lips: tuple
    ear_size: float
    neck_hw: float


IDENTITY_A = Identity(
    name="A", face_hw=0.435, face_cy=-0.04, face_hh=0.51, jaw_power=3.0, chin_taper=0.08,
    skin=(0.96, 0.80, 0.70), blush=(0.95, 0.60, 0.58), hair=(0.16, 0.11, 0.08), hair_style="fringe",
    eye_w=0.078, eye_open=0.52, eye_tilt=0.0, iris=(0.16, 0.36, 0.72), iris_r=0.50,
    brow_thick=0.024, brow_arch=0.008, brow_gap=0.08, brow_color=(0.13, 0.09, 0.07),
    nose_w=0.045, nose_h=0.075, mouth_w=0.155, lip_up=0.020, lip_lo=0.026, lips=(0.80, 0.40, 0.42),
    ear_size=1.0, neck_hw=0.22,
)
IDENTITY_B = Identity(
    name="B", face_hw=0.405, face_cy=-0.02, face_hh=0.53, jaw_power=2.0, chin_taper=0.42,
    skin=(0.55, 0.36, 0.24), blush=(0.62, 0.30, 0.22), hair=(0.90, 0.42, 0.12), hair_style="bob",
    eye_w=0.094, eye_open=0.62, eye_tilt=0.12, iris=(0.16, 0.52, 0.22), iris_r=0.52,
    brow_thick=0.034, brow_arch=0.025, brow_gap=0.09, brow_color=(0.12, 0.07, 0.05),
    nose_w=0.065, nose_h=0.06, mouth_w=0.14, lip_up=0.032, lip_lo=0.040, lips=(0.52, 0.22, 0.24),
    ear_size=0.9, neck_hw=0.18,
)


def get_identity(identity) -> Identity:
    """Return the ``Identity`` for 0/"A", 1/"B", an ``Identity``, or any int >= 2 (a random person
    drawn deterministically from that number)."""
    if isinstance(identity, Identity):
        return identity
    if isinstance(identity, str):
        key = identity.strip().upper()
        if key in ("A", "0"):
            return IDENTITY_A
        if key in ("B", "1"):
            return IDENTITY_B
        raise ValueError(f"unknown identity {identity!r}: use 0/'A', 1/'B' or an int >= 2")
    if isinstance(identity, (int, np.integer)) and not isinstance(identity, bool):
        if identity == 0:
            return IDENTITY_A
        if identity == 1:
            return IDENTITY_B
        if identity >= 2:
            return _random_identity(int(identity))
    raise ValueError(f"unknown identity {identity!r}: use 0/'A', 1/'B' or an int >= 2")


@lru_cache(maxsize=64)
def _random_identity(k: int) -> Identity:
    """A further made-up person: traits interpolated between and around A and B, fixed by ``k``."""
    rng = np.random.default_rng([0x5EED, k])
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    tone = u(0, 1)
    skin = tuple(float(x) for x in (1 - tone) * np.array(IDENTITY_A.skin) + tone * np.array(IDENTITY_B.skin))
    # Natural hair colours (black, dark brown, brown, auburn, blond, ginger, grey), jittered.
    palette = np.array([[0.08, 0.06, 0.05], [0.22, 0.14, 0.09], [0.42, 0.28, 0.17], [0.50, 0.20, 0.10],
                        [0.85, 0.70, 0.42], [0.88, 0.45, 0.18], [0.62, 0.62, 0.62]])
    hair = tuple(float(x) for x in np.clip(palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15, 3), 0, 1))
    iris = tuple(float(x) for x in np.array([[0.16, 0.36, 0.72], [0.16, 0.52, 0.22], [0.35, 0.22, 0.12], [0.45, 0.40, 0.25]])[rng.integers(4)] * rng.uniform(0.85, 1.15, 3))
    return Identity(
        name=f"id{k}", face_hw=u(0.39, 0.44), face_cy=u(-0.045, -0.015), face_hh=u(0.50, 0.54),
        jaw_power=u(2.0, 3.0), chin_taper=u(0.05, 0.45), skin=skin,
        blush=tuple(min(1.0, s * 1.02 + 0.02) for s in (skin[0], skin[1] * 0.75, skin[2] * 0.8)),
        hair=hair, hair_style=("fringe", "bob")[int(rng.integers(2))],
        eye_w=u(0.068, 0.095), eye_open=u(0.45, 0.65), eye_tilt=u(-0.05, 0.15), iris=iris,
        iris_r=u(0.42, 0.52), brow_thick=u(0.015, 0.034), brow_arch=u(0.005, 0.03),
        brow_gap=u(0.07, 0.09), brow_color=tuple(0.6 * h for h in hair),
        nose_w=u(0.04, 0.068), nose_h=u(0.05, 0.08), mouth_w=u(0.13, 0.16),
        lip_up=u(0.014, 0.03), lip_lo=u(0.018, 0.036),
        lips=tuple(float(x) for x in np.array(skin) * np.array([0.95, 0.62, 0.65])),
        ear_size=u(0.85, 1.05), neck_hw=u(0.17, 0.23),
    )


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation shared by all identities (plain floats; the default is the neutral pose).

    Angles in degrees: yaw > 0 turns the face to the image right, pitch > 0 tilts it up, roll > 0
    rotates it clockwise. Expression values are in [0, 1] (smile in [-1, 1], gaze in [-1, 1]).
    The light comes from (azimuth, elevation) in degrees (azimuth > 0: from the image right,
    elevation > 0: from above). Background: a linear gradient from colour 1 to colour 2 along
    ``bg_angle``. ``shift_x``/``shift_y``/``scale`` are a small framing jitter (crop fractions).
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    mouth_open: float = 0.0
    smile: float = 0.0
    blink: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    light_azimuth: float = -25.0
    light_elevation: float = 30.0
    light_intensity: float = 1.0
    bg_r1: float = 0.55
    bg_g1: float = 0.60
    bg_b1: float = 0.66
    bg_r2: float = 0.30
    bg_g2: float = 0.33
    bg_b2: float = 0.38
    bg_angle: float = 90.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0

    def as_dict(self) -> dict:
        """Plain-dict form (JSON friendly)."""
        return asdict(self)


def sample_nuisance(n: int, seed: int = 0) -> list[Nuisance]:
    """``n`` random nuisances, the same list for the same ``seed``.

    Ranges are moderate on purpose (yaw within +-25 deg, pitch and roll +-12 deg) so that a real
    MTCNN still finds the face in the renders, as it must in the video tests.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([0x4E55, int(seed)])
    out = []
    for _ in range(n):
        r = rng.uniform(0.0, 1.0, 24)
        # Half the images keep the mouth closed; open mouths are skewed towards small openings.
        mouth = 0.0 if r[3] < 0.5 else float(r[4] ** 1.5)
        # Mostly open eyes; 15% of images catch a (partial or full) blink.
        blink = float(0.5 + 0.5 * r[6]) if r[5] < 0.15 else float(0.2 * r[6])
        hue1, hue2 = r[12], r[13]
        c1 = _hsv_to_rgb(hue1, 0.15 + 0.45 * r[14], 0.35 + 0.55 * r[15])
        c2 = _hsv_to_rgb(hue2, 0.15 + 0.45 * r[16], 0.20 + 0.55 * r[17])
        out.append(Nuisance(
            yaw=float(-25 + 50 * r[0]), pitch=float(-12 + 24 * r[1]), roll=float(-12 + 24 * r[2]),
            mouth_open=mouth, smile=float(-0.3 + 1.3 * r[7]), blink=blink,
            gaze_x=float(-1 + 2 * r[8]), gaze_y=float(-0.6 + 1.2 * r[9]),
            light_azimuth=float(-60 + 120 * r[10]), light_elevation=float(-10 + 60 * r[11]),
            light_intensity=float(0.75 + 0.45 * r[18]),
            bg_r1=c1[0], bg_g1=c1[1], bg_b1=c1[2], bg_r2=c2[0], bg_g2=c2[1], bg_b2=c2[2],
            bg_angle=float(360 * r[19]),
            shift_x=float(-0.025 + 0.05 * r[20]), shift_y=float(-0.025 + 0.05 * r[21]),
            scale=float(0.96 + 0.08 * r[22]),
        ))
    return out


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return tuple(float(x) for x in [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


@dataclass
class Rendered:
    """One render: ``image`` uint8 HxWx3 RGB; ``eye_mask`` uint8 HxW, 255 on the visible eye
    whites/iris; ``face_mask`` uint8 HxW, 255 on the person (face, hair, ears, neck);
    ``landmarks`` float32 5x2 (x, y) pixel positions of the two pupils, nose tip and mouth corners
    (image-left first), in the order of ``TEMPLATE``."""

    image: np.ndarray
    eye_mask: np.ndarray
    face_mask: np.ndarray
    landmarks: np.ndarray


# --------------------------------------------------------------------------------------------
# Small numeric helpers (all float32)
# --------------------------------------------------------------------------------------------
F32 = np.float32


@lru_cache(maxsize=16)
def _grid(size: int):
    c = (np.arange(size, dtype=F32) + F32(0.5)) / F32(size)
    u, v = np.meshgrid(c, c)
    u.setflags(write=False)
    v.setflags(write=False)
    return u, v


def _cov(f: np.ndarray) -> np.ndarray:
    """Pixel coverage of the region ``f < 0``: signed distance in pixels (f / |grad f|) through a
    one-pixel linear ramp. This is the anti-aliasing of every edge."""
    gx, gy = _grad(f)
    g = np.sqrt(gx * gx + gy * gy)
    np.maximum(g, F32(1e-6), out=g)
    d = f / g
    np.subtract(F32(0.5), d, out=d)
    return np.clip(d, F32(0.0), F32(1.0), out=d)


def _grad(f: np.ndarray):
    """Central differences along columns (x) and rows (y), one-sided at the border (np.gradient
    without its per-call overhead, which dominates on small windows)."""
    gx = np.empty_like(f)
    gy = np.empty_like(f)
    np.subtract(f[:, 2:], f[:, :-2], out=gx[:, 1:-1])
    gx[:, 1:-1] *= F32(0.5)
    np.subtract(f[:, 1], f[:, 0], out=gx[:, 0])
    np.subtract(f[:, -1], f[:, -2], out=gx[:, -1])
    np.subtract(f[2:], f[:-2], out=gy[1:-1])
    gy[1:-1] *= F32(0.5)
    np.subtract(f[1], f[0], out=gy[0])
    np.subtract(f[-1], f[-2], out=gy[-1])
    return gx, gy


def _paint(img: np.ndarray, cov: np.ndarray, color) -> None:
    """In place: img = img + cov * (color - img); ``color`` is RGB or a 3xHxW array."""
    col = np.asarray(color, dtype=F32)
    if col.ndim == 1:
        col = col[:, None, None]
    img += cov[None] * (col - img)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-from-local rotation, image axes x right, y down, z towards the viewer."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------------------------
# Geometry of the face (local coordinates)
# --------------------------------------------------------------------------------------------
def _shape(ident: Identity, X, Y):
    """Face outline field: < 1 inside the face, 1 on the outline (super-ellipse with chin taper)."""
    t = (Y - F32(ident.face_cy)) / F32(ident.face_hh)
    tp = np.maximum(t, F32(0.0))
    m = F32(1.0) - F32(ident.chin_taper) * tp * tp
    xs = X / (F32(ident.face_hw) * m)
    n = ident.jaw_power
    if n == 2.0:
        return xs * xs + t * t
    ax, at = np.abs(xs), np.abs(t)
    return (ax ** F32(n) + at ** F32(n)) ** F32(2.0 / n)


def _nose_lift(ident: Identity, Y):
    """Height of the nose above the face along its mid-line: drives the nose's yaw/pitch parallax."""
    along = np.clip((Y - F32(EYE_Y)) / F32(NOSE_Y - EYE_Y), 0.0, 1.0)
    below = np.maximum(Y - F32(NOSE_Y), F32(0.0))
    return F32(ident.nose_h) * along * along * np.exp(-np.square(below / F32(0.03)))


def _nose_coords(ident: Identity, X, Y, tan_yaw: float, tan_pitch: float):
    """Coordinates in which the nose is drawn: a point raised by p above the face appears displaced
    by p * tan(angle), so the tip swings further than the eyes when the head turns."""
    p = _nose_lift(ident, Y)
    return X - p * F32(tan_yaw), Y + p * F32(tan_pitch)


def _nose_height(ident: Identity, Xn, Yn):
    """Relief of the nose: a ridge widening from the bridge to the tip, a tip ball and two wings."""
    along = _smoothstep((Yn - F32(EYE_Y)) / F32(NOSE_Y - EYE_Y))
    width = F32(0.028) + F32(ident.nose_w * 0.45) * along
    below = np.maximum(Yn - F32(NOSE_Y), F32(0.0))
    ridge = F32(ident.nose_h * 0.8) * along * along
    ridge = ridge * np.exp(-np.square(Xn / width) - np.square(below / F32(0.02)))
    tip = F32(0.3 * ident.nose_h) * np.exp(-(np.square(Xn) + np.square(Yn - F32(NOSE_Y + 0.004))) / F32(0.03 ** 2))
    wings = F32(0.3 * ident.nose_h) * np.exp(
        -(np.square(np.abs(Xn) - F32(ident.nose_w * 0.75)) + np.square(Yn - F32(NOSE_Y + 0.012))) / F32(0.026 ** 2))
    return ridge + tip + wings


def _relief(ident: Identity, X, Y, s):
    """Relief height field without the nose (local units); its gradient gives the shading normals."""
    h = F32(0.30) * np.sqrt(np.maximum(F32(1.0) - s, F32(0.004)))
    ax = np.abs(X)
    # Brow ridge, eye sockets, cheekbones, lips and chin: gentle bumps so the light models a face.
    h += F32(0.018) * np.exp(-np.square((Y - F32(EYE_Y - 0.08)) / F32(0.04)) - np.square((ax - F32(EYE_X)) / F32(0.14)))
    h -= F32(0.03) * np.exp(-(np.square(ax - F32(EYE_X)) + np.square(Y - F32(EYE_Y + 0.005))) / F32(0.075 ** 2))
    h += F32(0.02) * np.exp(-(np.square(ax - F32(0.24)) + np.square(Y - F32(0.03))) / F32(0.09 ** 2))
    h += F32(0.016) * np.exp(-np.square(X / F32(ident.mouth_w)) - np.square((Y - F32(MOUTH_Y)) / F32(0.04)))
    h += F32(0.02) * np.exp(-np.square(X / F32(0.1))
                            - np.square((Y - F32(ident.face_cy + ident.face_hh - 0.07)) / F32(0.05)))
    return h


def _project(pts_local: np.ndarray, R: np.ndarray, nz: Nuisance, size: int) -> np.ndarray:
    """Local 3D points -> (x, y) pixel positions."""
    cam = (pts_local - PIVOT) @ R.T + PIVOT
    x = (cam[:, 0] * nz.scale + CX + nz.shift_x) * size
    y = (cam[:, 1] * nz.scale + CY + nz.shift_y) * size
    return np.stack([x, y], axis=1).astype(np.float32)


def _ellipsoid_z(x: float, y: float) -> float:
    return HEAD_C * math.sqrt(max(0.0, 1.0 - (x / HEAD_A) ** 2 - (y / HEAD_B) ** 2))


# --------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------
def _union(acc: np.ndarray, cov: np.ndarray) -> None:
    """In place: coverage of the union (acc + cov - acc * cov)."""
    acc += cov * (F32(1.0) - acc)


def _box(S: int, nz: Nuisance, centre, cr: float, sr: float, corners):
    """Pixel window of a shape given by ``corners`` in a roll-rotated 2D frame at ``centre``
    (camera coordinates before framing); None when off the image."""
    c = np.array(corners, dtype=np.float64)
    x = centre[0] + cr * c[:, 0] - sr * c[:, 1]
    y = centre[1] + sr * c[:, 0] + cr * c[:, 1]
    x = (x * nz.scale + CX + nz.shift_x) * S
    y = (y * nz.scale + CY + nz.shift_y) * S
    return _pix_window(S, x, y)


def _pix_window(S: int, x, y, pad: int = 2):
    c0 = max(0, int(math.floor(np.min(x))) - pad)
    c1 = min(S, int(math.ceil(np.max(x))) + pad + 1)
    r0 = max(0, int(math.floor(np.min(y))) - pad)
    r1 = min(S, int(math.ceil(np.max(y))) + pad + 1)
    if c1 - c0 < 3 or r1 - r0 < 3:
        return None
    return slice(r0, r1), slice(c0, c1)


def _window(R: np.ndarray, nz: Nuisance, S: int, x0: float, x1: float, y0: float, y1: float, lift: float = 0.0):
    """Pixel window (row slice, col slice) holding the local rectangle [x0, x1] x [y0, y1] of the
    face surface, or None when it is off the image. Features are evaluated only there (speed)."""
    pts = [[x, y, _ellipsoid_z(x, y) + z] for x in np.linspace(x0, x1, 3) for y in np.linspace(y0, y1, 3)
           for z in (0.0, lift)]
    pix = _project(np.array(pts), R, nz, S)
    return _pix_window(S, pix[:, 0], pix[:, 1])


def render(identity=0, nuisance: Nuisance | None = None, size: int | None = None) -> Rendered:
    """Render ``identity`` (0/"A", 1/"B", an int >= 2 or an ``Identity``) with ``nuisance``
    (default: neutral) at ``size`` x ``size`` pixels (default 256). Deterministic: the same
    inputs give identical bytes."""
    ident = get_identity(identity)
    nz = Nuisance() if nuisance is None else nuisance
    if not isinstance(nz, Nuisance):
        raise TypeError(f"nuisance must be a Nuisance, got {type(nz).__name__}")
    size = 256 if size is None else int(size)
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    return _render(ident, nz, size)


def _render(ident: Identity, nz: Nuisance, S: int) -> Rendered:
    u, v = _grid(S)
    inv_scale = F32(1.0 / nz.scale)
    px = (u - F32(CX + nz.shift_x)) * inv_scale
    py = (v - F32(CY + nz.shift_y)) * inv_scale
    R = _rotation(nz.yaw, nz.pitch, nz.roll)
    t = PIVOT - R @ PIVOT                    # camera = R @ local + t
    tan_yaw = math.tan(math.radians(nz.yaw))
    tan_pitch = math.tan(math.radians(nz.pitch))
    one, zero = F32(1.0), F32(0.0)

    # ---- ray cast of the head ellipsoid (orthographic camera looking down -z) ------------------
    # Solve |D^(1/2) R^T (p - t)| = 1 for the depth of every pixel; keep the front hit, and the
    # continuation beyond the outline (disc clamped to 0) so that edge fields stay smooth.
    Q = R @ np.diag([HEAD_A ** -2, HEAD_B ** -2, HEAD_C ** -2]) @ R.T
    qx = px - F32(t[0])
    qy = py - F32(t[1])
    Bq = F32(Q[2, 0]) * qx + F32(Q[2, 1]) * qy
    Cq = F32(Q[0, 0]) * qx * qx + F32(2 * Q[0, 1]) * qx * qy + F32(Q[1, 1]) * qy * qy - one
    disc = Bq * Bq - F32(Q[2, 2]) * Cq
    head_cov = _cov(-disc)
    w = (np.sqrt(np.maximum(disc, zero)) - Bq) / F32(Q[2, 2])
    X = F32(R[0, 0]) * qx + F32(R[1, 0]) * qy + F32(R[2, 0]) * w
    Y = F32(R[0, 1]) * qx + F32(R[1, 1]) * qy + F32(R[2, 1]) * w
    Z = F32(R[0, 2]) * qx + F32(R[1, 2]) * qy + F32(R[2, 2]) * w

    # 2D head frame for volumes that are not painted on the surface (back hair, neck, ears): image
    # offsets from the projected head centre, rotated back by the roll.
    cr, sr = math.cos(math.radians(nz.roll)), math.sin(math.radians(nz.roll))
    hx = F32(cr) * qx + F32(sr) * qy
    hy = F32(-sr) * qx + F32(cr) * qy

    # ---- light, expressed in local coordinates so normals never need rotating -------------------
    az, el = math.radians(nz.light_azimuth), math.radians(nz.light_elevation)
    l_cam = np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)])
    l_loc = R.T @ l_cam
    v_loc = R.T @ np.array([0.0, 0.0, 1.0])
    h_loc = (l_loc + v_loc) / np.linalg.norm(l_loc + v_loc)
    inten = F32(nz.light_intensity)

    # ---- background: linear gradient -----------------------------------------------------------
    ba = math.radians(nz.bg_angle)
    g = np.clip((u - F32(0.5)) * F32(math.cos(ba)) + (v - F32(0.5)) * F32(math.sin(ba)) + F32(0.5), zero, one)
    c1 = np.array([nz.bg_r1, nz.bg_g1, nz.bg_b1], dtype=F32)[:, None, None]
    c2 = np.array([nz.bg_r2, nz.bg_g2, nz.bg_b2], dtype=F32)[:, None, None]
    img = c1 + g[None] * (c2 - c1)
    person = np.zeros((S, S), dtype=F32)

    skin = np.array(ident.skin, dtype=F32)
    hair = np.array(ident.hair, dtype=F32)

    # ---- neck (behind the head), darker under the jaw -------------------------------------------
    win = _box(S, nz, t, cr, sr, [(-ident.neck_hw, 0.2), (ident.neck_hw, 0.2), (-ident.neck_hw, 3.0), (ident.neck_hw, 3.0)])
    if win is not None:
        hxw, hyw = hx[win], hy[win]
        neck_cov = _cov(np.maximum(np.abs(hxw) - F32(ident.neck_hw), F32(0.2) - hyw))
        neck_shade = (F32(0.5) + F32(0.25) * np.clip((hyw - F32(0.35)) / F32(0.4), zero, one)) * inten
        _paint(img[(slice(None),) + win], neck_cov, skin[:, None, None] * neck_shade[None])
        _union(person[win], neck_cov)

    # ---- ears: drawn before the head, so the far one hides behind it as the head turns ------------
    for side in (-1.0, 1.0):
        ear = np.array([[side * (ident.face_hw + 0.012), EYE_Y + 0.13, 0.0]])
        ex, ey = ((ear - PIVOT) @ R.T[:, :2] + PIVOT[:2])[0]
        ea, eb = 0.04 * ident.ear_size, 0.095 * ident.ear_size
        win = _box(S, nz, (ex, ey), cr, sr, [(-ea, -eb), (ea, -eb), (-ea, eb), (ea, eb)])
        if win is None:
            continue
        dx = F32(cr) * (px[win] - F32(ex)) + F32(sr) * (py[win] - F32(ey))
        dy = F32(-sr) * (px[win] - F32(ex)) + F32(cr) * (py[win] - F32(ey))
        ear_cov = _cov(np.square(dx / F32(ea)) + np.square(dy / F32(eb)) - one)
        inner = _cov(np.square((dx + F32(side * 0.006)) / F32(ea * 0.55)) + np.square((dy - F32(0.01)) / F32(eb * 0.65)) - one)
        a = img[(slice(None),) + win]
        _paint(a, ear_cov, skin * F32(0.8) * inten)
        _paint(a, ear_cov * inner * F32(0.8), skin * F32(0.5) * inten)
        _union(person[win], ear_cov)

    # ---- back hair: a volume around the skull, in the 2D head frame ----------------------------------
    if ident.hair_style == "bob":
        win = _box(S, nz, t, cr, sr, [(-0.56, -0.52), (0.56, -0.52), (-0.56, 0.37), (0.56, 0.37)])
    else:
        win = _box(S, nz, t, cr, sr, [(-0.5, -0.65), (0.5, -0.65), (-0.5, -0.15), (0.5, -0.15)])
    if win is not None:
        hxw, hyw = hx[win], hy[win]
        if ident.hair_style == "bob":
            bx, by = np.square(hxw / F32(0.55)), np.square((hyw + F32(0.07)) / F32(0.44))
            back_f = np.maximum((np.sqrt(bx * bx + by * by) - one) * F32(0.45), hyw - F32(0.36))
        else:
            bx, by = hxw / F32(0.49), (hyw + F32(0.08)) / F32(0.56)
            back_f = np.maximum((bx * bx + by * by - one) * F32(0.3), hyw + F32(0.16))
        back_cov = _cov(back_f)
        rim = np.clip(one - (np.square(hxw / F32(0.56)) + np.square((hyw + F32(0.1)) / F32(0.6))), zero, one)
        strands = one + F32(0.07) * np.sin(F32(260.0) * (hxw + F32(0.15) * hyw))
        back_shade = (F32(0.4) + F32(0.4) * rim + F32(0.15 * l_cam[0] / 0.5) * hxw) * strands * inten
        _paint(img[(slice(None),) + win], back_cov, hair[:, None, None] * back_shade[None])
        _union(person[win], back_cov)

    # ---- face relief and shading normals -------------------------------------------------------------
    s = _shape(ident, X, Y)
    face_cov = _cov(s - one) * head_cov
    height = _relief(ident, X, Y, s)
    nose_win = _window(R, nz, S, -0.13, 0.13, EYE_Y - 0.02, NOSE_Y + 0.06, lift=ident.nose_h)
    if nose_win is not None:
        Xn, Yn = _nose_coords(ident, X[nose_win], Y[nose_win], tan_yaw, tan_pitch)
        height[nose_win] += _nose_height(ident, Xn, Yn)
    # Normals of the height field: image-space gradients mapped to local (X, Y) through the
    # Jacobian of the ray cast (cheaper than re-evaluating the relief at offset points).
    h_u, h_v = _grad(height)
    X_u, X_v = _grad(X)
    Y_u, Y_v = _grad(Y)
    det = X_u * Y_v - X_v * Y_u
    det = np.where(np.abs(det) < F32(1e-12), F32(1e-12), det)
    nx = -(h_u * Y_v - h_v * Y_u) / det
    ny = -(h_v * X_u - h_u * X_v) / det
    # Where the ray grazes the ellipsoid the Jacobian degenerates and slopes explode: cap the slope
    # (at ~76 degrees) so the outline darkens smoothly instead of sparkling.
    slope2 = nx * nx + ny * ny
    cap = np.minimum(one, F32(4.0) / np.sqrt(np.maximum(slope2, F32(1e-12))))
    nx *= cap
    ny *= cap
    inv_n = one / np.sqrt(nx * nx + ny * ny + one)
    ndl = (nx * F32(l_loc[0]) + ny * F32(l_loc[1]) + F32(l_loc[2])) * inv_n
    ndh = np.clip((nx * F32(h_loc[0]) + ny * F32(h_loc[1]) + F32(h_loc[2])) * inv_n, zero, one)
    shade = F32(0.36) + F32(0.72) * np.clip(ndl, zero, one) * inten
    spec = np.square(np.square(np.square(ndh))) * ndh * F32(0.07) * inten   # (n.h)^9

    # ---- face albedo -----------------------------------------------------------------------------
    alb = np.broadcast_to(skin[:, None, None], (3, S, S)).copy()
    for side in (-1.0, 1.0):
        win = _window(R, nz, S, side * 0.25 - 0.17, side * 0.25 + 0.17, 0.08 - 0.17, 0.08 + 0.17)
        if win is not None:
            blush = F32(0.35) * np.exp(-(np.square(X[win] - F32(side * 0.25)) + np.square(Y[win] - F32(0.08))) / F32(0.08 ** 2))
            _paint(alb[(slice(None),) + win], blush, ident.blush)
    eye_cov = np.zeros((S, S), dtype=F32)
    for side in (-1.0, 1.0):
        _draw_brow(ident, nz, R, S, X, Y, alb, side)
        _draw_eye(ident, nz, R, S, X, Y, alb, eye_cov, side)
    if nose_win is not None:
        _draw_nostrils(ident, X[nose_win], Y[nose_win], alb[(slice(None),) + nose_win], tan_yaw, tan_pitch)
    _draw_mouth(ident, nz, R, S, X, Y, alb)

    # Eyes take less of the relief shading (the eyeball is its own sphere) and no skin highlight.
    shade = shade + eye_cov * (F32(0.85) * inten - shade) * F32(0.7)
    face_px = alb * shade[None] + (spec * (one - eye_cov))[None]
    _paint(img, face_cov, face_px)
    _union(person, face_cov)

    # ---- front hair on the head surface -----------------------------------------------------------
    if ident.hair_style == "bob":
        # Side part at the image right; the sweep hangs lower on the other side of the forehead.
        part = F32(0.10)
        hl = F32(-0.405) + F32(0.075) * _smoothstep((part - X) / F32(0.5)) - F32(0.02) * _smoothstep((X - part) / F32(0.3))
        # Strands falling past the cheeks down to the jaw.
        side_f = np.maximum(F32(0.345) - np.abs(X) + F32(0.05) * np.clip(Y + F32(0.15), zero, one), Y - F32(0.30))
        sx = hx
    else:
        hl = F32(-0.37) + F32(0.010) * np.cos(X * F32(70.0)) - F32(0.4) * np.square(X) * (np.abs(X) > 0.3)
        side_f = np.maximum(F32(0.39) - np.abs(X), Y + F32(0.10))
        sx = X
    front_f = np.minimum(Y - hl, side_f)
    front_cov = _cov(front_f) * np.maximum(head_cov, face_cov)
    # Shade the hair cap with the ellipsoid normal, plus strands and a sheen.
    hnx, hny, hnz = X / F32(HEAD_A ** 2), Y / F32(HEAD_B ** 2), Z / F32(HEAD_C ** 2)
    hinv = one / np.sqrt(hnx * hnx + hny * hny + hnz * hnz + F32(1e-6))
    hdl = np.clip((hnx * F32(l_loc[0]) + hny * F32(l_loc[1]) + hnz * F32(l_loc[2])) * hinv, zero, one)
    hdh = np.clip((hnx * F32(h_loc[0]) + hny * F32(h_loc[1]) + hnz * F32(h_loc[2])) * hinv, zero, one)
    strands = one + F32(0.08) * np.sin(F32(240.0) * (sx + F32(0.25) * Y)) + F32(0.04) * np.sin(F32(530.0) * sx)
    hshade = (F32(0.35) + F32(0.75) * hdl * inten) * strands
    sheen = np.square(np.square(np.square(hdh))) * F32(0.15) * inten
    _paint(img, front_cov, hair[:, None, None] * hshade[None] + sheen[None])
    _union(person, front_cov)

    image = np.ascontiguousarray((np.clip(img, zero, one) * F32(255.0) + F32(0.5)).astype(np.uint8).transpose(1, 2, 0))
    # Eye mask: exactly the visible eye (lens coverage >= 1/2 and not under hair).
    eye_mask = np.where((eye_cov * face_cov * (one - front_cov)) >= 0.5, 255, 0).astype(np.uint8)
    face_mask = np.where(person >= 0.5, 255, 0).astype(np.uint8)
    return Rendered(image=image, eye_mask=eye_mask, face_mask=face_mask, landmarks=_landmarks(ident, nz, R, S))


def _draw_brow(ident, nz, R, S, X, Y, alb, side):
    cx = side * (EYE_X + 0.01)
    win = _window(R, nz, S, cx - 0.12, cx + 0.12, EYE_Y - ident.brow_gap - 0.06, EYE_Y - ident.brow_gap + 0.04)
    if win is None:
        return
    Xw, Yw = X[win], Y[win]
    bxn = (Xw - F32(cx)) / F32(0.105)                     # -1..1 along the brow
    outer = bxn * F32(side)                               # +1 at the outer end
    yc = F32(EYE_Y - ident.brow_gap) - F32(ident.brow_arch) * (F32(1.0) - np.square(bxn)) + F32(0.012) * outer
    half = F32(ident.brow_thick * 0.5) * (F32(1.0) - F32(0.45) * np.clip(outer, 0.0, 1.0))
    brow_f = np.maximum(np.abs(Yw - yc) - half, (np.abs(bxn) - F32(1.0)) * F32(0.105))
    _paint(alb[(slice(None),) + win], _cov(brow_f) * F32(0.95), ident.brow_color)


def _draw_eye(ident, nz, R, S, X, Y, alb, eye_cov, side):
    """Almond opening between two lid curves with white, iris, pupil, catch light, lashes, crease."""
    ew = ident.eye_w
    cx = side * EYE_X
    win = _window(R, nz, S, cx - 1.3 * ew, cx + 1.3 * ew, EYE_Y - 1.6 * ew, EYE_Y + 0.9 * ew)
    if win is None:
        return
    a = alb[(slice(None),) + win]
    one = F32(1.0)
    skin = np.array(ident.skin, dtype=F32)
    ewf = F32(ew)
    ex = (X[win] - F32(cx)) / ewf
    ey = (Y[win] - F32(EYE_Y)) / ewf - F32(ident.eye_tilt * side) * ex
    env = np.clip(one - ex * ex, 0.0, 1.0) ** F32(0.8)
    lo = F32(0.32)
    y_lo = lo * env
    y_up = y_lo - (F32(ident.eye_open) + lo) * F32(max(0.0, 1.0 - nz.blink)) * env
    lens = _cov(np.maximum(y_up - ey, ey - y_lo) * ewf)
    # Socket shadow and the crease of the upper lid.
    sock = np.exp(-(np.square(ex * F32(0.75)) + np.square((ey + F32(0.35)) * F32(0.9))))
    _paint(a, sock * F32(0.35), skin * F32(0.55))
    crease_y = y_up - F32(0.5) - F32(0.1) * env
    crease = _cov((np.abs(ey - crease_y) - F32(0.05)) * ewf) * (np.abs(ex) < 1.0)
    _paint(a, crease * F32(0.35), skin * F32(0.45))
    # White of the eye, shaded towards the corners.
    white = np.array([0.96, 0.94, 0.91], dtype=F32)[:, None, None] * (one - F32(0.2) * np.square(ex))[None]
    _paint(a, lens, white)
    gx, gy = F32(0.38 * nz.gaze_x), F32(0.22 * nz.gaze_y)
    r = np.sqrt(np.square(ex - gx) + np.square(ey - gy))
    ir = F32(ident.iris_r)
    iris = _cov((r - ir) * ewf) * lens
    ring = np.clip((r / ir - F32(0.65)) / F32(0.35), 0.0, 1.0)
    _paint(a, iris, np.array(ident.iris, dtype=F32)[:, None, None] * (one - F32(0.5) * ring)[None])
    _paint(a, _cov((r - ir * F32(0.45)) * ewf) * lens, (0.03, 0.03, 0.04))
    # Shadow of the upper lid on the eyeball, then the catch light.
    _paint(a, np.exp(-np.square((ey - y_up) / F32(0.25))) * lens * F32(0.35), (0.2, 0.15, 0.15))
    glint = _cov((np.sqrt(np.square(ex - gx + F32(0.17)) + np.square(ey - gy + F32(0.17))) - F32(0.1)) * ewf)
    _paint(a, glint * lens * F32(0.9), (1.0, 1.0, 1.0))
    # Lash line: a band just above the upper lid, thicker at the outer corner; faint lower lid line.
    lash_t = F32(0.26) + F32(0.16) * np.clip(ex * F32(side), 0.0, 1.0)
    lash_f = np.maximum(np.maximum(ey - y_up, (y_up - lash_t) - ey), np.abs(ex) - F32(1.08)) * ewf
    _paint(a, _cov(lash_f), (0.06, 0.04, 0.04))
    low_f = np.maximum(np.abs(ey - y_lo - F32(0.04)) - F32(0.04), np.abs(ex) - F32(0.95)) * ewf
    _paint(a, _cov(low_f) * F32(0.4), skin * F32(0.45))
    np.maximum(eye_cov[win], lens, out=eye_cov[win])


def _draw_nostrils(ident, X, Y, a, tan_yaw, tan_pitch):
    Xn, Yn = _nose_coords(ident, X, Y, tan_yaw, tan_pitch)
    skin = np.array(ident.skin, dtype=F32)
    rx = F32(0.016 + 0.1 * ident.nose_w)
    for side in (-1.0, 1.0):
        nf = np.sqrt(np.square((Xn - F32(side * ident.nose_w * 0.45)) / rx)
                     + np.square((Yn - F32(NOSE_Y + 0.028)) / F32(0.011))) - F32(1.0)
        _paint(a, _cov(nf * F32(0.012)) * F32(0.85), skin * F32(0.2))


def _draw_mouth(ident, nz, R, S, X, Y, alb):
    """Lips around an opening with teeth; the smile lifts and widens the corners."""
    mwf = ident.mouth_w * (1.0 + 0.08 * nz.smile)
    win = _window(R, nz, S, -mwf - 0.03, mwf + 0.03, MOUTH_Y - 0.08, MOUTH_Y + 0.14)
    if win is None:
        return
    a = alb[(slice(None),) + win]
    Xw, Yw = X[win], Y[win]
    one = F32(1.0)
    skin = np.array(ident.skin, dtype=F32)
    mw = F32(mwf)
    mx = Xw / mw
    env = np.sqrt(np.clip(one - mx * mx, 0.0, 1.0))
    yl = F32(MOUTH_Y + 0.004 * nz.smile) - F32(0.035 * nz.smile) * mx * mx
    op = F32(0.09 * nz.mouth_open) * env
    in_top = yl - op * F32(0.35)
    in_bot = yl + op * F32(0.65)
    bow = one - F32(0.3) * np.exp(-np.square(mx / F32(0.12))) + F32(0.12) * np.exp(-np.square((np.abs(mx) - F32(0.3)) / F32(0.15)))
    up_top = in_top - F32(ident.lip_up) * (F32(0.3) + F32(0.7) * env) * bow
    lo_bot = in_bot + F32(ident.lip_lo) * (F32(0.25) + F32(0.75) * env)
    edge_x = (np.abs(mx) - one) * mw
    lips = _cov(np.maximum(np.maximum(up_top - Yw, Yw - lo_bot), edge_x))
    lip_col = np.array(ident.lips, dtype=F32)
    lower = np.clip((Yw - yl) / F32(ident.lip_lo + 1e-3), 0.0, 1.0)
    _paint(a, lips, lip_col[:, None, None] * (F32(0.88) + F32(0.22) * lower)[None])
    inner = _cov(np.maximum(np.maximum(in_top - Yw, Yw - in_bot), edge_x + F32(0.004))) * F32(min(1.0, nz.mouth_open * 8.0))
    _paint(a, inner, (0.22, 0.06, 0.07))
    teeth = _cov(np.maximum(np.maximum(in_top - Yw, Yw - (in_top + op * F32(0.4))), (np.abs(mx) - F32(0.7)) * mw))
    _paint(a, teeth * inner, (0.92, 0.9, 0.84))
    line = _cov(np.maximum(np.abs(Yw - yl) - F32(0.004) - op * F32(0.5), edge_x))
    _paint(a, line * F32(0.8), lip_col * F32(0.3))
    for side in (-1.0, 1.0):
        corner = np.sqrt(np.square(Xw - F32(side) * mw) + np.square(Yw - yl + F32(0.002))) - F32(0.009)
        _paint(a, _cov(corner) * F32(0.45), skin * F32(0.4))


def _landmarks(ident, nz, R, S):
    """Pixel (x, y) of the pupils, nose tip and mouth corners, in the order of ``TEMPLATE``."""
    pts = []
    for side in (-1.0, 1.0):
        lx = side * EYE_X + 0.38 * nz.gaze_x * ident.eye_w
        ly = EYE_Y + 0.22 * nz.gaze_y * ident.eye_w
        pts.append([lx, ly, _ellipsoid_z(lx, ly)])
    pts.append([0.0, NOSE_Y, _ellipsoid_z(0.0, NOSE_Y) + ident.nose_h])
    mw = ident.mouth_w * (1.0 + 0.08 * nz.smile)
    for side in (-1.0, 1.0):
        my = MOUTH_Y + 0.004 * nz.smile - 0.035 * nz.smile
        pts.append([side * mw, my, _ellipsoid_z(side * mw, my)])
    return _project(np.array(pts), R, nz, S)


# --------------------------------------------------------------------------------------------
# Dataset front end
# --------------------------------------------------------------------------------------------
class SyntheticFaces:
    """Synthetic demo faces with exact ground truth.

    ``SyntheticFaces(size=256, seed=0)``: ``size`` is the default render size, ``seed`` the default
    nuisance seed. Identities 0/"A" and 1/"B" are fixed; ints >= 2 give further made-up people.
    The true A->B swap of ``render("A", nz)`` is ``render("B", nz)``.
    """

    def __init__(self, size: int = 256, seed: int = 0):
        if int(size) < 16:
            raise ValueError(f"size must be >= 16 pixels, got {size}")
        self.size = int(size)
        self.seed = int(seed)

    def render(self, identity=0, nuisance: Nuisance | None = None, size: int | None = None) -> Rendered:
        """Render one face; see module-level ``render``. ``size`` defaults to ``self.size``."""
        return render(identity, nuisance, self.size if size is None else size)

    def sample_nuisance(self, n: int, seed: int | None = None) -> list[Nuisance]:
        """``n`` nuisances, deterministic by ``seed`` (default: the instance seed)."""
        return sample_nuisance(n, self.seed if seed is None else seed)

    def dataset(self, identity, n: int, seed: int | None = None, size: int | None = None) -> dict:
        """Render ``n`` faces of ``identity`` with ``sample_nuisance(n, seed)``.

        Returns ``dict(images=uint8 [N,3,S,S], eye_masks=uint8 [N,1,S,S], face_masks=uint8
        [N,1,S,S], nuisance=list[Nuisance])`` (torch tensors, RGB, masks 0/255). Rendering the other
        identity with the same ``seed`` gives the ground-truth swaps.
        """
        import torch

        S = self.size if size is None else int(size)
        nzs = self.sample_nuisance(n, seed)
        images = np.empty((n, S, S, 3), dtype=np.uint8)
        eyes = np.empty((n, 1, S, S), dtype=np.uint8)
        faces = np.empty((n, 1, S, S), dtype=np.uint8)
        for i, nz in enumerate(nzs):
            r = render(identity, nz, S)
            images[i], eyes[i, 0], faces[i, 0] = r.image, r.eye_mask, r.face_mask
        return dict(
            images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
            eye_masks=torch.from_numpy(eyes),
            face_masks=torch.from_numpy(faces),
            nuisance=nzs,
        )

    def write_folder(self, out_dir, identity, n: int, seed: int | None = None, with_masks: bool = True,
                     size: int | None = None) -> dict:
        """Write ``n`` PNG faces to ``out_dir/rgb`` and, with masks, the eye masks to
        ``out_dir/binary_mask`` and the person masks to ``out_dir/face_mask`` under the same file
        names (the Colab layout of the original: ``faceX/rgb`` + ``faceX/binary_mask``).

        Existing identical files are left alone; an existing file with different content is never
        replaced (``FileExistsError`` naming it). Returns ``dict(rgb=[paths], binary_mask=[...],
        face_mask=[...])``.
        """
        import io

        from PIL import Image

        ident = get_identity(identity)
        seed = self.seed if seed is None else int(seed)
        S = self.size if size is None else int(size)
        root = Path(out_dir)
        dirs = {"rgb": root / "rgb"}
        if with_masks:
            dirs.update(binary_mask=root / "binary_mask", face_mask=root / "face_mask")
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        written = {k: [] for k in dirs}
        for i, nz in enumerate(sample_nuisance(n, seed)):
            r = render(ident, nz, S)
            name = f"synth_{ident.name}_s{seed}_{i:05d}.png"
            arrays = {"rgb": r.image, "binary_mask": r.eye_mask, "face_mask": r.face_mask}
            for key, d in dirs.items():
                buf = io.BytesIO()
                Image.fromarray(arrays[key]).save(buf, format="PNG")
                data = buf.getvalue()
                path = d / name
                if path.exists():
                    if path.read_bytes() != data:
                        raise FileExistsError(
                            f"{path} already exists with different content; write to an empty folder "
                            "or move the old file away (ganlib never replaces saved files)")
                else:
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_bytes(data)
                    tmp.replace(path)
                written[key].append(path)
        return written
