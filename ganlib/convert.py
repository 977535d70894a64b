"""Faces out: swap faces in photos, folders and videos with a trained ganlib generator.

Per face (reference §6.1): align the face to the template, take the central ROI (``roi_coverage``),
run the chosen decoder, composite its RGB with its alpha over the ROI, colour-correct against the
ROI, feather the edge, paste back with the inverse alignment. Every face of every frame is swapped.

Per video (§6.2): boxes and landmarks are smoothed over time (constant-velocity Kalman filter, in
numpy, or the 0.65 moving average), frames without a face are written unchanged, the audio track is
kept, and ``output_type`` 1/2/3 gives result / [source | result] / [source | result | mask].

The direction is spelled out in every message ("converting A -> B: faces of A are rendered as B using
decoder B") and every run ends with the number of faces swapped, with a loud warning when it is 0:
faceswap-GAN users often got a video "with no swap" and no hint why (issues #122, #143, #162, #34).

Every output is labelled "synthetic, made with ganlib": PNG text chunks, JPEG comment and EXIF
ImageDescription, video container metadata. :func:`read_label` reads it back.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from .faces import (IMAGE_EXTENSIONS, Face, alignment_matrix, detect_faces, invert_affine, to_rgb_uint8,
                    warp_affine)
from .video import SYNTHETIC_LABEL, VIDEO_EXTENSIONS, VideoError, VideoWriter, iter_frames, probe

COLOR_CORRECTIONS = ("hist_match", "adain", "adain_xyz", "none")
SMOOTHING = ("kalman", "moving_average", "none")
EXIF_IMAGE_DESCRIPTION = 0x010E
MOVING_AVERAGE_COEF = 0.65  # v2.2's bbox_moving_avg_coef: smoothed = 0.65 * previous + 0.35 * current
MIN_CROP = 128  # small faces are aligned at >= 128 px so the fixed 15x15 feather keeps its proportions


# ---------------------------------------------------------------------------------------------------
# Direction
# ---------------------------------------------------------------------------------------------------

def parse_direction(direction: str) -> tuple[str, str, str]:
    """``"AtoB"`` -> ("A", "B", "b"): source identity, rendered identity, decoder to use."""
    key = str(direction).replace("-", "").replace("_", "").replace(">", "to").lower()
    if key in ("atob", "a2b", "ab"):
        return "A", "B", "b"
    if key in ("btoa", "b2a", "ba"):
        return "B", "A", "a"
    raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")


def direction_message(direction: str) -> str:
    """The plain-words direction, e.g. ``converting A -> B: faces of A are rendered as B using decoder B``."""
    src, dst, _ = parse_direction(direction)
    return f"converting {src} -> {dst}: faces of {src} are rendered as {dst} using decoder {dst}"


# ---------------------------------------------------------------------------------------------------
# The model wrapper
# ---------------------------------------------------------------------------------------------------

class Swapper:
    """Runs a ganlib generator on uint8 RGB faces.

    ``Swapper(generator, resolution, device)`` wraps a module with ``swap(x, to="a"|"b") -> (rgb,
    alpha)`` (x: RGB NCHW in [-1, 1] at ``resolution``). Calling ``swapper(faces, "AtoB")`` on a list
    of uint8 HxWx3 faces (any size; resized to R) returns ``[(rgb uint8 RxRx3, alpha float32 RxR), ...]``.
    """

    def __init__(self, generator, resolution: int, device=None, batch_size: int = 16):
        import torch  # noqa: PLC0415 - keep "import ganlib.convert" light for the CLI help

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.source = ""  # checkpoint path, when loaded from one

    @classmethod
    def from_state(cls, state: dict, device=None) -> "Swapper":
        """Build from a checkpoint state: ``state["config"]`` (Config.to_dict()) and ``state["models"]``."""
        from .config import Config  # noqa: PLC0415
        from .models import Generator  # noqa: PLC0415

        try:
            cfg = Config.from_dict(state["config"])
            models = state["models"]
            generator = Generator(cfg.model)
            for part in ("encoder", "decoder_a", "decoder_b"):
                getattr(generator, part).load_state_dict(models[part], strict=True)
        except KeyError as exc:
            raise ValueError(f"checkpoint state lacks {exc}: expected 'config' and models encoder/decoder_a/"
                             "decoder_b; is this a ganlib training checkpoint?") from exc
        return cls(generator, cfg.model.resolution, device)

    @classmethod
    def from_run_dir(cls, run_dir, device=None) -> "Swapper":
        """Load the newest checkpoint of a training run folder (via ``ganlib.checkpoint.load_latest``)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder. Give the folder you trained into (--run-dir).")
        from .checkpoint import load_latest  # noqa: PLC0415

        no_ckpt = (f"{run_dir}: this run folder has no checkpoint yet. Train first (python -m ganlib train "
                   f"--a FACES_A --b FACES_B --run-dir {run_dir} --until N) or point --run-dir at the folder "
                   "that holds the checkpoints/ folder.")
        try:
            loaded = load_latest(run_dir)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{no_ckpt} ({exc})") from exc
        if loaded is None:
            raise FileNotFoundError(no_ckpt)
        swapper = cls.from_state(loaded.state, device)
        swapper.source = str(getattr(loaded, "path", ""))
        return swapper

    def __call__(self, faces: list[np.ndarray], direction: str) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch  # noqa: PLC0415

        _, _, decoder = parse_direction(direction)
        r = self.resolution
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(faces), self.batch_size):
            chunk = [_resize(np.asarray(f), r, r) for f in faces[start:start + self.batch_size]]
            x = torch.from_numpy(np.stack(chunk)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            with torch.inference_mode():
                rgb, alpha = self.generator.swap(x, to=decoder)
            rgb = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            alpha = alpha.float().clamp(0, 1)[:, 0].cpu().numpy()
            results.extend(zip(rgb, alpha))
        return results


# ---------------------------------------------------------------------------------------------------
# Image helpers: resize, blur, colour correction
# ---------------------------------------------------------------------------------------------------

def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize uint8 HxWx3 (bicubic, antialiased) or float HxW (bilinear)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def gaussian_blur(image: np.ndarray, ksize: int = 15, sigma: float = 10.0) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array with reflect-101 borders (OpenCV's default)."""
    half = ksize // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(x ** 2) / (2 * sigma ** 2))
    k /= k.sum()
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (half, half)
        padded = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * (padded[i:i + n] if axis == 0 else padded[:, i:i + n])
        out = acc
    return out.astype(np.float32)


def feather_mask(height: int, width: int, pad: int) -> np.ndarray:
    """§6.1 feather: 1 inside the ROI shrunk by ``pad`` px on each side, blurred 15x15 with sigma 10."""
    mask = np.zeros((height, width), dtype=np.float32)
    if height > 2 * pad and width > 2 * pad:
        mask[pad:height - pad, pad:width - pad] = 1.0
    return gaussian_blur(mask, 15, 10.0)


# sRGB (D65) -> CIE XYZ on the gamma-encoded values, the matrix OpenCV's COLOR_RGB2XYZ uses.
_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)


def _adain(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    axes = (0, 1)
    mx, sx = x.mean(axes), x.std(axes)
    mr, sr = ref.mean(axes), ref.std(axes)
    return (x - mx) / np.maximum(sx, 1e-6) * sr + mr


def _hist_match_channel(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Map uint8 values of ``src`` so their histogram matches ``ref`` (CDF to CDF, interpolated)."""
    s_cdf = np.cumsum(np.bincount(src.ravel(), minlength=256)) / src.size
    r_counts = np.bincount(ref.ravel(), minlength=256)
    r_vals = np.nonzero(r_counts)[0]
    r_cdf = np.cumsum(r_counts[r_vals]) / ref.size
    lut = np.interp(s_cdf, r_cdf, r_vals)
    return lut[src]


def color_correct(image: np.ndarray, reference: np.ndarray, mode: str = "hist_match") -> np.ndarray:
    """Match the colours of uint8 ``image`` to ``reference`` (same size): hist_match|adain|adain_xyz|none."""
    if mode in (None, "none"):
        return image
    if mode == "hist_match":
        out = np.stack([_hist_match_channel(image[..., c], reference[..., c]) for c in range(3)], axis=-1)
    elif mode == "adain":
        out = _adain(image.astype(np.float64), reference.astype(np.float64))
    elif mode == "adain_xyz":
        xyz = image.astype(np.float64) / 255.0 @ _RGB2XYZ.T
        ref = reference.astype(np.float64) / 255.0 @ _RGB2XYZ.T
        out = (_adain(xyz, ref) @ _XYZ2RGB.T) * 255.0
    else:
        raise ValueError(f"color correction must be one of {COLOR_CORRECTIONS}, got {mode!r}")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Per face and per frame
# ---------------------------------------------------------------------------------------------------

@dataclass
class FaceResult:
    """One transformed aligned crop: blended ``result``, ``raw`` model output pasted, ``alpha`` in [0, 1]."""

    result: np.ndarray
    raw: np.ndarray
    alpha: np.ndarray


def transform_faces(
    swapper,
    crops: list[np.ndarray],
    direction: str,
    *,
    roi_coverage: float = 0.9,
    color_correction: str = "hist_match",
) -> list[FaceResult]:
    """§6.1 on aligned crops (square uint8 RGB), all faces in one model batch."""
    if not 0.0 < roi_coverage < 1.0:
        raise ValueError(f"roi_coverage must be in (0, 1), got {roi_coverage}")
    if color_correction not in COLOR_CORRECTIONS:
        raise ValueError(f"color correction must be one of {COLOR_CORRECTIONS}, got {color_correction!r}")
    rois, pads = [], []
    for crop in crops:
        size = crop.shape[0]
        pad = int(size * (1 - roi_coverage))  # c = 0.9 -> central 80 % of the crop
        pads.append(pad)
        rois.append(crop[pad:size - pad, pad:size - pad])
    outputs = swapper(rois, direction) if rois else []
    results = []
    for crop, roi, pad, (rgb, alpha) in zip(crops, rois, pads, outputs):
        h, w = roi.shape[:2]
        rgb = _resize(rgb, w, h)
        alpha = np.clip(_resize(alpha.astype(np.float32), w, h), 0.0, 1.0)[..., None]
        masked = np.clip(np.rint(alpha * rgb + (1 - alpha) * roi), 0, 255).astype(np.uint8)
        masked = color_correct(masked, roi, color_correction)
        raw_cc = color_correct(rgb, roi, color_correction)
        feather = feather_mask(h, w, pad)[..., None]
        blended = np.clip(np.rint(feather * masked + (1 - feather) * roi), 0, 255).astype(np.uint8)
        result, raw = crop.copy(), crop.copy()
        result[pad:pad + h, pad:pad + w] = blended
        raw[pad:pad + h, pad:pad + w] = raw_cc
        full_alpha = np.zeros(crop.shape[:2], dtype=np.float32)
        full_alpha[pad:pad + h, pad:pad + w] = (feather * alpha)[..., 0]
        results.append(FaceResult(result=result, raw=raw, alpha=full_alpha))
    return results


@dataclass
class FaceGeometry:
    """Where a face is: its 5 landmarks (x, y) and square-box side, possibly smoothed over time."""

    landmarks: np.ndarray
    side: float


def swap_frame(
    swapper,
    frame: np.ndarray,
    faces: list[FaceGeometry],
    direction: str,
    *,
    roi_coverage: float = 0.9,
    color_correction: str = "hist_match",
    enhance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Swap every face of a frame. Returns (new frame uint8, alpha map float32 HxW in [0, 1])."""
    h, w = frame.shape[:2]
    out = frame.astype(np.float32)
    alpha_map = np.zeros((h, w), dtype=np.float32)
    if not faces:
        return frame.copy(), alpha_map
    crops, matrices = [], []
    for face in faces:
        size = max(int(round(face.side)), MIN_CROP)
        matrix = alignment_matrix(face.landmarks, size)
        crops.append(warp_affine(frame, matrix, (size, size), border="replicate"))
        matrices.append(matrix)
    results = transform_faces(swapper, crops, direction, roi_coverage=roi_coverage,
                              color_correction=color_correction)
    for res, matrix in zip(results, matrices):
        size = res.result.shape[0]
        back = invert_affine(matrix)  # crop -> frame
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        pts = corners @ back[:, :2].T + back[:, 2]
        x0, y0 = (int(max(0, np.floor(v))) for v in pts.min(0))
        x1, y1 = int(min(w, np.ceil(pts[:, 0].max()) + 1)), int(min(h, np.ceil(pts[:, 1].max()) + 1))
        if x1 <= x0 or y1 <= y0:
            continue  # the face lies outside the frame
        # crop -> frame-region matrix: the inverse alignment, shifted to the region's origin.
        region = back.copy()
        region[:, 2] -= (x0, y0)
        shape = (y1 - y0, x1 - x0)
        rgb = warp_affine(res.result, region, shape, border="replicate").astype(np.float32)
        a = warp_affine(res.alpha, region, shape, border="constant", fill=0.0)[..., None]
        out[y0:y1, x0:x1] = a * rgb + (1 - a) * out[y0:y1, x0:x1]
        alpha_map[y0:y1, x0:x1] = np.maximum(alpha_map[y0:y1, x0:x1], a[..., 0])
    if enhance:
        # v2.2's "enhance": push the result away from the original, i.e. more contrast where swapped.
        out = (1 + enhance) * out - enhance * frame.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha_map


def compose_output(source: np.ndarray, result: np.ndarray, alpha_map: np.ndarray, output_type: int) -> np.ndarray:
    """1: result; 2: [source | result]; 3: [source | result | mask], mask = alpha + 0.15 * source (§6.2)."""
    if output_type == 1:
        return result
    if output_type == 2:
        return np.concatenate([source, result], axis=1)
    if output_type == 3:
        panel = np.clip(alpha_map[..., None] * 255.0 + 0.15 * source.astype(np.float32), 0, 255).astype(np.uint8)
        return np.concatenate([source, result, panel], axis=1)
    raise ValueError(f"output_type must be 1, 2 or 3, got {output_type!r}")


# ---------------------------------------------------------------------------------------------------
# Temporal smoothing
# ---------------------------------------------------------------------------------------------------

class KalmanPoints:
    """Constant-velocity Kalman filter for K 2-D points, with OpenCV ``KalmanFilter(4, 2)`` semantics.

    State per point (x, y, vx, vy); transition [[1,0,1,0],[0,1,0,1],[0,0,1,0],[0,0,0,1]]; measurement
    (x, y); process noise ``noise_coef * I``; measurement noise I; initial state and covariance 0, as
    OpenCV's defaults. Like v2.2, the filter is ``predict()``-ed 200 times before the first measurement
    (inflating the covariance so the first measurement is trusted), and each frame runs
    ``correct(measurement)`` then returns ``predict()`` as the smoothed position. The covariance does
    not depend on the data, so one 4x4 covariance serves all points.
    """

    F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    H = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float64)

    def __init__(self, n_points: int, noise_coef: float = 1e-3, warmup: int = 200):
        self.Q = np.eye(4) * float(noise_coef)
        self.R = np.eye(2)
        self.x = np.zeros((n_points, 4))
        self.P = np.zeros((4, 4))
        for _ in range(warmup):
            self._predict()

    def _predict(self) -> np.ndarray:
        self.x = self.x @ self.F.T
        self.P = self.F @ self.P @ self.F.T + self.Q
        return self.x[:, :2]

    def update(self, points: np.ndarray) -> np.ndarray:
        """Feed measured points (K, 2); returns the smoothed points (K, 2)."""
        z = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        s = self.H @ self.P @ self.H.T + self.R
        k = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + (z - self.x @ self.H.T) @ k.T
        self.P = (np.eye(4) - k @ self.H) @ self.P
        return self._predict().copy()


class MovingAveragePoints:
    """v2.2's non-Kalman smoothing: ``0.65 * previous + 0.35 * current``."""

    def __init__(self, n_points: int, coef: float = MOVING_AVERAGE_COEF):
        self.coef = coef
        self.prev = None

    def update(self, points: np.ndarray) -> np.ndarray:
        z = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self.prev = z if self.prev is None else self.coef * self.prev + (1 - self.coef) * z
        return self.prev.copy()


class FaceTracker:
    """Smooths every face over time, each with its own filter (v2.2 smoothed only the first face).

    Faces are matched to last frame's tracks by nearest centre (within half a face side). The
    smoothed points are the square box corners and the 5 landmarks. v2.2 smoothed the box only,
    but the alignment is computed from the landmarks, so smoothing the box alone leaves the
    jitter of the swapped face in place; ganlib smooths both with the same filter.
    """

    def __init__(self, mode: str = "kalman", noise_coef: float = 1e-3):
        if mode not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {SMOOTHING}, got {mode!r}")
        self.mode = mode
        self.noise_coef = noise_coef
        self.tracks: list[dict] = []

    def _new_filter(self):
        if self.mode == "kalman":
            return KalmanPoints(7, self.noise_coef)
        return MovingAveragePoints(7)

    def update(self, faces: list[Face], frame_shape) -> list[FaceGeometry]:
        if self.mode == "none":
            return [FaceGeometry(f.landmarks, f.side) for f in faces]
        free = list(self.tracks)
        new_tracks, out = [], []
        for face in faces:  # most confident first
            box = face.square_box(frame_shape)
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            best, best_d = None, 0.5 * face.side
            for t in free:
                d = float(np.linalg.norm(t["centre"] - centre))
                if d < best_d:
                    best, best_d = t, d
            if best is None:
                best = {"filter": self._new_filter()}
            else:
                free.remove(best)
            points = np.concatenate([box.reshape(2, 2), face.landmarks], axis=0)
            smooth = best["filter"].update(points)
            best["centre"] = centre
            new_tracks.append(best)
            (bx0, by0), (bx1, by1) = smooth[0], smooth[1]
            side = max(((bx1 - bx0) + (by1 - by0)) / 2, 1.0)
            out.append(FaceGeometry(landmarks=smooth[2:], side=side))
        self.tracks = new_tracks  # a face lost for a frame starts a fresh filter when it returns
        return out


# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------

def save_image(image: np.ndarray, path, *, label: str = SYNTHETIC_LABEL, quality: int = 95) -> Path:
    """Save RGB uint8 as PNG (text chunks ``ganlib`` and ``Comment``) or JPEG (comment + EXIF description)."""
    path = Path(path)
    ext = path.suffix.lower()
    im = Image.fromarray(np.asarray(image))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    if ext == ".png":
        info = PngInfo()
        info.add_text("ganlib", label)
        info.add_text("Comment", label)
        im.save(tmp, pnginfo=info)
    elif ext in (".jpg", ".jpeg"):
        exif = Image.Exif()
        exif[EXIF_IMAGE_DESCRIPTION] = label
        im.save(tmp, quality=quality, exif=exif, comment=label)
    else:
        raise ValueError(f"{path}: output images must be .png or .jpg (they carry the synthetic label)")
    os.replace(tmp, path)
    return path


def read_label(path) -> str | None:
    """The ganlib label of an output file (PNG, JPEG or video), or None if it carries none."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        meta = {k.lower(): v for k, v in probe(path).metadata.items()}
        return meta.get("comment") or meta.get("description")
    with Image.open(path) as im:
        text = getattr(im, "text", None) or {}
        for key in ("ganlib", "Comment", "Description"):
            if text.get(key):
                return text[key]
        comment = im.info.get("comment")
        if comment:
            return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
        desc = im.getexif().get(EXIF_IMAGE_DESCRIPTION)
        if desc:
            return desc.decode("utf-8", "replace") if isinstance(desc, bytes) else str(desc)
    return None


# ---------------------------------------------------------------------------------------------------
# Photos, folders, videos
# ---------------------------------------------------------------------------------------------------

@dataclass
class ImageResult:
    """Result of :func:`convert_image`: the output ``image`` and what happened."""

    image: np.ndarray
    faces_found: int
    faces_swapped: int
    path: str | None = None


def _detect(frame, min_face, thresholds, device) -> list[Face]:
    faces = detect_faces(frame, min_size=max(12, min(20, int(min_face))), thresholds=thresholds, device=device)
    return [f for f in faces if f.side >= min_face]


def _load_image(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another output name or pass overwrite=True (--overwrite).")


def convert_image(
    swapper,
    path_or_array,
    direction: str,
    *,
    out=None,
    color_correction: str = "hist_match",
    roi_coverage: float = 0.9,
    output_type: int = 1,
    enhance: float = 0.0,
    min_face: int = 35,
    thresholds=(0.6, 0.7, 0.8),
    overwrite: bool = False,
    verbose: bool = True,
) -> ImageResult:
    """Swap every face of one photo (a path or an RGB uint8 array); save to ``out`` (.png/.jpg) if given.

    A photo without a face comes back unchanged, with a warning. Detection uses v2.2's conversion
    settings: faces >= 35 px, last MTCNN threshold 0.8 (Colab's ``detec_threshold``).
    """
    frame = _load_image(path_or_array) if isinstance(path_or_array, (str, Path)) else to_rgb_uint8(path_or_array)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _refuse_overwrite(out_path, overwrite)
        if out_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"{out_path}: output images must be .png or .jpg (they carry the synthetic label)")
    faces = _detect(frame, min_face, thresholds, str(swapper.device) if hasattr(swapper, "device") else "cpu")
    geoms = [FaceGeometry(f.landmarks, f.side) for f in faces]
    result, alpha = swap_frame(swapper, frame, geoms, direction, roi_coverage=roi_coverage,
                               color_correction=color_correction, enhance=enhance)
    image = compose_output(frame, result, alpha, output_type)
    name = path_or_array if isinstance(path_or_array, (str, Path)) else "image"
    if verbose:
        print(f"{direction_message(direction)} | {name}: {len(faces)} face(s) swapped")
    if not faces:
        warnings.warn(f"{name}: no face found, nothing was swapped (the output equals the input).", stacklevel=2)
    if out_path is not None:
        save_image(image, out_path)
    return ImageResult(image=image, faces_found=len(faces), faces_swapped=len(faces),
                       path=str(out_path) if out_path else None)


@dataclass
class FolderReport:
    """Result of :func:`convert_folder`."""

    direction: str
    images: int = 0
    faces_swapped: int = 0
    images_without_face: int = 0
    skipped_existing: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{direction_message(self.direction)}: {self.images} image(s), {self.faces_swapped} face(s) "
                 f"swapped, {self.images_without_face} image(s) without a face"]
        lines += [f"  SKIPPED {u['path']}: {u['reason']}" for u in self.unreadable]
        if self.skipped_existing:
            lines.append(f"  {len(self.skipped_existing)} output(s) already existed and were kept (use --overwrite)")
        if self.faces_swapped == 0 and self.images:
            lines.append("  WARNING: NO FACE WAS SWAPPED. Check that the photos show faces and the direction.")
        return "\n".join(lines)


def convert_folder(swapper, in_dir, out_dir, direction: str, *, overwrite: bool = False, verbose: bool = True,
                   **kwargs) -> FolderReport:
    """Convert every image of ``in_dir`` into ``out_dir`` (same names; non-PNG/JPEG inputs become .png).

    Unreadable images are named in the report and skipped; existing outputs are kept unless
    ``overwrite``. Other keyword arguments go to :func:`convert_image`.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    report = FolderReport(direction=direction)
    files = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for src in files:
        ext = src.suffix.lower() if src.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
        dst = out_dir / (src.stem + ext)
        if dst.exists() and not overwrite:
            report.skipped_existing.append(str(dst))
            continue
        try:
            image = _load_image(src)
        except Exception as exc:  # noqa: BLE001 - any decoder error: name the file and go on
            report.unreadable.append({"path": str(src), "reason": f"not a readable image ({exc})"})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted in the report instead of one warning per photo
            res = convert_image(swapper, image, direction, out=dst, overwrite=overwrite, verbose=False, **kwargs)
        report.images += 1
        report.faces_swapped += res.faces_swapped
        report.images_without_face += res.faces_found == 0
        report.outputs.append(str(dst))
    if verbose:
        print(report.summary())
    if report.faces_swapped == 0 and report.images:
        warnings.warn(f"{in_dir}: NO FACE WAS SWAPPED in {report.images} image(s).", stacklevel=2)
    return report


@dataclass
class ConvertReport:
    """Result of :func:`convert_video`."""

    input: str
    output: str
    direction: str
    frames: int = 0
    frames_swapped: int = 0
    faces_swapped: int = 0
    frames_without_face: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    audio: str = "none"
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        """Processing speed (frames converted per wall-clock second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frames_per_second"] = round(self.frames_per_second, 3)
        return d

    def summary(self) -> str:
        text = (f"{direction_message(self.direction)}\n  {self.input} -> {self.output}: {self.frames} frames "
                f"({self.width}x{self.height} @ {self.fps:.3g} fps, audio: {self.audio}); a face was swapped in "
                f"{self.frames_swapped} frame(s) ({self.faces_swapped} face(s)); {self.frames_without_face} "
                f"frame(s) had no face and were copied unchanged; {self.frames_per_second:.2f} frames/s")
        if self.faces_swapped == 0:
            text += ("\n  WARNING: NO FACE WAS SWAPPED - the output video looks like the input. Check that the "
                     "video shows a face of the source identity and the direction (AtoB/BtoA).")
        return text


def convert_video(
    swapper,
    in_path,
    out_path,
    direction: str,
    *,
    output_type: int = 1,
    smoothing: str = "kalman",
    kf_noise_coef: float = 1e-3,
    color_correction: str = "hist_match",
    roi_coverage: float = 0.9,
    enhance: float = 0.0,
    min_face: int = 35,
    thresholds=(0.6, 0.7, 0.8),
    overwrite: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Swap every face of every frame of a video; keep fps, size (x1/x2/x3 wide) and the audio track.

    ``smoothing``: "kalman" (v2.2 default; ``kf_noise_coef`` x10 if the face lags, /10 if it jitters),
    "moving_average" (0.65) or "none". Frames without a face are written unchanged. The output is
    written to a ``.partial`` file and renamed at the end, so a crash never leaves a half video under
    the final name; an existing output is kept unless ``overwrite``.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    _refuse_overwrite(out_path, overwrite)
    if output_type not in (1, 2, 3):
        raise ValueError(f"output_type must be 1, 2 or 3, got {output_type!r}")
    info = probe(in_path)  # VideoError naming the file if it is empty or corrupt
    tracker = FaceTracker(smoothing, kf_noise_coef)
    report = ConvertReport(input=str(in_path), output=str(out_path), direction=direction,
                           fps=float(info.fps), width=info.width * output_type, height=info.height)
    device = str(swapper.device) if hasattr(swapper, "device") else "cpu"
    print(f"{direction_message(direction)}\n  {in_path} -> {out_path}")
    partial = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    if partial.exists():
        partial.unlink()  # our own leftover from an interrupted run, never a finished output
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=info.frames or None, desc=f"{parse_direction(direction)[0]}->"
                   f"{parse_direction(direction)[1]} {in_path.name}", unit="frame")
    started = time.perf_counter()
    try:
        with VideoWriter(partial, info.fps, audio_from=in_path if info.has_audio else None,
                         overwrite=True) as writer:
            for _, frame in iter_frames(in_path):
                faces = _detect(frame, min_face, thresholds, device)
                geoms = tracker.update(faces, frame.shape)
                result, alpha = swap_frame(swapper, frame, geoms, direction, roi_coverage=roi_coverage,
                                           color_correction=color_correction, enhance=enhance)
                composed = compose_output(frame, result, alpha, output_type)
                writer.write(composed)
                report.height, report.width = composed.shape[:2]  # as written (after any display rotation)
                report.frames += 1
                if geoms:
                    report.frames_swapped += 1
                    report.faces_swapped += len(geoms)
                else:
                    report.frames_without_face += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(swapped=report.frames_swapped, refresh=False)
            report.audio = writer.audio_mode
        os.replace(partial, out_path)
    except BaseException:
        if partial.exists():
            partial.unlink()
        raise
    finally:
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - started
    print(report.summary())
    if report.faces_swapped == 0:
        warnings.warn(f"{in_path}: NO FACE WAS SWAPPED in {report.frames} frames; {out_path} looks like the input.",
                      stacklevel=2)
    return report


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def _run_convert(args: argparse.Namespace) -> int:
    try:
        return _convert_cli(args)
    except (FileNotFoundError, FileExistsError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _convert_cli(args: argparse.Namespace) -> int:
    swapper = Swapper.from_run_dir(args.run_dir, device=args.device)
    src = Path(args.input)
    common = dict(color_correction=args.color, roi_coverage=args.roi_coverage, output_type=args.output_type,
                  enhance=args.enhance, overwrite=args.overwrite)
    if src.is_dir():
        report = convert_folder(swapper, src, args.out, args.direction, **common)
        return 0 if report.faces_swapped else 1
    if not src.is_file():
        print(f"error: {src}: no such file or folder", file=sys.stderr)
        return 2
    if src.suffix.lower() in VIDEO_EXTENSIONS:
        report = convert_video(swapper, src, args.out, args.direction, smoothing=args.smoothing,
                               kf_noise_coef=args.kf_noise_coef, progress=not args.quiet, **common)
        return 0 if report.faces_swapped else 1
    result = convert_image(swapper, src, args.direction, out=args.out, **common)
    return 0 if result.faces_swapped else 1


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``convert`` on an argparse ``subparsers`` object; sets ``func`` to run it."""
    p = subparsers.add_parser(
        "convert",
        help="swap faces in a photo, a folder of photos or a video with a trained run",
        description="AtoB renders the faces of A (found in INPUT) as B using decoder B; BtoA the reverse. "
        "Every output is labelled 'synthetic, made with ganlib' in its metadata.",
    )
    p.add_argument("input", metavar="INPUT", help="photo, folder of photos, or video")
    p.add_argument("--run-dir", required=True, help="training run folder holding the checkpoints")
    p.add_argument("--out", required=True, help="output file (.png/.jpg/.mp4) or folder (for a folder input)")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"],
                   help="AtoB: faces of A become B (decoder B); BtoA: faces of B become A (default AtoB)")
    p.add_argument("--output-type", type=int, default=1, choices=[1, 2, 3],
                   help="1 result, 2 [source|result], 3 [source|result|mask] (default 1)")
    p.add_argument("--color", default="hist_match", choices=list(COLOR_CORRECTIONS),
                   help="colour correction of the swapped face (default hist_match)")
    p.add_argument("--roi-coverage", type=float, default=0.9, help="central part of the aligned face swapped "
                   "(0.85-0.95; default 0.9 = central 80%%)")
    p.add_argument("--smoothing", default="kalman", choices=list(SMOOTHING), help="video face smoothing")
    p.add_argument("--kf-noise-coef", type=float, default=1e-3,
                   help="Kalman process noise: x10 if the face lags behind, /10 if it jitters (default 1e-3)")
    p.add_argument("--enhance", type=float, default=0.0, help="contrast boost of the swapped region, 0-0.4")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_convert)
    return p


__all__ = [
    "Swapper", "parse_direction", "direction_message", "color_correct", "gaussian_blur", "feather_mask",
    "FaceResult", "FaceGeometry", "transform_faces", "swap_frame", "compose_output", "KalmanPoints",
    "MovingAveragePoints", "FaceTracker", "save_image", "read_label", "ImageResult", "convert_image",
    "FolderReport", "convert_folder", "ConvertReport", "convert_video", "add_convert_parser", "COLOR_CORRECTIONS",
]
