"""Helpers for the notebooks: Colab detection, Google Drive, data staging, GPU report, session budget.

Everything here also works outside Colab (local Jupyter, Kaggle, a GPU box, CI): Colab-only calls are
guarded, print what they skipped, and never raise because Colab is missing. ``google.colab`` is imported
only inside functions, so ``import ganlib.colab`` works anywhere and touches no network.

The notebooks hold no logic of their own; they call the functions below (see ``docs/colab.md``).

Smoke mode (``GANLIB_SMOKE=1``, set by the tests) makes the notebooks use the ``smoke`` preset,
synthetic faces and a temporary run folder (or ``GANLIB_RUN_DIR``), and skip Drive entirely.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

#: Where Colab mounts Google Drive by convention; files appear under ``<mountpoint>/MyDrive``.
DRIVE_MOUNTPOINT = "/content/drive"
#: Local disk of a Colab runtime: fast, but wiped when the runtime goes away.
LOCAL_DATA_ROOT = "/content/data"
#: Local working copies of runs in Colab (published to Drive at every checkpoint).
LOCAL_RUNS_ROOT = "/content/runs"
#: Written last by :func:`stage_dataset`; its presence means "this copy is complete".
STAGED_MARKER = ".ganlib_staged.json"

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_TRUE = ("1", "true", "yes", "on")

# Recorded at import: the fallback session start when /proc cannot tell us.
_IMPORT_TIME = time.time()


# ---- environment --------------------------------------------------------------------------------
def in_colab() -> bool:
    """True inside a Google Colab runtime (the ``google.colab`` package is importable there)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import google.colab  # noqa: F401, PLC0415 - exists only on Colab runtimes
    except ImportError:
        return False
    return True


def smoke_mode() -> bool:
    """True when ``GANLIB_SMOKE`` is set to 1/true/yes: tiny preset, synthetic data, no Drive."""
    return os.environ.get("GANLIB_SMOKE", "").strip().lower() in _TRUE


def env_overrides() -> dict:
    """Config overrides from ``GANLIB_OVERRIDES`` ("train.TOTAL_ITERS=6, loss.use_PL=true").

    Lets tests and scripted runs change a field without editing the notebook; values are strings and
    are parsed to the field's type by :meth:`ganlib.config.Config.override`.
    """
    raw = os.environ.get("GANLIB_OVERRIDES", "").strip()
    out = {}
    for item in filter(None, (s.strip() for s in raw.split(","))):
        if "=" not in item:
            raise ValueError(f"GANLIB_OVERRIDES: {item!r} is not key=value (e.g. train.TOTAL_ITERS=6)")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def gpu_info() -> dict:
    """What accelerator this runtime has and which precision ganlib picks for it.

    Keys: ``available`` (bool), ``name``, ``memory_gib``, ``capability`` ("8.0"), ``precision``
    ("bf16", "fp16" or "fp32"), ``tf32`` (bool), ``ram_gib`` (system memory) and ``summary``
    (one printable line). On a machine without CUDA, ``name`` is "no GPU" and precision "fp32".
    """
    import torch  # noqa: PLC0415 - keep "import ganlib.colab" light

    ram = _ram_gib()
    if not torch.cuda.is_available():
        info = {"available": False, "name": "no GPU", "memory_gib": 0.0, "capability": None,
                "precision": "fp32", "tf32": False, "ram_gib": ram}
        info["summary"] = (f"no GPU (CPU only, {os.cpu_count()} cores, {ram:.1f} GiB RAM): training will be "
                           "slow; in Colab pick Runtime > Change runtime type > GPU")
        return info
    props = torch.cuda.get_device_properties(0)
    major, minor = props.major, props.minor
    # Ampere (8.x) and newer have fast bf16 and TF32; Turing (T4, 7.5) and older need fp16 + GradScaler.
    modern = major >= 8
    info = {"available": True, "name": props.name, "memory_gib": props.total_memory / 2**30,
            "capability": f"{major}.{minor}", "precision": "bf16" if modern else "fp16", "tf32": modern,
            "ram_gib": ram}
    info["summary"] = (f"{info['name']}, {info['memory_gib']:.1f} GiB, compute capability {info['capability']}"
                       f", mixed precision {info['precision']}{' + TF32' if modern else ''}; "
                       f"{ram:.1f} GiB RAM")
    return info


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # not on every OS
        return 0.0


def describe_environment() -> str:
    """Multi-line report for the setup cell: where we run, Python, torch, ganlib, GPU and RAM."""
    import torch  # noqa: PLC0415

    import ganlib  # noqa: PLC0415

    where = "Google Colab" if in_colab() else "local/other Jupyter"
    if smoke_mode():
        where += " (smoke mode: GANLIB_SMOKE=1)"
    lines = [
        f"runtime: {where}",
        f"python:  {sys.version.split()[0]} at {sys.executable}",
        f"torch:   {torch.__version__}   ganlib: {ganlib.__version__}",
        f"device:  {gpu_info()['summary']}",
    ]
    return "\n".join(lines)


# ---- Google Drive -------------------------------------------------------------------------------
def mount_drive(mountpoint: str = DRIVE_MOUNTPOINT, timeout_ms: int = 300_000, *,
                force_remount: bool = False, log=print) -> Path | None:
    """Mount Google Drive in Colab and return ``<mountpoint>/MyDrive``; elsewhere print why not, return None.

    ``timeout_ms`` defaults to 5 minutes rather than Colab's 2: mounts time out on Drives with many
    items at the top level. A mount left broken by an interrupted session ("Transport endpoint is not
    connected") is retried once with ``force_remount=True``.
    """
    if smoke_mode():
        log("smoke mode: Google Drive is not mounted (runs go to a local folder)")
        return None
    if not in_colab():
        log("not in Colab: Google Drive is not mounted; paths are read from this machine's disk "
            "(relative paths from the notebook's folder)")
        return None
    from google.colab import drive  # noqa: PLC0415 - exists only on Colab runtimes

    try:
        drive.mount(mountpoint, force_remount=force_remount, timeout_ms=timeout_ms)
    except Exception as exc:  # Colab raises plain Exceptions/OSErrors with the reason in the text
        text = str(exc)
        broken = "Transport endpoint is not connected" in text or "Errno 107" in text
        if force_remount or not broken:
            if "timed out" in text.lower() or "timeout" in text.lower():
                raise RuntimeError(
                    f"mounting Google Drive at {mountpoint} timed out ({exc}). Drives with many items "
                    "directly in My Drive mount slowly: move files into subfolders, or re-run with a "
                    "larger timeout_ms.") from exc
            raise
        log(f"Drive mount at {mountpoint} is stale ({text.strip()}); remounting with force_remount=True")
        drive.mount(mountpoint, force_remount=True, timeout_ms=timeout_ms)
    root = Path(mountpoint) / "MyDrive"
    log(f"Google Drive mounted: {root}")
    return root


def drive_root(mountpoint: str = DRIVE_MOUNTPOINT) -> Path | None:
    """``<mountpoint>/MyDrive`` when Drive is mounted there, else None."""
    root = Path(mountpoint) / "MyDrive"
    return root if root.is_dir() else None


def resolve_path(path: str | os.PathLike, *, mountpoint: str = DRIVE_MOUNTPOINT) -> Path:
    """A form-field path as a real path: absolute stays; relative is under My Drive when Drive is
    mounted, else relative to the current folder."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return p
    root = drive_root(mountpoint)
    return (root / p) if root is not None else (Path.cwd() / p)


def default_run_dir(drive_folder: str = "ganlib_runs", run_name: str = "run1", *,
                    mountpoint: str = DRIVE_MOUNTPOINT) -> Path:
    """The folder a run keeps its checkpoints, logs and preview PNGs in.

    - ``GANLIB_RUN_DIR`` set: that folder (tests run a notebook twice on one folder this way).
    - smoke mode: a new temporary folder.
    - Drive mounted: ``My Drive/<drive_folder>/<run_name>`` (survives the runtime).
    - otherwise: ``<drive_folder>/<run_name>`` on this machine.
    """
    env = os.environ.get("GANLIB_RUN_DIR", "").strip()
    if env:
        run_dir = Path(env).expanduser()
    elif smoke_mode():
        run_dir = Path(tempfile.mkdtemp(prefix="ganlib-smoke-run-"))
    else:
        name = str(run_name).strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"run name {run_name!r} must be a plain folder name (no slashes), e.g. 'run1'")
        run_dir = resolve_path(drive_folder, mountpoint=mountpoint) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


# ---- data staging -------------------------------------------------------------------------------
def is_archive(path: str | os.PathLike) -> bool:
    """True for .zip and (compressed) tar files, judged by the name."""
    return str(path).lower().endswith(_ARCHIVE_SUFFIXES)


def _tree_stats(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != STAGED_MARKER]
    return len(files), sum(p.stat().st_size for p in files)


def _read_marker(dest: Path) -> dict | None:
    try:
        return json.loads((dest / STAGED_MARKER).read_text())
    except (OSError, ValueError):
        return None


def _source_signature(src: Path) -> dict:
    if src.is_dir():
        files, size = _tree_stats(src)
        return {"src": str(src), "kind": "folder", "files": files, "size": size}
    st = src.stat()
    return {"src": str(src), "kind": "archive", "size": st.st_size, "mtime": int(st.st_mtime)}


def _content_root(folder: Path) -> Path:
    """The one top-level folder of an extracted archive (``faces_A.zip`` -> ``faces_A/``), else itself."""
    entries = [p for p in folder.iterdir() if p.name not in (STAGED_MARKER, "__MACOSX") and not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def _extract(archive: Path, into: Path, shown_as: Path) -> None:
    """Extract a zip or tar into ``into``, refusing members that would land outside it."""
    into.mkdir(parents=True)
    base = into.resolve()
    if archive.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    target = (base / name).resolve()
                    if not target.is_relative_to(base):
                        raise ValueError(f"{shown_as}: archive member {name!r} points outside the "
                                         "extraction folder; rebuild the zip from the face folder itself")
                zf.extractall(base)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{shown_as}: not a valid zip file ({exc}). It may be incomplete on Drive: "
                             "re-upload it, or point at the folder instead.") from exc
        return
    try:
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(base, filter="data")  # rejects absolute paths, '..', device files
            else:  # Python without PEP 706 backport
                for m in tf.getmembers():
                    if not (base / m.name).resolve().is_relative_to(base) or m.issym() or m.islnk():
                        raise ValueError(f"{shown_as}: unsafe archive member {m.name!r}")
                tf.extractall(base)
    except tarfile.TarError as exc:
        raise ValueError(f"{shown_as}: not a valid tar archive ({exc}). It may be incomplete on Drive: "
                         "re-upload it, or point at the folder instead.") from exc


def stage_dataset(src: str | os.PathLike, dest: str | os.PathLike, *, log=print) -> Path:
    """Copy a dataset from Drive to local disk ONCE and return the local folder to train from.

    ``src`` is a .zip / .tar(.gz) or a folder; ``dest`` a local folder (e.g. ``/content/data/A``).
    Training then reads only local disk: Drive's FUSE mount is slow and fails (I/O errors, quota) on
    folders of many small files, so one sequential copy per session is the robust way.

    - Idempotent: a marker file written last records the source's size (and mtime or file count);
      a second call with the same unchanged source returns at once.
    - Verified: the copy's byte count must equal the source's, else an error names the path.
    - An archive with a single top-level folder returns that folder.
    - ``dest`` is replaced only if it holds an earlier ganlib staging (its marker); a non-empty
      folder of anything else is never touched: you get an error instead.
    """
    src, dest = Path(os.path.expanduser(str(src))), Path(os.path.expanduser(str(dest)))
    if not src.exists():
        raise FileNotFoundError(f"{src}: dataset not found. Check the path (on Colab it is relative to "
                                "My Drive, e.g. 'ganlib_runs/faces_A.zip') and that Drive is mounted.")
    if not src.is_dir() and not is_archive(src):
        raise ValueError(f"{src}: not a folder or a .zip/.tar(.gz) archive; give the face folder or a zip of it")
    signature = _source_signature(src)
    marker = _read_marker(dest)
    if marker is not None and {k: marker.get(k) for k in signature} == signature:
        root = dest / marker.get("root", ".")
        log(f"{src} already staged at {root} ({signature['size'] / 2**20:.1f} MiB)")
        return root.resolve()
    if dest.exists() and any(dest.iterdir()) and marker is None:
        raise FileExistsError(f"{dest}: exists and was not staged by ganlib; choose another destination "
                              "or empty that folder (nothing was changed)")

    t0 = time.time()
    work = dest.with_name(dest.name + ".staging")
    if work.exists():
        shutil.rmtree(work)  # a previous attempt that died half-way
    work.mkdir(parents=True)
    try:
        if src.is_dir():
            shutil.copytree(src, work / "data", dirs_exist_ok=False)
            files, size = _tree_stats(work / "data")
            if (files, size) != (signature["files"], signature["size"]):
                raise OSError(f"{src}: copied {files} files / {size} bytes but the folder holds "
                              f"{signature['files']} files / {signature['size']} bytes. Drive may still be "
                              "syncing or a file is unreadable; wait and re-run this cell.")
            root_rel = Path("data")
        else:
            local = work / ("archive" + "".join(src.suffixes[-2:] if src.name.lower().endswith(
                (".tar.gz", ".tar.bz2", ".tar.xz")) else src.suffixes[-1:]))
            shutil.copyfile(src, local)
            got = local.stat().st_size
            if got != signature["size"]:
                raise OSError(f"{src}: copied {got} bytes but the file is {signature['size']} bytes. Drive may "
                              "still be syncing it; wait and re-run this cell.")
            _extract(local, work / "data", src)
            local.unlink()
            root_rel = _content_root(work / "data").relative_to(work)
        if dest.exists():
            shutil.rmtree(dest)  # only reached for an earlier ganlib staging (marker checked above)
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    (dest / STAGED_MARKER).write_text(json.dumps({**signature, "root": str(root_rel)}, indent=1))
    root = (dest / root_rel).resolve()
    files, size = _tree_stats(root)
    log(f"staged {src} -> {root}: {files} files, {size / 2**20:.1f} MiB in {time.time() - t0:.1f} s")
    return root


# Sub-folder names (lower case) a face set may keep its images / masks in.
_FACE_SUBDIRS = ("faces", "aligned", "images", "rgb")
_MASK_SUBDIRS = ("masks", "mask", "binary_mask", "binary_masks", "eye_masks", "binary_masks_eyes")


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def find_face_dirs(root: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(faces, masks or None)`` for a face set laid out either as images directly in ``root`` or as
    ``root/faces`` + ``root/masks`` (what ``ganlib.faces.extract`` writes) or ``root/rgb`` +
    ``root/binary_mask`` (the original's Colab layout, also what ``SyntheticFaces.write_folder`` writes)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: face folder not found")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    masks = next((subdirs[n] for n in _MASK_SUBDIRS if n in subdirs and _has_images(subdirs[n])), None)
    if _has_images(root):
        return root, masks
    faces = next((subdirs[n] for n in _FACE_SUBDIRS if n in subdirs and _has_images(subdirs[n])), None)
    if faces is None:
        raise ValueError(f"{root}: no images found (.png/.jpg) directly in it or in a 'faces' sub-folder; "
                         "point at the folder of aligned faces made by prepare_faces")
    return faces, masks


# ---- storage: what the storage cell of every notebook calls -------------------------------------
DATA_SOURCES = ("synthetic", "drive folders", "zip on Drive")


@dataclass
class Storage:
    """Where a notebook run reads and writes.

    ``run_dir`` is the folder the trainer works in. In Colab with Drive mounted it is on local disk
    (``/content/runs/<run_name>``) and ``publish_to`` is the run folder on Drive: checkpoints are built
    locally and copied to Drive safely (temp name, verify, rename), because writes straight to the Drive
    mount may never sync. Elsewhere ``publish_to`` is None and ``run_dir`` is the run's only home.
    ``results_dir`` is where the checkpoints and preview PNGs that outlive the runtime are.
    """

    run_dir: Path
    drive: Path | None = None
    publish_to: Path | None = None
    dir_a: str = ""
    dir_b: str = ""
    mask_dir_a: str = ""
    mask_dir_b: str = ""
    notes: list = field(default_factory=list)

    def overrides(self) -> dict:
        """The data.* config fields for these face sets (empty strings mean SyntheticFaces)."""
        return {"data.dir_a": self.dir_a, "data.dir_b": self.dir_b,
                "data.mask_dir_a": self.mask_dir_a, "data.mask_dir_b": self.mask_dir_b}

    @property
    def results_dir(self) -> Path:
        """The run folder that survives the runtime (Drive when publishing, else ``run_dir``)."""
        return self.publish_to or self.run_dir


def prepare_storage(drive_folder: str = "ganlib_runs", run_name: str = "run1", data_source: str = "synthetic",
                    faces_a: str = "", faces_b: str = "", *, local_root: str | os.PathLike | None = None,
                    mountpoint: str = DRIVE_MOUNTPOINT, log=print) -> Storage:
    """Mount Drive (Colab only), choose the run folder, and stage the two face sets to local disk.

    ``data_source``: "synthetic" (built-in made-up faces, nothing to prepare), "drive folders" or
    "zip on Drive" (``faces_a`` / ``faces_b`` are folders or archives, relative to My Drive in Colab).
    Both kinds are copied once to ``local_root`` (``/content/data`` in Colab) with
    :func:`stage_dataset`. Smoke mode always uses synthetic faces and no Drive.
    """
    if data_source not in DATA_SOURCES:
        raise ValueError(f"data source {data_source!r} is not one of {DATA_SOURCES}")
    drive = mount_drive(mountpoint, log=log)
    run_dir = default_run_dir(drive_folder, run_name, mountpoint=mountpoint)
    st = Storage(run_dir=run_dir, drive=drive)
    if drive is not None and not os.environ.get("GANLIB_RUN_DIR", "").strip():
        st.publish_to, st.run_dir = run_dir, Path(LOCAL_RUNS_ROOT) / run_dir.name
        st.run_dir.mkdir(parents=True, exist_ok=True)
        log(f"run folder on Drive: {st.publish_to} (checkpoints and previews are published there)")
        log(f"working copy on local disk: {st.run_dir}")
    else:
        log(f"run folder: {run_dir}")
    if smoke_mode() and data_source != "synthetic":
        log("smoke mode: using synthetic faces instead of " + data_source)
        data_source = "synthetic"
    if data_source == "synthetic":
        log("data: SyntheticFaces (two made-up identities rendered on the fly; no real person)")
        return st
    if local_root is None:
        local_root = LOCAL_DATA_ROOT if in_colab() else Path(tempfile.gettempdir()) / "ganlib-data"
    sources = {}
    for side, src in (("A", faces_a), ("B", faces_b)):  # check both before copying anything
        if not str(src).strip():
            raise ValueError(f"data source {data_source!r} needs the faces of person {side}: fill faces_{side.lower()}")
        sources[side] = path = resolve_path(src, mountpoint=mountpoint)
        if data_source == "zip on Drive" and not is_archive(path):
            raise ValueError(f"{path}: 'zip on Drive' expects a .zip or .tar(.gz) file for person {side}")
    for side, path in sources.items():
        local = stage_dataset(path, Path(local_root) / side, log=log)
        faces, masks = find_face_dirs(local)
        setattr(st, f"dir_{side.lower()}", str(faces))
        setattr(st, f"mask_dir_{side.lower()}", str(masks) if masks else "")
        log(f"person {side}: faces {faces}" + (f", masks {masks}" if masks else ", no mask folder"))
    return st


# ---- config and time budget ---------------------------------------------------------------------
def notebook_config(preset_name: str = "v22_colab", total_iters: int | None = None,
                    storage: Storage | None = None, *, log=print):
    """The Config a notebook starts from: the preset, the form's TOTAL_ITERS, the staged data folders,
    then ``GANLIB_OVERRIDES``. Smoke mode replaces the preset by ``smoke`` and keeps its TOTAL_ITERS."""
    from ganlib.config import preset  # noqa: PLC0415

    if smoke_mode():
        if preset_name != "smoke":
            log(f"smoke mode: preset 'smoke' instead of {preset_name!r}")
        cfg = preset("smoke")
    else:
        cfg = preset(preset_name)
        if total_iters:
            cfg.override({"train.TOTAL_ITERS": int(total_iters)})
    if storage is not None:
        cfg.override(storage.overrides())
    extra = env_overrides()
    if extra:
        log(f"GANLIB_OVERRIDES: {extra}")
        cfg.override(extra)
    return cfg


def _start_time_of(pid: str) -> float | None:
    """Wall-clock start of a process from /proc (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22 (starttime), counted after "comm"
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def session_start() -> float:
    """Best estimate of when this runtime started (epoch seconds).

    In Colab the container's first process starts with the runtime, and survives "Restart session",
    so its start time is the session start. Elsewhere, the start of this (kernel) process.
    """
    start = _start_time_of("1") if in_colab() else None
    return start or _start_time_of("self") or _IMPORT_TIME


def session_budget(hours: float = 12.0, margin_minutes: float = 20.0, start: float | None = None) -> float:
    """Seconds left before an assumed ``hours`` session cap minus ``margin_minutes`` (never negative).

    Colab's free tier ends runtimes after at most 12 hours; the margin leaves time for the last
    checkpoint to be written and copied to Drive. ``start`` defaults to :func:`session_start`.
    """
    start = session_start() if start is None else start
    return max(0.0, hours * 3600 - margin_minutes * 60 - (time.time() - start))


def chunk_seconds(chunk_minutes: float = 0, **budget) -> float:
    """Seconds this training chunk may run: ``chunk_minutes`` (0 = no limit of its own), capped by the
    session budget (keyword arguments go to :func:`session_budget`)."""
    left = session_budget(**budget)
    if chunk_minutes and chunk_minutes > 0:
        return min(float(chunk_minutes) * 60, left)
    return left


# ---- previews -----------------------------------------------------------------------------------
#: The original's preview titles, and ganlib's PNG name for each (``<stem>_<step>.png`` in the run folder).
GRID_FILES = {
    "Transformed (masked) results:": "train_preprocessed",
    "Masks:": "train_masked",
    "Reconstruction results:": "train_reconstruction",
}


def preview_steps(run_dir: str | os.PathLike) -> list[int]:
    """Steps for which the run folder holds preview PNGs, ascending."""
    steps = set()
    for p in Path(run_dir).glob("train_*_*.png"):
        stem, _, num = p.stem.rpartition("_")
        if stem in GRID_FILES.values() and num.isdigit():
            steps.add(int(num))
    return sorted(steps)


def grid_paths(run_dir: str | os.PathLike, step: int | None = None) -> dict:
    """``{title: png path}`` of the three preview grids of ``step`` (None or 0: the newest step)."""
    steps = preview_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no preview PNGs yet; they are written every display_iters")
    if not step:
        step = steps[-1]
    if step not in steps:
        raise FileNotFoundError(f"{run_dir}: no previews for step {step}; steps with previews: {steps}")
    return {title: Path(run_dir) / f"{stem}_{step}.png" for title, stem in GRID_FILES.items()}


def show_grids(run_dir: str | os.PathLike, step: int | None = None) -> dict:
    """Display the three preview grids of ``step`` (newest when None/0) with their titles; returns the paths."""
    from IPython.display import Image, display  # noqa: PLC0415

    paths = grid_paths(run_dir, step)
    for title, path in paths.items():
        print(f"{title}  ({path.name})")
        display(Image(filename=str(path)))
    return paths


def describe_checkpoints(run_dir: str | os.PathLike) -> str:
    """One line per checkpoint in the run folder (step, verified or not, file), newest last."""
    from ganlib.checkpoint import list_checkpoints  # noqa: PLC0415

    infos = list_checkpoints(run_dir)
    if not infos:
        return f"{run_dir}: no checkpoints yet"
    lines = [f"{len(infos)} checkpoint(s) in {run_dir}:"]
    for info in infos:
        ok = "verified" if getattr(info, "verified", False) else "NOT verified"
        lines.append(f"  step {info.step:>7}  {ok:12}  {Path(info.path).name}")
    return "\n".join(lines)


# ---- smoke helpers (tests, and a quick look without real data) ---------------------------------
def ensure_trained_run(run_dir: str | os.PathLike, steps: int = 2, *, log=print) -> Path:
    """Make sure ``run_dir`` has a checkpoint: when it has none, train a ``smoke`` run for ``steps``.

    Used by the convert notebook in smoke mode, so that it can be run without a trained model.
    """
    from ganlib.checkpoint import list_checkpoints  # noqa: PLC0415
    from ganlib.config import preset  # noqa: PLC0415
    from ganlib.trainer import Trainer  # noqa: PLC0415

    run_dir = Path(run_dir)
    if list_checkpoints(run_dir):
        return run_dir
    log(f"{run_dir}: no checkpoint; training a {steps}-step smoke model first")
    cfg = preset("smoke")
    cfg.override({"train.TOTAL_ITERS": steps, "train.display_iters": steps})
    trainer = Trainer.resume_or_start(run_dir, cfg, log=log)
    trainer.train(until=steps)
    return run_dir


def synthetic_samples(out_dir: str | os.PathLike, identity: str = "A", n: int = 4, seed: int = 0,
                      size: int = 128) -> Path:
    """Write ``n`` SyntheticFaces images of ``identity`` (a made-up person) under ``out_dir`` and return
    the folder of the face images (for smoke runs of prepare_faces and convert)."""
    from ganlib.synthetic import SyntheticFaces  # noqa: PLC0415

    SyntheticFaces(size=size).write_folder(out_dir, identity, n, seed, with_masks=False)
    return find_face_dirs(out_dir)[0]


def smoke_video(path: str | os.PathLike, identity: str = "A", frames: int = 10, size: int = 128,
                seed: int = 0) -> Path:
    """Write a short video of a SyntheticFaces identity (a made-up person, nuisance changing per
    frame) to ``path``; an existing file is kept as it is. For smoke runs of prepare_faces and convert."""
    from ganlib.synthetic import SyntheticFaces  # noqa: PLC0415
    from ganlib.video import VideoWriter  # noqa: PLC0415

    path = Path(path)
    if path.exists():
        return path
    gen = SyntheticFaces(size=size)
    with VideoWriter(path, fps=10) as writer:
        for nz in gen.sample_nuisance(frames, seed):
            writer.write(gen.render(identity, nz).image)
    return path


def _split_inputs(text: str) -> list[str]:
    return [s.strip() for s in str(text).replace("\n", ",").split(",") if s.strip()]


def extract_jobs(inputs_a: str = "", inputs_b: str = "", out_folder: str = "ganlib_runs/faces", *,
                 mountpoint: str = DRIVE_MOUNTPOINT, log=print) -> dict:
    """What the prepare_faces notebook extracts: ``{"A": ([input paths], out_dir), "B": ...}``.

    ``inputs_a`` / ``inputs_b``: comma-separated videos, photos or folders (relative to My Drive in
    Colab); faces and masks go to ``<out_folder>/A`` and ``<out_folder>/B`` (``faces/`` + ``masks/``).
    A side left empty is skipped; a missing path is reported by the extraction, not fatal.
    Smoke mode: a tiny generated video (person A) and a few SyntheticFaces photos (person B), all in
    a temporary folder, and no Drive.
    """
    if smoke_mode():
        tmp = Path(os.environ.get("GANLIB_RUN_DIR") or tempfile.mkdtemp(prefix="ganlib-smoke-faces-"))
        log(f"smoke mode: a generated video and synthetic photos in {tmp} (made-up faces)")
        video = smoke_video(tmp / "inputs" / "person_A.mp4", "A", frames=10)
        photos = synthetic_samples(tmp / "inputs" / "person_B", "B", n=3)
        return {"A": ([video], tmp / "faces" / "A"), "B": ([photos], tmp / "faces" / "B")}
    mount_drive(mountpoint, log=log)
    out = resolve_path(out_folder, mountpoint=mountpoint)
    jobs = {}
    for side, text in (("A", inputs_a), ("B", inputs_b)):
        items = [resolve_path(s, mountpoint=mountpoint) for s in _split_inputs(text)]
        if not items:
            log(f"person {side}: no inputs given, skipped")
            continue
        jobs[side] = (items, out / side)
        log(f"person {side}: {len(items)} input(s) -> {out / side}")
    if not jobs:
        raise ValueError("give the videos/photos of person A and/or B (inputs_a, inputs_b)")
    return jobs


def face_sheet(folder: str | os.PathLike, n: int = 8, tile: int = 96):
    """A one-row PIL image of the first ``n`` faces in ``folder`` (or its ``faces/`` sub-folder),
    or None when there are none yet."""
    from PIL import Image  # noqa: PLC0415

    try:
        faces, _ = find_face_dirs(folder)
    except (FileNotFoundError, ValueError):
        return None
    files = sorted(p for p in faces.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:n]
    if not files:
        return None
    sheet = Image.new("RGB", (tile * len(files), tile))
    for i, f in enumerate(files):
        with Image.open(f) as im:
            sheet.paste(im.convert("RGB").resize((tile, tile)), (i * tile, 0))
    return sheet


def show_history(history: list) -> None:
    """Display the loss curves of ``trainer.history`` and close the figure (figures left open pile up
    in memory over a long session)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from IPython.display import display  # noqa: PLC0415

    from ganlib.viz import plot_history  # noqa: PLC0415

    if not history:
        print("no losses logged yet (they are logged every display_iters)")
        return
    fig = plot_history(history)
    display(fig)
    plt.close(fig)


@dataclass
class ConvertJob:
    """What the convert notebook converts: a trained run, an input file or folder, an output folder."""

    run_dir: Path
    source: Path
    out_dir: Path


def convert_job(drive_folder: str = "ganlib_runs", run_name: str = "run1", source: str = "",
                out_folder: str = "ganlib_runs/converted", *, mountpoint: str = DRIVE_MOUNTPOINT,
                log=print) -> ConvertJob:
    """Mount Drive (Colab only) and resolve the run folder, the input and the output folder.

    Smoke mode: the run folder is ``GANLIB_RUN_DIR`` or a temporary one, trained for 2 steps of the
    ``smoke`` preset when it has no checkpoint; the input is a generated clip of person A.
    """
    if smoke_mode():
        run_dir = default_run_dir(drive_folder, run_name, mountpoint=mountpoint)
        ensure_trained_run(run_dir, steps=2, log=log)
        clip = smoke_video(run_dir / "smoke_inputs" / "person_A.mp4", "A", frames=6, size=128)
        job = ConvertJob(run_dir=run_dir, source=clip, out_dir=run_dir / "converted")
    else:
        mount_drive(mountpoint, log=log)
        run_dir = resolve_path(drive_folder, mountpoint=mountpoint) / run_name
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: run folder not found; give the drive_folder and run_name "
                                    "you trained with")
        if not str(source).strip():
            raise ValueError("give the video, photo or folder to convert (source)")
        job = ConvertJob(run_dir=run_dir, source=resolve_path(source, mountpoint=mountpoint),
                         out_dir=resolve_path(out_folder, mountpoint=mountpoint))
        if not job.source.exists():
            raise FileNotFoundError(f"{job.source}: input not found (paths are relative to My Drive in Colab)")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    log(f"model: {job.run_dir}\ninput: {job.source}\noutput folder: {job.out_dir}")
    return job


def _free_name(path: Path) -> Path:
    """``path``, or ``stem-2.ext``, ``stem-3.ext``... when it exists: outputs are never replaced."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def run_convert(job: ConvertJob, direction: str = "AtoB", *, color_correction: str = "hist_match",
                output_type: int = 1, smoothing: str = "kalman", swapper=None):
    """Convert ``job.source`` (a video, a photo or a folder of photos) with the newest checkpoint of
    ``job.run_dir`` and return ``(report, output path)``; ``ganlib.convert`` prints the summary.

    Outputs are named ``<input name>_<direction>`` in ``job.out_dir``; an existing output is never
    replaced (a ``-2``, ``-3``... suffix is added instead). Every output carries the
    "synthetic, made with ganlib" label (see ``ganlib.convert``).
    """
    from ganlib import convert  # noqa: PLC0415
    from ganlib.video import VIDEO_EXTENSIONS  # noqa: PLC0415

    swapper = swapper or convert.Swapper.from_run_dir(job.run_dir)
    src = job.source
    opts = {"color_correction": color_correction, "output_type": int(output_type)}
    if src.is_dir():
        out = _free_name(job.out_dir / f"{src.name}_{direction}")
        report = convert.convert_folder(swapper, src, out, direction, **opts)
    elif src.suffix.lower() in VIDEO_EXTENSIONS:
        out = _free_name(job.out_dir / f"{src.stem}_{direction}.mp4")
        report = convert.convert_video(swapper, src, out, direction, smoothing=smoothing, **opts)
    elif src.suffix.lower() in IMAGE_EXTENSIONS:
        ext = src.suffix.lower() if src.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
        out = _free_name(job.out_dir / f"{src.stem}_{direction}{ext}")
        report = convert.convert_image(swapper, src, direction, out=out, **opts)
    else:
        raise ValueError(f"{src}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}), an image or a folder")
    return report, out


def show_output(path: str | os.PathLike, width: int = 512) -> None:
    """Display a converted photo, the first image of a converted folder, or the middle frame of a
    converted video, with the label it carries."""
    from IPython.display import display  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            print(f"{path}: no converted images")
            return
        path = files[0]
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        from ganlib.convert import read_label  # noqa: PLC0415

        with Image.open(path) as im:
            image = im.convert("RGB")
        print(f"{path}  (label: {read_label(path)!r})")
    else:
        from ganlib.video import iter_frames, probe, read_metadata  # noqa: PLC0415

        info = probe(path)
        middle = max(0, info.frames // 2)
        frame = next((f for i, f in iter_frames(path, start=middle)), None)
        if frame is None:
            print(f"{path}: no frames")
            return
        image = Image.fromarray(frame)
        print(f"{path}  ({info.frames} frames, {float(info.fps):.2f} fps; metadata: {read_metadata(path)})")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)))
    display(image)


def show_faces(folder: str | os.PathLike, n: int = 8) -> None:
    """Display the first ``n`` faces of a face folder in one row (or say that there are none)."""
    from IPython.display import display  # noqa: PLC0415

    sheet = face_sheet(folder, n=n)
    if sheet is None:
        print(f"  no faces in {folder}")
    else:
        display(sheet)


def torch_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"
