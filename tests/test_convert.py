"""Faces out: the swapper, per-face transform, smoothing, labels, photos, folders and videos.

Uses the real ganlib Generator (tiny lite config, random weights), real MTCNN and real video files.
"""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")
torch = pytest.importorskip("torch")

from ganlib import convert as C  # noqa: E402
from ganlib.checkpoint import save_checkpoint  # noqa: E402
from ganlib.config import Config  # noqa: E402
from ganlib.models import Generator  # noqa: E402
from ganlib.synthetic import SyntheticFaces, sample_nuisance  # noqa: E402
from ganlib.video import SYNTHETIC_LABEL, VideoError, probe  # noqa: E402

W, H, FPS, SR = 320, 240, 10, 16000


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_config() -> Config:
    cfg = Config()
    cfg.model.resolution = 32
    cfg.model.model_capacity = "lite"
    cfg.model.width = 0.1
    cfg.model.use_self_attn = False
    cfg.model.norm = "none"
    return cfg


@pytest.fixture(scope="module")
def swapper() -> C.Swapper:
    torch.manual_seed(0)
    cfg = tiny_config()
    gen = Generator(cfg.model)
    with torch.no_grad():
        # Random weights give alpha ~ 0.5; push it to ~0.9 so a swap is plainly visible in the pixels.
        for dec in (gen.decoder_a, gen.decoder_b):
            dec.alpha_head.bias += 2.0
    return C.Swapper(gen, cfg.model.resolution, "cpu")


def write_test_video(path: Path, frames, fps: int = FPS, audio: bool = True) -> Path:
    """Frames + a 440 Hz AAC tone, written with PyAV directly (not with ganlib's writer)."""
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
    vs.height, vs.width = frames[0].shape[:2]
    vs.pix_fmt = "yuv420p"
    a = None
    if audio:
        a = c.add_stream("aac", rate=SR)
        a.layout = "mono"
    for f in frames:
        for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    if a is not None:
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SR * len(frames) / fps)) / SR)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, k, Fraction(1, SR)
            for p in a.encode(af):
                c.mux(p)
    for p in vs.encode(None):
        c.mux(p)
    if a is not None:
        for p in a.encode(None):
            c.mux(p)
    c.close()
    return path


def moving_scene(n: int, face_frames=None, size: int = 120, seed: int = 2):
    renders = [SyntheticFaces(size=size).render(0, nz).image for nz in sample_nuisance(n, seed=seed)]
    yy, xx = np.mgrid[0:H, 0:W]
    frames = []
    for i in range(n):
        frame = np.stack([(xx + 5 * i) % 256, (yy * 0.6 + 60).astype(int), np.full_like(xx, 90 + i)], -1)
        frame = frame.astype(np.uint8)
        if face_frames is None or i in face_frames:
            x, y = 20 + int(i * (W - size - 40) / max(n - 1, 1)), 40 + int(25 * np.sin(i / 5))
            frame[y:y + size, x:x + size] = renders[i]
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {
        # 30 frames; the face leaves for the last 4 (they must pass through unchanged).
        "main": write_test_video(d / "scene.mp4", moving_scene(30, face_frames=set(range(26)))),
        "short": write_test_video(d / "short.mp4", moving_scene(4)),
        "noface": write_test_video(d / "noface.mp4", moving_scene(4, face_frames=set())),
    }


def read_frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# ---------------------------------------------------------------------------------------------------
# Direction and the model wrapper
# ---------------------------------------------------------------------------------------------------

def test_direction_is_spelled_out():
    assert C.direction_message("AtoB") == "converting A -> B: faces of A are rendered as B using decoder B"
    assert C.direction_message("BtoA") == "converting B -> A: faces of B are rendered as A using decoder A"
    assert C.parse_direction("AtoB")[2] == "b" and C.parse_direction("BtoA")[2] == "a"
    with pytest.raises(ValueError, match="AtoB"):
        C.parse_direction("sideways")


def test_swapper_uses_the_named_decoder(swapper):
    face = skdata.astronaut()[60:180, 170:290]
    (rgb_b, alpha_b), = swapper([face], "AtoB")
    (rgb_a, _), = swapper([face], "BtoA")
    assert rgb_b.shape == (32, 32, 3) and rgb_b.dtype == np.uint8
    assert alpha_b.shape == (32, 32) and 0 <= alpha_b.min() and alpha_b.max() <= 1
    x = torch.from_numpy(np.array(Image.fromarray(face).resize((32, 32), Image.BICUBIC))).permute(2, 0, 1)
    x = x[None].float() / 127.5 - 1
    ref_rgb, ref_alpha = swapper.generator.swap(x, to="b")
    assert np.abs(((ref_rgb[0].permute(1, 2, 0) + 1) * 127.5).numpy() - rgb_b).max() <= 1
    assert np.allclose(ref_alpha[0, 0].numpy(), alpha_b, atol=1e-5)
    assert not np.array_equal(rgb_a, rgb_b)  # decoder A is a different network


def test_swapper_from_state_and_run_dir(tmp_path, swapper):
    gen = swapper.generator
    state = {"config": tiny_config().to_dict(),
             "models": {k: getattr(gen, k).state_dict() for k in ("encoder", "decoder_a", "decoder_b")}}
    face = skdata.astronaut()[60:180, 170:290]
    again = C.Swapper.from_state(state, device="cpu")
    assert np.array_equal(again([face], "AtoB")[0][0], swapper([face], "AtoB")[0][0])
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        C.Swapper.from_run_dir(empty)
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        C.Swapper.from_run_dir(tmp_path / "nope")
    save_checkpoint(state, empty, 7)
    loaded = C.Swapper.from_run_dir(empty, device="cpu")
    assert loaded.resolution == 32 and "ckpt-000000007" in loaded.source
    assert np.array_equal(loaded([face], "AtoB")[0][0], swapper([face], "AtoB")[0][0])
    with pytest.raises(ValueError, match="decoder_b"):
        C.Swapper.from_state({"config": state["config"], "models": {"encoder": state["models"]["encoder"]}})


# ---------------------------------------------------------------------------------------------------
# Per-face pieces
# ---------------------------------------------------------------------------------------------------

def test_color_corrections_match_the_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 120, (40, 40, 3)).astype(np.uint8)
    ref = np.clip(rng.normal(170, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    ada = C.color_correct(img, ref, "adain").astype(float)
    assert np.allclose(ada.mean((0, 1)), ref.mean((0, 1)), atol=1.5)
    assert np.allclose(ada.std((0, 1)), ref.std((0, 1)), atol=1.5)
    hist = C.color_correct(img, ref, "hist_match")
    for c in range(3):
        q = [10, 50, 90]
        assert np.allclose(np.percentile(hist[..., c], q), np.percentile(ref[..., c], q), atol=4)
    xyz = C.color_correct(img, ref, "adain_xyz").astype(float)
    assert np.abs(xyz.mean((0, 1)) - ref.mean((0, 1))).max() < 8
    assert np.array_equal(C.color_correct(img, ref, "none"), img)
    with pytest.raises(ValueError, match="hist_match"):
        C.color_correct(img, ref, "sepia")


def test_feather_mask_is_soft_inside_the_roi():
    m = C.feather_mask(100, 100, 10)
    assert m.shape == (100, 100) and m.max() <= 1.0 + 1e-6
    assert m[50, 50] > 0.99 and m[0, 0] < 0.05 and 0.2 < m[50, 10] < 0.8  # soft at the inner edge
    blurred = C.gaussian_blur(np.pad(np.ones((20, 20), np.float32), 20), 15, 10.0)
    assert abs(blurred.sum() - 400) < 1.0  # a normalised kernel keeps the mass


def test_transform_faces_only_touches_the_roi(swapper):
    crop = np.asarray(Image.fromarray(skdata.astronaut()[40:200, 150:310]).resize((200, 200)))
    (res,) = C.transform_faces(swapper, [crop], "AtoB", roi_coverage=0.9, color_correction="none")
    pad = int(200 * 0.1)
    assert np.array_equal(res.result[:pad], crop[:pad]) and np.array_equal(res.result[:, -pad:], crop[:, -pad:])
    centre = slice(80, 120)
    assert np.abs(res.result[centre, centre].astype(int) - crop[centre, centre]).mean() > 5
    assert res.alpha[:pad].max() == 0 and res.alpha[100, 100] > 0.5
    with pytest.raises(ValueError, match="roi_coverage"):
        C.transform_faces(swapper, [crop], "AtoB", roi_coverage=1.0)


# ---------------------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------------------

def test_kalman_smoothing_reduces_jitter_of_a_noisy_box_track():
    rng = np.random.default_rng(0)
    t = np.arange(120, dtype=float)
    truth = np.stack([100 + 1.5 * t, 80 + 0.5 * t, 180 + 1.5 * t, 160 + 0.5 * t], 1)  # moving box corners
    noisy = truth + rng.normal(0, 3.0, truth.shape)
    kf = C.KalmanPoints(2, noise_coef=1e-3)
    smooth = np.array([kf.update(b.reshape(2, 2)).ravel() for b in noisy])
    # predict() after correct() estimates the NEXT frame, as v2.2 used it: compare with truth[t + 1].
    err_raw = np.sqrt(((noisy[20:-1] - truth[20:-1]) ** 2).mean())
    err_kf = np.sqrt(((smooth[20:-1] - truth[21:]) ** 2).mean())
    jitter = lambda x: np.abs(np.diff(x[20:], 2, axis=0)).mean()  # noqa: E731 - second differences
    assert err_kf < 0.5 * err_raw
    assert jitter(smooth) < 0.25 * jitter(noisy)
    # The 200 warm-up predictions make the first measurement trusted, not averaged with 0.
    first = C.KalmanPoints(1).update(np.array([[250.0, 120.0]]))
    assert np.abs(first - [250, 120]).max() < 2.0
    ma = C.MovingAveragePoints(2)
    smooth_ma = np.array([ma.update(b.reshape(2, 2)).ravel() for b in noisy])
    assert jitter(smooth_ma) < 0.5 * jitter(noisy)


def test_tracker_smooths_each_face_separately(swapper):
    from ganlib.faces import Face

    rng = np.random.default_rng(1)
    base = [np.array([40, 40, 100, 100.0]), np.array([200, 50, 260, 110.0])]
    lm0 = np.array([[55, 60], [85, 60], [70, 75], [58, 90], [82, 90.0]])
    tracker = C.FaceTracker("kalman")
    outs = []
    for _ in range(30):
        faces = [Face(b + rng.normal(0, 2, 4), lm0 + (b[0] - 40, b[1] - 40) + rng.normal(0, 2, (5, 2)), 0.99)
                 for b in base]
        outs.append(tracker.update(faces, (240, 320)))
    assert len(tracker.tracks) == 2 and all(len(o) == 2 for o in outs)
    right_eye_x = np.array([o[1].landmarks[0, 0] for o in outs[10:]])
    assert abs(right_eye_x.mean() - 215) < 2 and right_eye_x.std() < 1.0  # second face smoothed, not swapped


# ---------------------------------------------------------------------------------------------------
# Labels, photos, folders
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_label_in_png_and_jpeg(tmp_path, ext):
    path = C.save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / f"x{ext}")
    assert C.read_label(path) == SYNTHETIC_LABEL
    im = Image.open(path)
    if ext == ".png":
        assert im.text["ganlib"] == SYNTHETIC_LABEL
    else:
        assert im.getexif()[C.EXIF_IMAGE_DESCRIPTION] == SYNTHETIC_LABEL
        assert im.info["comment"] == SYNTHETIC_LABEL.encode()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "plain.png")
    assert C.read_label(tmp_path / "plain.png") is None


def test_photo_with_two_faces_swaps_both(tmp_path, swapper, capsys):
    astro = skdata.astronaut()
    two = np.concatenate([astro, astro], axis=1)
    res = C.convert_image(swapper, two, "AtoB", out=tmp_path / "two.jpg", output_type=1)
    assert res.faces_found == 2 and res.faces_swapped == 2
    assert "converting A -> B" in capsys.readouterr().out
    diff = np.abs(res.image.astype(int) - two).sum(-1)
    assert diff[90:150, 190:260].mean() > 10 and diff[90:150, 512 + 190:512 + 260].mean() > 10  # both faces
    assert diff[400:, :100].max() == 0  # far from the faces nothing changes
    assert C.read_label(tmp_path / "two.jpg") == SYNTHETIC_LABEL
    with pytest.raises(FileExistsError):
        C.convert_image(swapper, two, "AtoB", out=tmp_path / "two.jpg")
    wide = C.convert_image(swapper, astro, "BtoA", output_type=3, verbose=False)
    assert wide.image.shape == (512, 3 * 512, 3)


def test_folder_conversion_skips_bad_files(tmp_path, swapper):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(skdata.astronaut()).resize((256, 256)).save(src / "astro.jpg")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(src / "blank.bmp")
    (src / "broken.png").write_bytes(b"\x89PNG nope")
    rep = C.convert_folder(swapper, src, tmp_path / "out", "AtoB", verbose=False)
    assert rep.images == 2 and rep.faces_swapped == 1 and rep.images_without_face == 1
    assert [Path(u["path"]).name for u in rep.unreadable] == ["broken.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astro.jpg", "blank.png"]
    assert all(C.read_label(p) == SYNTHETIC_LABEL for p in (tmp_path / "out").iterdir())
    again = C.convert_folder(swapper, src, tmp_path / "out", "AtoB", verbose=False)
    assert again.images == 0 and len(again.skipped_existing) == 2  # nothing silently replaced


# ---------------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------------

def test_convert_video_keeps_frames_fps_size_audio_and_label(tmp_path, swapper, videos, capsys):
    out = tmp_path / "out.mp4"
    rep = C.convert_video(swapper, videos["main"], out, "AtoB", progress=False)
    printed = capsys.readouterr().out
    assert "converting A -> B: faces of A are rendered as B using decoder B" in printed
    assert "a face was swapped in" in printed
    info_in, info_out = probe(videos["main"]), probe(out)
    assert (info_out.frames, info_out.fps, info_out.width, info_out.height) == \
           (info_in.frames, info_in.fps, info_in.width, info_in.height) == (30, FPS, W, H)
    assert info_out.has_audio and rep.audio == "copy"
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - 3.0) < 0.15 and a.codec_context.sample_rate == SR
    assert C.read_label(out) == SYNTHETIC_LABEL
    assert rep.frames == 30 and rep.frames_swapped >= 25 and rep.frames_without_face >= 4
    assert rep.faces_swapped >= rep.frames_swapped
    src_frames, out_frames = read_frames(videos["main"]), read_frames(out)
    for i in range(26, 30):  # no face: passed through (only re-encoding noise)
        assert np.abs(src_frames[i].astype(int) - out_frames[i]).mean() < 2.0
    changed = [np.abs(src_frames[i].astype(int) - out_frames[i]).mean() for i in range(0, 26)]
    assert np.median(changed) > 0.5  # the face region really changed
    assert not (tmp_path / "out.partial.mp4").exists()


@pytest.mark.parametrize("output_type", [2, 3])
def test_output_types_widen_the_video(tmp_path, swapper, videos, output_type):
    out = tmp_path / f"t{output_type}.mp4"
    rep = C.convert_video(swapper, videos["short"], out, "BtoA", output_type=output_type, smoothing="moving_average",
                          color_correction="adain", progress=False)
    info = probe(out)
    assert (info.width, info.height, info.frames) == (W * output_type, H, 4)
    assert rep.faces_swapped >= 3 and info.has_audio
    last = read_frames(out)[-1]
    src = read_frames(videos["short"])[-1]
    assert np.abs(last[:, :W].astype(int) - src).mean() < 2.0  # left panel = source
    if output_type == 3:
        panel = last[:, 2 * W:].astype(float)
        assert panel.max() > 200 and np.median(panel) < 0.2 * 255  # bright mask over a dimmed source


def test_video_without_faces_warns_loudly(tmp_path, swapper, videos, capsys):
    with pytest.warns(UserWarning, match="NO FACE WAS SWAPPED"):
        rep = C.convert_video(swapper, videos["noface"], tmp_path / "o.mp4", "AtoB", progress=False)
    assert rep.faces_swapped == 0 and rep.frames_without_face == 4
    assert "WARNING: NO FACE WAS SWAPPED" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"junk"])
def test_corrupt_or_empty_input_video(tmp_path, swapper, content):
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(4096) if content else b"")
    with pytest.raises(VideoError, match="holiday.mp4"):
        C.convert_video(swapper, bad, tmp_path / "out.mp4", "AtoB", progress=False)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.partial.mp4").exists()


def test_existing_output_is_never_replaced(tmp_path, swapper, videos):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="keep.mp4"):
        C.convert_video(swapper, videos["short"], out, "AtoB", progress=False)
    assert out.read_bytes() == b"precious"


def test_convert_command_line(tmp_path, swapper, capsys):
    gen = swapper.generator
    run = tmp_path / "run"
    save_checkpoint({"config": tiny_config().to_dict(),
                     "models": {k: getattr(gen, k).state_dict() for k in ("encoder", "decoder_a", "decoder_b")}},
                    run, 1)
    Image.fromarray(skdata.astronaut()).save(tmp_path / "a.png")
    parser = argparse.ArgumentParser(prog="ganlib")
    C.add_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", "--run-dir", str(run), str(tmp_path / "a.png"), "--out",
                              str(tmp_path / "b.png"), "--direction", "BtoA", "--color", "adain", "--device", "cpu"])
    assert args.output_type == 1 and args.direction == "BtoA"
    assert args.func(args) == 0
    assert "converting B -> A" in capsys.readouterr().out
    assert C.read_label(tmp_path / "b.png") == SYNTHETIC_LABEL
    (tmp_path / "fresh").mkdir()
    args = parser.parse_args(["convert", "--run-dir", str(tmp_path / "fresh"), str(tmp_path / "a.png"), "--out",
                              str(tmp_path / "c.png")])
    assert args.func(args) == 2  # a clear message, not a traceback
    assert "has no checkpoint yet" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
