"""The crash harness for real: training processes SIGKILLed at random moments, saves included.

``ganlib.crash`` starts the smoke run in a fresh Python process, kills it (some kills fire the
moment a checkpoint temp file appears, others at random), checks the folder the way the next
session sees it, resumes, and repeats. A few kills here; ``python -m ganlib bench crash --kills 20``
gives the full figure.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ganlib.checkpoint import load_latest
from ganlib.crash import check_run_folder, crash_test, run_crash_harness

ROOT = Path(__file__).resolve().parents[1]


def _losses(out: str) -> list[int]:
    m = re.search(r"iterations lost per kill: \[([\d, ]*)\]", out)
    assert m, out
    return [int(x) for x in m.group(1).split(",") if x.strip()]


def test_sigkilled_training_always_resumes_and_loses_at_most_one_save_interval(tmp_path, capsys):
    rc = run_crash_harness(kills=3, run_dir=tmp_path, seed=0, interval=2)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "kills survived: 3 of 3" in out
    assert "save interval: 2 iterations" in out
    losses = _losses(out)
    assert len(losses) == 3 and all(0 <= x <= 2 for x in losses), out
    assert "corrupt final-named checkpoints (sidecar disagrees, or unloadable): 0" in out
    assert re.search(r"final chunk: exit 0, resumed from (\d+) \(newest valid was \1\)", out), out
    assert "RESULT: PASS (exit code 0)" in out
    # Two of the three kills were aimed at a save (the cycle is tmp, random, tmp).
    assert len(re.findall(r"^\s+\d+ tmp ", out, re.M)) == 2
    # The folder it leaves behind is sound on its own terms too.
    end = check_run_folder(tmp_path)
    assert end.corrupt == [] and end.load_error is None
    assert load_latest(tmp_path, log=lambda *_: None).step == end.newest_valid == max(end.valid)


def test_publishing_to_a_faulty_destination_under_kills_never_leaves_a_corrupt_copy(tmp_path, capsys):
    rep = crash_test(kills=2, run_dir=tmp_path, seed=1, publish_faults=True, interval=2)
    out = capsys.readouterr().out
    assert rep.exit_code == 0, out
    assert [r.fault for r in rep.kills] == ["fail_half_way", "enospc"]
    assert all(r.dest_check is not None and r.dest_check.corrupt == [] for r in rep.records)
    assert rep.fresh_vm_ok, rep.fresh_vm_note
    assert re.search(r"new VM from the destination alone: exit 0, resumed from (\d+) \(destination's newest "
                     r"valid: \1\)", out), out
    dest = check_run_folder(tmp_path / "drive", sealed_only=True)
    assert dest.corrupt == [] and dest.newest_valid == max(dest.valid)
    assert "RESULT: PASS" in out


KILL_AFTER_RENAME = textwrap.dedent("""
    import os, signal, sys, torch
    from ganlib.checkpoint import FS, save_checkpoint

    class KillAfterRename(FS):
        # A real SIGKILL at the worst moment: right after the checkpoint got its final name.
        def replace(self, src, dst):
            super().replace(src, dst)
            if str(dst).endswith(".pt"):
                os.kill(os.getpid(), signal.SIGKILL)

    save_checkpoint({"w": torch.ones(3)}, sys.argv[1], 0, fs=KillAfterRename())
""")


def test_a_kill_between_the_rename_and_the_sidecar_leaves_a_resumable_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", KILL_AFTER_RENAME, str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == -9, p.stderr  # it really died there
    chk = check_run_folder(tmp_path)
    assert chk.corrupt == []  # the file that is there is complete: nothing is damaged either way
    assert chk.load_error is None, chk.load_error  # ... but today the folder refuses to resume
    assert chk.unsealed == []
