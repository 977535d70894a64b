"""Face folders in, a checked uint8 cache out; and the resumable batch sampler.

``load_face_folder`` audits every file of a folder BEFORE training (the original asserted the folder
was non-empty, then died inside tf.data on the first unreadable image, §4 of peers-and-users): bad files
are left out, never deleted or moved, and listed with the reason and what to do. Good files are decoded
once, converted to RGB, resized to ``size`` and cached as one uint8 tensor [N,3,S,S]; eye masks
(§5.2) are matched by file stem and cached as uint8 [N,1,S,S].

Conversions, each noted in the audit:

* greyscale / 1-bit → RGB (channel replicated); palette → RGB;
* 16-bit (PNG "I;16", 48-bit RGB) → 8-bit by value/257 (Pillow would clip 16-bit grey to white);
* CMYK (JPEG) → RGB with Pillow's conversion;
* RGBA / LA / palette with transparency → composited on BLACK. The original's cv2.imread dropped alpha,
  showing whatever colours hide under transparent pixels (often garbage); black is predictable and is
  the colour the aligner's replicate border never produces inside a face;
* EXIF orientation is applied (what a photo viewer shows is what is trained on);
* non-square images are stretched to S×S, as the original's cv2.resize did (noted when > 1 %).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "DataError",
    "AuditIssue",
    "FolderAudit",
    "FaceSet",
    "IMAGE_EXTENSIONS",
    "audit_folder",
    "load_face_folder",
    "write_audit_report",
    "format_audit_summary",
    "BatchSampler",
    "DeviceCache",
    "cache_on_device",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_ASPECT = 2.0          # longer side / shorter side above which a file is no face crop
MAX_NAMES_IN_WARNING = 10  # names listed in one warning before "... and N more"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DataError(ValueError):
    """A face folder cannot be used for training; the message says which folder and what to do."""


@dataclass
class AuditIssue:
    """One finding about one file. ``action``: "skipped" (left out), "converted" (loaded after a
    conversion), "note" (loaded, worth knowing) or "zeros" (an eye mask replaced by zeros)."""

    file: str
    kind: str
    action: str
    reason: str
    advice: str = ""

    def line(self) -> str:
        tail = f" -> {self.advice}" if self.advice else ""
        return f"[{self.action}] {Path(self.file).name}: {self.reason}{tail}"


@dataclass
class FolderAudit:
    """The result of checking one folder: what was kept, and every issue found."""

    folder: str
    size: int
    min_size: int
    files_checked: int = 0
    kept: list[str] = field(default_factory=list)
    issues: list[AuditIssue] = field(default_factory=list)

    @property
    def skipped(self) -> list[AuditIssue]:
        return [i for i in self.issues if i.action == "skipped"]

    def counts(self) -> dict[str, int]:
        """Issue count by kind."""
        out: dict[str, int] = {}
        for i in self.issues:
            out[i.kind] = out.get(i.kind, 0) + 1
        return out

    def summary(self) -> str:
        """One line: files checked, kept, left out by reason."""
        left = {}
        for i in self.skipped:
            left[i.kind] = left.get(i.kind, 0) + 1
        why = ", ".join(f"{n} {k}" for k, n in sorted(left.items()))
        conv = sum(1 for i in self.issues if i.action == "converted")
        return (f"{self.folder}: {self.files_checked} files checked, {len(self.kept)} usable, "
                f"{len(self.skipped)} left out" + (f" ({why})" if why else "")
                + (f", {conv} converted" if conv else ""))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FaceSet:
    """A cached face folder: uint8 images [N,3,S,S] (RGB), eye masks [N,1,S,S], their files."""

    images: torch.Tensor
    eye_masks: torch.Tensor
    files: list[Path]
    folder_audit: FolderAudit

    @property
    def audit(self) -> list[AuditIssue]:
        """Every issue found while loading (skipped files, conversions, mask problems)."""
        return self.folder_audit.issues

    @property
    def folder(self) -> str:
        return self.folder_audit.folder

    def __len__(self) -> int:
        return len(self.files)

    def to(self, device: torch.device | str) -> "FaceSet":
        """A FaceSet whose tensors live on ``device`` (files and audit are shared)."""
        return FaceSet(self.images.to(device), self.eye_masks.to(device), self.files, self.folder_audit)

    def require_min(self, n: int, what: str = "the batch size") -> "FaceSet":
        """Raise DataError unless at least ``n`` usable images were loaded; returns self."""
        if len(self) < n:
            a = self.folder_audit
            raise DataError(
                f"{a.folder}: only {len(self)} usable face images ({a.files_checked} files checked, "
                f"{len(a.skipped)} left out), but {what} needs at least {n}. Add more face images to "
                f"{a.folder}, or lower the batch size. The audit lists the files left out and why.")
        return self


# ---------------------------------------------------------------------------------------------
# One file

def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name.startswith("._")


def _list_files(folder: Path) -> list[Path]:
    """Regular, visible files directly in ``folder``, sorted by name (sub-folders ignored)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and not _is_hidden(p)), key=lambda p: p.name)


def _png_bit_depth(data: bytes) -> int | None:
    # IHDR is always the first chunk: 8-byte signature, length, "IHDR", width, height, then bit depth.
    if data[:8] == _PNG_SIGNATURE and len(data) > 24 and data[12:16] == b"IHDR":
        return data[24]
    return None


class _Decoded(NamedTuple):
    image: Image.Image | None  # RGB, original size; None when the file is left out
    notes: list[tuple[str, str]]  # (kind, reason) conversions
    error: tuple[str, str, str] | None  # (kind, reason, advice)


def _decode(data: bytes, *, grey: bool = False) -> _Decoded:
    """Decode bytes into an RGB (or L when ``grey``) PIL image, strictly: truncated data is an error."""
    if not data:
        return _Decoded(None, [], ("not_an_image", "empty file (0 bytes)",
                                   "re-copy or re-export it; a 0-byte file usually means an interrupted copy"))
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # structure / checksums (PNG CRCs); the image is unusable afterwards
        im = Image.open(io.BytesIO(data))
        old = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a half-written file must fail, not load grey stripes
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = old
    except UnidentifiedImageError:
        return _Decoded(None, [], ("not_an_image", "not an image file (Pillow cannot identify its contents)",
                                   "remove it from the folder or replace it with the real image"))
    except Image.DecompressionBombError as e:
        return _Decoded(None, [], ("too_large", f"refused as a possible decompression bomb ({e})",
                                   "face crops need no more than a few megapixels; downscale it"))
    except (OSError, SyntaxError, ValueError) as e:
        return _Decoded(None, [], ("truncated", f"truncated or corrupt image data ({e})",
                                   "re-copy or re-extract this face; it was left out"))

    try:
        return _convert(im, data, grey)
    except Exception as e:  # a broken EXIF block, an exotic mode...: leave the file out, never stop the load
        return _Decoded(None, [], ("unconvertible", f"decoded but could not be converted ({type(e).__name__}: {e})",
                                   "re-save it as an ordinary RGB JPEG or PNG"))


def _convert(im: Image.Image, data: bytes, grey: bool) -> _Decoded:
    """A loaded PIL image in any mode -> RGB (or L), with a note per conversion (see the module doc)."""
    notes: list[tuple[str, str]] = []
    orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation tag; 1 = as stored
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append(("exif_rotated", f"EXIF orientation {orientation} applied"))
    mode = im.mode
    depth = _png_bit_depth(data)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        arr = arr / 257.0 if (mode.startswith("I;16") or depth == 16 or arr.max() > 255) else arr
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        notes.append(("16bit", f"16/32-bit greyscale ({mode}) scaled to 8-bit"))
        mode = "L"
    elif depth == 16:
        notes.append(("16bit", "16-bit per channel PNG reduced to 8-bit"))
    if mode == "F":
        arr = np.asarray(im)
        arr = arr * 255.0 if arr.max() <= 1.0 else arr
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        notes.append(("float", "32-bit float image scaled to 8-bit"))
        mode = "L"
    if mode == "P":
        has_alpha = "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append(("palette", "palette image converted to RGB"))
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema() != (255, 255):
            notes.append(("alpha", f"{mode} transparency composited on black"))
        else:
            notes.append(("alpha", f"{mode}: opaque alpha channel dropped"))
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba).convert("RGB")
        mode = "RGB"
    if mode == "CMYK":
        notes.append(("cmyk", "CMYK converted to RGB"))
    elif mode in ("L", "1") and not grey:
        notes.append(("grey", "greyscale converted to RGB"))
    elif mode not in ("RGB", "L", "1"):
        notes.append(("mode", f"{mode} converted to RGB"))
    im = im.convert("L" if grey else "RGB")
    return _Decoded(im, notes, None)


def _resize(im: Image.Image, size: int, resample: int = Image.Resampling.LANCZOS) -> np.ndarray:
    # Lanczos (antialiased) rather than the original's cv2 INTER_LINEAR: a big crop shrunk to 256
    # should not alias; this happens once per file, so its cost does not matter. Masks use
    # (antialiased) bilinear: Lanczos would ring around the hard edges of an eye mask.
    if im.size != (size, size):
        im = im.resize((size, size), resample)
    return np.asarray(im)


# ---------------------------------------------------------------------------------------------
# One folder

def _check_file(p: Path, size: int, min_size: int, seen: dict[str, str]
                ) -> tuple[list[AuditIssue], Image.Image | None]:
    """Every check for one file: its issues, and the decoded RGB image when it is usable."""
    def skip(kind: str, reason: str, advice: str) -> tuple[list[AuditIssue], None]:
        return [AuditIssue(str(p), kind, "skipped", reason, advice)], None

    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        return skip("unsupported_type", f"extension '{p.suffix or '(none)'}' is not one of "
                    f"{', '.join(IMAGE_EXTENSIONS)}", "convert it to PNG or JPEG, or move it out of the folder")
    try:
        data = p.read_bytes()
    except OSError as e:
        return skip("unreadable", f"cannot read the file ({e.strerror or e})",
                    "check its permissions; on Drive, wait for sync or copy the folder to local disk")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if data and digest in seen:
        return skip("duplicate", f"same bytes as {seen[digest]}",
                    "exact duplicates only weight one face more; the first copy is used")
    dec = _decode(data)
    if dec.error is not None:
        return skip(*dec.error)
    w, h = dec.image.size
    if min(w, h) < min_size:
        return skip("too_small", f"{w}x{h} px, smaller than the minimum side {min_size} px",
                    f"use face crops of at least {min_size} px (ideally {size} px or more); tiny faces train blur")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        return skip("extreme_aspect", f"{w}x{h} px, aspect ratio {max(w, h) / min(w, h):.1f}:1 "
                    f"(limit {MAX_ASPECT:.0f}:1): not a face crop",
                    "crop the face to a square (prepare_faces does this)")
    seen[digest] = p.name
    issues = [AuditIssue(str(p), kind, "converted", reason) for kind, reason in dec.notes]
    if abs(w / h - 1) > 0.01:
        issues.append(AuditIssue(str(p), "not_square", "note", f"{w}x{h} px stretched to {size}x{size}",
                                 "square aligned crops keep the face's proportions"))
    return issues, dec.image


def _scan(folder: Path, size: int, min_size: int | None, keep: bool) -> tuple[FolderAudit, list[np.ndarray]]:
    min_size = size // 4 if min_size is None else int(min_size)
    audit = FolderAudit(folder=str(folder), size=size, min_size=min_size)
    arrays: list[np.ndarray] = []
    seen: dict[str, str] = {}  # content hash -> first usable file with it
    for p in _list_files(folder):
        audit.files_checked += 1
        try:
            issues, image = _check_file(p, size, min_size, seen)
            if image is not None and keep:
                arrays.append(_resize(image, size))
        except Exception as e:  # whatever goes wrong with one file, the others still load
            issues, image = [AuditIssue(str(p), "error", "skipped", f"unexpected error ({type(e).__name__}: {e})",
                                        "re-save it as an ordinary RGB JPEG or PNG")], None
        audit.issues.extend(issues)
        if image is not None:
            audit.kept.append(str(p))
    return audit, arrays


def audit_folder(folder: str | os.PathLike, *, size: int = 256, min_size: int | None = None) -> FolderAudit:
    """Check every file of ``folder`` (fully decoding each) without keeping the pixels.

    Nothing is deleted or moved. Raises DataError if the folder does not exist. ``min_size``: the
    smallest acceptable side in px (callers pass resolution/2; default ``size // 4``).
    """
    folder = _check_folder(folder)
    return _scan(folder, size, min_size, keep=False)[0]


def _check_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"Face folder {path} {what}. Put the aligned face images of this person there "
                        f"(jpg/png/webp/bmp, one face per image, e.g. from prepare_faces), or fix the path.")
    return path


def _load_masks(files: list[Path], mask_dir: Path, size: int, audit: FolderAudit,
                log: Callable[[str], None]) -> torch.Tensor:
    masks = np.zeros((len(files), size, size), dtype=np.uint8)
    by_stem: dict[str, Path] = {}
    for p in _list_files(mask_dir):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in by_stem:
            log(f"WARNING: eye masks {by_stem[p.stem].name} and {p.name} have the same name; using "
                f"{by_stem[p.stem].name}.")
            continue
        by_stem[p.stem] = p
    used: set[str] = set()
    missing: list[Path] = []
    for i, f in enumerate(files):
        mp = by_stem.get(f.stem)
        if mp is None:
            missing.append(f)
            audit.issues.append(AuditIssue(str(f), "mask_missing", "zeros", f"no eye mask named {f.stem}.* "
                                           f"in {mask_dir}", "eye-weighted losses ignore this face"))
            continue
        used.add(f.stem)
        try:
            dec = _decode(mp.read_bytes(), grey=True)
        except OSError as e:
            dec = _Decoded(None, [], ("unreadable", f"cannot read ({e.strerror or e})", ""))
        if dec.error is not None:
            kind, reason, _ = dec.error
            audit.issues.append(AuditIssue(str(mp), "mask_" + kind, "zeros", f"eye mask for {f.name}: {reason}",
                                           "re-make this mask; zeros are used meanwhile"))
            log(f"WARNING: eye mask {mp} is unusable ({reason}); zeros are used for {f.name}.")
            continue
        masks[i] = _resize(dec.image, size, Image.Resampling.BILINEAR)
    if missing:
        names = ", ".join(p.name for p in missing[:MAX_NAMES_IN_WARNING])
        more = f" and {len(missing) - MAX_NAMES_IN_WARNING} more" if len(missing) > MAX_NAMES_IN_WARNING else ""
        log(f"WARNING: {len(missing)} of {len(files)} faces in {audit.folder} have no eye mask in {mask_dir} "
            f"(zeros are used): {names}{more}.")
    for stem, mp in sorted(by_stem.items()):
        if stem not in used:
            audit.issues.append(AuditIssue(str(mp), "mask_orphan", "note", "eye mask matches no usable face image",
                                           "check the name, or the face was left out (see the audit)"))
            log(f"WARNING: eye mask {mp} matches no usable face image in {audit.folder}.")
    return torch.from_numpy(masks).unsqueeze(1)


def load_face_folder(folder: str | os.PathLike, *, mask_dir: str | os.PathLike | None = None, size: int = 256,
                     min_size: int | None = None, log: Callable[[str], None] = print) -> FaceSet:
    """Audit ``folder``, then decode each usable face once into a uint8 cache.

    Args:
        folder: the face images (jpg/jpeg/png/webp/bmp, any case, any size; hidden files and
            sub-folders are ignored).
        mask_dir: optional eye masks, matched by file stem (any image extension); missing masks are
            zeros with one warning listing the faces.
        size: the side images and masks are resized to (the augmentation work size).
        min_size: smallest acceptable side; callers pass resolution // 2 (default size // 4).
        log: where the summary and warnings go.

    Raises:
        DataError: the folder (or the given mask_dir) is missing, or no usable image is left.
    """
    path = _check_folder(folder)
    audit, arrays = _scan(path, size, min_size, keep=True)
    log(audit.summary())
    for issue in audit.skipped[:MAX_NAMES_IN_WARNING]:
        log("  " + issue.line())
    if len(audit.skipped) > MAX_NAMES_IN_WARNING:
        log(f"  ... and {len(audit.skipped) - MAX_NAMES_IN_WARNING} more (see the audit report)")
    if not arrays:
        raise DataError(f"No usable face images in {path}: {audit.files_checked} files checked, "
                        f"{len(audit.skipped)} left out. Put aligned face images (jpg/png/webp/bmp) of this "
                        f"person there; the audit lists why each file was left out.")
    files = [Path(f) for f in audit.kept]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if mask_dir is not None:
        mdir = Path(mask_dir).expanduser()
        if not mdir.is_dir():
            raise DataError(f"Eye-mask folder {mdir} does not exist. Put one mask per face there (same file "
                            f"name as the face), or pass mask_dir=None to train without eye masks.")
        masks = _load_masks(files, mdir, size, audit, log)
    else:
        masks = torch.zeros(len(files), 1, size, size, dtype=torch.uint8)
    return FaceSet(images, masks, files, audit)


# ---------------------------------------------------------------------------------------------
# Reports

def format_audit_summary(audits: Iterable[FolderAudit | FaceSet]) -> str:
    """A short human-readable text of one or more folder audits."""
    lines = []
    for a in audits:
        a = a.folder_audit if isinstance(a, FaceSet) else a
        lines.append(a.summary())
        for issue in a.issues:
            lines.append("  " + issue.line())
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_audit_report(path: str | os.PathLike, audits: Iterable[FolderAudit | FaceSet]) -> tuple[Path, Path]:
    """Write ``<path>.json`` (every issue, machine-readable) and ``<path>.txt`` (the short summary).

    Accepts FolderAudits or FaceSets. Files are written atomically. Returns (json_path, txt_path).
    """
    audits = [a.folder_audit if isinstance(a, FaceSet) else a for a in audits]
    base = Path(path)
    base = base.with_suffix("") if base.suffix.lower() in (".json", ".txt") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    jpath, tpath = base.with_name(base.name + ".json"), base.with_name(base.name + ".txt")
    payload = {"folders": [dict(a.to_dict(), counts=a.counts(), summary=a.summary()) for a in audits]}
    _atomic_write(jpath, json.dumps(payload, indent=2))
    _atomic_write(tpath, format_audit_summary(audits))
    return jpath, tpath


# ---------------------------------------------------------------------------------------------
# Sampling

class BatchSampler:
    """Endless index batches from per-epoch random permutations, dropping each epoch's remainder
    (the original's shuffle over all files + ``drop_remainder=True`` + ``repeat()``).

    The permutation of epoch e comes from a CPU generator seeded by (seed, e), so the state is three
    integers and a resumed run draws exactly the batches an uninterrupted one would.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if batch_size < 1 or n < batch_size:
            raise ValueError(f"BatchSampler needs 1 <= batch_size <= n (got n={n}, batch_size={batch_size})")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.epoch, self.pos = 0, 0
        self._perm: torch.Tensor | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator(device="cpu")
            # Distinct seeds per (seed, epoch); the constant only spreads consecutive epochs apart.
            g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2 ** 63))
            self._perm = torch.randperm(self.n, generator=g)
        return self._perm

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> torch.Tensor:
        if self.pos >= self.batches_per_epoch:
            self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        start = self.pos * self.batch_size
        batch = self._permutation()[start:start + self.batch_size].clone()
        self.pos += 1
        return batch

    def state_dict(self) -> dict:
        """Plain ints only (safe for torch.load(weights_only=True) and JSON)."""
        return {"n": self.n, "batch_size": self.batch_size, "seed": self.seed, "epoch": self.epoch,
                "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state. If the data set size or batch size changed since it was saved (faces
        added between chunks), the exact sequence cannot continue: a fresh epoch starts with a warning."""
        self.seed, self.epoch, self.pos, self._perm = int(state["seed"]), int(state["epoch"]), int(state["pos"]), None
        if int(state["n"]) != self.n or int(state["batch_size"]) != self.batch_size:
            import warnings
            warnings.warn(f"BatchSampler: saved for n={state['n']}, batch_size={state['batch_size']}, now "
                          f"n={self.n}, batch_size={self.batch_size}; starting a fresh epoch.", stacklevel=2)
            self.epoch, self.pos = self.epoch + 1, 0


# ---------------------------------------------------------------------------------------------
# Device cache

class DeviceCache(NamedTuple):
    images: torch.Tensor
    eye_masks: torch.Tensor
    on_device: bool  # True: on the training device; False: (pinned) CPU memory
    message: str


def cache_on_device(faceset: FaceSet, device: torch.device | str, max_fraction: float = 0.5,
                    log: Callable[[str], None] | None = None) -> DeviceCache:
    """Put the uint8 cache on ``device`` when it takes at most ``max_fraction`` of the free memory
    there; otherwise keep it on the CPU (pinned for fast, asynchronous copies of each batch)."""
    device = torch.device(device)
    need = faceset.images.numel() * faceset.images.element_size() + \
        faceset.eye_masks.numel() * faceset.eye_masks.element_size()
    mib = need / 2 ** 20
    if device.type == "cpu":
        out = DeviceCache(faceset.images.cpu(), faceset.eye_masks.cpu(), True,
                          f"{faceset.folder}: {mib:.0f} MiB face cache in CPU memory")
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need <= free * max_fraction:
            out = DeviceCache(faceset.images.to(device), faceset.eye_masks.to(device), True,
                              f"{faceset.folder}: {mib:.0f} MiB face cache on {device} "
                              f"({free / 2 ** 30:.1f} GiB free)")
        else:
            out = DeviceCache(faceset.images.pin_memory(), faceset.eye_masks.pin_memory(), False,
                              f"{faceset.folder}: {mib:.0f} MiB face cache kept in pinned CPU memory (more than "
                              f"{max_fraction:.0%} of the {free / 2 ** 30:.1f} GiB free on {device})")
    else:  # mps and others: no free-memory query; these caches are small next to unified memory
        out = DeviceCache(faceset.images.to(device), faceset.eye_masks.to(device), True,
                          f"{faceset.folder}: {mib:.0f} MiB face cache on {device}")
    if log is not None:
        log(out.message)
    return out
