"""Tests for ganlib.checkpoint: atomic verified saves, safe publishing, careful loading.

Everything runs on tiny real files in tmp_path; faults come from FaultInjectingFS, which
does real file operations and breaks them the way a full disk or a flaky Drive mount does.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlib import checkpoint as ck
from ganlib.checkpoint import (
    FORMAT_VERSION,
    MIGRATIONS,
    CheckpointConflictError,
    CheckpointError,
    CheckpointStateError,
    CheckpointWarning,
    FaultInjectingFS,
    Publisher,
    SaveClock,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    publish_file,
    save_checkpoint,
)

FAULTS = FaultInjectingFS.FAULTS


# ----------------------------------------------------------------------------- helpers


def make_state(step: int, seed: int = 0) -> dict:
    """A miniature of what the trainer hands over: tensors and plain types only (a fresh copy)."""
    return copy.deepcopy(_make_state(step, seed))


@functools.lru_cache(maxsize=None)
def _make_state(step: int, seed: int) -> dict:
    torch.manual_seed(seed)
    enc = torch.nn.Linear(4, 3)
    dec = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    enc(torch.randn(2, 4)).sum().backward()
    dec(torch.randn(2, 3, 2, 2)).sum().backward()
    opt.step()
    return {
        "config": {"model": {"resolution": 64, "norm": "instance"}, "loss": {"w_eyes": 30.0}},
        "step": step,
        "models": {"encoder": enc.state_dict(), "decoder_a": dec.state_dict()},
        "optim": {"g": opt.state_dict()},
        "rng": {"torch": torch.get_rng_state(), "python": list(random.Random(seed).getstate())},
        "history": [{"loss/g_a/recon": 0.5 + seed}, {"loss/g_a/recon": float("nan")}],
        "schedule": {"events_done": ["swap_decoders"], "phase": (0.2, None)},
        "preview_seed": 0,
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_raw(run_dir: Path, step: int, obj, *, sidecar: bool = True, format_version: int = 1) -> Path:
    """A checkpoint written by hand, bypassing save_checkpoint (old, foreign or hostile files),
    with a matching sidecar so that only torch.load / the format checks can refuse it."""
    d = run_dir / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    pt = d / f"ckpt-{step:09d}.pt"
    torch.save(obj, pt)
    if sidecar:
        meta = {"step": step, "bytes": pt.stat().st_size, "sha256": sha256_of(pt), "time": "t",
                "format_version": format_version}
        pt.with_suffix(".json").write_text(json.dumps(meta))
    return pt


def ckpt_names(run_dir: Path) -> list[str]:
    d = run_dir / "checkpoints"
    return sorted(os.listdir(d)) if d.exists() else []


def assert_states_equal(a, b):
    assert ck._same(a, b), "states differ"


def save(run_dir, step, **kw):
    kw.setdefault("log", lambda m: None)
    return save_checkpoint(make_state(step, seed=step), run_dir, step, **kw)


# ----------------------------------------------------------------------------- round trip


def test_round_trip_loads_with_weights_only(tmp_path):
    state = make_state(1234)
    path = save_checkpoint(state, tmp_path, 1234)
    assert path == tmp_path / "checkpoints" / "ckpt-000001234.pt"
    raw = torch.load(path, weights_only=True)  # the promise: plain weights_only load
    assert raw["format"] == "ganlib.ckpt" and raw["format_version"] == FORMAT_VERSION == 1
    assert raw["ganlib_version"] and raw["torch_version"] == torch.__version__ and "T" in raw["saved_at"]

    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["step"] == 1234 and meta["bytes"] == path.stat().st_size
    assert meta["sha256"] == sha256_of(path) and meta["format_version"] == 1 and meta["time"]

    loaded = load_latest(tmp_path)
    assert loaded.step == 1234 and loaded.verified and loaded.path == path and loaded.skipped == []
    assert_states_equal(ck._content(loaded.state), state)
    assert torch.equal(loaded.state["models"]["encoder"]["weight"], state["models"]["encoder"]["weight"])
    # The optimizer state goes back into a real optimizer.
    enc = torch.nn.Linear(4, 3)
    dec = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    opt.load_state_dict(loaded.state["optim"]["g"])
    assert opt.state_dict()["state"][0]["exp_avg"].shape == (3, 4)
    assert load_checkpoint(path).step == 1234
    assert not [n for n in ckpt_names(tmp_path) if ".tmp-" in n]


def test_no_checkpoints_means_fresh_start(tmp_path):
    assert load_latest(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-000000100.pt.tmp-1-abc").write_bytes(b"half")
    msgs = []
    assert load_latest(tmp_path, log=msgs.append) is None
    assert "temporary" in msgs[0]


# ----------------------------------------------------------------------------- validation


class MyDict(collections.OrderedDict):
    pass


@dataclasses.dataclass
class Cfg:
    lr: float = 1.0


@pytest.mark.parametrize(
    "bad, where",
    [
        (np.float64(0.5), "numpy"),  # subclasses float, but needs numpy to unpickle
        (np.zeros(3), "numpy"),
        (MyDict(a=1), "MyDict"),
        (Cfg(), "asdict"),
        (torch.nn.Linear(1, 1), "state_dict"),
        ({1, 2}, "set"),
        (torch.device("cpu"), "device"),
    ],
)
def test_validation_names_the_key_path_and_writes_nothing(tmp_path, bad, where):
    state = make_state(10)
    state["history"][0]["loss/g_a/recon"] = bad
    with pytest.raises(CheckpointStateError) as e:
        save_checkpoint(state, tmp_path, 10)
    assert "state['history'][0]['loss/g_a/recon']" in str(e.value) and where in str(e.value)
    assert not [n for n in ckpt_names(tmp_path) if n.startswith("ckpt-")]


def test_validation_rejects_bad_keys_and_step_mismatch(tmp_path):
    state = make_state(10)
    state["data"] = {("a", 1): 2}
    with pytest.raises(CheckpointStateError, match=r"state\['data'\] has a key of type builtins.tuple"):
        save_checkpoint(state, tmp_path, 10)
    with pytest.raises(ValueError, match="state\\['step'\\] is 10"):
        save_checkpoint(make_state(10), tmp_path, 11)


# ----------------------------------------------------------------------------- corrupt files


def _truncate(pt):
    data = pt.read_bytes()
    pt.write_bytes(data[: len(data) // 2])


def _zero(pt):
    pt.write_bytes(b"")


def _flip(pt):
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))


def _sidecar_sha(pt):
    sc = pt.with_suffix(".json")
    meta = json.loads(sc.read_text())
    meta["sha256"] = "0" * 64
    sc.write_text(json.dumps(meta))


def _sidecar_other_step(pt):
    sc = pt.with_suffix(".json")
    meta = json.loads(sc.read_text())
    meta["step"] = 7
    sc.write_text(json.dumps(meta))


def _no_sidecar(pt):
    pt.with_suffix(".json").unlink()


def _garbage_sidecar(pt):
    pt.with_suffix(".json").write_text("{not json")


CORRUPTIONS = {
    "truncated": (_truncate, "truncated"),
    "zero_bytes": (_zero, "zero bytes"),
    "flipped_bytes": (_flip, "sha256 does not match"),
    "sidecar_sha_mismatch": (_sidecar_sha, "sha256 does not match"),
    "sidecar_other_step": (_sidecar_other_step, "sidecar mismatch"),
    "missing_sidecar": (_no_sidecar, "no sidecar"),
    "garbage_sidecar": (_garbage_sidecar, "unreadable"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_newest_falls_back_with_warning(tmp_path, name):
    corrupt, reason = CORRUPTIONS[name]
    save(tmp_path, 100)
    bad = save(tmp_path, 200)
    corrupt(bad)
    msgs = []
    loaded = load_latest(tmp_path, log=msgs.append)
    assert loaded.step == 100
    assert_states_equal(ck._content(loaded.state), make_state(100, seed=100))
    assert len(msgs) == 1 and "ckpt-000000200.pt" in msgs[0] and reason in msgs[0], msgs
    assert [p.name for p, _ in loaded.skipped] == ["ckpt-000000200.pt"]
    with pytest.raises(CheckpointError, match="ckpt-000000200.pt"):
        load_checkpoint(bad)


def test_default_log_is_a_warning_naming_the_file(tmp_path):
    save(tmp_path, 100)
    _truncate(save(tmp_path, 200))
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000200\.pt.*truncated"):
        assert load_latest(tmp_path).step == 100


def test_unloadable_checkpoints_are_never_started_over(tmp_path):
    _flip(save(tmp_path, 100))
    _no_sidecar(save(tmp_path, 200))
    with pytest.raises(CheckpointError) as e:
        load_latest(tmp_path, log=lambda m: None)
    msg = str(e.value)
    assert "ckpt-000000100.pt" in msg and "ckpt-000000200.pt" in msg
    assert "will not start fresh" in msg and "allow_unverified" in msg


def test_allow_unverified_accepts_a_hand_copied_file_with_a_warning(tmp_path):
    pt = save(tmp_path, 300)
    _no_sidecar(pt)
    with pytest.raises(CheckpointError, match="allow_unverified"):
        load_checkpoint(pt)
    msgs = []
    loaded = load_latest(tmp_path, allow_unverified=True, log=msgs.append)
    assert loaded.step == 300 and not loaded.verified
    assert "could not be verified" in msgs[0] and "ckpt-000000300.pt" in msgs[0]
    # A sidecar that exists but disagrees is never accepted, even when asked.
    pt2 = save(tmp_path, 400)
    _flip(pt2)
    loaded = load_latest(tmp_path, allow_unverified=True, log=lambda m: None)
    assert loaded.step == 300


def test_not_a_ganlib_file_is_skipped(tmp_path):
    save(tmp_path, 100)
    write_raw(tmp_path, 200, {"weights": torch.ones(2)})
    msgs = []
    assert load_latest(tmp_path, log=msgs.append).step == 100
    assert "not a ganlib checkpoint" in msgs[0]


# ----------------------------------------------------------------------------- hostile pickles


def _side_effect(path):
    """What a hostile checkpoint would run on load: here, it only creates a file."""
    Path(path).write_text("code ran")
    return {}


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_side_effect, (str(self.marker),))


@pytest.mark.parametrize("kind", ["ordereddict_subclass", "reduce_side_effect"])
def test_foreign_objects_are_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "marker.txt"
    save(tmp_path, 100)
    state = make_state(200)
    state.update(format="ganlib.ckpt", format_version=1)
    state["data"] = MyDict(a=1) if kind == "ordereddict_subclass" else Hostile(marker)
    bad = write_raw(tmp_path, 200, state)  # valid sidecar: only unpickling can stop it

    msgs = []
    assert load_latest(tmp_path, log=msgs.append).step == 100
    assert "ckpt-000000200.pt" in msgs[0] and "refused" in msgs[0]
    expected = "MyDict" if kind == "ordereddict_subclass" else "_side_effect"
    assert expected in msgs[0]
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(bad)
    assert not marker.exists(), "code from a checkpoint was executed"
    if kind == "reduce_side_effect":
        # Proof the payload is live: an unsafe load WOULD have run it.
        torch.load(bad, weights_only=False)
        assert marker.read_text() == "code ran"


# ----------------------------------------------------------------------------- same step twice


def test_same_step_identical_is_kept_and_different_is_refused(tmp_path):
    pt = save(tmp_path, 100)
    before = pt.read_bytes()
    assert save(tmp_path, 100) == pt  # same contents (saved_at differs): kept, not rewritten
    assert pt.read_bytes() == before
    other = make_state(100, seed=5)
    with pytest.raises(CheckpointConflictError, match="DIFFERENT contents"):
        save_checkpoint(other, tmp_path, 100, log=lambda m: None)
    assert pt.read_bytes() == before
    assert ckpt_names(tmp_path) == ["ckpt-000000100.json", "ckpt-000000100.pt"]


def test_incomplete_file_at_the_final_name_is_moved_aside_not_overwritten(tmp_path):
    d = tmp_path / "checkpoints"
    d.mkdir()
    (d / "ckpt-000000100.pt").write_bytes(b"half a file")
    msgs = []
    pt = save_checkpoint(make_state(100), tmp_path, 100, log=msgs.append)
    assert load_checkpoint(pt).step == 100
    aside = [n for n in ckpt_names(tmp_path) if ".bad-" in n]
    assert len(aside) == 1 and (d / aside[0]).read_bytes() == b"half a file"
    assert "moved aside" in msgs[0]


# ----------------------------------------------------------------------------- pruning


def test_prune_keeps_last_n_milestones_newer_and_incomplete(tmp_path):
    save(tmp_path, 900)  # a checkpoint NEWER than what is being saved now: never pruned
    d = tmp_path / "checkpoints"
    (d / "ckpt-000000150.pt").write_bytes(b"hand-copied, no sidecar")  # incomplete: not ours to delete
    for step in range(100, 800, 100):
        save(tmp_path, step, keep_last=2, milestone_every=300)
    steps = [i.step for i in list_checkpoints(tmp_path)]
    assert steps == [150, 300, 600, 700, 900]
    assert not (d / "ckpt-000000100.json").exists()  # sidecars go with their files


def test_stale_temp_files_are_cleaned_fresh_ones_kept(tmp_path):
    d = tmp_path / "checkpoints"
    d.mkdir()
    stale, fresh = d / "ckpt-000000050.pt.tmp-1-aa", d / "ckpt-000000060.pt.tmp-2-bb"
    stale.write_bytes(b"dead copy")
    fresh.write_bytes(b"another writer, still copying")
    old = time.time() - ck.STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))
    msgs = []
    save(tmp_path, 100, log=msgs.append)
    assert not stale.exists() and fresh.exists()
    assert any("interrupted" in m for m in msgs)


@pytest.mark.parametrize("fault", FAULTS)
def test_interrupted_save_leaves_earlier_checkpoints_intact(tmp_path, fault):
    save(tmp_path, 100, keep_last=5)
    save(tmp_path, 200, keep_last=5)
    before = {i.path.name: i.sha256 for i in list_checkpoints(tmp_path, verify=True)}
    fs = FaultInjectingFS(fault, times=None)
    with pytest.raises(CheckpointError, match="Earlier checkpoints .* are untouched"):
        save(tmp_path, 300, keep_last=1, fs=fs)  # keep_last=1 would prune both if it got that far
    assert fs.injected >= 1
    infos = list_checkpoints(tmp_path, verify=True)
    assert {i.path.name: i.sha256 for i in infos} == before and all(i.verified for i in infos)
    assert not (tmp_path / "checkpoints" / "ckpt-000000300.pt").exists()
    assert not [n for n in ckpt_names(tmp_path) if ".tmp-" in n]
    assert load_latest(tmp_path).step == 200


def test_enospc_message_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="No space left on device"):
        save(tmp_path, 100, fs=FaultInjectingFS("enospc"))


# ----------------------------------------------------------------------------- publishing


def _publisher(dest, fs=None, retries=2, msgs=None):
    return Publisher(dest, fs, retries, backoff_s=0, log=(msgs.append if msgs is not None else lambda m: None))


def _dest_tmp(dest):
    d = dest / "checkpoints"
    return [n for n in os.listdir(d) if ".tmp-" in n] if d.exists() else []


def test_publish_via_save_checkpoint_copies_verifies_and_prunes(tmp_path):
    local, dest = tmp_path / "local", tmp_path / "drive" / "run"
    pub = _publisher(dest)
    for step in (100, 200, 300):
        save(local, step, keep_last=2, publisher=pub)
        assert pub.last_result.ok and not pub.last_result.skipped
    for run in (local, dest):
        assert [i.step for i in list_checkpoints(run, verify=True) if i.verified] == [200, 300]
    assert sha256_of(dest / "checkpoints/ckpt-000000300.pt") == sha256_of(local / "checkpoints/ckpt-000000300.pt")
    assert load_latest(dest).step == 300
    # Publishing the same checkpoint again is a no-op.
    assert pub.publish_checkpoint(local / "checkpoints/ckpt-000000300.pt").skipped


@pytest.mark.parametrize("fault", FAULTS)
def test_transient_fault_is_retried_and_succeeds(tmp_path, fault):
    local, dest = tmp_path / "local", tmp_path / "drive"
    save(local, 100, publisher=_publisher(dest))
    fs = FaultInjectingFS(fault, times=1, match=".pt")
    msgs = []
    pub = _publisher(dest, fs, retries=2, msgs=msgs)
    save(local, 200, publisher=pub)
    assert fs.injected == 1
    assert pub.last_result.ok and pub.last_result.attempts == 2, pub.last_result
    assert "attempt 1 failed" in msgs[0]
    loaded = load_latest(dest)
    assert loaded.step == 200 and loaded.verified
    assert_states_equal(ck._content(loaded.state), make_state(200, seed=200))
    assert _dest_tmp(dest) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_persistent_fault_keeps_local_copy_and_destination_intact(tmp_path, fault):
    local, dest = tmp_path / "local", tmp_path / "drive"
    save(local, 100, publisher=_publisher(dest))
    before = sha256_of(dest / "checkpoints/ckpt-000000100.pt")
    fs = FaultInjectingFS(fault, times=None)
    msgs = []
    pub = _publisher(dest, fs, retries=2, msgs=msgs)
    local_pt = save(local, 200, publisher=pub)
    res = pub.last_result
    assert not res.ok and res.attempts == 3 and fs.injected == 3 and pub.failures == [res]
    assert "safe on local disk" in res.error and str(local_pt) in res.error and msgs[-1] == res.error
    assert load_checkpoint(local_pt).step == 200  # the local copy is kept, verified
    assert not (dest / "checkpoints/ckpt-000000200.pt").exists()  # no final-named corrupt file
    assert _dest_tmp(dest) == []
    assert sha256_of(dest / "checkpoints/ckpt-000000100.pt") == before
    assert load_latest(dest).step == 100


def test_persistent_sidecar_fault_leaves_no_unsealed_checkpoint(tmp_path):
    """The sidecar is written before the .pt's rename, so a sidecar that cannot be written leaves no
    final-named .pt behind (nothing unsealed that a later load would have to skip)."""
    local, dest = tmp_path / "local", tmp_path / "drive"
    save(local, 100, publisher=_publisher(dest))
    pub = _publisher(dest, FaultInjectingFS("fail_half_way", times=None, match=".json"))
    save(local, 200, publisher=pub)
    assert not pub.last_result.ok and "no checkpoint file was left under its final name" in pub.last_result.error
    assert not (dest / "checkpoints/ckpt-000000200.pt").exists()
    msgs = []
    assert load_latest(dest, log=msgs.append).step == 100
    assert msgs == []  # nothing to skip
    # Once the mount behaves again, publishing completes it.
    assert _publisher(dest).publish_checkpoint(local / "checkpoints/ckpt-000000200.pt").ok
    assert load_latest(dest).step == 200


def test_probabilistic_faults_with_enough_retries(tmp_path):
    local, dest = tmp_path / "local", tmp_path / "drive"
    fs = FaultInjectingFS("flip_bytes", times=None, probability=0.5, seed=3)
    pub = _publisher(dest, fs, retries=10)
    for step in (100, 200, 300):
        save(local, step, publisher=pub)
        assert pub.last_result.ok
    assert fs.injected >= 1
    assert [i.step for i in list_checkpoints(dest, verify=True) if i.verified] == [100, 200, 300]


def test_drive_truncation_after_publish_is_detected_on_load(tmp_path):
    """A Drive sync gone wrong AFTER a publish completed (the publisher's own size check
    cannot see it): load_latest on the destination notices and falls back."""
    local, dest = tmp_path / "local", tmp_path / "drive"
    pub = _publisher(dest)
    save(local, 100, publisher=pub)
    save(local, 200, publisher=pub)
    pt = dest / "checkpoints/ckpt-000000200.pt"
    os.truncate(pt, pt.stat().st_size // 2)  # what FaultInjectingFS("truncate_after_rename") does
    msgs = []
    assert load_latest(dest, log=msgs.append).step == 100
    assert "ckpt-000000200.pt" in msgs[0] and "truncated" in msgs[0]


def test_publisher_never_replaces_a_different_destination_checkpoint(tmp_path):
    local, dest = tmp_path / "local", tmp_path / "drive"
    save_checkpoint(make_state(100, seed=1), dest, 100)
    before = sha256_of(dest / "checkpoints/ckpt-000000100.pt")
    pub = _publisher(dest)
    save(local, 100, publisher=pub)
    assert not pub.last_result.ok and "different contents" in pub.last_result.error
    assert sha256_of(dest / "checkpoints/ckpt-000000100.pt") == before


def test_publish_file_replaces_atomically_and_guards_append_only(tmp_path):
    dest = tmp_path / "drive"
    src = tmp_path / "stats.jsonl"
    src.write_text('{"step": 1}\n')
    assert publish_file(src, dest / "stats.jsonl").ok
    src.write_text('{"step": 1}\n{"step": 2}\n')
    pub = _publisher(dest)
    assert pub.publish_file(src, append_only=True).ok  # grows: fine
    assert (dest / "stats.jsonl").read_text() == src.read_text()
    # A fresh session's short local log must not wipe the history on Drive.
    src.write_text('{"step": 3}\n')
    res = pub.publish_file(src, "stats.jsonl", append_only=True)
    assert not res.ok and "would lose lines" in res.error
    assert (dest / "stats.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'


@pytest.mark.parametrize("fault", FAULTS)
def test_publish_file_faults(tmp_path, fault):
    dest = tmp_path / "drive" / "grid.png"
    src = tmp_path / "grid.png"
    src.write_bytes(b"old grid" * 100)
    assert publish_file(src, dest).ok
    src.write_bytes(b"new grid" * 100)
    assert publish_file(src, dest, fs=FaultInjectingFS(fault, times=1), retries=1, backoff_s=0, log=lambda m: None).ok
    assert dest.read_bytes() == src.read_bytes()
    src.write_bytes(b"newer grid" * 100)
    res = publish_file(src, dest, fs=FaultInjectingFS(fault, times=None), retries=1, backoff_s=0, log=lambda m: None)
    assert not res.ok and res.attempts == 2 and "grid.png" in res.error
    if fault != "truncate_after_rename":  # write faults are caught before the rename
        assert dest.read_bytes() == b"new grid" * 100
    assert [n for n in os.listdir(dest.parent) if ".tmp-" in n] == []


# ----------------------------------------------------------------------------- versions


def _v0_file(run_dir, step):
    """A hand-made checkpoint of an imagined format 0, where "models" was called "nets"."""
    st = make_state(step)
    nets = st.pop("models")
    st.update(nets=nets, format="ganlib.ckpt", format_version=0)
    return write_raw(run_dir, step, st, format_version=0), nets


def test_migration_from_version_0(tmp_path, monkeypatch):
    pt, nets = _v0_file(tmp_path, 100)
    with pytest.raises(CheckpointError, match="no migration from format 0 to 1"):
        load_checkpoint(pt)

    def nets_to_models(state):
        state["models"] = state.pop("nets")
        return state

    monkeypatch.setitem(MIGRATIONS, 0, nets_to_models)
    loaded = load_latest(tmp_path)
    assert loaded.migrated_from == 0 and loaded.state["format_version"] == 1
    assert "nets" not in loaded.state
    assert torch.equal(loaded.state["models"]["encoder"]["weight"], nets["encoder"]["weight"])


def test_newer_format_is_refused_with_upgrade_message(tmp_path):
    save(tmp_path, 100)
    st = make_state(200)
    st.update(format="ganlib.ckpt", format_version=FORMAT_VERSION + 1, ganlib_version="9.9")
    pt = write_raw(tmp_path, 200, st, format_version=FORMAT_VERSION + 1)
    # Not a silent fall-back to step 100: that would train over newer progress.
    with pytest.raises(CheckpointError, match="Upgrade ganlib"):
        load_latest(tmp_path)
    with pytest.raises(CheckpointError, match="newer ganlib"):
        load_checkpoint(pt)


# ----------------------------------------------------------------------------- listing


def test_list_checkpoints(tmp_path):
    save(tmp_path, 100, keep_last=9)
    pt = save(tmp_path, 200, keep_last=9)
    save(tmp_path, 300, keep_last=9)
    _no_sidecar(save(tmp_path, 400, keep_last=9))
    _flip(pt)  # same size: only verify=True (hashing) notices
    quick = list_checkpoints(tmp_path)
    assert [(i.step, i.verified) for i in quick] == [(100, True), (200, True), (300, True), (400, False)]
    assert quick[0].bytes == (tmp_path / "checkpoints/ckpt-000000100.pt").stat().st_size and quick[0].time
    full = list_checkpoints(tmp_path, verify=True)
    assert [i.verified for i in full] == [True, False, True, False]
    assert "sha256" in full[1].reason and "no sidecar" in full[3].reason


# ----------------------------------------------------------------------------- fault FS


def test_fault_fs_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown fault"):
        FaultInjectingFS("melt")
    fs = FaultInjectingFS("enospc", times=None, match=".pt")
    with fs.open(tmp_path / "a.json", "wb") as f:
        fs.write(f, b"fine")  # not matched: no fault
    with pytest.raises(OSError) as e, fs.open(tmp_path / "a.pt", "wb") as f:
        fs.write(f, b"x")
    assert e.value.errno == ck.errno.ENOSPC and fs.injected == 1


# ----------------------------------------------------------------------------- save clock


def test_save_clock_by_steps_and_time():
    now = [1000.0]
    clock = SaveClock(100, 1, clock=lambda: now[0])
    assert not clock.due(0) and not clock.due(50)
    assert clock.due(100) and clock.due(130)  # crossed a multiple even if 100 itself was missed
    clock.mark(130)
    assert not clock.due(130) and not clock.due(199)
    now[0] += 61  # a minute passed: due by time, not by steps
    assert clock.due(150)
    clock.mark(150)
    assert not clock.due(151) and clock.due(200)

    resumed = SaveClock(300, None, start_step=1234, clock=lambda: now[0])
    assert not resumed.due(1234) and not resumed.due(1499) and resumed.due(1500)
    off = SaveClock(None, None, clock=lambda: now[0])
    now[0] += 1e6
    assert not off.due(10**6)
