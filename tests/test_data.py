"""Face-folder audit and loading, eye-mask matching, the resumable sampler (ganlib.data).

Every file is a real file the test writes itself (Pillow, plus a hand-made 48-bit PNG)."""
import hashlib
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from ganlib.data import (BatchSampler, DataError, FaceSet, audit_folder, cache_on_device, load_face_folder,
                         write_audit_report)

S = 64  # cache size in these tests; min_size defaults to S // 4 = 16


def rgb(h=48, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand: Pillow cannot save one."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def messy(tmp_path):
    """A folder with every kind of file users put in face folders."""
    d = tmp_path / "faceA"
    d.mkdir()
    save(Image.fromarray(rgb(seed=1)), d / "good.jpg", quality=95)
    save(Image.fromarray(rgb(seed=2)), d / "good2.png")
    save(Image.fromarray(rgb(seed=3)), d / "upper.BMP")
    save(Image.fromarray(rgb(seed=4)), d / "face.webp")
    save(Image.fromarray(rgb(seed=5)[..., 0]), d / "grey.png")
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., :3] = 200  # hidden colour under transparent pixels
    rgba[:, 24:, 3] = 255  # right half opaque
    save(Image.fromarray(rgba, "RGBA"), d / "rgba.png")
    g16 = np.full((48, 48), 65535, np.uint16)
    g16[:, :24] = 32896  # 32896 / 257 = 128
    save(Image.fromarray(g16), d / "grey16.png")
    (d / "rgb48.png").write_bytes(png16_rgb(np.full((48, 48, 3), [0x8000, 0xFFFF, 0x0100], np.uint16)))
    save(Image.fromarray(rgb(seed=6)).convert("P", palette=Image.Palette.ADAPTIVE), d / "palette.png")
    save(Image.new("CMYK", (48, 48), (0, 255, 255, 0)), d / "cmyk.jpg")
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64, seed=7)).save(buf, "JPEG", quality=95)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(rgb(seed=11)).save(buf, "PNG")
    (d / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("this is a text file with an image extension\n")
    save(Image.fromarray(rgb(10, 10, seed=8)), d / "tiny.png")
    save(Image.fromarray(rgb(50, 400, seed=9)), d / "wide.png")
    shutil.copy(d / "good.jpg", d / "zz_duplicate.jpg")
    (d / "readme.txt").write_text("faces of A")
    (d / ".DS_Store").write_bytes(b"\x00\x01junk")
    (d / "._good.jpg").write_bytes(b"\x00\x05appledouble")
    (d / "sub").mkdir()
    save(Image.fromarray(rgb(seed=10)), d / "sub" / "inner.jpg")
    return d


GOOD = ["cmyk.jpg", "face.webp", "good.jpg", "good2.png", "grey.png", "grey16.png", "palette.png", "rgb48.png",
        "rgba.png", "upper.BMP"]
SKIPPED = {"truncated.jpg": "truncated", "cut.png": "truncated", "empty.png": "not_an_image",
           "notes.jpg": "not_an_image", "tiny.png": "too_small", "wide.png": "extreme_aspect",
           "zz_duplicate.jpg": "duplicate", "readme.txt": "unsupported_type"}


def test_messy_folder_audit_reasons_and_loading(messy):
    before = snapshot(messy)
    lines = []
    fs = load_face_folder(messy, size=S, log=lines.append)
    assert snapshot(messy) == before  # nothing deleted, moved or changed

    assert sorted(p.name for p in fs.files) == sorted(GOOD)
    assert fs.images.shape == (len(GOOD), 3, S, S) and fs.images.dtype == torch.uint8
    assert fs.eye_masks.shape == (len(GOOD), 1, S, S) and fs.eye_masks.dtype == torch.uint8
    assert fs.eye_masks.max() == 0

    skipped = {Path(i.file).name: i for i in fs.audit if i.action == "skipped"}
    assert {k: v.kind for k, v in skipped.items()} == SKIPPED
    assert all(i.advice for i in skipped.values())
    assert "good.jpg" in skipped["zz_duplicate.jpg"].reason
    assert "10x10" in skipped["tiny.png"].reason and "400x50" in skipped["wide.png"].reason
    converted = {(Path(i.file).name, i.kind) for i in fs.audit if i.action == "converted"}
    assert {("grey.png", "grey"), ("rgba.png", "alpha"), ("grey16.png", "16bit"), ("rgb48.png", "16bit"),
            ("palette.png", "palette"), ("cmyk.jpg", "cmyk")} <= converted
    # hidden files and sub-folders: silently ignored (not even in the audit)
    named = {Path(i.file).name for i in fs.audit}
    assert not named & {".DS_Store", "._good.jpg", "inner.jpg", "sub"}
    assert fs.folder_audit.files_checked == len(GOOD) + len(SKIPPED)
    assert any("left out" in line and str(messy) in line for line in lines)


def test_conversions_give_the_right_pixels(messy):
    fs = load_face_folder(messy, size=S, log=lambda s: None)
    img = {p.name: fs.images[i] for i, p in enumerate(fs.files)}
    rgba = img["rgba.png"]
    assert rgba[:, :, :28].max() == 0  # transparent half composited on black (not the hidden 200)
    assert (rgba[:, :, 36:] == 200).all()
    g16 = img["grey16.png"].int()
    assert (g16[:, :, :28] - 128).abs().max() <= 1 and (g16[:, :, 36:] == 255).all()  # not clipped white
    assert torch.equal(img["grey.png"][0], img["grey.png"][1])
    assert img["rgb48.png"][:, 10, 10].tolist() == [128, 255, 1]
    c = img["cmyk.jpg"][:, 32, 32].int()
    assert c[0] > 200 and c[1] < 60 and c[2] < 60  # CMYK (0, M, Y, 0) = red
    original = np.array(Image.open(messy / "good2.png").resize((S, S), Image.Resampling.LANCZOS))
    assert torch.equal(img["good2.png"], torch.from_numpy(original).permute(2, 0, 1))


def test_truncation_detected_even_if_someone_enabled_truncated_loading(messy):
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        audit = audit_folder(messy, size=S)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    kinds = {Path(i.file).name: i.kind for i in audit.skipped}
    assert kinds["truncated.jpg"] == "truncated"
    assert sorted(Path(f).name for f in audit.kept) == sorted(GOOD)


def test_min_size_parameter(messy):
    audit = audit_folder(messy, size=S, min_size=49)  # everything 48 px is now too small
    too_small = {Path(i.file).name: i for i in audit.skipped if i.kind == "too_small"}
    assert set(too_small) == {"tiny.png", "zz_duplicate.jpg"} | set(GOOD)  # a copy of a bad file is as bad
    assert "minimum side 49 px" in too_small["good.jpg"].reason
    assert "tiny.png" in {Path(f).name for f in audit_folder(messy, size=S, min_size=8).kept}


def test_missing_folder_names_it_and_says_what_to_do(tmp_path):
    missing = tmp_path / "no_such_faces"
    with pytest.raises(DataError, match="no_such_faces") as e:
        load_face_folder(missing, size=S)
    assert "does not exist" in str(e.value) and "face images" in str(e.value)
    f = tmp_path / "a_file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        audit_folder(f)


def test_empty_and_all_bad_folders(tmp_path):
    empty = tmp_path / "empty_faces"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(DataError, match="empty_faces.*0 files checked"):
        load_face_folder(empty, size=S, log=lambda s: None)
    bad = tmp_path / "bad_faces"
    bad.mkdir()
    (bad / "a.jpg").write_text("not an image")
    (bad / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"bad_faces.*2 files checked, 2 left out"):
        load_face_folder(bad, size=S, log=lambda s: None)
    assert sorted(p.name for p in bad.iterdir()) == ["a.jpg", "b.png"]


def test_require_min_reports_counts(messy):
    fs = load_face_folder(messy, size=S, log=lambda s: None)
    assert fs.require_min(len(GOOD)) is fs
    with pytest.raises(DataError) as e:
        fs.require_min(16)
    msg = str(e.value)
    assert str(messy) in msg and f"only {len(GOOD)} usable" in msg and "at least 16" in msg
    assert f"{len(SKIPPED)} left out" in msg


def make_faces(folder: Path, names, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        save(Image.fromarray(rgb(size, size, seed=100 + i)), folder / n)


def test_masks_matched_by_stem_with_one_warning_for_missing(tmp_path):
    faces = tmp_path / "faces"
    make_faces(faces, ["f1.jpg", "f2.png", "f3.jpg", "f4.jpg"])
    masks = tmp_path / "masks"
    masks.mkdir()
    m1 = np.zeros((40, 40), np.uint8)
    m1[10:20, 5:30] = 255
    save(Image.fromarray(m1), masks / "f1.png")  # face is .jpg, mask .png: matched by stem
    save(Image.fromarray(np.full((40, 40, 3), 255, np.uint8)), masks / "f2.jpg")  # RGB mask
    save(Image.fromarray(m1), masks / "stray.png")  # matches no face
    (masks / "f4.png").write_bytes(b"")  # unusable mask
    lines = []
    fs = load_face_folder(faces, mask_dir=masks, size=S, log=lines.append)
    by = {p.name: fs.eye_masks[i, 0] for i, p in enumerate(fs.files)}
    expect = torch.from_numpy(np.array(Image.fromarray(m1).resize((S, S), Image.Resampling.BILINEAR)))
    assert torch.equal(by["f1.jpg"], expect)
    assert by["f2.png"].min() >= 250
    assert by["f3.jpg"].max() == 0 and by["f4.jpg"].max() == 0

    missing_warnings = [line for line in lines if "no eye mask" in line]
    assert len(missing_warnings) == 1 and "f3.jpg" in missing_warnings[0] and "1 of 4" in missing_warnings[0]
    assert sum("stray.png" in line for line in lines) == 1
    assert sum("f4.png" in line and "unusable" in line for line in lines) == 1
    kinds = {(Path(i.file).name, i.kind) for i in fs.audit}
    assert {("f3.jpg", "mask_missing"), ("stray.png", "mask_orphan"), ("f4.png", "mask_not_an_image")} <= kinds


def test_missing_mask_warning_lists_ten_names_then_a_count(tmp_path):
    faces = tmp_path / "faces"
    make_faces(faces, [f"img{i:02d}.png" for i in range(14)], size=20)
    (tmp_path / "masks").mkdir()
    lines = []
    load_face_folder(faces, mask_dir=tmp_path / "masks", size=32, log=lines.append)
    warn = [line for line in lines if "no eye mask" in line]
    assert len(warn) == 1
    assert "img09.png" in warn[0] and "img10.png" not in warn[0] and "and 4 more" in warn[0]


def test_missing_mask_folder_is_an_error(tmp_path):
    faces = tmp_path / "faces"
    make_faces(faces, ["a.png", "b.png"])
    with pytest.raises(DataError, match="masks_typo.*mask_dir=None"):
        load_face_folder(faces, mask_dir=tmp_path / "masks_typo", size=S, log=lambda s: None)


def test_write_audit_report(messy, tmp_path):
    fs = load_face_folder(messy, size=S, log=lambda s: None)
    other = audit_folder(messy, size=S, min_size=40)
    jpath, tpath = write_audit_report(tmp_path / "reports" / "data_audit.json", [fs, other])
    data = json.loads(jpath.read_text())
    assert len(data["folders"]) == 2
    first = data["folders"][0]
    assert first["folder"] == str(messy) and first["counts"]["duplicate"] == 1
    assert {i["kind"] for i in first["issues"]} >= set(SKIPPED.values())
    text = tpath.read_text()
    assert "truncated.jpg" in text and "left out" in text and tpath.suffix == ".txt"


def test_faceset_to_device_keeps_metadata(messy):
    fs = load_face_folder(messy, size=S, log=lambda s: None)
    moved = fs.to("cpu")
    assert isinstance(moved, FaceSet) and moved.files == fs.files and moved.audit is fs.audit
    cache = cache_on_device(fs, "cpu")
    assert cache.on_device and cache.images.device.type == "cpu" and "MiB" in cache.message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cache_on_cuda_and_pinned_fallback(messy):
    fs = load_face_folder(messy, size=S, log=lambda s: None)
    on = cache_on_device(fs, "cuda", max_fraction=0.5)
    assert on.on_device and on.images.is_cuda
    off = cache_on_device(fs, "cuda", max_fraction=0.0)
    assert not off.on_device and off.images.is_pinned()


# ---------------------------------------------------------------------------------------------

def test_batch_sampler_epochs_drop_the_remainder():
    s = BatchSampler(10, 3, seed=1)
    assert s.batches_per_epoch == 3
    epoch0 = [next(s) for _ in range(3)]
    flat = torch.cat(epoch0)
    assert len(set(flat.tolist())) == 9  # no repeats inside an epoch, one index dropped
    epoch1 = [next(s) for _ in range(3)]
    assert s.epoch == 1 and not torch.equal(torch.cat(epoch1), flat)
    assert all(b.dtype == torch.int64 and len(b) == 3 for b in epoch0 + epoch1)


def test_batch_sampler_resume_draws_the_same_batches(tmp_path):
    a = BatchSampler(11, 4, seed=7)
    for _ in range(5):
        next(a)
    torch.save({"sampler": a.state_dict()}, tmp_path / "state.pt")
    expected = [next(a) for _ in range(9)]
    b = BatchSampler(11, 4, seed=0)
    b.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True)["sampler"])
    got = [next(b) for _ in range(9)]
    assert all(torch.equal(x, y) for x, y in zip(expected, got))
    assert BatchSampler(11, 4, seed=8).__next__().tolist() != BatchSampler(11, 4, seed=7).__next__().tolist()


def test_batch_sampler_changed_dataset_starts_a_fresh_epoch():
    a = BatchSampler(12, 4, seed=3)
    next(a)
    state = a.state_dict()
    b = BatchSampler(20, 4, seed=3)
    with pytest.warns(UserWarning, match="fresh epoch"):
        b.load_state_dict(state)
    assert b.epoch == 1 and b.pos == 0
    assert next(b).max() < 20
    with pytest.raises(ValueError):
        BatchSampler(3, 4)
