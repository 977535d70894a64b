"""Faces in: geometry, MTCNN detection and alignment, eye masks, video helpers, extraction and resume.

Real MTCNN (facenet-pytorch's bundled weights), real image and video files; nothing downloads.
"""
from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")

from ganlib import faces as F  # noqa: E402
from ganlib import video as V  # noqa: E402
from ganlib.synthetic import SyntheticFaces, sample_nuisance  # noqa: E402

W, H, N_FRAMES, FPS, SR = 320, 240, 36, 10, 16000


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; MTCNN on small frames gains nothing from threads
    yield
    torch.set_num_threads(old)


def write_test_video(path: Path, frames: list[np.ndarray], fps: int = FPS, audio: str | None = "aac") -> Path:
    """Write frames (+ a 440 Hz tone) with PyAV directly, independent of ganlib.video's writer."""
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
    vs.height, vs.width = frames[0].shape[:2]
    vs.pix_fmt = "yuv420p"
    astream = None
    if audio:
        astream = c.add_stream(audio, rate=SR)
        astream.layout = "mono"
    for f in frames:
        for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    if astream is not None:
        t = np.arange(int(SR * len(frames) / fps)) / SR
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = "fltp" if audio == "aac" else "s16"
        for k in range(0, len(tone), 1024):
            seg = tone[k:k + 1024][None]
            if fmt == "s16":
                seg = (seg * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(seg, format=fmt, layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, k, Fraction(1, SR)
            for p in astream.encode(af):
                c.mux(p)
    for p in vs.encode(None):
        c.mux(p)
    if astream is not None:
        for p in astream.encode(None):
            c.mux(p)
    c.close()
    return path


def moving_scene(n: int = N_FRAMES, size: int = 120, seed: int = 1, face_frames=None) -> list[np.ndarray]:
    """A synthetic face moving over a drifting gradient; ``face_frames`` limits where the face shows."""
    renders = [r.image for r in (SyntheticFaces(size=size).render(0, nz) for nz in sample_nuisance(n, seed=seed))]
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    for i in range(n):
        bg = np.stack([(xx + 5 * i) % 256, (yy * 0.6 + 60).astype(int), np.full_like(xx, 90 + i)], -1)
        frame = bg.astype(np.uint8)
        if face_frames is None or i in face_frames:
            x = 20 + int(i * (W - size - 40) / max(n - 1, 1))
            y = 40 + int(25 * np.sin(i / 5))
            frame[y:y + size, x:x + size] = renders[i]
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("vid") / "scene.mp4", moving_scene())


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------

def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 30
    th = 0.4
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    dst = 1.7 * src @ rot.T + [12.0, -7.0]
    t = F.umeyama(src, dst)
    assert np.allclose(t[:2, :2], 1.7 * rot, atol=1e-9)
    assert np.allclose(F.transform_points(t, src), dst, atol=1e-9)
    # A reflection is not a similarity: the fit must keep det > 0.
    mirrored = src * [-1, 1]
    assert np.linalg.det(F.umeyama(src, mirrored)[:2, :2]) > 0


def test_template_is_row_col_converted_to_xy():
    pts = F.template_points(100)
    assert np.allclose(pts[0], [32.593, 31.339])  # eye 1: col 0.32593 -> x, row 0.31339 -> y
    assert pts[0, 0] < pts[1, 0] and pts[3, 1] > pts[2, 1] > pts[0, 1]


def test_warp_affine_moves_pixels_where_the_matrix_says():
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:23, 30:33] = 255  # a 3x3 dot centred on (31, 21)
    t = F.umeyama(np.array([[0, 0], [10, 0], [0, 10.0]]), np.array([[60, 3], [60, 23], [40, 3.0]]))  # rot 90, x2
    out = F.warp_affine(img, t[:2], (120, 100), border="constant")
    ys, xs = np.nonzero(out[..., 0] > 128)
    expected = F.transform_points(t, [[31, 21]])[0]
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0
    # Replicate border copies the edge pixel; constant fills.
    edge = np.zeros((10, 10), np.float32)
    edge[:, -1] = 1.0
    shift = np.array([[1, 0, -5.0], [0, 1, 0]])  # output x = input x - 5: right part comes from outside
    assert F.warp_affine(edge, shift, (10, 10), border="replicate")[5, 9] == 1.0
    assert F.warp_affine(edge, shift, (10, 10), border="constant", fill=0.5)[5, 9] == 0.5


def test_warp_affine_antialiases_strong_downscale():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: a plain 4-tap bilinear shrink would alias to near-solid stripes
    out = F.warp_affine(stripes, np.array([[0.1, 0, 0], [0, 0.1, 0]]), (40, 40))
    assert abs(out.mean() - 127.5) < 10 and out.std() < 20


def test_square_box_is_mean_side_centred_and_clipped():
    b = F.square_box(np.array([10, 20, 50, 100.0]), (200, 300))
    assert np.allclose(b, [0, 30, 60, 90])  # side (40+80)/2 = 60 centred on (30, 60)
    clipped = F.square_box(np.array([-10, -10, 30, 30.0]), (100, 100))
    assert clipped.min() >= 0 and np.allclose(clipped, [0, 0, 30, 30])


# ---------------------------------------------------------------------------------------------------
# Detection and alignment on a real photo
# ---------------------------------------------------------------------------------------------------

def test_astronaut_one_face_aligned_to_template():
    img = skdata.astronaut()
    faces = F.detect_faces(img)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99 and face.landmarks.shape == (5, 2)
    assert 80 < face.side < 120  # her face is ~100 px in the 512 px photo
    size = 256
    crop, matrix = F.align_face(img, face.landmarks, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    tpl = F.template_points(size)
    # The similarity is a least-squares fit over 5 points: the eyes land on the template within 4%.
    eyes = F.transform_points(matrix, face.landmarks[:2])
    assert np.abs(eyes - tpl[:2]).max() < 0.04 * size
    # And MTCNN, run again on the aligned crop, finds the eyes there too (within its own noise).
    again = F.detect_faces(crop)
    assert len(again) == 1
    assert np.abs(again[0].landmarks[:2] - tpl[:2]).max() < 0.06 * size


def test_exact_template_landmarks_align_exactly():
    # Landmarks that ARE a similarity of the template must come out exactly on it.
    tpl = F.template_points(64)
    lm = F.transform_points(np.array([[0.8, -0.6, 100], [0.6, 0.8, 50]]) * 1.5, tpl)
    img = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    _, matrix = F.align_face(img, lm, 64)
    assert np.allclose(F.transform_points(matrix, lm), tpl, atol=1e-6)


def test_eye_mask_covers_the_eyes_only():
    img = skdata.astronaut()
    face = F.detect_faces(img)[0]
    crop, matrix = F.align_face(img, face.landmarks, 256)
    mask = F.eye_mask(face.landmarks, face.side, matrix, 256)
    assert mask.shape == (256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    for x, y in F.transform_points(matrix, face.landmarks[:2]):
        assert mask[int(round(y)), int(round(x))] == 255
    nose = F.transform_points(matrix, face.landmarks[2:3])[0]
    assert mask[int(nose[1]), int(nose[0])] == 0
    # Two rectangles of (2 * side/8) x (2 * side/15) each, scaled by the alignment.
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    expected = 2 * (2 * face.side / 8) * (2 * face.side / 15) * scale ** 2
    assert abs((mask > 0).sum() - expected) / expected < 0.1


def test_missing_facenet_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # behaves as "not installed"
    monkeypatch.setattr(F, "_DETECTORS", {})
    with pytest.raises(ImportError, match=r"pip install --no-deps facenet-pytorch"):
        F.detect_faces(np.zeros((64, 64, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------
# Video helpers
# ---------------------------------------------------------------------------------------------------

def test_probe_and_iter_frames(scene_video):
    info = V.probe(scene_video)
    assert (info.width, info.height, info.fps, info.frames) == (W, H, FPS, N_FRAMES)
    assert info.has_audio and info.audio_codec == "aac"
    got = list(V.iter_frames(scene_video, start=3, every=4))
    assert [i for i, _ in got] == list(range(3, N_FRAMES, 4))
    assert got[0][1].shape == (H, W, 3) and got[0][1].dtype == np.uint8


@pytest.mark.parametrize("content", [b"", b"random"])
def test_corrupt_or_empty_video_names_the_file(tmp_path, content):
    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(content if content == b"" else np.random.default_rng(0).bytes(20000))
    with pytest.raises(V.VideoError, match="broken clip.mp4") as err:
        V.probe(bad)
    assert ("the file is empty" in str(err.value)) == (content == b"")
    with pytest.raises(V.VideoError, match="broken clip.mp4"):
        list(V.iter_frames(bad))


@pytest.mark.parametrize("source_audio,mode", [("aac", "copy"), ("pcm_s16le", "aac")])
def test_writer_keeps_audio_and_label(tmp_path, source_audio, mode):
    frames = [np.full((H // 2, W // 2, 3), 10 * i, np.uint8) for i in range(10)]
    src = write_test_video(tmp_path / ("src.mkv" if source_audio.startswith("pcm") else "src.mp4"), frames,
                           audio=source_audio)
    out = tmp_path / "out.mp4"
    with V.VideoWriter(out, Fraction(FPS), audio_from=src) as w:
        for _, f in V.iter_frames(src):
            w.write(f)
    assert w.audio_mode == mode
    info = V.probe(out)
    assert (info.frames, info.fps, info.width, info.height) == (10, FPS, W // 2, H // 2)
    assert info.has_audio and info.audio_codec == "aac"
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - 1.0) < 0.1
    assert V.read_metadata(out)["comment"] == V.SYNTHETIC_LABEL
    with pytest.raises(FileExistsError):
        V.VideoWriter(out, FPS)


def test_writer_pads_odd_sizes(tmp_path):
    out = tmp_path / "odd.mp4"
    with V.VideoWriter(out, 5) as w:
        for i in range(3):
            w.write(np.full((31, 45, 3), 40 * i, np.uint8))
    info = V.probe(out)
    assert (info.width, info.height, info.frames) == (46, 32, 3)


# ---------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------

def test_extract_video_finds_faces_and_resumes(scene_video, tmp_path):
    out = tmp_path / "ex"
    rep = F.extract([scene_video], out, every=1, size=128, min_face=40, progress=False)
    assert rep.frames_read == N_FRAMES
    assert rep.frames_without_face <= 0.05 * N_FRAMES  # a face in >= 95% of the frames
    faces = sorted(p.name for p in (out / "faces").glob("*.png"))
    masks = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert faces == masks and len(faces) == rep.faces_saved >= 0.95 * N_FRAMES
    assert faces[0] == "scene_f000000_0.png"
    assert Image.open(out / "faces" / faces[0]).size == (128, 128)
    saved = json.loads(Path(rep.report_path).read_text())
    assert saved["faces_saved"] == rep.faces_saved and saved["frames_read"] == N_FRAMES
    # Run again: everything is done, nothing is read or rewritten.
    before = {p: p.stat().st_mtime_ns for p in (out / "faces").iterdir()}
    again = F.extract([scene_video], out, every=1, size=128, progress=False)
    assert again.frames_read == 0 and again.sources_already_done == 1
    assert {p: p.stat().st_mtime_ns for p in (out / "faces").iterdir()} == before


def test_extract_resumes_after_an_interruption(scene_video, tmp_path, monkeypatch):
    out = tmp_path / "ex"
    real, calls = F.detect_faces, {"n": 0}

    def stop_on_fifth(*args, **kwargs):  # the real detector, then a Ctrl-C in the middle of the video
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "detect_faces", stop_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        F.extract([scene_video], out, every=3, size=64, progress=False)
    progress = json.loads((out / F.PROGRESS_FILE).read_text())
    (entry,) = progress["sources"].values()
    assert entry["last_frame"] == 9 and not entry["done"]  # frames 0, 3, 6, 9 finished
    first = {p.name for p in (out / "faces").glob("*.png")}
    assert {n.split("_f")[1][:6] for n in first} <= {"000000", "000003", "000006", "000009"}
    monkeypatch.setattr(F, "detect_faces", real)
    rep = F.extract([scene_video], out, every=3, size=64, progress=False)
    assert rep.frames_skipped_resume == 4
    assert rep.frames_read == len(range(12, N_FRAMES, 3))  # only the frames not done before
    names = {p.name for p in (out / "faces").glob("*.png")}
    frames_done = {int(n.split("_f")[1][:6]) for n in names}
    grid = set(range(0, N_FRAMES, 3))
    assert first <= names and frames_done <= grid and len(grid - frames_done) <= 1  # same as one full run


def test_extract_folder_skips_bad_files_and_counts(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    astro = skdata.astronaut()
    Image.fromarray(astro).save(src / "astronaut.jpg")
    Image.fromarray(np.concatenate([astro, astro], 1)).save(src / "two.png")
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(src / "blank.png")
    Image.fromarray(np.asarray(Image.fromarray(astro).resize((170, 170)))).save(src / "small.png")  # ~33 px face
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "empty.mp4").write_bytes(b"")
    rep = F.extract([src, tmp_path / "missing.png"], tmp_path / "out", min_face=40, progress=False)
    bad = {Path(u["path"]).name for u in rep.unreadable}
    assert bad == {"corrupt.jpg", "empty.mp4", "missing.png"}
    assert rep.sources == 6 and rep.frames_read == 4
    assert rep.faces_saved == 3 and rep.frames_with_several == 1
    assert rep.faces_too_small == 1 and rep.frames_without_face == 2  # blank + small
    names = sorted(p.name for p in (tmp_path / "out" / "faces").iterdir())
    assert names == ["astronaut_f000000_0.png", "two_f000000_0.png", "two_f000000_1.png"]
    summary = rep.summary()
    assert "corrupt.jpg" in summary and "empty.mp4" in summary


def test_extract_folder_without_faces(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.full((100, 100, 3), 60 * i, np.uint8)).save(src / f"plain{i}.png")
    with pytest.warns(UserWarning, match="no face saved"):
        rep = F.extract([src], tmp_path / "out", progress=False)
    assert rep.faces_saved == 0 and rep.frames_without_face == 2 and rep.unreadable == []
    assert "WARNING: no face was saved" in rep.summary()


def test_same_stem_in_two_folders_does_not_collide(tmp_path):
    astro = skdata.astronaut()
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(astro).save(tmp_path / d / "me.png")
    rep = F.extract([tmp_path / "a" / "me.png", tmp_path / "b" / "me.png"], tmp_path / "out", size=64,
                    progress=False)
    assert rep.faces_saved == 2
    assert sorted(p.name for p in (tmp_path / "out" / "faces").iterdir()) == ["me-2_f000000_0.png",
                                                                             "me_f000000_0.png"]


def test_extract_command_line(tmp_path, capsys):
    import argparse

    Image.fromarray(skdata.astronaut()).save(tmp_path / "a.png")
    parser = argparse.ArgumentParser(prog="ganlib")
    F.add_extract_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["extract", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--size", "64",
                              "--quiet"])
    assert args.every == 5 and args.size == 64
    assert args.func(args) == 0
    assert "faces saved: 1" in capsys.readouterr().out
    assert (tmp_path / "o" / "faces" / "a_f000000_0.png").exists()


def test_display_rotation_is_applied():
    # A real phone video with a display matrix cannot be written with PyAV here, so this feeds the
    # helper a frame-like object carrying PyAV's `rotation` (counter-clockwise degrees, -90 = portrait).
    class SidewaysFrame:
        rotation = -90

        def to_ndarray(self, format):
            img = np.zeros((2, 3, 3), np.uint8)
            img[0, 0] = 255  # top-left marker
            return img

    up = V._upright(SidewaysFrame())
    assert up.shape == (3, 2, 3) and up[0, 1, 0] == 255  # turned clockwise: top-left -> top-right
    SidewaysFrame.rotation = 0
    assert V._upright(SidewaysFrame()).shape == (2, 3, 3)
