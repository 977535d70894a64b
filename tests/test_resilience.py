"""Resilience of the real trainer: Ctrl-C, NaN, corrupt checkpoints, a flaky Drive, bad images.

Every test trains the tiny ``smoke`` model for a few iterations on small random uint8 faces and
breaks something for real: a KeyboardInterrupt raised inside the loop, a generator weight set to
NaN, checkpoint files truncated or bit-flipped on disk, publishing through FaultInjectingFS (which
does real file operations and fails them like a full or flaky Drive), and folders of broken images
fed to ``python -m ganlib train``.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganlib.checkpoint import CheckpointError, FaultInjectingFS, Publisher, list_checkpoints, load_checkpoint
from ganlib.config import preset
from ganlib.trainer import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: these tiny models gain nothing from more, and the test machines are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Log(list):
    """Collects what the trainer logs; ``text`` is everything joined."""

    def __call__(self, msg):
        self.append(str(msg))

    @property
    def text(self) -> str:
        return "\n".join(self)


def cfg_(display=2, **overrides):
    c = preset("smoke")
    c.train.display_iters = display
    c.train.save_minutes = 0  # saves only at displays (and where a test asks for more)
    c.override(overrides)
    return c


def data_(n=8, seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    mk = lambda ch: torch.randint(0, 256, (n, ch, size, size), dtype=torch.uint8, generator=g)
    return {d: {"images": mk(3), "eye_masks": mk(1), "face_masks": mk(1)} for d in ("a", "b")}


def ckpt(run_dir, step) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt-{step:09d}.pt"


def steps_on_disk(run_dir) -> list[int]:
    return [i.step for i in list_checkpoints(run_dir, verify=True) if i.verified]


def all_finite(state) -> bool:
    """Every floating-point tensor of a (nested) state is finite."""
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(all_finite(v) for v in state)
    if isinstance(state, float):
        return math.isfinite(state)
    return True


def weights_finite(trainer) -> bool:
    mods = [trainer.gen, trainer.disc["a"], trainer.disc["b"]]
    return all(bool(torch.isfinite(p).all()) for m in mods for p in m.parameters())


def tree(folder) -> dict:
    """{relative path: sha256} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def poison(trainer):
    """Set one generator weight to NaN, as a blown-up update would."""
    with torch.no_grad():
        next(trainer.gen.parameters()).view(-1)[0] = float("nan")


def wrap_iteration(trainer, before):
    """Call ``before(trainer)`` ahead of every training iteration (with ``trainer.step`` = the
    iterations finished so far)."""
    original = trainer.train_iteration

    def iteration():
        before(trainer)
        original()

    trainer.train_iteration = iteration


# ---- Ctrl-C / Colab's stop button ------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["between_iterations", "inside_iteration", "callback"])
def test_keyboard_interrupt_saves_where_it_stopped_and_the_next_session_continues(tmp_path, where):
    cfg, data, log = cfg_(display=2), data_(), Log()
    t = Trainer(cfg, tmp_path, data=data, log=log)
    callback = None
    if where == "between_iterations":
        def stop(tr):
            if tr.step == 3:
                raise KeyboardInterrupt
        wrap_iteration(t, stop)
    elif where == "inside_iteration":  # after both D updates, before the G updates
        g_step = t._g_step

        def g_step_then_stop(*a, **kw):
            if t.step == 3:
                raise KeyboardInterrupt
            return g_step(*a, **kw)
        t._g_step = g_step_then_stop
    else:  # raised from the user's display callback at iteration 4 (before that display's save)
        def callback(tr, report):
            if report.step == 4:
                raise KeyboardInterrupt
    summary = t.train(until=10, callback=callback, progress=False)

    stop_at = 4 if where == "callback" else 3
    assert summary["status"] == "interrupted" and summary["step"] == stop_at
    assert stop_at in steps_on_disk(tmp_path)
    assert f"Interrupted at iteration {stop_at}: saved to {ckpt(tmp_path, stop_at)}" in log.text
    saved = load_checkpoint(ckpt(tmp_path, stop_at)).state
    assert saved["step"] == stop_at and all_finite(saved["models"])

    log2 = Log()
    t2 = Trainer.resume_or_start(tmp_path, cfg, data=data, log=log2)
    assert t2.step == stop_at
    assert f"Resumed from iteration {stop_at}" in log2.text
    s2 = t2.train(until=6, progress=False)
    assert s2["status"] == "target reached" and s2["step"] == 6 and 6 in steps_on_disk(tmp_path)


# ---- NaN ---------------------------------------------------------------------------------------------------
def test_nan_rolls_back_halves_the_learning_rate_skips_the_batch_and_reaches_the_target(tmp_path):
    cfg, log = cfg_(display=2, max_nan_retries=3), Log()
    t = Trainer(cfg, tmp_path, data=data_(), log=log)
    poisoned = []

    def once_at_4(tr):
        if tr.step == 4 and not poisoned:
            poison(tr)
            poisoned.append(tr.step)
    wrap_iteration(t, once_at_4)
    lr_g = t.opt["g_a"].param_groups[0]["lr"]
    summary = t.train(until=10, progress=False)

    assert poisoned == [4]
    # Detected at the display of iteration 6, rolled back to the checkpoint of iteration 4.
    assert "Non-finite loss detected at iteration 6: rolled back to iteration 4 (ckpt-000000004.pt)" in log.text
    assert "learning rates x0.5" in log.text and "skipping a batch" in log.text and "retry 1 of 3" in log.text
    assert summary["status"] == "target reached" and t.step == 10
    assert t.lr_scale == 0.5 and t.nan_retries == 1
    assert t.opt["g_a"].param_groups[0]["lr"] == pytest.approx(lr_g * 0.5)
    assert weights_finite(t)
    for step in steps_on_disk(tmp_path):
        state = load_checkpoint(ckpt(tmp_path, step)).state
        assert all_finite(state["models"]) and all_finite(state["optim"]), step
    assert load_checkpoint(ckpt(tmp_path, 10)).state["schedule"]["lr_scale"] == 0.5  # survives a resume


def test_nan_on_every_iteration_gives_up_after_max_retries_with_checkpoints_intact(tmp_path):
    cfg, log = cfg_(display=2, max_nan_retries=2), Log()
    t = Trainer(cfg, tmp_path, data=data_(), log=log)
    wrap_iteration(t, lambda tr: poison(tr) if tr.step >= 3 else None)
    with pytest.raises(TrainingDiverged) as err:
        t.train(until=20, progress=False)

    msg = str(err.value)
    assert "non-finite" in msg and "after 2 roll-backs" in msg and str(tmp_path / "checkpoints") in msg
    assert "intact" in msg and "lower loss.lr_factor" in msg  # says what to try
    assert log.text.count("Non-finite loss detected") == 2
    steps = steps_on_disk(tmp_path)
    assert steps and max(steps) == 2  # nothing after the blow-up was saved
    for info in list_checkpoints(tmp_path, verify=True):
        assert info.verified, info
        assert all_finite(load_checkpoint(info.path).state), info.path


@pytest.mark.parametrize("which", ["time_based_save", "end_of_chunk_save"])
def test_no_save_ever_writes_non_finite_weights(tmp_path, which):
    if which == "time_based_save":
        # No display in range; a tiny save_minutes makes every iteration's time-based save due.
        cfg, until, at = cfg_(display=100, save_minutes=1e-9), 7, 2
    else:
        cfg, until, at = cfg_(display=4), 6, 4  # iterations 5, 6 blow up; 6 is no display
    t = Trainer(cfg, tmp_path, data=data_(), log=Log())
    wrap_iteration(t, lambda tr: poison(tr) if tr.step == at else None)
    try:
        t.train(until=until, progress=False)
    except TrainingDiverged:
        pass
    infos = list_checkpoints(tmp_path, verify=True)
    assert any(i.step <= at for i in infos), f"the last good checkpoint was pruned: {[i.step for i in infos]}"
    for info in infos:
        assert all_finite(load_checkpoint(info.path).state["models"]), f"{info.path.name} holds NaN weights"


# ---- corrupt checkpoints on disk ---------------------------------------------------------------------------
def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_folder_of_only_corrupt_checkpoints_is_never_trained_over(tmp_path):
    cfg, data = cfg_(display=2), data_()
    Trainer(cfg, tmp_path, data=data, log=Log()).train(until=2, progress=False)
    assert steps_on_disk(tmp_path) == [0, 2]
    truncate(ckpt(tmp_path, 2))
    flip_byte(ckpt(tmp_path, 0))
    before = tree(tmp_path)

    log = Log()
    with pytest.raises(CheckpointError) as err:
        Trainer.resume_or_start(tmp_path, cfg, data=data, log=log)
    msg = str(err.value)
    assert "ckpt-000000000.pt" in msg and "ckpt-000000002.pt" in msg and "will not start fresh" in msg
    assert "truncated" in msg and "sha256" in msg  # why each one was refused
    assert tree(tmp_path) == before  # nothing written, renamed or deleted
    assert "Starting a new run" not in log.text


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path):
    cfg, data = cfg_(display=2), data_()
    Trainer(cfg, tmp_path, data=data, log=Log()).train(until=4, progress=False)
    assert steps_on_disk(tmp_path) == [0, 2, 4]
    truncate(ckpt(tmp_path, 4))
    bad_bytes = ckpt(tmp_path, 4).read_bytes()

    log = Log()
    t = Trainer.resume_or_start(tmp_path, cfg, data=data, log=log)
    assert t.step == 2
    warning = next(line for line in log if "skipping checkpoint" in line)
    assert str(ckpt(tmp_path, 4)) in warning and "truncated" in warning
    assert f"Resumed from iteration 2 ({ckpt(tmp_path, 2)})" in log.text

    t.train(until=4, progress=False)  # saving step 4 again: the damaged file is moved aside, not deleted
    assert steps_on_disk(tmp_path) == [0, 2, 4]
    aside = list((tmp_path / "checkpoints").glob("ckpt-000000004.pt.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad_bytes


# ---- publishing to a faulty destination (Google Drive) -----------------------------------------------------
def final_named_problems(run_dir) -> list:
    """Final-named checkpoints at a destination that have a sidecar but disagree with it."""
    return [(i.path.name, i.reason) for i in list_checkpoints(run_dir, verify=True)
            if not i.verified and not (i.reason or "").startswith("no sidecar")]


@pytest.mark.parametrize("fault", ["fail_half_way", "enospc", "truncate_after_rename"])
def test_a_failed_publish_keeps_the_local_checkpoint_and_later_publishes_succeed(tmp_path, fault):
    cfg, data, log = cfg_(display=2), data_(), Log()
    local, dest = tmp_path / "local", tmp_path / "drive"
    t = Trainer(cfg, local, data=data, log=log, publish_to=dest)
    fs = FaultInjectingFS(fault, times=1, match=".pt")  # the first checkpoint copy breaks, for good
    t.publisher = Publisher(dest, fs=fs, retries=0, backoff_s=0, log=log)
    t.train(until=4, progress=False)

    assert fs.injected == 1
    assert [f.src.name for f in t.publisher.failures] == ["ckpt-000000000.pt"]
    assert "could not publish ckpt-000000000.pt" in log.text and "safe on local disk" in log.text
    assert steps_on_disk(local) == [0, 2, 4]          # the local copy is kept
    assert steps_on_disk(dest) == [2, 4]              # later publishes succeeded
    assert not ckpt(dest, 0).exists()                 # no half or cut copy under the final name
    assert final_named_problems(dest) == []
    for step in (2, 4):
        assert load_checkpoint(ckpt(dest, step)).state["step"] == step

    t2 = Trainer.resume_or_start(local, cfg, data=data, log=Log(), publish_to=dest)
    assert t2.step == 4
    log3 = Log()  # a new Colab VM: empty local disk, only Drive survived
    t3 = Trainer.resume_or_start(tmp_path / "new_vm", cfg, data=data, log=log3, publish_to=dest)
    assert t3.step == 4 and f"Resumed from iteration 4 ({ckpt(dest, 4)})" in log3.text
    t3.train(until=6, progress=False)
    assert 6 in steps_on_disk(dest) and 6 in steps_on_disk(tmp_path / "new_vm")


def test_a_transient_publish_fault_is_retried_and_the_destination_is_complete(tmp_path):
    cfg, log = cfg_(display=2), Log()
    dest = tmp_path / "drive"
    t = Trainer(cfg, tmp_path / "local", data=data_(), log=log, publish_to=dest)
    fs = FaultInjectingFS("enospc", times=2, match=".pt")
    t.publisher = Publisher(dest, fs=fs, retries=3, backoff_s=0, log=log)
    t.train(until=4, progress=False)
    assert fs.injected == 2 and t.publisher.failures == []
    assert "attempt 1 failed" in log.text and "No space left on device" in log.text
    assert steps_on_disk(dest) == [0, 2, 4] and final_named_problems(dest) == []


def test_resume_picks_the_newer_of_local_and_destination(tmp_path):
    cfg, data = cfg_(display=2), data_()
    local, dest = tmp_path / "local", tmp_path / "drive"
    Trainer(cfg, local, data=data, log=Log(), publish_to=dest).train(until=4, progress=False)
    # The local disk lost its newest checkpoint (e.g. an older local copy restored): Drive is newer.
    for p in (local / "checkpoints").glob("ckpt-000000004.*"):
        p.unlink()
    log = Log()
    t = Trainer.resume_or_start(local, cfg, data=data, log=log, publish_to=dest)
    assert t.step == 4 and f"Resumed from iteration 4 ({ckpt(dest, 4)})" in log.text


# ---- bad images through the real CLI -----------------------------------------------------------------------
def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _faces(folder: Path, identity: int, n: int, seed: int) -> Path:
    from ganlib.synthetic import SyntheticFaces

    SyntheticFaces(size=64).write_folder(folder, identity, n, seed=seed)
    return folder / "rgb"


BAD_FILES = {  # name -> (expected action, expected kind)
    "cut_short.jpg": ("skipped", "truncated"),
    "empty.png": ("skipped", "not_an_image"),
    "notes.jpg": ("skipped", "not_an_image"),
    "tiny_10x10.png": ("skipped", "too_small"),
    "grey.png": ("converted", "grey"),
    "rgba.png": ("converted", "alpha"),
    "zz_duplicate.png": ("skipped", "duplicate"),
}


def _add_bad_files(rgb: Path):
    good = sorted(rgb.glob("*.png"))[0]
    face = Image.open(good).convert("RGB")
    jpg = io.BytesIO()
    face.save(jpg, format="JPEG", quality=90)
    (rgb / "cut_short.jpg").write_bytes(jpg.getvalue()[: len(jpg.getvalue()) * 6 // 10])
    (rgb / "empty.png").write_bytes(b"")
    (rgb / "notes.jpg").write_text("not a picture: notes that ended up in the faces folder\n")
    (rgb / "tiny_10x10.png").write_bytes(_png(face.resize((10, 10))))
    (rgb / "grey.png").write_bytes(_png(face.convert("L")))
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(face.size))
    (rgb / "rgba.png").write_bytes(_png(rgba))
    shutil.copyfile(good, rgb / "zz_duplicate.png")  # sorts after the original, which is the one used


def test_cli_train_on_folders_with_bad_images_completes_and_reports_each_file(tmp_path):
    a = _faces(tmp_path / "A", 0, 6, seed=1)
    b = _faces(tmp_path / "B", 1, 6, seed=2)
    _add_bad_files(a)
    _add_bad_files(b)
    inputs = {"A": tree(a), "B": tree(b)}
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "ganlib", "train", "--a", str(a), "--b", str(b), "--run-dir", str(run),
                        "--until", "2", "--preset", "smoke", "--threads", "1", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "train: target reached at iteration 2" in p.stdout
    assert 2 in steps_on_disk(run)

    report = json.loads((run / "data_audit.json").read_text())
    text = (run / "data_audit.txt").read_text()
    assert len(report["folders"]) == 2
    for folder in report["folders"]:
        issues = {Path(i["file"]).name: i for i in folder["issues"]}
        for name, (action, kind) in BAD_FILES.items():
            assert name in issues, (folder["folder"], name)
            assert (issues[name]["action"], issues[name]["kind"]) == (action, kind), issues[name]
            assert issues[name]["reason"]
        assert len(folder["kept"]) == 6 + 2  # the good faces plus the converted grey and RGBA ones
    for name, (action, _) in BAD_FILES.items():
        assert f"[{action}] {name}:" in text
    assert "empty file (0 bytes)" in text and "same bytes as" in text
    assert {"A": tree(a), "B": tree(b)} == inputs  # nothing deleted, moved or changed


def test_cli_too_few_usable_images_exits_2_naming_the_folder(tmp_path, capsys):
    from ganlib.cli import main

    a = _faces(tmp_path / "A", 0, 2, seed=1)
    (a / "empty.png").write_bytes(b"")
    b = _faces(tmp_path / "B", 1, 6, seed=2)
    rc = main(["train", "--a", str(a), "--b", str(b), "--run-dir", str(tmp_path / "run"), "--until", "2",
               "--preset", "smoke", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{a}: only 2 usable face images" in err and "at least 4" in err and "Add more face images" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_missing_folder_exits_2_naming_it(tmp_path, capsys):
    from ganlib.cli import main

    b = _faces(tmp_path / "B", 1, 4, seed=2)
    missing = tmp_path / "no_such_folder"
    rc = main(["train", "--a", str(missing), "--b", str(b), "--run-dir", str(tmp_path / "run"), "--until", "2",
               "--preset", "smoke", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"Face folder {missing} does not exist" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
