"""Faces in: MTCNN detection, square boxes, 5-point alignment, eye masks, and the ``extract`` step.

What faceswap-GAN v2.2 did (reference §5.1-§5.2) and what ganlib keeps:

- Detector: MTCNN. ganlib uses the weights shipped inside the facenet-pytorch wheel (MIT), so
  nothing downloads. facenet-pytorch pins old torch/numpy in its metadata: install it with
  ``pip install --no-deps facenet-pytorch``.
- Box: re-made square, side = mean(width, height), centred on the box, clipped to the frame, no margin.
- Alignment: a similarity transform (Umeyama, with scale) from the 5 MTCNN landmarks to a fixed
  template given as fractions of the crop; border replicate. ganlib warps straight from the frame to
  the output size (the original cut the box first, then warped and resized: the same transform, but
  ganlib fills the corners with real pixels instead of replicated box edges).
- Eye masks: the "crude" masks: a rectangle around each eye landmark, half-height side/15 and
  half-width side/8 of the square box, put through the same warp. Same file name as the face.

Nothing here needs OpenCV: the warp is a small numpy bilinear sampler.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

# The 5-point template of §5.1 as fractions (row, col) of the crop side. Order = MTCNN's landmark
# order: left eye, right eye (image left/right), nose tip, left and right mouth corner.
TEMPLATE_ROW_COL = np.array(
    [
        [0.31339, 0.32593],
        [0.31075, 0.72285],
        [0.55237, 0.51873],
        [0.77524, 0.37262],
        [0.77596, 0.67730],
    ],
    dtype=np.float64,
)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
PROGRESS_FILE = "extract_progress.json"


def template_points(size: int) -> np.ndarray:
    """Template landmarks in pixel (x, y) for a ``size`` x ``size`` crop (the table is (row, col))."""
    return TEMPLATE_ROW_COL[:, ::-1] * float(size)


# ---------------------------------------------------------------------------------------------------
# Geometry: Umeyama similarity and a numpy affine warp
# ---------------------------------------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform mapping points ``src`` onto ``dst`` (Umeyama, 1991).

    ``src`` and ``dst`` are (N, 2) arrays of (x, y). Returns a 3x3 homogeneous matrix T with
    ``dst ~ T @ [x, y, 1]``. Rotation + uniform scale + translation; reflections are excluded.
    """
    import torch

    from .augment import umeyama_batch  # one implementation (batched torch, float64) for the project

    src = torch.as_tensor(np.asarray(src, dtype=np.float64))[None]
    dst = torch.as_tensor(np.asarray(dst, dtype=np.float64))[None]
    dim = src.shape[-1]
    t = np.eye(dim + 1)
    t[:dim] = umeyama_batch(src, dst, estimate_scale)[0].numpy()
    return t


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 (or 3x3) affine matrix, returned as 2x3."""
    m = np.eye(3)
    m[:2] = np.asarray(matrix, dtype=np.float64)[:2]
    return np.linalg.inv(m)[:2]


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points (x, y)."""
    m = np.asarray(matrix, dtype=np.float64)[:2]
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def _reduce_for_downscale(image: np.ndarray, matrix: np.ndarray, out_shape: tuple[int, int]):
    """Box-filter the needed part of ``image`` first when the warp shrinks it by >= 2x.

    A plain bilinear warp samples only 4 pixels per output pixel, which aliases badly when a large
    face (e.g. 600 px in a 4K frame) is shrunk to 256 px. Returns (image, matrix) to warp instead.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    factor = int(1.0 / scale) if scale > 0 else 1
    if factor < 2 or image.dtype != np.uint8:
        return image, matrix
    h, w = image.shape[:2]
    oh, ow = out_shape
    corners = np.array([[0, 0], [ow, 0], [0, oh], [ow, oh]], dtype=np.float64)
    src = transform_points(invert_affine(matrix), corners)
    x0 = int(np.clip(np.floor(src[:, 0].min()) - 2 * factor, 0, w - 1))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - 2 * factor, 0, h - 1))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + 2 * factor, x0 + 1, w))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + 2 * factor, y0 + 1, h))
    if (x1 - x0) < 2 * factor or (y1 - y0) < 2 * factor:
        return image, matrix
    region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    small = np.asarray(region.reduce(factor))
    # Reduced pixel i covers original pixels x0 + i*f ... x0 + i*f + f-1: its centre is x0 + f*i + (f-1)/2.
    to_full = np.array([[factor, 0, x0 + (factor - 1) / 2], [0, factor, y0 + (factor - 1) / 2], [0, 0, 1]])
    m = np.eye(3)
    m[:2] = matrix[:2]
    return small, (m @ to_full)[:2]


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    out_shape: tuple[int, int],
    *,
    border: str = "replicate",
    fill: float = 0.0,
    antialias: bool = True,
) -> np.ndarray:
    """Warp ``image`` (HxW or HxWxC) with the 2x3 ``matrix`` (source xy -> output xy), bilinear.

    ``out_shape`` is (height, width). ``border``: "replicate" (clamp to the edge, like OpenCV's
    BORDER_REPLICATE) or "constant" (``fill`` outside). uint8 in -> uint8 out, float in -> float32 out.
    """
    matrix = np.asarray(matrix, dtype=np.float64)[:2]
    if antialias:
        image, matrix = _reduce_for_downscale(image, matrix, out_shape)
    h, w = image.shape[:2]
    oh, ow = out_shape
    inv = invert_affine(matrix).astype(np.float32)  # float32 all the way: 2x faster than float64 here
    u = np.arange(ow, dtype=np.float32)[None, :]
    v = np.arange(oh, dtype=np.float32)[:, None]
    sx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    sy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    outside = None
    if border == "constant":
        outside = (sx < -0.5) | (sx > w - 0.5) | (sy < -0.5) | (sy > h - 0.5)
    elif border != "replicate":
        raise ValueError(f"border must be 'replicate' or 'constant', got {border!r}")
    np.clip(sx, 0, w - 1, out=sx)
    np.clip(sy, 0, h - 1, out=sy)
    fx = sx - np.floor(sx)
    fy = sy - np.floor(sy)
    x0 = sx.astype(np.intp)  # sx >= 0, so truncation = floor
    y0 = sy.astype(np.intp)
    dx = (x0 < w - 1).astype(np.intp)  # step to the right neighbour, 0 on the last column
    dy = (y0 < h - 1).astype(np.intp) * w
    flat = image.reshape(h * w, -1)
    i00 = y0 * w + x0
    if image.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
        if outside is not None:
            outside = outside[..., None]
    else:
        flat = flat[:, 0]
    p00, p01 = flat[i00].astype(np.float32), flat[i00 + dx].astype(np.float32)
    p10, p11 = flat[i00 + dy].astype(np.float32), flat[i00 + dy + dx].astype(np.float32)
    top = p00 + (p01 - p00) * fx
    out = top + (p10 + (p11 - p10) * fx - top) * fy
    if outside is not None:
        out = np.where(outside, np.float32(fill), out)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------------

@dataclass
class Face:
    """One detected face: MTCNN ``box`` (x0, y0, x1, y1), ``landmarks`` (5, 2) in (x, y), ``score``."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    def square_box(self, frame_shape: tuple[int, ...]) -> np.ndarray:
        """The §5.1 square box (x0, y0, x1, y1) of this face, clipped to ``frame_shape`` (H, W, ...)."""
        return square_box(self.box, frame_shape)

    @property
    def side(self) -> float:
        """Side of the square box before clipping: mean of the MTCNN box width and height."""
        return float(((self.box[2] - self.box[0]) + (self.box[3] - self.box[1])) / 2)


def square_box(box: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Square box of §5.1: side = mean(w, h), centred on the box centre, clipped to the frame, no margin."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = ((x1 - x0) + (y1 - y0)) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = frame_shape[:2]
    return np.array(
        [
            np.clip(cx - side / 2, 0, w),
            np.clip(cy - side / 2, 0, h),
            np.clip(cx + side / 2, 0, w),
            np.clip(cy + side / 2, 0, h),
        ]
    )


_DETECTORS: dict = {}


def get_detector(min_size: int = 20, thresholds=(0.6, 0.7, 0.9), device: str = "cpu"):
    """A cached facenet-pytorch MTCNN (weights ship in its wheel; nothing is downloaded)."""
    key = (int(min_size), tuple(float(t) for t in thresholds), str(device))
    if key not in _DETECTORS:
        try:
            from facenet_pytorch import MTCNN  # noqa: PLC0415 - lazy: optional, heavy import
        except ImportError as exc:
            raise ImportError(
                "Face detection needs facenet-pytorch (MTCNN with bundled weights). Install it WITHOUT its "
                "dependencies, which would downgrade torch and numpy:  pip install --no-deps facenet-pytorch"
            ) from exc
        # factor 0.709 = the original's image-pyramid step (also facenet-pytorch's default).
        _DETECTORS[key] = MTCNN(
            keep_all=True, min_face_size=key[0], thresholds=list(key[1]), factor=0.709,
            post_process=False, select_largest=False, device=key[2],
        )
    return _DETECTORS[key]


def to_rgb_uint8(image) -> np.ndarray:
    """Any image (PIL, gray, RGBA, float in [0,1] or [0,255]) as a contiguous RGB uint8 HxWx3 array."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image HxWx3, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def detect_faces(
    image_rgb,
    *,
    min_size: int = 20,
    thresholds=(0.6, 0.7, 0.9),
    device: str = "cpu",
) -> list[Face]:
    """Detect faces with MTCNN; most confident first.

    ``min_size`` is MTCNN's smallest searched face (the original used 20); ``thresholds`` are the
    three stage thresholds (P-, R-, O-net; the last one is the one users tune: 0.7-0.9).
    """
    image = to_rgb_uint8(image_rgb)
    detector = get_detector(min_size, thresholds, device)
    boxes, probs, points = detector.detect(image, landmarks=True)
    if boxes is None or len(boxes) == 0:
        return []
    # With numpy 2, facenet-pytorch returns object arrays: make them plain floats.
    boxes = np.asarray(boxes).astype(np.float64).reshape(-1, 4)
    points = np.asarray(points).astype(np.float64).reshape(-1, 5, 2)
    probs = np.asarray(probs).astype(np.float64).reshape(-1)
    faces = [Face(box=b, landmarks=p, score=float(s)) for b, p, s in zip(boxes, points, probs)]
    return sorted(faces, key=lambda f: -f.score)


# ---------------------------------------------------------------------------------------------------
# Alignment and eye masks
# ---------------------------------------------------------------------------------------------------

def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity matrix taking frame (x, y) to the ``size`` px aligned crop (§5.1 template)."""
    return umeyama(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template_points(size))[:2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Aligned ``size`` x ``size`` crop of the face with these 5 landmarks, and the 2x3 matrix used.

    The matrix maps frame pixel coordinates (x, y) to crop coordinates; invert it (see
    :func:`invert_affine`) to paste a crop back. Border pixels are replicated like the original.
    """
    matrix = alignment_matrix(landmarks, size)
    return warp_affine(to_rgb_uint8(image), matrix, (size, size), border="replicate"), matrix


def eye_mask(landmarks: np.ndarray, box_side: float, matrix: np.ndarray, size: int = 256) -> np.ndarray:
    """Crude eye mask of §5.2 in aligned-crop space: uint8 (size, size), 255 on the eyes, 0 elsewhere.

    In frame space, a rectangle of half-height ``box_side/15`` and half-width ``box_side/8`` is put
    around each eye landmark; it goes through the same ``matrix`` as the face. Computed by mapping each
    crop pixel back to the frame, so no full-frame mask is drawn.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    inv = invert_affine(matrix)
    u = np.arange(size, dtype=np.float64)[None, :]
    v = np.arange(size, dtype=np.float64)[:, None]
    sx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    sy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    half_h, half_w = box_side / 15.0, box_side / 8.0
    mask = np.zeros((size, size), dtype=bool)
    for ex, ey in lm[:2]:
        mask |= (np.abs(sx - ex) <= half_w) & (np.abs(sy - ey) <= half_h)
    return mask.astype(np.uint8) * 255


# ---------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------

@dataclass
class ExtractReport:
    """What one :func:`extract` run did. ``unreadable`` lists ``{"path", "reason"}`` of skipped files."""

    out_dir: str = ""
    sources: int = 0
    frames_read: int = 0
    faces_saved: int = 0
    frames_without_face: int = 0
    frames_with_several: int = 0
    faces_too_small: int = 0
    frames_skipped_resume: int = 0
    sources_already_done: int = 0
    unreadable: list = field(default_factory=list)
    per_source: list = field(default_factory=list)
    seconds: float = 0.0
    report_path: str = ""

    @property
    def faces_found(self) -> int:
        """Faces saved (big enough to keep)."""
        return self.faces_saved

    @property
    def frames_per_second(self) -> float:
        """Analysed frames per wall-clock second (decode + detect + align + save)."""
        return self.frames_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frames_per_second"] = round(self.frames_per_second, 3)
        return d

    def summary(self) -> str:
        lines = [
            f"extract -> {self.out_dir}: {self.sources} source(s), {self.frames_read} frame(s) analysed "
            f"in {self.seconds:.1f} s ({self.frames_per_second:.2f} frames/s)",
            f"  faces saved: {self.faces_saved}   frames with no face: {self.frames_without_face}   "
            f"frames with several faces: {self.frames_with_several}   faces too small: {self.faces_too_small}",
        ]
        if self.frames_skipped_resume or self.sources_already_done:
            lines.append(
                f"  resumed: {self.frames_skipped_resume} frame(s) already done earlier were skipped, "
                f"{self.sources_already_done} source(s) were already complete"
            )
        for item in self.unreadable:
            lines.append(f"  SKIPPED {item['path']}: {item['reason']}")
        if self.faces_saved == 0 and self.frames_read > 0:
            lines.append("  WARNING: no face was saved. Check that the inputs show faces larger than --min-face px.")
        return "\n".join(lines)


def _list_sources(inputs: Iterable, out_dir: Path) -> tuple[list[Path], list[dict]]:
    """Expand folders (recursively, sorted) into image and video files; report missing paths."""
    from .video import VIDEO_EXTENSIONS  # noqa: PLC0415

    known = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    files: list[Path] = []
    problems: list[dict] = []
    out_resolved = out_dir.resolve()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in known and out_resolved not in f.resolve().parents:
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            problems.append({"path": str(p), "reason": "no such file or folder"})
    return files, problems


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)  # phone photos: honour the EXIF rotation, or the face lies sideways
        return np.asarray(im.convert("RGB"))


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _Progress:
    """The resume file: per source, the last frame whose faces are on disk."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / PROGRESS_FILE
        self.data = {"version": 1, "sources": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data.setdefault("sources", {})
            except (OSError, ValueError) as exc:
                bad = self.path.with_name(self.path.name + ".corrupt")
                os.replace(self.path, bad)
                warnings.warn(f"{self.path}: unreadable ({exc}); moved to {bad.name}, starting fresh.", stacklevel=3)

    def entry(self, source: Path) -> dict:
        key = str(source.resolve())
        stat = source.stat()
        sig = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        entry = self.data["sources"].get(key)
        if entry is not None and entry.get("signature") != sig:
            warnings.warn(f"{source}: the file changed since the last run; extracting it again from the start.",
                          stacklevel=3)
            entry = None
        if entry is None:
            used = {e["prefix"] for e in self.data["sources"].values()}
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.stem) or "source"
            prefix, n = stem, 2
            while prefix in used:  # two "clip.mp4" in different folders must not overwrite each other's faces
                prefix, n = f"{stem}-{n}", n + 1
            entry = {"prefix": prefix, "signature": sig, "last_frame": -1, "done": False}
            self.data["sources"][key] = entry
        return entry

    def save(self) -> None:
        _atomic_write_json(self.path, self.data)


def _save_png(array: np.ndarray, path: Path) -> None:
    if path.exists():
        return  # same source, same frame, same face index: already saved by an earlier (interrupted) run
    tmp = path.with_name(path.stem + ".tmp.png")
    # zlib level 1: ~5x faster than PIL's default 6 for ~10% larger files; saving was a third of the time.
    Image.fromarray(array).save(tmp, compress_level=1)
    os.replace(tmp, path)


def extract(
    inputs,
    out_dir,
    *,
    every: int = 5,
    size: int = 256,
    min_face: int = 40,
    thresholds=(0.6, 0.7, 0.9),
    device: str = "cpu",
    progress: bool = True,
) -> ExtractReport:
    """Detect, align and save every face of images, folders and videos, ready for ganlib training.

    - ``inputs``: files or folders (searched recursively for images and videos).
    - Videos: every ``every``-th frame (the Colab demo used 5). Images: the whole image.
    - Writes ``out_dir/faces/<stem>_f{frame:06d}_{i}.png`` (aligned, ``size`` px) and the eye mask with
      the same name in ``out_dir/masks/``; ``i`` counts faces of a frame, most confident first.
    - Faces whose square box is smaller than ``min_face`` px are counted, not saved.
    - An unreadable file is named in the report and skipped; the run goes on.
    - Resumable: ``out_dir/extract_progress.json`` records the last finished frame of every source; a
      re-run (also after Ctrl-C or a lost Colab runtime) skips what is done. Files are never replaced.
    - Returns an :class:`ExtractReport`, also written to ``out_dir/extract_report_<time>.json`` and
      printed as a summary (``progress`` only switches the per-source progress bar).
    """
    from .video import VIDEO_EXTENSIONS, VideoError, iter_frames, probe  # noqa: PLC0415

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    out = Path(out_dir)
    faces_dir, masks_dir = out / "faces", out / "masks"
    faces_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    files, problems = _list_sources(inputs, out)
    report = ExtractReport(out_dir=str(out), unreadable=list(problems))
    state = _Progress(out)
    # MTCNN searches down to 20 px like the original; smaller-than-min_face faces are then counted.
    detect_min = max(12, min(20, int(min_face)))
    started = time.perf_counter()

    def process(frame: np.ndarray, prefix: str, index: int, stats: dict) -> None:
        faces = detect_faces(frame, min_size=detect_min, thresholds=thresholds, device=device)
        kept = [f for f in faces if f.side >= min_face]
        report.faces_too_small += len(faces) - len(kept)
        report.frames_read += 1
        stats["frames"] += 1
        if not kept:
            report.frames_without_face += 1
        elif len(kept) > 1:
            report.frames_with_several += 1
        for i, face in enumerate(kept):
            crop, matrix = align_face(frame, face.landmarks, size)
            mask = eye_mask(face.landmarks, face.side, matrix, size)
            name = f"{prefix}_f{index:06d}_{i}.png"
            _save_png(mask, masks_dir / name)  # mask first: a face file on disk always has its mask
            _save_png(crop, faces_dir / name)
            report.faces_saved += 1
            stats["faces"] += 1

    try:
        for source in files:
            report.sources += 1
            try:
                entry = state.entry(source)
            except OSError as exc:
                report.unreadable.append({"path": str(source), "reason": f"cannot stat: {exc}"})
                continue
            stats = {"source": str(source), "prefix": entry["prefix"], "frames": 0, "faces": 0}
            if entry["done"]:
                report.sources_already_done += 1
                continue
            is_video = source.suffix.lower() in VIDEO_EXTENSIONS
            if not is_video:
                try:
                    frame = _read_image(source)
                except Exception as exc:  # noqa: BLE001 - any decoder error: name the file, skip it
                    # Unknown extension given explicitly: maybe it is a video after all.
                    if source.suffix.lower() not in IMAGE_EXTENSIONS:
                        is_video = True
                    else:
                        report.unreadable.append({"path": str(source), "reason": f"not a readable image ({exc})"})
                        continue
                else:
                    process(frame, entry["prefix"], 0, stats)
            if is_video:
                try:
                    info = probe(source)
                except VideoError as exc:
                    report.unreadable.append({"path": str(source), "reason": str(exc)})
                    continue
                start = entry["last_frame"] + 1
                if start > 0:
                    report.frames_skipped_resume += len(range(0, start, every))
                    # Keep the every-k grid of the first run so resumed frames line up.
                    start = ((start + every - 1) // every) * every
                bar = None
                if progress:
                    from tqdm.auto import tqdm  # noqa: PLC0415

                    bar = tqdm(total=max(0, -(-info.frames // every) - start // every), desc=source.name,
                               unit="frame", leave=False)
                last_save = time.monotonic()
                try:
                    for index, frame in iter_frames(source, start=start, every=every):
                        process(frame, entry["prefix"], index, stats)
                        entry["last_frame"] = index
                        if bar is not None:
                            bar.update(1)
                        if time.monotonic() - last_save > 2.0:  # cheap enough; bounds the redo after a crash
                            state.save()
                            last_save = time.monotonic()
                except VideoError as exc:
                    report.unreadable.append({"path": str(source), "reason": str(exc)})
                    state.save()
                    continue
                finally:
                    if bar is not None:
                        bar.close()
            entry["done"] = True
            state.save()
            report.per_source.append(stats)
    finally:
        # Also on Ctrl-C / an exception: what is on disk is recorded, so a re-run resumes here.
        state.save()
        report.seconds = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"extract_report_{stamp}.json"
    n = 2
    while path.exists():
        path = out / f"extract_report_{stamp}-{n}.json"
        n += 1
    report.report_path = str(path)
    _atomic_write_json(path, report.to_dict())
    print(report.summary())
    if report.faces_saved == 0 and report.frames_read > 0:
        warnings.warn(f"extract: no face saved from {report.frames_read} frame(s); see {path}", stacklevel=2)
    return report


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def _run_extract(args: argparse.Namespace) -> int:
    report = extract(
        args.inputs, args.out, every=args.every, size=args.size, min_face=args.min_face,
        thresholds=tuple(args.thresholds), device=args.device, progress=not args.quiet,
    )
    return 0 if report.faces_saved > 0 or report.frames_read == 0 else 1


def add_extract_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``extract`` on an argparse ``subparsers`` object; sets ``func`` to run it."""
    p = subparsers.add_parser(
        "extract",
        help="detect, align and save faces (and eye masks) from images, folders and videos",
        description="Detect faces with MTCNN, align them to the faceswap-GAN template and write "
        "OUT/faces/*.png and OUT/masks/*.png for training. Re-running resumes where it stopped.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, video files or folders")
    p.add_argument("--out", required=True, help="output folder (faces/ and masks/ are created inside)")
    p.add_argument("--every", type=int, default=5, help="use every K-th video frame (default 5)")
    p.add_argument("--size", type=int, default=256, help="aligned crop size in px (default 256)")
    p.add_argument("--min-face", type=int, default=40, help="skip faces smaller than this (px, default 40)")
    p.add_argument("--thresholds", type=float, nargs=3, default=[0.6, 0.7, 0.9], metavar=("P", "R", "O"),
                   help="MTCNN stage thresholds (default 0.6 0.7 0.9)")
    p.add_argument("--device", default="cpu", help="torch device for MTCNN (cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; print only the summary")
    p.set_defaults(func=_run_extract)
    return p


def iter_face_pairs(out_dir) -> Iterator[tuple[Path, Path]]:
    """(face, mask) file pairs under an extract output folder, sorted by name."""
    out = Path(out_dir)
    for face in sorted((out / "faces").glob("*.png")):
        yield face, out / "masks" / face.name


__all__ = [
    "TEMPLATE_ROW_COL", "Face", "ExtractReport", "template_points", "umeyama", "invert_affine",
    "transform_points", "warp_affine", "square_box", "get_detector", "detect_faces", "alignment_matrix",
    "align_face", "eye_mask", "to_rgb_uint8", "extract", "add_extract_parser", "iter_face_pairs",
]
