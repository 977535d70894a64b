"""Checkpoints that are never lost: atomic, verified saves, safe publishing, careful loading.

Why this module is so careful: every trainer ganlib replaces has lost users' work here.
faceswap-GAN v2.2 swallowed a failed load, started from random weights and then
overwrote the good files; DeepFaceLab users hit "invalid load key '\\x00'" after power
cuts (renamed but never flushed files); DFL-Colab printed "Backed up!" after a failed copy
to Drive (see shared/reference/peers-and-users.md sections 2 and 4). The rules here:

* One file per save, ``<run_dir>/checkpoints/ckpt-{step:09d}.pt``, a plain ``torch.save``
  dict of tensors and plain Python types, so it loads with ``torch.load(weights_only=True)``
  and can never run code when read. Its sidecar ``ckpt-{step:09d}.json`` (step, bytes,
  sha256, time, format_version) is written LAST and marks the checkpoint complete.
* Writing: temp file in the same folder -> flush + fsync -> read back and check the
  sha256 -> ``os.replace`` to the final name -> fsync the folder -> size check -> sidecar
  (same temp/fsync/verify/rename dance) -> only then prune old ones. A final name is never
  overwritten in place.
* Publishing to Google Drive (slow, flaky FUSE mount; colab-and-notebooks.md B4-B5): the
  checkpoint is built on local disk and :class:`Publisher` copies it under a temp name,
  reads it back, checks size + sha256, renames it, checks the size again, then writes the
  sidecar. Failures are retried, then reported loudly; the local copy is always kept.
* Loading: newest first; a file is used only if its sidecar matches (size + sha256),
  ``torch.load(weights_only=True)`` accepts it and the format fields are right. Bad files
  are skipped with a warning naming the file and the reason. Checkpoint files present but
  none loadable -> :class:`CheckpointError`: ganlib never starts fresh over a user's files.

All file operations go through a small :class:`FS` object so tests (and the crash
harness) can inject faults with :class:`FaultInjectingFS`.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import pickle
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__ as _GANLIB_VERSION

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "CheckpointError",
    "CheckpointStateError",
    "CheckpointConflictError",
    "CheckpointWarning",
    "CheckpointInfo",
    "LoadedCheckpoint",
    "PublishResult",
    "FS",
    "FaultInjectingFS",
    "Publisher",
    "SaveClock",
    "validate_state",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest",
    "list_checkpoints",
    "publish_file",
    "checkpoint_name",
]

FORMAT = "ganlib.ckpt"
FORMAT_VERSION = 1

#: Format migrations: ``MIGRATIONS[v]`` turns a state dict of format version ``v`` into
#: one of version ``v + 1`` (it may modify and return its argument). They are applied in
#: order from the file's version up to :data:`FORMAT_VERSION`; ``format_version`` is
#: updated after each step. Register one whenever FORMAT_VERSION is raised.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

CHECKPOINT_DIRNAME = "checkpoints"
_CKPT_RE = re.compile(r"^ckpt-(\d{9,})\.pt$")
# Keys this module owns in the saved dict (the trainer's own keys are left untouched).
_FORMAT_KEYS = ("format", "format_version", "ganlib_version", "torch_version", "saved_at")
# 4 MiB: large enough that hashing/copying a few-hundred-MB checkpoint is not dominated by
# Python call overhead, small enough to keep memory flat.
_CHUNK = 4 * 1024 * 1024
# A temp file untouched this long belongs to a save or copy that died with its process
# (e.g. a Colab runtime that disconnected mid-copy): copying even a 1 GB checkpoint to Drive
# takes minutes, not an hour. Removing them matters on Drive, where space is the user's quota.
STALE_TMP_SECONDS = 600


# ----------------------------------------------------------------------------- errors


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or trusted; the message says which file and why."""


class CheckpointStateError(CheckpointError, TypeError):
    """The state handed to :func:`save_checkpoint` holds something that would not load
    with ``torch.load(weights_only=True)``; the message names the key path."""


class CheckpointConflictError(CheckpointError):
    """A complete checkpoint for the same step already exists with different contents."""


class CheckpointWarning(UserWarning):
    """A checkpoint file was skipped, or a publish to the destination failed."""


class _VerifyError(OSError):
    """Read-back of a freshly written file did not match what was written."""


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass
class CheckpointInfo:
    """One ``ckpt-*.pt`` file as :func:`list_checkpoints` sees it.

    ``verified`` means the sidecar exists and agrees with the file (size; also sha256 when
    listed with ``verify=True``). ``reason`` says why not, when it is False. ``time`` is the
    sidecar's ISO time, or the file's modification time when there is no sidecar.
    """

    step: int
    path: Path
    verified: bool
    bytes: int
    time: str
    reason: str | None = None
    sha256: str | None = None


@dataclasses.dataclass
class LoadedCheckpoint:
    """What :func:`load_latest` / :func:`load_checkpoint` return.

    ``state`` is the saved dict (migrated to the current format, format fields included);
    ``skipped`` lists newer files that were passed over, as (path, reason).
    """

    path: Path
    step: int
    state: dict
    verified: bool
    migrated_from: int | None = None
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PublishResult:
    """Outcome of one publish. ``bool(result)`` is ``ok``.

    ``skipped`` is True when the destination already held an identical, complete copy.
    ``error`` is a full, user-facing message when ``ok`` is False.
    """

    ok: bool
    src: Path
    dest: Path
    attempts: int = 0
    skipped: bool = False
    error: str | None = None

    def __bool__(self) -> bool:
        return self.ok


# ----------------------------------------------------------------------------- file system


class FS:
    """The file operations this module uses, on the real file system.

    Kept tiny so :class:`FaultInjectingFS` can make any of them fail the way a full disk or
    a flaky Google Drive mount does.
    """

    def open(self, path: str | os.PathLike, mode: str):
        return open(path, mode)

    def write(self, f, data: bytes) -> None:
        f.write(data)

    def fsync(self, f) -> None:
        f.flush()
        os.fsync(f.fileno())

    def replace(self, src: str | os.PathLike, dst: str | os.PathLike) -> None:
        os.replace(src, dst)

    def remove(self, path: str | os.PathLike) -> None:
        os.remove(path)

    def listdir(self, path: str | os.PathLike) -> list[str]:
        return os.listdir(path)

    def stat(self, path: str | os.PathLike) -> os.stat_result:
        return os.stat(path)

    def exists(self, path: str | os.PathLike) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str | os.PathLike) -> None:
        os.makedirs(path, exist_ok=True)

    def fsync_dir(self, path: str | os.PathLike) -> None:
        """Make a rename durable. Best effort: Windows and some FUSE mounts (Drive) refuse
        to open or fsync a directory, and that must not fail a save."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


class FaultInjectingFS(FS):
    """An :class:`FS` that breaks on purpose, for tests and the crash harness.

    Args:
        fault: one of :attr:`FAULTS`:
            ``"fail_half_way"``: a file being written gets half of its first write, then
            ``OSError(EIO)`` (the whole file when it is written in one piece);
            ``"enospc"``: writing raises ``OSError(ENOSPC)`` ("No space left on device");
            ``"truncate_after_rename"``: after ``replace`` the file at the final name is cut
            to half its size, like a Drive sync gone wrong;
            ``"flip_bytes"``: one byte of the first write to a file is inverted, silently.
        times: how many faults to inject before behaving (``None``: every time, i.e. a
            persistent fault). Default 1: a transient fault, so a retry succeeds.
        probability: chance that an eligible operation faults (seeded by ``seed``).
        match: only paths whose file name contains this string are eligible
            (e.g. ``".pt"``); ``None``: every file.

    An eligible operation is opening a file for writing (for the three write faults; the
    fault hits that file's first write) or a ``replace`` onto a matching name (for
    ``truncate_after_rename``). ``injected`` counts the faults actually injected.
    """

    FAULTS = ("fail_half_way", "enospc", "truncate_after_rename", "flip_bytes")

    def __init__(
        self,
        fault: str,
        *,
        times: int | None = 1,
        probability: float = 1.0,
        seed: int = 0,
        match: str | None = None,
    ):
        if fault not in self.FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {self.FAULTS}")
        self.fault = fault
        self.times = times
        self.probability = probability
        self.match = match
        self.injected = 0
        self._rng = random.Random(seed)
        self._armed: set[int] = set()  # id() of open file objects whose next write faults

    def _fire(self, path) -> bool:
        if self.match is not None and self.match not in os.path.basename(os.fspath(path)):
            return False
        if self.times is not None and self.injected >= self.times:
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.injected += 1
        return True

    def open(self, path, mode):
        f = super().open(path, mode)
        self._armed.discard(id(f))  # id() of a closed file can be reused
        if "w" in mode and self.fault != "truncate_after_rename" and self._fire(path):
            self._armed.add(id(f))
        return f

    def write(self, f, data: bytes) -> None:
        if id(f) not in self._armed or not data:
            return super().write(f, data)
        self._armed.discard(id(f))
        if self.fault == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(f, "name", None))
        if self.fault == "fail_half_way":
            super().write(f, bytes(data[: len(data) // 2]))
            raise OSError(errno.EIO, "injected I/O error half way through the write", getattr(f, "name", None))
        buf = bytearray(data)  # flip_bytes
        buf[len(buf) // 2] ^= 0xFF
        return super().write(f, bytes(buf))

    def replace(self, src, dst) -> None:
        super().replace(src, dst)
        if self.fault == "truncate_after_rename" and self._fire(dst):
            size = os.path.getsize(dst)
            with open(dst, "r+b") as f:
                f.truncate(size // 2)


_DEFAULT_FS = FS()


# ----------------------------------------------------------------------------- validation

_SCALARS = (str, int, float, bool, type(None))
_MAPPINGS = (dict, collections.OrderedDict)  # module.state_dict() returns an OrderedDict


def _path_str(path: tuple) -> str:
    return "state" + "".join(f"[{k!r}]" for k in path)


def validate_state(state: Any) -> None:
    """Check that ``state`` holds only tensors and plain Python types.

    Allowed: ``torch.Tensor`` / ``nn.Parameter``, ``str``, ``int``, ``float``, ``bool``,
    ``None``, and (nested) ``list``, ``tuple``, ``dict`` / ``OrderedDict`` whose keys are
    str/int/float/bool/None. Types are checked exactly: ``numpy.float64`` subclasses
    ``float`` but would need unpickling numpy on load, so it is refused.

    Raises:
        CheckpointStateError: naming the first offending key path, e.g.
            ``state['rng']['numpy']``, and how to convert the value.
    """
    stack: list[tuple[tuple, Any]] = [((), state)]
    if type(state) not in _MAPPINGS:
        raise CheckpointStateError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    while stack:
        path, value = stack.pop()
        t = type(value)
        if t in _SCALARS:
            continue
        if t is torch.Tensor or t is torch.nn.Parameter:
            continue
        if t in _MAPPINGS:
            for k, v in value.items():
                if type(k) not in _SCALARS:
                    raise CheckpointStateError(
                        f"{_path_str(path)} has a key of type {type(k).__module__}.{type(k).__qualname__} "
                        f"({k!r}); checkpoint dict keys must be str, int, float, bool or None."
                    )
                stack.append((path + (k,), v))
            continue
        if t is list or t is tuple:
            for i, v in enumerate(value):
                stack.append((path + (i,), v))
            continue
        hint = ""
        mod = t.__module__
        if mod == "numpy":
            hint = " Convert numpy values first: torch.from_numpy(a) for arrays, .item() for scalars."
        elif isinstance(value, torch.Tensor):
            hint = " Save a plain tensor instead (e.g. x.detach().clone().as_subclass(torch.Tensor))."
        elif dataclasses.is_dataclass(value):
            hint = " Save dataclasses.asdict(obj) (or the config's to_dict()) instead."
        elif isinstance(value, torch.nn.Module):
            hint = " Save module.state_dict(), never the module."
        raise CheckpointStateError(
            f"{_path_str(path)} is a {mod}.{t.__qualname__}: a ganlib checkpoint may hold only "
            "torch tensors and str/int/float/bool/None in lists, tuples and dicts, so that it "
            f"loads with torch.load(weights_only=True) and can never run code.{hint}"
        )


# ----------------------------------------------------------------------------- helpers


def checkpoint_name(step: int) -> str:
    """``ckpt-{step:09d}.pt``: zero padding makes names sort by step."""
    return f"ckpt-{int(step):09d}.pt"


def _sidecar_path(pt: Path) -> Path:
    return pt.with_suffix(".json")


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _tmp_name(final: Path) -> Path:
    # The temp name never matches ckpt-*.pt, so a crash mid-write leaves nothing that the
    # loader could mistake for a checkpoint.
    # os.urandom, not the random module: saving must not move the training run's Python RNG stream.
    return final.with_name(f"{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")


def _log_fn(log: Callable[[str], None] | None) -> Callable[[str], None]:
    if log is not None:
        return log
    return lambda msg: warnings.warn(msg, CheckpointWarning, stacklevel=3)


def _hash_file(fs: FS, path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with fs.open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def _try_remove(fs: FS, path: Path) -> None:
    try:
        fs.remove(path)
    except OSError:
        pass


class _HashingWriter:
    """A write-only file object for torch.save that hashes what it forwards to ``fs``."""

    def __init__(self, fs: FS, f):
        self.fs, self.f = fs, f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data) -> int:
        data = bytes(data)
        self.fs.write(self.f, data)
        self.h.update(data)
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()


def _write_verified(
    fs: FS, final: Path, produce: Callable[[_HashingWriter], None], *, replace_ok: bool = False,
    before_replace: Callable[[int, str], None] | None = None,
) -> tuple[int, str]:
    """Write ``final`` safely: temp -> fsync -> read back + compare -> replace -> fsync dir
    -> size check. Returns (bytes, sha256). On any failure the temp file is removed, the
    final name is left as it was before (or, if only the post-rename check failed, the
    bad file we just put there is removed), and an OSError is raised.
    """
    fs.makedirs(final.parent)
    if not replace_ok and fs.exists(final):
        raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file", str(final))
    tmp = _tmp_name(final)
    try:
        with fs.open(tmp, "wb") as f:
            w = _HashingWriter(fs, f)
            produce(w)
            fs.fsync(f)
        size, digest = w.n, w.h.hexdigest()
        got_size, got_digest = _hash_file(fs, tmp)
        if (got_size, got_digest) != (size, digest):
            raise _VerifyError(
                errno.EIO,
                f"read-back mismatch: wrote {size} bytes sha256 {digest[:12]}…, "
                f"read {got_size} bytes sha256 {got_digest[:12]}…",
                str(tmp),
            )
        if before_replace is not None:
            # Checkpoints: the sidecar goes in under its final name BEFORE the .pt's rename, so a
            # final-named .pt always has its sidecar (a kill in between leaves only an orphan
            # sidecar, which the scanner ignores) and the .pt's atomic rename completes the save.
            before_replace(size, digest)
        fs.replace(tmp, final)
    except BaseException:
        _try_remove(fs, tmp)
        raise
    fs.fsync_dir(final.parent)
    on_disk = fs.stat(final).st_size
    if on_disk != size:
        # Only our own, just-written copy can be at the final name here (we checked it did
        # not exist, or replace_ok was given for a re-publishable file): drop it so no
        # final-named corrupt file stays behind.
        _try_remove(fs, final)
        raise _VerifyError(
            errno.EIO, f"size changed after rename: {on_disk} bytes on disk, {size} written", str(final)
        )
    return size, digest


def _copy_into(fs_src: FS, src: Path, expect: tuple[int, str] | None = None):
    """A ``produce`` callable copying ``src`` in chunks; checks its hash when ``expect``."""

    def produce(w: _HashingWriter) -> None:
        with fs_src.open(src, "rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                w.write(chunk)
        if expect is not None and (w.n, w.h.hexdigest()) != expect:
            raise CheckpointError(
                f"the local checkpoint {src} no longer matches its sidecar "
                f"({w.n} bytes, sidecar says {expect[0]}): it was changed or damaged on local disk."
            )

    return produce


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _read_sidecar(fs: FS, pt: Path) -> tuple[dict | None, str | None]:
    sc = _sidecar_path(pt)
    if not fs.exists(sc):
        return None, "no sidecar .json: the checkpoint is incomplete (an interrupted save, a half-copied file, or Drive still syncing)"
    try:
        with fs.open(sc, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
        int(meta["bytes"]), str(meta["sha256"]), int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"its sidecar {sc.name} is unreadable ({type(e).__name__}: {e})"
    return meta, None


def _check_file(fs: FS, pt: Path, *, full: bool) -> tuple[dict | None, str | None]:
    """(sidecar, None) when the file agrees with its sidecar, else (sidecar-or-None, reason).

    ``full=False`` checks only the size (cheap, for listing and pruning)."""
    try:
        size = fs.stat(pt).st_size
    except OSError as e:
        return None, f"cannot be read ({e})"
    if size == 0:
        return None, "zero bytes (an interrupted write or a sync that never finished)"
    meta, reason = _read_sidecar(fs, pt)
    if meta is None:
        return None, reason
    m = _CKPT_RE.match(pt.name)
    if m and int(meta["step"]) != int(m.group(1)):
        return meta, f"its sidecar is for step {meta['step']}, not {int(m.group(1))} (sidecar mismatch)"
    if size != int(meta["bytes"]):
        what = "truncated" if size < int(meta["bytes"]) else "larger than recorded"
        return meta, f"{what}: {size} bytes on disk, its sidecar says {meta['bytes']} (sidecar mismatch)"
    if full:
        _, digest = _hash_file(fs, pt)
        if digest != meta["sha256"]:
            return meta, (
                "sha256 does not match its sidecar (flipped or overwritten bytes, or the sidecar "
                "belongs to another file)"
            )
    return meta, None


def _ckpt_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT_DIRNAME


def _scan(fs: FS, ckdir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every final-named checkpoint file, newest first."""
    try:
        names = fs.listdir(ckdir)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        m = _CKPT_RE.match(n)
        if m:
            out.append((int(m.group(1)), ckdir / n))
    out.sort(key=lambda t: t[0], reverse=True)
    return out


def _move_aside(fs: FS, pt: Path, reason: str, log: Callable[[str], None]) -> None:
    """Rename a bad final-named file (and its sidecar) out of the way; never delete it:
    it may be a user's hand-copied file, and we do not judge what is worth keeping."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for p in (pt, _sidecar_path(pt)):
        if fs.exists(p):
            aside = p.with_name(f"{p.name}.bad-{stamp}")
            fs.replace(p, aside)
            log(f"{p} was moved aside to {aside.name}: {reason}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.is_floating_point() or a.is_complex():
            return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _content(state: dict) -> dict:
    return {k: v for k, v in state.items() if k not in _FORMAT_KEYS}


# ----------------------------------------------------------------------------- pruning


def _prune(
    fs: FS, ckdir: Path, newest_step: int, keep_last: int, milestone_every: int, log: Callable[[str], None]
) -> list[Path]:
    """Delete complete checkpoints older than the newest verified one, except the last
    ``keep_last`` and the milestones. Incomplete/bad files and anything NEWER than
    ``newest_step`` are never touched."""
    complete = []
    for step, pt in _scan(fs, ckdir):
        if step > newest_step:
            continue
        _, reason = _check_file(fs, pt, full=False)
        if reason is None:
            complete.append((step, pt))
    _remove_stale_tmp(fs, ckdir, log)
    keep = {s for s, _ in complete[:keep_last]}
    keep.add(newest_step)
    removed = []
    for step, pt in complete:
        if step in keep or (milestone_every > 0 and step % milestone_every == 0):
            continue
        try:
            # The .pt first: an orphan sidecar is ignored, an orphan .pt would look like a
            # half-copied checkpoint and cause warnings.
            fs.remove(pt)
            _try_remove(fs, _sidecar_path(pt))
            removed.append(pt)
        except OSError as e:
            log(f"could not prune old checkpoint {pt}: {e} (left in place)")
    return removed


def _remove_stale_tmp(fs: FS, ckdir: Path, log: Callable[[str], None]) -> None:
    now = time.time()
    for n in fs.listdir(ckdir):
        if n.startswith("ckpt-") and ".tmp-" in n:
            p = ckdir / n
            try:
                if now - fs.stat(p).st_mtime > STALE_TMP_SECONDS:
                    fs.remove(p)
                    log(f"removed {p}, left behind by an interrupted save or copy")
            except OSError:
                pass


# ----------------------------------------------------------------------------- saving


def save_checkpoint(
    state: dict,
    run_dir: str | os.PathLike,
    step: int,
    *,
    keep_last: int = 3,
    milestone_every: int = 0,
    publisher: "Publisher | None" = None,
    fs: FS | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Save ``state`` as ``<run_dir>/checkpoints/ckpt-{step:09d}.pt`` (+ sidecar) and return its path.

    ``state`` must hold only tensors and plain Python types (see :func:`validate_state`);
    this adds ``format``, ``format_version``, ``ganlib_version``, ``torch_version`` and
    ``saved_at`` (replacing any such keys in ``state``) and ``step`` when missing.

    The write is atomic and verified (temp file, fsync, read-back sha256, ``os.replace``,
    fsync of the folder, sidecar last). Only after that, older checkpoints are pruned:
    the newest ``keep_last`` complete ones and every step divisible by ``milestone_every``
    (when > 0) are kept; incomplete files and checkpoints with a higher step are never
    deleted. Then, with a ``publisher``, the checkpoint is published to its destination;
    a failed publish is reported by the publisher (``publisher.last_result``) and does not
    raise: the local copy is safe.

    Same step saved twice: if a complete checkpoint for ``step`` already exists with the
    same contents (ignoring the format fields), it is kept and its path returned. If its
    contents differ, :class:`CheckpointConflictError` is raised and nothing is written
    (ganlib never replaces a saved checkpoint; the caller still holds the state). A file at
    that name that is NOT complete (no or mismatching sidecar) is renamed aside to
    ``*.bad-<time>`` and the new checkpoint is written.

    Raises:
        CheckpointStateError: the state holds a disallowed type (nothing is written).
        CheckpointConflictError: see above.
        CheckpointError: the write failed (disk full, I/O error, read-back mismatch); the
            temp file is removed and every earlier checkpoint is left intact.
    """
    fs = fs or _DEFAULT_FS
    log = _log_fn(log)
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 (the newest checkpoint is always kept), got {keep_last}")
    if "step" in state and state["step"] != step:
        raise ValueError(f"state['step'] is {state['step']!r} but step={step} was passed")
    validate_state(state)

    ckdir = _ckpt_dir(run_dir)
    final = ckdir / checkpoint_name(step)
    saved_at = _now_iso()
    payload = dict(state)
    payload.setdefault("step", step)
    payload.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        ganlib_version=_GANLIB_VERSION,
        # str(): torch.__version__ is a TorchVersion (a str subclass) that weights_only refuses.
        torch_version=str(torch.__version__),
        saved_at=saved_at,
    )
    validate_state(payload)  # also checks the fields added here

    if fs.exists(final):
        _, reason = _check_file(fs, final, full=True)
        if reason is None:
            try:
                old = torch.load(final, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any failure means "not a usable file"
                reason = f"torch.load failed ({type(e).__name__}: {e})"
            else:
                if _same(_content(old), _content(payload)):
                    log(f"{final} already holds this exact state; kept it")
                    if publisher is not None:  # an earlier publish of it may have failed
                        publisher.publish_checkpoint(final, keep_last=keep_last, milestone_every=milestone_every)
                    return final
                raise CheckpointConflictError(
                    f"{final} already exists with DIFFERENT contents for step {step}. ganlib never "
                    "replaces a saved checkpoint. This happens when training restarted from an older "
                    "checkpoint in the same run folder: train into a new run folder, or move the newer "
                    "checkpoints away if you really want to branch here. Nothing was written."
                )
        _move_aside(fs, final, f"it was incomplete ({reason}) and step {step} is being saved again", log)

    try:
        def seal(size: int, digest: str) -> None:
            meta = {
                "file": final.name,
                "step": step,
                "bytes": size,
                "sha256": digest,
                "time": saved_at,
                "format_version": FORMAT_VERSION,
            }
            _write_verified(fs, _sidecar_path(final), lambda w: w.write(_json_bytes(meta)), replace_ok=True)

        _write_verified(fs, final, lambda w: torch.save(payload, w), before_replace=seal)
    except OSError as e:
        raise CheckpointError(
            f"could not save checkpoint {final}: {e}. Earlier checkpoints in {ckdir} are untouched "
            "(nothing is pruned after a failed save); free some space or fix the disk and save again."
        ) from e

    _prune(fs, ckdir, step, keep_last, milestone_every, log)
    if publisher is not None:
        publisher.publish_checkpoint(final, keep_last=keep_last, milestone_every=milestone_every)
    return final


# ----------------------------------------------------------------------------- publishing


class Publisher:
    """Copies finished checkpoints and run files from local disk to a slow or unreliable
    destination (a Google Drive folder) without ever leaving a corrupt file under a final name.

    Args:
        dest_run_dir: the destination run folder; checkpoints go to its ``checkpoints/``.
        fs: file operations used on the DESTINATION (local reads use the real file system).
        retries: extra attempts after the first failed one (so ``retries=3`` tries 4 times).
        backoff_s: wait before retry k is ``backoff_s * 2**(k-1)`` seconds (Drive hiccups
            are usually seconds long).
        log: where problems are reported (default: ``warnings.warn`` with CheckpointWarning).

    Every publish: copy under a temp name -> fsync -> read back and compare size + sha256
    -> rename -> size check -> sidecar (same rule) -> prune the destination. A failure is
    retried, then reported with a clear message; the local copy is never touched, and
    earlier destination checkpoints stay intact. ``last_result`` holds the last outcome and
    ``failures`` every failed one.
    """

    def __init__(
        self,
        dest_run_dir: str | os.PathLike,
        fs: FS | None = None,
        retries: int = 3,
        *,
        backoff_s: float = 2.0,
        log: Callable[[str], None] | None = None,
    ):
        self.dest_run_dir = Path(dest_run_dir)
        self.fs = fs or _DEFAULT_FS
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s
        self._log = _log_fn(log)
        self.last_result: PublishResult | None = None
        self.failures: list[PublishResult] = []

    def _finish(self, result: PublishResult) -> PublishResult:
        self.last_result = result
        if not result.ok:
            self.failures.append(result)
            self._log(result.error or "publish failed")
        return result

    def _attempts(self, what: str, action: Callable[[], None]) -> tuple[int, str | None]:
        """Run ``action`` with retries; returns (attempts, last error or None)."""
        last = None
        for attempt in range(1, self.retries + 2):
            try:
                action()
                return attempt, None
            except OSError as e:
                last = f"{type(e).__name__}: {e}"
                if attempt <= self.retries:
                    self._log(f"publishing {what}: attempt {attempt} failed ({last}); retrying")
                    if self.backoff_s > 0:
                        time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return self.retries + 1, last

    def publish_checkpoint(
        self, local_pt: str | os.PathLike, *, keep_last: int = 3, milestone_every: int = 0
    ) -> PublishResult:
        """Publish a complete local checkpoint (``.pt`` + sidecar) to ``dest_run_dir/checkpoints``.

        If the destination already holds a complete checkpoint of that step with the same
        sha256 (or the same contents), nothing is copied. If it holds a complete one with
        different contents, nothing is replaced and a failure is reported. An incomplete
        file at the final name is renamed aside (``*.bad-<time>``) first. After a verified
        publish the destination is pruned like the local folder.
        """
        fs = self.fs
        local_pt = Path(local_pt)
        dest_dir = self.dest_run_dir / CHECKPOINT_DIRNAME
        dest = dest_dir / local_pt.name
        result = PublishResult(ok=False, src=local_pt, dest=dest)

        meta, reason = _check_file(_DEFAULT_FS, local_pt, full=False)
        if meta is None or reason is not None:
            result.error = f"cannot publish {local_pt}: {reason}. It was left where it is."
            return self._finish(result)
        expect = (int(meta["bytes"]), str(meta["sha256"]))

        try:
            if fs.exists(dest):
                dmeta, dreason = _check_file(fs, dest, full=True)
                if dreason is None:
                    if dmeta["sha256"] == expect[1] or _same(
                        _content(torch.load(dest, map_location="cpu", weights_only=True)),
                        _content(torch.load(local_pt, map_location="cpu", weights_only=True)),
                    ):
                        result.ok, result.skipped = True, True
                        return self._finish(result)
                    result.error = (
                        f"not published: {dest} already exists with different contents for the same "
                        f"step; ganlib never replaces a saved checkpoint. The new one is kept locally at "
                        f"{local_pt}. Move one of them away and publish again."
                    )
                    return self._finish(result)
                _move_aside(fs, dest, f"it was incomplete ({dreason}) and is being published again", self._log)
        except Exception as e:  # noqa: BLE001 - a flaky mount can fail anywhere here
            result.error = (
                f"could not inspect the destination {dest} ({type(e).__name__}: {e}). The checkpoint "
                f"is safe on local disk at {local_pt}; earlier destination checkpoints were not touched."
            )
            return self._finish(result)

        done = {"pt": False}

        def seal(size: int, digest: str) -> None:
            _write_verified(fs, _sidecar_path(dest), lambda w: w.write(_json_bytes(meta)), replace_ok=True)

        def action() -> None:
            # Sidecar first, then the .pt's rename (see _write_verified): no unsealed .pt ever.
            _write_verified(fs, dest, _copy_into(_DEFAULT_FS, local_pt, expect), before_replace=seal)
            done["pt"] = True

        try:
            result.attempts, err = self._attempts(local_pt.name, action)
        except CheckpointError as e:  # the LOCAL file is damaged: retrying will not help
            result.attempts, err = 1, str(e)
        if err is not None:
            state = "no checkpoint file was left under its final name there"
            result.error = (
                f"could not publish {local_pt.name} to {dest_dir} after {result.attempts} attempt(s) "
                f"(last error: {err}); {state}. The checkpoint is safe on local disk at {local_pt}, and "
                "earlier checkpoints at the destination are intact. If this is Google Drive, check that "
                "it is still mounted (remount with force_remount=True) and has free space."
            )
            return self._finish(result)
        result.ok = True
        try:
            _prune(fs, dest_dir, int(meta["step"]), keep_last, milestone_every, self._log)
        except OSError as e:  # pruning is housekeeping; the publish itself succeeded
            self._log(f"could not prune old checkpoints in {dest_dir}: {e}")
        return self._finish(result)

    def publish_file(
        self, path: str | os.PathLike, dest: str | os.PathLike | None = None, *, append_only: bool = False
    ) -> PublishResult:
        """Publish another run-folder file (sample grid, ``stats.jsonl``, audit report).

        ``dest`` is a full path, or a path relative to ``dest_run_dir``; default: the same
        file name in ``dest_run_dir``. Same temp -> verify -> rename rule as checkpoints;
        an existing destination file is replaced atomically (it stays intact until the
        verified new copy takes its name). ``append_only=True`` (for ``stats.jsonl``)
        refuses to replace a destination file that is not a prefix of the new one, so a
        fresh, short local log never wipes the history on Drive.
        """
        path = Path(path)
        dest = Path(dest) if dest is not None else Path(path.name)
        if not dest.is_absolute():
            dest = self.dest_run_dir / dest
        result = PublishResult(ok=False, src=path, dest=dest)
        fs = self.fs
        try:
            if append_only and fs.exists(dest):
                n = fs.stat(dest).st_size
                with fs.open(dest, "rb") as f:
                    old = f.read()
                with open(path, "rb") as f:
                    head = f.read(n)
                if old != head:
                    result.error = (
                        f"not published: {dest} is not a prefix of {path} (the local file is shorter or "
                        "different), so replacing it would lose lines. Copy the destination file to local "
                        "disk first and append to it."
                    )
                    return self._finish(result)
        except OSError as e:
            result.error = f"could not inspect {dest} ({e}); {path} was not published and is unchanged."
            return self._finish(result)
        result.attempts, err = self._attempts(
            path.name, lambda: _write_verified(fs, dest, _copy_into(_DEFAULT_FS, path), replace_ok=True)
        )
        if err is not None:
            result.error = (
                f"could not publish {path} to {dest} after {result.attempts} attempt(s) (last error: {err}); "
                "the local file is unchanged."
            )
            return self._finish(result)
        result.ok = True
        return self._finish(result)


def publish_file(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    fs: FS | None = None,
    retries: int = 3,
    append_only: bool = False,
    backoff_s: float = 2.0,
    log: Callable[[str], None] | None = None,
) -> PublishResult:
    """Publish one file to the full path ``dest`` (temp -> verify -> rename, with retries).

    A shortcut for ``Publisher(Path(dest).parent, fs, retries).publish_file(path, dest)``.
    """
    dest = Path(dest)
    pub = Publisher(dest.parent, fs, retries, backoff_s=backoff_s, log=log)
    return pub.publish_file(path, dest, append_only=append_only)


# ----------------------------------------------------------------------------- loading


def _unpickle_refusal(e: BaseException) -> str:
    m = re.search(r"Unsupported global: GLOBAL ([\w.<>]+)", str(e))
    what = f" ({m.group(1)})" if m else ""
    return (
        f"refused: loading it would need unpickling arbitrary Python objects{what}, which could run "
        "code. ganlib loads checkpoints only with torch.load(weights_only=True) and never executes "
        "anything from them. Re-save it from code you trust with only tensors and plain types."
    )


def _load_verified(
    fs: FS, pt: Path, *, map_location, allow_unverified: bool
) -> tuple[dict | None, str | None, bool, int | None]:
    """(state, None, verified, migrated_from) or (None, reason, False, None).

    A checkpoint from a NEWER format version raises CheckpointError instead of being skipped:
    falling back to an older file would silently throw away the user's newer progress."""
    _, reason = _check_file(fs, pt, full=True)
    verified = reason is None
    if not verified:
        if not (allow_unverified and reason is not None and reason.startswith("no sidecar")):
            return None, reason, False, None
    try:
        state = torch.load(pt, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "unsupported global" in str(e).lower():
            return None, _unpickle_refusal(e), False, None
        return None, f"torch.load cannot read it ({str(e)[:200]})", False, None
    except Exception as e:  # noqa: BLE001 - a damaged zip can raise almost anything
        return None, f"torch.load cannot read it ({type(e).__name__}: {str(e)[:200]})", False, None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        return None, f"not a ganlib checkpoint (format field is {fmt!r}, expected {FORMAT!r})", False, None
    version = state.get("format_version")
    if type(version) is not int or version < 0:
        return None, f"bad format_version {version!r}", False, None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{pt} was written by a newer ganlib (checkpoint format {version}, this ganlib "
            f"{_GANLIB_VERSION} reads up to {FORMAT_VERSION}; saved by ganlib "
            f"{state.get('ganlib_version', '?')}). Upgrade ganlib to resume from it "
            "(pip install -U ganlib, or reinstall from git). ganlib will not fall back to an older "
            "checkpoint and train over it."
        )
    migrated_from = None
    if version < FORMAT_VERSION:
        migrated_from = version
        for v in range(version, FORMAT_VERSION):
            fn = MIGRATIONS.get(v)
            if fn is None:
                raise CheckpointError(
                    f"{pt} has checkpoint format {version} and this ganlib has no migration from "
                    f"format {v} to {v + 1}. Load it with the ganlib version that wrote it "
                    f"({state.get('ganlib_version', '?')}) or report this as a bug."
                )
            state = fn(state)
            state["format_version"] = v + 1
    return state, None, verified, migrated_from


def load_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: Any = "cpu",
    allow_unverified: bool = False,
    fs: FS | None = None,
    log: Callable[[str], None] | None = None,
) -> LoadedCheckpoint:
    """Load one checkpoint file, with the same checks as :func:`load_latest`.

    ``allow_unverified=True`` accepts a file without a sidecar (e.g. one copied by hand),
    with a warning; a sidecar that exists but disagrees is never accepted.

    Raises:
        CheckpointError: the file is missing, incomplete, damaged, refused (would need
            unpickling arbitrary objects), from a newer ganlib, or not a ganlib checkpoint.
    """
    fs = fs or _DEFAULT_FS
    log = _log_fn(log)
    pt = Path(path)
    if not fs.exists(pt):
        raise CheckpointError(f"checkpoint {pt} does not exist")
    state, reason, verified, migrated_from = _load_verified(
        fs, pt, map_location=map_location, allow_unverified=allow_unverified
    )
    if state is None:
        hint = " (pass allow_unverified=True if you copied it by hand)" if reason and reason.startswith("no sidecar") else ""
        raise CheckpointError(f"cannot load {pt}: {reason}{hint}")
    if not verified:
        log(f"{pt} has no sidecar, so it could not be verified; loading it because allow_unverified=True")
    step = state.get("step")
    return LoadedCheckpoint(
        path=pt,
        step=int(step) if type(step) is int else _step_from_name(pt),
        state=state,
        verified=verified,
        migrated_from=migrated_from,
    )


def _step_from_name(pt: Path) -> int:
    m = _CKPT_RE.match(pt.name)
    return int(m.group(1)) if m else -1


def load_latest(
    run_dir: str | os.PathLike,
    *,
    map_location: Any = "cpu",
    log: Callable[[str], None] | None = None,
    allow_unverified: bool = False,
    fs: FS | None = None,
) -> LoadedCheckpoint | None:
    """Load the newest trustworthy checkpoint in ``<run_dir>/checkpoints``.

    Files are tried newest step first. A file is accepted only if its sidecar matches it
    (size + sha256), ``torch.load(weights_only=True)`` reads it and its format fields are
    right (older formats are migrated with :data:`MIGRATIONS`). Each rejected file is
    reported through ``log`` (default ``warnings.warn``) with its name and the reason, and
    the next older one is tried.

    Returns:
        The loaded checkpoint, or ``None`` when there are no checkpoint files at all
        (a fresh start is fine).

    Raises:
        CheckpointError: checkpoint files exist but none can be loaded (the message lists
            every file and why; ganlib will not start fresh over them), or the newest
            readable one comes from a newer ganlib ("upgrade ganlib").
    """
    fs = fs or _DEFAULT_FS
    log = _log_fn(log)
    ckdir = _ckpt_dir(run_dir)
    try:
        found = _scan(fs, ckdir)
    except OSError as e:
        # Never report "no checkpoints" (= fresh start) when the folder cannot even be read.
        raise CheckpointError(
            f"cannot list {ckdir}: {e}. If this is a Google Drive folder, remount Drive "
            "(drive.mount(..., force_remount=True)) and try again."
        ) from e
    if not found:
        try:
            tmps = [n for n in fs.listdir(ckdir) if ".tmp-" in n]
        except OSError:
            tmps = []
        if tmps:
            log(f"{ckdir} holds only {len(tmps)} unfinished temporary file(s) from an interrupted save; starting fresh")
        return None
    skipped: list[tuple[Path, str]] = []
    for _, pt in found:
        state, reason, verified, migrated_from = _load_verified(
            fs, pt, map_location=map_location, allow_unverified=allow_unverified
        )
        if state is None:
            log(f"skipping checkpoint {pt}: {reason}")
            skipped.append((pt, reason))
            continue
        if not verified:
            log(f"{pt} has no sidecar, so it could not be verified; using it because allow_unverified=True")
        step = state.get("step")
        return LoadedCheckpoint(
            path=pt,
            step=int(step) if type(step) is int else _step_from_name(pt),
            state=state,
            verified=verified,
            migrated_from=migrated_from,
            skipped=skipped,
        )
    lines = "\n".join(f"  - {p.name}: {r}" for p, r in skipped)
    raise CheckpointError(
        f"{ckdir} holds {len(skipped)} checkpoint file(s) and none of them can be loaded:\n{lines}\n"
        "ganlib will not start fresh over them, because the next save could bury your progress. "
        "Move them out of the folder (or use a new run folder) to start fresh, or restore a good "
        "copy (e.g. from Drive). A checkpoint you copied by hand without its .json sidecar can be "
        "loaded with allow_unverified=True."
    )


def list_checkpoints(
    run_dir: str | os.PathLike, *, verify: bool = False, fs: FS | None = None
) -> list[CheckpointInfo]:
    """Every ``ckpt-*.pt`` in ``<run_dir>/checkpoints``, oldest first, for display.

    ``verified`` compares the file with its sidecar by size (``verify=True`` also hashes
    each file, which reads it whole). Files are not loaded.
    """
    fs = fs or _DEFAULT_FS
    out = []
    for step, pt in reversed(_scan(fs, _ckpt_dir(run_dir))):
        meta, reason = _check_file(fs, pt, full=verify)
        try:
            st = fs.stat(pt)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        when = (meta or {}).get("time") or _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat(
            timespec="seconds"
        )
        out.append(
            CheckpointInfo(
                step=step,
                path=pt,
                verified=reason is None,
                bytes=size,
                time=str(when),
                reason=reason,
                sha256=(meta or {}).get("sha256"),
            )
        )
    return out


# ----------------------------------------------------------------------------- save clock


class SaveClock:
    """Decides when the trainer saves: by steps and by wall time.

    Colab disconnects are driven by time, not steps (colab-and-notebooks.md B5), so a run
    should also save every ``every_minutes``. ``due(step)`` is True when ``step`` has crossed
    a multiple of ``every_steps`` since the last ``mark``, or ``every_minutes`` have passed
    on the monotonic clock since the last ``mark`` (or since construction); never for the
    step that was last marked. ``None`` or 0 disables either rule.

    Args:
        every_steps: save at multiples of this many steps.
        every_minutes: save when this many minutes have passed since the last save.
        start_step: the step training starts (or resumes) from; counts as marked.
        clock: seconds source, ``time.monotonic`` by default (injectable for tests).
    """

    def __init__(
        self,
        every_steps: int | None,
        every_minutes: float | None,
        *,
        start_step: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.every_steps = int(every_steps) if every_steps else 0
        self.every_seconds = float(every_minutes) * 60.0 if every_minutes else 0.0
        self._clock = clock
        self.last_step = int(start_step)
        self.last_time = clock()

    def due(self, step: int) -> bool:
        """True when a save is due at ``step``."""
        if step == self.last_step:
            return False
        if self.every_steps and step // self.every_steps != self.last_step // self.every_steps:
            return True
        return bool(self.every_seconds) and self._clock() - self.last_time >= self.every_seconds

    def mark(self, step: int) -> None:
        """Record that a checkpoint was saved at ``step`` (now)."""
        self.last_step = int(step)
        self.last_time = self._clock()
