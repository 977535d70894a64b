"""ganlib.colab outside Colab: guarded Drive, data staging, GPU report, budget, run folders, previews."""
import io
import sys
import tarfile
import time
import types
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from ganlib import colab
from ganlib.config import Config, ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("GANLIB_SMOKE", "GANLIB_RUN_DIR", "GANLIB_OVERRIDES"):
        monkeypatch.delenv(var, raising=False)


def _png(path: Path, color=(200, 100, 50), size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)


def _face_set(root: Path, n=3):
    for i in range(n):
        _png(root / "faces" / f"f{i}.png", (10 * i, 20, 30))
        _png(root / "masks" / f"f{i}.png", (255, 255, 255))
    return root


def _zip_folder(folder: Path, zip_path: Path, arc_root: str):
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{arc_root}/{p.relative_to(folder)}")
    return zip_path


# ---- environment ------------------------------------------------------------------------------------
def test_not_in_colab_here():
    assert colab.in_colab() is False


def test_smoke_mode_follows_env(monkeypatch):
    assert not colab.smoke_mode()
    monkeypatch.setenv("GANLIB_SMOKE", "1")
    assert colab.smoke_mode()
    monkeypatch.setenv("GANLIB_SMOKE", "0")
    assert not colab.smoke_mode()


def test_mount_drive_outside_colab_says_why_and_returns_none():
    said = []
    assert colab.mount_drive(log=said.append) is None
    assert "not in Colab" in said[0]


@pytest.fixture
def fake_colab_drive(monkeypatch, tmp_path):
    """Stand-in for google.colab.drive (the real one exists only on Colab runtimes): the first mount
    fails like a mount broken by an interrupted session."""
    calls = []

    def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
        calls.append({"mountpoint": mountpoint, "force_remount": force_remount, "timeout_ms": timeout_ms})
        if not force_remount:
            raise OSError("[Errno 107] Transport endpoint is not connected: '/content/drive'")
        (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)

    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    drive.mount = mount
    google_colab.drive = drive
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    return calls


def test_mount_drive_remounts_a_stale_mount(fake_colab_drive, tmp_path):
    assert colab.in_colab()
    said = []
    root = colab.mount_drive(str(tmp_path / "drive"), timeout_ms=1234, log=said.append)
    assert root == tmp_path / "drive" / "MyDrive"
    assert [c["force_remount"] for c in fake_colab_drive] == [False, True]
    assert fake_colab_drive[0]["timeout_ms"] == 1234
    assert any("force_remount=True" in s for s in said)


def test_mount_drive_is_skipped_in_smoke_mode_even_in_colab(fake_colab_drive, monkeypatch):
    monkeypatch.setenv("GANLIB_SMOKE", "1")
    assert colab.mount_drive(log=lambda s: None) is None
    assert fake_colab_drive == []


def test_gpu_info_on_cpu():
    info = colab.gpu_info()
    assert info["available"] is False and info["name"] == "no GPU"
    assert info["precision"] == "fp32"
    assert "no GPU" in info["summary"]
    assert "python:" in colab.describe_environment()


def test_env_overrides_parse_and_errors(monkeypatch):
    monkeypatch.setenv("GANLIB_OVERRIDES", "train.TOTAL_ITERS=6, loss.use_PL=true")
    assert colab.env_overrides() == {"train.TOTAL_ITERS": "6", "loss.use_PL": "true"}
    monkeypatch.setenv("GANLIB_OVERRIDES", "TOTAL_ITERS")
    with pytest.raises(ValueError, match="key=value"):
        colab.env_overrides()


# ---- budget -------------------------------------------------------------------------------------------
def test_session_budget_arithmetic():
    now = time.time()
    left = colab.session_budget(hours=12, margin_minutes=20, start=now - 3600)
    assert 12 * 3600 - 20 * 60 - 3600 - 60 < left <= 12 * 3600 - 20 * 60 - 3600
    assert colab.session_budget(hours=1, margin_minutes=0, start=now - 7200) == 0.0
    assert colab.session_start() <= time.time()
    assert colab.chunk_seconds(10, start=now) == 600.0
    assert colab.chunk_seconds(0, hours=1, margin_minutes=0, start=now - 7200) == 0.0


# ---- run folders -------------------------------------------------------------------------------------
def test_default_run_dir_local_env_and_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert colab.default_run_dir("runs_here", "r1") == tmp_path / "runs_here" / "r1"
    assert (tmp_path / "runs_here" / "r1").is_dir()
    with pytest.raises(ValueError, match="plain folder name"):
        colab.default_run_dir("runs_here", "a/b")
    monkeypatch.setenv("GANLIB_RUN_DIR", str(tmp_path / "fixed"))
    assert colab.default_run_dir("x", "y") == tmp_path / "fixed"
    monkeypatch.delenv("GANLIB_RUN_DIR")
    monkeypatch.setenv("GANLIB_SMOKE", "1")
    smoke = colab.default_run_dir("x", "y")
    assert smoke.is_dir() and "ganlib-smoke-run-" in smoke.name
    smoke.rmdir()


def test_run_dir_is_on_drive_in_colab_with_a_local_working_copy(fake_colab_drive, tmp_path, monkeypatch):
    monkeypatch.setattr(colab, "LOCAL_RUNS_ROOT", str(tmp_path / "local_runs"))
    mnt = str(tmp_path / "drive")
    st = colab.prepare_storage("ganlib_runs", "run7", "synthetic", mountpoint=mnt, log=lambda s: None)
    assert st.publish_to == tmp_path / "drive" / "MyDrive" / "ganlib_runs" / "run7"
    assert st.run_dir == tmp_path / "local_runs" / "run7" and st.run_dir.is_dir()
    assert st.results_dir == st.publish_to
    assert colab.resolve_path("faces/A", mountpoint=mnt) == tmp_path / "drive" / "MyDrive" / "faces" / "A"


# ---- staging ------------------------------------------------------------------------------------------
def test_stage_zip_once_then_idempotent(tmp_path):
    src = _zip_folder(_face_set(tmp_path / "A"), tmp_path / "faces_A.zip", "faces_A")
    said = []
    root = colab.stage_dataset(src, tmp_path / "local" / "A", log=said.append)
    assert root == (tmp_path / "local" / "A" / "data" / "faces_A").resolve()  # the single top-level folder
    assert sorted(p.name for p in (root / "faces").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    assert (tmp_path / "local" / "A" / colab.STAGED_MARKER).exists()
    sentinel = root / "added_after_staging.txt"
    sentinel.write_text("kept")
    again = colab.stage_dataset(src, tmp_path / "local" / "A", log=said.append)
    assert again == root and sentinel.read_text() == "kept"  # nothing copied or extracted again
    assert "already staged" in said[-1]


def test_stage_restages_when_the_source_changes(tmp_path):
    src = _zip_folder(_face_set(tmp_path / "A", n=2), tmp_path / "A.zip", "A")
    colab.stage_dataset(src, tmp_path / "local", log=lambda s: None)
    _face_set(tmp_path / "A", n=4)
    src.unlink()
    _zip_folder(tmp_path / "A", src, "A")
    root = colab.stage_dataset(src, tmp_path / "local", log=lambda s: None)
    assert len(list((root / "faces").iterdir())) == 4


def test_stage_tar_gz_and_folder(tmp_path):
    folder = _face_set(tmp_path / "B")
    tgz = tmp_path / "B.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(folder, arcname="B")
    root = colab.stage_dataset(tgz, tmp_path / "local_tgz", log=lambda s: None)
    assert colab.find_face_dirs(root) == (root / "faces", root / "masks")
    root2 = colab.stage_dataset(folder, tmp_path / "local_dir", log=lambda s: None)
    assert sorted(p.name for p in (root2 / "masks").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    assert root2 != folder.resolve()  # a copy on local disk


def test_stage_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.zip"
    with pytest.raises(FileNotFoundError, match="nope.zip"):
        colab.stage_dataset(missing, tmp_path / "d1")
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match="broken.zip.*not a valid zip"):
        colab.stage_dataset(bad, tmp_path / "d2", log=lambda s: None)
    assert not (tmp_path / "d2").exists() and not (tmp_path / "d2.staging").exists()
    odd = tmp_path / "faces.rar"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="faces.rar"):
        colab.stage_dataset(odd, tmp_path / "d3")


def test_stage_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        colab.stage_dataset(evil, tmp_path / "d", log=lambda s: None)
    assert not (tmp_path / "outside.txt").exists()


def test_stage_never_touches_a_foreign_folder(tmp_path):
    src = _zip_folder(_face_set(tmp_path / "A"), tmp_path / "A.zip", "A")
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="mine"):
        colab.stage_dataset(src, dest, log=lambda s: None)
    assert (dest / "precious.txt").read_text() == "do not delete"


def test_find_face_dirs_layouts(tmp_path):
    from ganlib.synthetic import SyntheticFaces

    SyntheticFaces(size=32).write_folder(tmp_path / "synth", "A", 2, 0)
    assert colab.find_face_dirs(tmp_path / "synth") == (tmp_path / "synth" / "rgb", tmp_path / "synth" / "binary_mask")
    _png(tmp_path / "flat" / "x.jpg")
    assert colab.find_face_dirs(tmp_path / "flat") == (tmp_path / "flat", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        colab.find_face_dirs(tmp_path / "empty")


def test_prepare_storage_drive_folders_outside_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _face_set(tmp_path / "faces" / "A")
    _face_set(tmp_path / "faces" / "B")
    st = colab.prepare_storage("runs", "r1", "drive folders", "faces/A", "faces/B",
                               local_root=tmp_path / "staged", log=lambda s: None)
    assert st.run_dir == tmp_path / "runs" / "r1" and st.publish_to is None
    assert Path(st.dir_a) == (tmp_path / "staged" / "A" / "data" / "faces").resolve()
    assert Path(st.mask_dir_b).name == "masks"
    cfg = Config().override(st.overrides())
    assert cfg.data.dir_a == st.dir_a
    with pytest.raises(ValueError, match="expects a .zip"):
        colab.prepare_storage("runs", "r1", "zip on Drive", "faces/A", "faces/B",
                              local_root=tmp_path / "staged2", log=lambda s: None)
    with pytest.raises(ValueError, match="faces_b"):
        colab.prepare_storage("runs", "r1", "drive folders", "faces/A", "", local_root=tmp_path / "staged3",
                              log=lambda s: None)
    assert not (tmp_path / "staged3").exists()  # nothing copied when an input is missing


def test_notebook_config_smoke_preset_and_overrides(tmp_path, monkeypatch):
    cfg = colab.notebook_config("v22_colab", 2400, log=lambda s: None)
    assert cfg.model.norm == "hybrid" and cfg.train.TOTAL_ITERS == 2400
    monkeypatch.setenv("GANLIB_SMOKE", "1")
    monkeypatch.setenv("GANLIB_OVERRIDES", "train.TOTAL_ITERS=6")
    cfg = colab.notebook_config("v22_colab", 2400, colab.Storage(run_dir=tmp_path), log=lambda s: None)
    assert cfg.model.resolution == 32 and cfg.train.TOTAL_ITERS == 6
    monkeypatch.setenv("GANLIB_OVERRIDES", "train.batch_size=3")
    with pytest.raises(ConfigError, match="even"):
        colab.notebook_config("smoke", log=lambda s: None)


# ---- previews and outputs ----------------------------------------------------------------------------
def test_grid_paths_newest_and_chosen_step(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preview"):
        colab.grid_paths(tmp_path)
    for step in (2, 10):
        for stem in ("train_preprocessed", "train_masked", "train_reconstruction"):
            _png(tmp_path / f"{stem}_{step}.png")
    assert colab.preview_steps(tmp_path) == [2, 10]
    newest = colab.grid_paths(tmp_path)
    assert list(newest) == ["Transformed (masked) results:", "Masks:", "Reconstruction results:"]
    assert newest["Masks:"].name == "train_masked_10.png"
    assert colab.grid_paths(tmp_path, 2)["Reconstruction results:"].name == "train_reconstruction_2.png"
    with pytest.raises(FileNotFoundError, match=r"\[2, 10\]"):
        colab.grid_paths(tmp_path, 5)


def test_free_name_never_replaces(tmp_path):
    target = tmp_path / "clip_AtoB.mp4"
    assert colab._free_name(target) == target
    target.write_bytes(b"old")
    (tmp_path / "clip_AtoB-2.mp4").write_bytes(b"old")
    assert colab._free_name(target) == tmp_path / "clip_AtoB-3.mp4"


def test_face_sheet_and_synthetic_samples(tmp_path):
    faces = colab.synthetic_samples(tmp_path / "s", "B", n=3, size=32)
    sheet = colab.face_sheet(tmp_path / "s", n=8, tile=16)
    assert len(list(faces.iterdir())) == 3 and sheet.size == (48, 16)
    assert colab.face_sheet(tmp_path / "nothing") is None
    video = colab.smoke_video(tmp_path / "v.mp4", "A", frames=3, size=32)
    from ganlib.video import probe

    assert probe(video).frames == 3
