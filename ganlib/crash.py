"""The crash harness: SIGKILL real training at random moments and check that nothing is ever lost.

``python -m ganlib bench crash --kills N`` trains the tiny ``smoke`` preset on SyntheticFaces in a
fresh Python process, kills it with SIGKILL (no cleanup, no ``finally``: a Colab runtime that
disconnects, an OOM kill, a power cut of the VM), resumes in a new process, and repeats. After every
kill it checks the run folder the way a user's next session would see it:

* every final-named checkpoint (``ckpt-*.pt``) that has a sidecar agrees with it (size + sha256) and
  loads with ``torch.load(weights_only=True)``: none is corrupt;
* :func:`ganlib.checkpoint.load_latest` loads the newest valid one, and the next process really
  resumes from exactly that step;
* iterations lost = (last iteration the killed process had finished, from its ``[iter N]`` lines)
  - (step of the newest valid checkpoint), which must never exceed one save interval.

Kills are spread (seeded): some fire the moment a checkpoint temp file appears (plus a small random
delay, so they land in the ``.pt`` write, between its rename and the sidecar, or in the sidecar
write), some at a random time of training, some during start-up and resume. Where each kill landed
is read back from the folder and shown in the table.

With ``publish_faults=True`` the trainer also publishes every checkpoint to a second folder (the
Google Drive copy) through :class:`ganlib.checkpoint.FaultInjectingFS`: copies that fail half way,
"No space left on device", files cut short after the rename. The destination must never hold a
corrupt final-named checkpoint, and a fresh "VM" (an empty local folder) must resume from it.

Only figures are printed; nothing here is timed. The exit code is 0 only when every kill was
survived, nothing is corrupt and every loss is at most one save interval.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["KillRecord", "CrashReport", "crash_test", "run_crash_harness", "check_run_folder"]

SAVE_INTERVAL = 5        # display_iters of the crash run; with save_minutes=0 a save happens every display
FAULTS = ("fail_half_way", "enospc", "truncate_after_rename")
# Kill strategies, in proportion: "tmp" kills during a checkpoint save (the dangerous moment),
# "random" at any moment of training (display, grids, stats, optimiser steps), "startup" while the
# new process imports, builds the model and loads the checkpoint.
_STRATEGY_CYCLE = ("tmp", "random", "tmp", "random", "startup")
_TMP_DELAY_S = 0.04      # after a temp file appears: spreads kills over the .pt write, rename, sidecar
_ATTEMPT_TIMEOUT_S = 300  # a worker that shows no sign of life for this long is a hang, not slowness
_POLL_S = 0.001
_ITER_RE = re.compile(r"^\[iter (\d+)\]", re.M)
_RESUMED_RE = re.compile(r"Resumed from iteration (\d+) \((.*)\)")
_CKPT_RE = re.compile(r"^ckpt-(\d{9,})\.pt$")


# ---------------------------------------------------------------------------------------- records
@dataclasses.dataclass
class FolderCheck:
    """What one run folder looks like to the next session (see :func:`check_run_folder`)."""

    newest_valid: int | None = None      # step load_latest loads (None: no checkpoint at all)
    valid: list = dataclasses.field(default_factory=list)        # steps with a matching sidecar
    corrupt: list = dataclasses.field(default_factory=list)      # (file, reason): would be a defect
    unsealed: list = dataclasses.field(default_factory=list)     # (file, note): .pt without sidecar
    temp_files: list = dataclasses.field(default_factory=list)   # names containing ".tmp-"
    moved_aside: list = dataclasses.field(default_factory=list)  # names containing ".bad-"
    load_error: str | None = None        # load_latest raised (the run could not resume)


@dataclasses.dataclass
class KillRecord:
    """One kill: how it was aimed, where it landed and what it cost."""

    index: int
    strategy: str
    delay_s: float
    fault: str | None
    resumed_from: int | None     # the step this process said it resumed from (None: fresh run)
    reached: int | None          # last iteration it finished (None: killed before training)
    newest_valid: int | None     # newest checkpoint load_latest accepts after the kill
    lost: int                    # reached - newest_valid (0 when nothing was trained)
    landed: str                  # "startup", "training", "saving .pt", "sealing (sidecar)", ...
    killed: bool = True          # False: the process finished before the kill fired
    check: FolderCheck | None = None
    dest_check: FolderCheck | None = None
    problems: list = dataclasses.field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class CrashReport:
    """The harness result; ``exit_code`` is 0 only when every criterion holds."""

    kills_requested: int
    save_interval: int
    run_dir: Path
    publish_faults: bool
    records: list = dataclasses.field(default_factory=list)
    final_ok: bool = False
    final_note: str = ""
    fresh_vm_ok: bool | None = None      # publish variant: resume from the destination alone
    fresh_vm_note: str = ""
    wall_s: float = 0.0

    @property
    def kills(self) -> list:
        return [r for r in self.records if r.killed]

    @property
    def survived(self) -> int:
        return sum(r.survived for r in self.kills)

    @property
    def losses(self) -> list:
        return [r.lost for r in self.kills]

    @property
    def corrupt(self) -> list:
        out = []
        for r in self.records:
            for chk, where in ((r.check, "local"), (r.dest_check, "destination")):
                if chk is not None:
                    out += [(where, f, why) for f, why in chk.corrupt]
        return out

    @property
    def exit_code(self) -> int:
        ok = bool(self.kills) and (self.survived == len(self.kills) and not self.corrupt and self.final_ok
              and max(self.losses) <= self.save_interval and self.fresh_vm_ok is not False)
        return 0 if ok else 1


# ---------------------------------------------------------------------------------------- the worker
def _worker(argv=None) -> int:
    """The training process the harness kills: resume (or start) the smoke run and train to --until,
    printing ``[iter N]`` after every finished iteration (unbuffered, so a kill loses no line)."""
    p = argparse.ArgumentParser(prog="ganlib.crash worker")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--until", type=int, required=True)
    p.add_argument("--interval", type=int, default=SAVE_INTERVAL)
    p.add_argument("--publish-to", default=None)
    p.add_argument("--fault", default=None, choices=FAULTS)
    p.add_argument("--fault-seed", type=int, default=0)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    import torch

    torch.set_num_threads(1)
    from .checkpoint import FaultInjectingFS, Publisher
    from .config import preset
    from .trainer import Trainer

    log = lambda msg: print(msg, flush=True)
    cfg = preset("smoke")
    # save_minutes=0: saves come only from the display every `interval` iterations, so the save
    # interval (the bound on what a kill may cost) is exactly `interval` iterations.
    overrides = {"train.display_iters": args.interval, "train.save_minutes": 0, "train.TOTAL_ITERS": args.until}
    trainer = Trainer.resume_or_start(args.run_dir, cfg, overrides=overrides, device="cpu", log=log,
                                      publish_to=args.publish_to)
    if args.publish_to and args.fault:
        # Half the writes at the destination fail in this process; one retry each. Some publishes
        # therefore fail for good (reported, local copy kept), most succeed on the retry.
        fs = FaultInjectingFS(args.fault, times=None, probability=0.5, seed=args.fault_seed)
        trainer.publisher = Publisher(args.publish_to, fs=fs, retries=1, backoff_s=0, log=log)
    original = trainer.train_iteration

    def iteration():
        original()
        print(f"[iter {trainer.step + 1}] finished", flush=True)  # the loop adds 1 after we return

    trainer.train_iteration = iteration
    summary = trainer.train(until=args.until, progress=False)
    log(f"worker done: {summary['status']} at iteration {summary['step']}")
    return 0


def _worker_cmd(run_dir: Path, until: int, interval: int, publish_to=None, fault=None, fault_seed=0) -> list:
    cmd = [sys.executable, "-u", "-c", "import sys; from ganlib.crash import _worker; sys.exit(_worker())",
           "--run-dir", str(run_dir), "--until", str(until), "--interval", str(interval)]
    if publish_to is not None:
        cmd += ["--publish-to", str(publish_to)]
    if fault:
        cmd += ["--fault", fault, "--fault-seed", str(fault_seed)]
    return cmd


def _worker_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"  # the machines this runs on are often small and shared
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


# ---------------------------------------------------------------------------------------- checking
def check_run_folder(run_dir, *, sealed_only: bool = False) -> FolderCheck:
    """Inspect ``<run_dir>/checkpoints`` as the next session would.

    Corrupt means a final-named checkpoint the loader could be fooled by or that lost data: a
    sidecar that disagrees with its file, a sealed file ``torch.load(weights_only=True)`` refuses,
    or (unless ``sealed_only``) a ``.pt`` WITHOUT sidecar that is not a complete checkpoint of its
    step. A complete ``.pt`` without sidecar ("unsealed": a kill between the rename and the
    sidecar) is listed separately: the loader skips it by design and a re-save moves it aside.
    ``sealed_only=True`` (the publishing destination) lists every sidecar-less file as unsealed:
    the publisher documents that state ("the copy there has no sidecar, so it will not be trusted").
    """
    import torch

    from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_latest

    chk = FolderCheck()
    ckdir = Path(run_dir) / "checkpoints"
    if not ckdir.is_dir():
        return chk
    names = sorted(os.listdir(ckdir))
    chk.temp_files = [n for n in names if ".tmp-" in n]
    chk.moved_aside = [n for n in names if ".bad-" in n]
    for info in list_checkpoints(run_dir, verify=True):
        name = info.path.name
        if info.verified:
            try:
                load_checkpoint(info.path, log=lambda *_: None)
                chk.valid.append(info.step)
            except CheckpointError as e:
                chk.corrupt.append((name, f"sidecar matches but it does not load: {e}"))
        elif (info.reason or "").startswith("no sidecar"):
            if sealed_only:
                chk.unsealed.append((name, "no sidecar: not trusted by the loader"))
                continue
            why = "its step field does not match its name"
            try:
                state = torch.load(info.path, map_location="cpu", weights_only=True)
                complete = isinstance(state, dict) and state.get("step") == info.step
            except Exception as e:  # noqa: BLE001 - any failure means the file is damaged
                complete, why = False, f"{type(e).__name__}: {str(e)[:120]}"
            if complete:
                chk.unsealed.append((name, "complete file, no sidecar: skipped by the loader"))
            else:
                chk.corrupt.append((name, f"no sidecar and not a complete checkpoint ({why})"))
        else:
            chk.corrupt.append((name, info.reason or "unverified"))
    try:
        loaded = load_latest(run_dir, log=lambda *_: None)
        chk.newest_valid = None if loaded is None else loaded.step
    except CheckpointError as e:
        chk.load_error = str(e)
    return chk


def _landed(before: set, after: list, unsealed_before: set, unsealed_after: set, prefix: str = "") -> str | None:
    new = [n for n in after if n not in before]
    if any(".pt.tmp-" in n for n in new):
        return prefix + "saving .pt"
    if any(".json.tmp-" in n for n in new):
        return prefix + "sealing (sidecar)"
    if unsealed_after - unsealed_before:
        return prefix + "after rename, before sidecar"
    return None


def _parse(out: str) -> tuple[int | None, int | None, bool]:
    """(resumed_from, last finished iteration, started) from a worker's stdout."""
    m = _RESUMED_RE.search(out)
    resumed = int(m.group(1)) if m else None
    started = m is not None or "Starting a new run" in out
    iters = [int(x) for x in _ITER_RE.findall(out)]
    return resumed, (max(iters) if iters else None), started


# ---------------------------------------------------------------------------------------- one attempt
class _Attempt:
    """One worker process, watched: its stdout file and the checkpoint folder(s)."""

    def __init__(self, cmd, env, log_path: Path, watch: list[Path]):
        self.log_path = log_path
        self.watch = [w / "checkpoints" for w in watch]
        self.seen = {str(w): set(self._ls(w)) for w in self.watch}
        self._out = open(log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @staticmethod
    def _ls(d: Path) -> list:
        try:
            return os.listdir(d)
        except OSError:
            return []

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def new_tmp(self, which: int | None = None) -> bool:
        """A temp file that was not there at the start appeared (in watched folder ``which``, or any)."""
        for w in self.watch if which is None else [self.watch[which]]:
            seen = self.seen[str(w)]
            if any(".tmp-" in n and n not in seen for n in self._ls(w)):
                return True
        return False

    def wait_for(self, predicate, timeout: float) -> bool:
        """Poll until ``predicate()`` or the process exits or ``timeout``; True if the predicate held."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(_POLL_S)
        return False

    def kill(self) -> bool:
        """SIGKILL now; False when the process had already exited by itself."""
        if self.proc.poll() is not None:
            self._close()
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close()
        return True

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = -9
        self._close()
        return rc

    def _close(self):
        if not self._out.closed:
            self._out.close()


# ---------------------------------------------------------------------------------------- the harness
def crash_test(kills: int = 20, run_dir=None, seed: int = 0, target: int | None = None, *,
               publish_faults: bool = False, interval: int = SAVE_INTERVAL,
               log=print) -> CrashReport:
    """Run the harness and return a :class:`CrashReport` (prints progress through ``log``).

    Args:
        kills: SIGKILLs to deliver (each followed by a check and a resume).
        run_dir: where the run lives (default: a new temp folder, removed after a clean pass).
        seed: seeds the kill schedule (strategies, delays) and the injected faults.
        target: iteration target of the crash run; default: train on without end while killing,
            then one last uninterrupted chunk of one save interval.
        publish_faults: also publish every checkpoint to ``<run_dir>/drive`` through a
            fault-injecting file system, and finally resume a fresh folder from it.
        interval: iterations between saves (``train.display_iters``; ``save_minutes`` is 0).
    """
    t_start = time.monotonic()
    rng = random.Random(seed)
    temp = run_dir is None
    base = Path(tempfile.mkdtemp(prefix="ganlib-crash-") if temp else run_dir)
    base.mkdir(parents=True, exist_ok=True)
    local = base / "local" if publish_faults else base
    dest = base / "drive" if publish_faults else None
    logs = base / "worker-logs"
    logs.mkdir(exist_ok=True)
    env = _worker_env()
    report = CrashReport(kills_requested=kills, save_interval=interval, run_dir=base, publish_faults=publish_faults)
    until = target if target is not None else 10 ** 9
    strategies = [_STRATEGY_CYCLE[i % len(_STRATEGY_CYCLE)] for i in range(kills)]
    rng.shuffle(strategies)
    sec_per_iter = 0.5  # refined from each attempt's own [iter] lines
    log(f"crash harness: {kills} SIGKILLs of the smoke preset, a save every {interval} iterations, "
        f"run folder {base}" + (f", publishing to {dest} with injected faults" if publish_faults else ""))

    prev = check_run_folder(local)
    prev_dest = check_run_folder(dest, sealed_only=True) if dest else None
    for i in range(kills):
        strategy = strategies[i]
        fault = FAULTS[i % len(FAULTS)] if publish_faults else None
        attempt = _Attempt(_worker_cmd(local, until, interval, dest, fault, seed * 1000 + i), env,
                           logs / f"attempt-{i + 1:03d}.log", [local] + ([dest] if dest else []))
        before = attempt.seen
        delay, t_first = 0.0, None
        if strategy == "startup":
            # Python start-up, imports, data, model build and checkpoint load take seconds here.
            delay = rng.uniform(0.2, 4.0)
            attempt.wait_for(lambda: False, delay)
        else:
            first_iter = lambda: _ITER_RE.search(attempt.output()) is not None
            alive = attempt.wait_for(first_iter, _ATTEMPT_TIMEOUT_S)
            t_first = time.monotonic()
            if alive and strategy == "tmp":
                # In the publishing variant every other save-time kill waits for the copy to the
                # destination instead of the local write.
                which = 1 if dest is not None and rng.random() < 0.5 else 0
                attempt.wait_for(lambda: attempt.new_tmp(which), _ATTEMPT_TIMEOUT_S)
                delay = rng.uniform(0.0, _TMP_DELAY_S)
            elif alive:
                delay = rng.uniform(0.0, 2.5 * interval * sec_per_iter)
            time.sleep(delay)
        killed = attempt.kill()
        out = attempt.output()
        resumed, reached, started = _parse(out)
        n_iter = len(set(_ITER_RE.findall(out)))  # display blocks repeat their iteration's number
        if t_first is not None and n_iter >= 3:  # for the next random delay: seconds per iteration here
            sec_per_iter = max(0.02, (time.monotonic() - t_first) / (n_iter - 1))

        chk = check_run_folder(local)
        dchk = check_run_folder(dest, sealed_only=True) if dest else None
        after = {str(w): attempt._ls(w) for w in attempt.watch}
        landed = _landed(before[str(attempt.watch[0])], after[str(attempt.watch[0])],
                         {n for n, _ in prev.unsealed}, {n for n, _ in chk.unsealed})
        if landed is None and dest is not None:
            landed = _landed(before[str(attempt.watch[1])], after[str(attempt.watch[1])],
                             {n for n, _ in prev_dest.unsealed}, {n for n, _ in dchk.unsealed}, "publish: ")
        if landed is None:
            landed = "training" if reached is not None else ("resume/start" if started else "startup")
        expected_resume = prev.newest_valid
        newest = chk.newest_valid
        done = reached if reached is not None else (resumed if resumed is not None else expected_resume)
        lost = max(0, (done or 0) - (newest or 0)) if done is not None else 0
        rec = KillRecord(index=i + 1, strategy=strategy, delay_s=delay, fault=fault, resumed_from=resumed,
                         reached=reached, newest_valid=newest, lost=lost, landed=landed, killed=killed,
                         check=chk, dest_check=dchk)
        if started and resumed != expected_resume:
            rec.problems.append(f"resumed from {resumed}, but the newest valid checkpoint was {expected_resume}")
        if chk.load_error:
            rec.problems.append(f"cannot resume: {chk.load_error.splitlines()[0]}")
        if chk.corrupt:
            rec.problems.append(f"corrupt local checkpoint(s): {chk.corrupt}")
        if dchk is not None and (dchk.corrupt or dchk.load_error):
            rec.problems.append(f"destination: {dchk.corrupt or dchk.load_error}")
        if newest is not None and prev.newest_valid is not None and newest < prev.newest_valid:
            rec.problems.append(f"the newest valid checkpoint went back from {prev.newest_valid} to {newest}")
        if lost > interval:
            rec.problems.append(f"lost {lost} iterations, more than the save interval {interval}")
        if not killed:
            rc = attempt.proc.returncode
            if rc != 0:
                rec.problems.append(f"the worker exited by itself with code {rc}:\n{out[-1500:]}")
            log(f"kill {i + 1}: the worker finished (target {until} reached) before the kill; no more kills")
            report.records.append(rec)
            prev, prev_dest = chk, dchk
            break
        report.records.append(rec)
        log(_row(rec) if i else _header() + "\n" + _row(rec))
        prev, prev_dest = chk, dchk

    # The final, uninterrupted chunk: the run must resume from the newest valid checkpoint and finish.
    newest = prev.newest_valid or 0
    final_until = target if target is not None else newest + interval
    attempt = _Attempt(_worker_cmd(local, final_until, interval, dest), env, logs / "final.log", [local])
    rc = attempt.finish(_ATTEMPT_TIMEOUT_S)
    out = attempt.output()
    resumed, reached, _ = _parse(out)
    end = check_run_folder(local)
    report.final_ok = (rc == 0 and end.newest_valid == final_until and not end.corrupt
                       and (resumed == prev.newest_valid))
    report.final_note = (f"final chunk: exit {rc}, resumed from {resumed} (newest valid was {prev.newest_valid}), "
                         f"newest checkpoint now {end.newest_valid} (target {final_until})")
    if rc != 0:
        report.final_note += "\n" + out[-2000:]

    if publish_faults:
        # A new Colab VM: empty local disk, only the Drive copy survives.
        d = check_run_folder(dest, sealed_only=True)
        fresh = base / "new_vm"
        goal = (d.newest_valid or 0) + interval
        attempt = _Attempt(_worker_cmd(fresh, goal, interval, dest), env, logs / "new_vm.log", [fresh])
        rc = attempt.finish(_ATTEMPT_TIMEOUT_S)
        resumed, _, _ = _parse(attempt.output())
        d2 = check_run_folder(dest, sealed_only=True)
        report.fresh_vm_ok = (rc == 0 and d.newest_valid is not None and resumed == d.newest_valid
                              and d2.newest_valid == goal and not d2.corrupt)
        report.fresh_vm_note = (f"new VM from the destination alone: exit {rc}, resumed from {resumed} "
                                f"(destination's newest valid: {d.newest_valid}), destination now at "
                                f"{d2.newest_valid} (expected {goal}); destination: {len(d2.valid)} valid, "
                                f"{len(d2.unsealed)} unsealed, {len(d2.corrupt)} corrupt, "
                                f"{len(d2.temp_files)} temp files")
    report.wall_s = time.monotonic() - t_start
    log(format_summary(report))
    if temp and report.exit_code == 0:
        shutil.rmtree(base, ignore_errors=True)
    return report


# ---------------------------------------------------------------------------------------- printing
_COLS = "%4s %-8s %7s %-22s %8s %8s %8s %5s  %-38s %s"


def _header() -> str:
    return _COLS % ("kill", "aim", "delay", "fault", "resumed", "reached", "newest", "lost", "landed in",
                    "folder after the kill")


def _row(r: KillRecord) -> str:
    c = r.check
    folder = f"{len(c.valid)} valid, {len(c.unsealed)} unsealed, {len(c.corrupt)} corrupt, {len(c.temp_files)} tmp"
    if r.dest_check is not None:
        d = r.dest_check
        folder += f" | drive {len(d.valid)} valid, {len(d.unsealed)} unsealed, {len(d.corrupt)} corrupt"
    fmt = lambda v: "-" if v is None else str(v)
    line = _COLS % (r.index, r.strategy, f"{r.delay_s:.3f}", r.fault or "-", fmt(r.resumed_from), fmt(r.reached),
                    fmt(r.newest_valid), r.lost, r.landed, folder)
    if r.problems:
        line += "\n     PROBLEM: " + "; ".join(r.problems)
    return line


def format_summary(rep: CrashReport) -> str:
    """The closing lines: kills survived, losses, corruption, final chunk, verdict."""
    kills = rep.kills
    losses = rep.losses
    last = rep.records[-1] if rep.records else None
    unsealed = sorted({n for r in rep.records for n, _ in r.check.unsealed}) if rep.records else []
    aside = last.check.moved_aside if last else []
    tmps = last.check.temp_files if last else []
    landed = {}
    for r in kills:
        landed[r.landed] = landed.get(r.landed, 0) + 1
    lines = ["", "=" * 100,
             f"kills survived: {rep.survived} of {len(kills)}"
             + (f" ({rep.kills_requested} requested)" if len(kills) != rep.kills_requested else ""),
             f"save interval: {rep.save_interval} iterations (train.display_iters={rep.save_interval}, "
             "train.save_minutes=0)",
             f"iterations lost per kill: {losses}",
             f"iterations lost: max {max(losses) if losses else 0}, "
             f"mean {sum(losses) / len(losses) if losses else 0:.2f}",
             "kills landed in: " + ", ".join(f"{k} x{v}" for k, v in sorted(landed.items())),
             f"corrupt final-named checkpoints (sidecar disagrees, or unloadable): {len(rep.corrupt)}"
             + "".join(f"\n  - {w}: {f}: {why}" for w, f, why in rep.corrupt),
             f"final-named .pt missing its sidecar (complete file, killed before the sidecar; skipped by "
             f"the loader): {len(unsealed)}" + (f" {unsealed}" if unsealed else ""),
             f"left in the local checkpoints folder: {len(tmps)} temp file(s) from killed saves, "
             f"{len(aside)} moved-aside file(s)",
             rep.final_note]
    if rep.fresh_vm_ok is not None:
        lines.append(rep.fresh_vm_note)
    lines.append(f"wall time: {rep.wall_s:.0f} s")
    lines.append("RESULT: " + ("PASS" if rep.exit_code == 0 else "FAIL") + f" (exit code {rep.exit_code})")
    return "\n".join(lines)


def run_crash_harness(kills: int = 20, run_dir=None, seed: int = 0, target: int | None = None, *,
                      publish_faults: bool = False, interval: int = SAVE_INTERVAL) -> int:
    """``python -m ganlib bench crash``: run :func:`crash_test`, print the table, return the exit code
    (0: every kill survived, nothing corrupt, every loss at most one save interval)."""
    return crash_test(kills=kills, run_dir=run_dir, seed=seed, target=target, publish_faults=publish_faults,
                      interval=interval).exit_code


def main(argv=None) -> int:
    """``python -m ganlib.crash [--kills N] [--publish-faults]`` (same as ``bench crash``, plus the Drive variant)."""
    p = argparse.ArgumentParser(prog="python -m ganlib.crash", description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--until", type=int, default=None)
    p.add_argument("--publish-faults", action="store_true",
                   help="also publish to a fault-injecting destination and resume a fresh folder from it")
    a = p.parse_args(argv)
    return run_crash_harness(kills=a.kills, run_dir=a.run_dir, seed=a.seed, target=a.until,
                             publish_faults=a.publish_faults)


if __name__ == "__main__":
    sys.exit(main())
