"""Video read/write helpers on PyAV (FFmpeg bundled in the wheel; no OpenCV, no moviepy).

- :func:`probe` and :func:`iter_frames` read RGB frames (uint8 HxWx3) with fps, size and frame count.
- :class:`VideoWriter` writes H.264 (libx264 when PyAV's FFmpeg has it, else MPEG-4 part 2), keeps
  the audio track of a source video (copied when the container accepts the codec, else re-encoded
  to AAC) and stamps container metadata, by default the label :data:`SYNTHETIC_LABEL`.

A corrupt, empty or video-less file raises :class:`VideoError`, whose message names the file and
says what to do. PyAV is imported lazily so that ``import ganlib`` works without it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

#: Label carried by every synthetic output (video metadata, PNG text chunk, JPEG comment/EXIF).
SYNTHETIC_LABEL = "synthetic, made with ganlib"

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}

# Audio codecs the MP4/MOV muxers take as-is; anything else (PCM, Vorbis...) is re-encoded to AAC.
_MP4_COPYABLE_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus"}


class VideoError(ValueError):
    """A video file cannot be read (corrupt, empty, truncated, no video stream)."""


def _av():
    try:
        import av  # noqa: PLC0415 - lazy: PyAV is an optional extra ("ganlib[video]")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Video support needs PyAV: pip install av  (or pip install ganlib[video])") from exc
    return av


def _open_error(path: Path, exc: Exception) -> VideoError:
    size = path.stat().st_size if path.exists() else None
    if size == 0:
        why = "the file is empty (0 bytes)"
    else:
        why = f"FFmpeg cannot decode it ({type(exc).__name__}: {exc})"
    return VideoError(
        f"{path}: cannot read this video: {why}. The file may be truncated or not a video; "
        "re-download or re-export it (e.g. as H.264 .mp4) and try again."
    )


@dataclass
class VideoInfo:
    """What :func:`probe` learns about a video without decoding every frame."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int  # from the container when it says so, else estimated from duration * fps
    duration: float  # seconds, 0.0 when unknown
    has_audio: bool
    audio_codec: str | None
    metadata: dict


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoError(f"{path}: the file has no video stream (audio only?). Give a video file.")
    return container.streams.video[0]


def _stream_fps(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        # No rate in the container (rare: raw streams). 25 fps is FFmpeg's own fallback too.
        return Fraction(25, 1)
    return Fraction(rate)


def probe(path: str | Path) -> VideoInfo:
    """Return size, fps, frame count and audio info of a video; :class:`VideoError` if unreadable."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file.")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _open_error(path, exc) from exc
    with container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        frames = int(stream.frames or round(duration * fps))
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(f"{path}: the video stream has no picture size; the file is probably damaged.")
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path, width=width, height=height, fps=fps, frames=frames, duration=duration,
            has_audio=audio is not None, audio_codec=audio.codec_context.name if audio else None,
            metadata=dict(container.metadata),
        )


def iter_frames(path: str | Path, *, start: int = 0, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb_uint8_HxWx3)`` for every ``every``-th frame from ``start`` on.

    Frame indices count decoded frames from 0. Frames before ``start`` are decoded but not converted
    (cheap compared with detection). A decode error on the very first frame raises
    :class:`VideoError`; a damaged tail after good frames stops the iteration with a warning that
    says how many frames were read, so a long run keeps what it has.
    """
    av = _av()
    path = Path(path)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    info = probe(path)  # raises a clear VideoError for empty/corrupt files before anything else
    container = av.open(str(path))
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-threaded decoding; harmless on 1 core
        try:
            for frame in container.decode(stream):
                index += 1
                if index < start or (index - start) % every:
                    continue
                yield index, _upright(frame)
        except av.error.FFmpegError as exc:
            if index < 0:
                raise _open_error(path, exc) from exc
            warnings.warn(
                f"{path}: decoding stopped after {index + 1} frames (of ~{info.frames}): {exc}. "
                "The rest of the file looks damaged; frames read so far are kept.",
                stacklevel=2,
            )
    finally:
        container.close()
    if index < 0:
        raise VideoError(f"{path}: the video stream contains no decodable frame; re-export the file.")


def _upright(frame) -> np.ndarray:
    """RGB array of a decoded frame, turned as players show it.

    Phone videos are stored sideways with a display-matrix rotation; without applying it every face
    lies on its side and MTCNN finds none ("the video shows no swap"). PyAV reports the angle the
    display matrix rotates the frame counter-clockwise; ``np.rot90`` turns counter-clockwise too.
    """
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def pick_video_codec() -> str:
    """``libx264`` when PyAV's FFmpeg build has it (PyPI wheels do), else ``mpeg4`` (always built in)."""
    av = _av()
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class VideoWriter:
    """Write RGB frames to a video file, optionally keeping another video's audio track.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=info.fps, audio_from="in.mp4") as w:
            for frame in frames:
                w.write(frame)

    - Frames must all have the same size. Odd widths/heights are padded by one replicated pixel
      because yuv420p (what every player expects from H.264) needs even sizes.
    - ``audio_from``: a video whose first audio stream is copied (AAC/MP3 into MP4) or re-encoded to
      AAC; its packets are interleaved with the video as frames are written, so memory stays flat.
      ``audio="none"`` drops the audio, ``audio="aac"`` forces re-encoding.
    - ``metadata`` is written into the container; by default ``comment`` and ``description`` carry
      :data:`SYNTHETIC_LABEL`.
    - An existing ``path`` is never replaced unless ``overwrite=True``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        *,
        audio_from: str | Path | None = None,
        audio: str = "auto",
        metadata: dict | None = None,
        codec: str | None = None,
        crf: int = 18,
        overwrite: bool = False,
    ):
        av = _av()
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; choose another output name or pass overwrite=True.")
        if audio not in ("auto", "copy", "aac", "none"):
            raise ValueError(f"audio must be auto|copy|aac|none, got {audio!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
        self.codec = codec or pick_video_codec()
        self.crf = crf
        self.frames_written = 0
        self.audio_mode = "none"
        self._size: tuple[int, int] | None = None
        self._vstream = None
        self._container = av.open(str(self.path), mode="w")
        meta = {"comment": SYNTHETIC_LABEL, "description": SYNTHETIC_LABEL} if metadata is None else metadata
        for key, value in meta.items():
            self._container.metadata[key] = str(value)
        self._audio_src = None
        self._audio_in = None
        self._audio_out = None
        self._audio_packets = None
        self._pending = None  # next audio item not yet due (packet or frame)
        self._aac_time = 0.0  # seconds of audio sent to the AAC encoder
        if audio_from is not None and audio != "none":
            self._open_audio(Path(audio_from), audio)

    # -- audio -----------------------------------------------------------------------------------
    def _open_audio(self, src: Path, mode: str) -> None:
        av = _av()
        try:
            self._audio_src = av.open(str(src))
        except (av.error.FFmpegError, OSError) as exc:
            raise _open_error(src, exc) from exc
        if not self._audio_src.streams.audio:
            self._audio_src.close()
            self._audio_src = None
            return
        self._audio_in = self._audio_src.streams.audio[0]
        name = self._audio_in.codec_context.name
        supported = getattr(self._container, "supported_codecs", None) or set()
        can_copy = name in _MP4_COPYABLE_AUDIO and (not supported or name in supported)
        if mode == "copy" and not can_copy:
            raise ValueError(f"{src}: audio codec {name!r} cannot be copied into {self.path.suffix}; use audio='aac'.")
        if mode in ("auto", "copy") and can_copy:
            self._audio_out = self._container.add_stream_from_template(self._audio_in)
            self.audio_mode = "copy"
            self._audio_packets = (p for p in self._audio_src.demux(self._audio_in) if p.dts is not None)
        else:
            rate = self._audio_in.codec_context.sample_rate or 44100
            self._audio_out = self._container.add_stream("aac", rate=rate)
            # PCM sources often carry an unordered layout ("1 channels") that the AAC encoder
            # refuses; name the standard layout from the channel count instead.
            channels = self._audio_in.codec_context.channels or 2
            self._audio_out.codec_context.layout = "mono" if channels == 1 else "stereo"
            self.audio_mode = "aac"
            self._audio_packets = self._decoded_audio()

    def _decoded_audio(self):
        """Yield decoded audio frames of the source (for re-encoding), skipping undecodable packets."""
        av = _av()
        for packet in self._audio_src.demux(self._audio_in):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # one damaged audio packet: a few ms of silence rather than a failed video
            for frame in frames:
                frame.pts = None  # the encoder re-times from the sample count
                yield frame

    def _item_time(self, item) -> float:
        if item.pts is None or item.time_base is None:
            return 0.0 if self.audio_mode == "aac" else float("inf")
        return float(item.pts * item.time_base)

    def _emit_audio(self, item) -> None:
        if self.audio_mode == "copy":
            item.stream = self._audio_out
            self._container.mux(item)
        else:
            for packet in self._audio_out.encode(item):
                self._container.mux(packet)

    def _pump_audio(self, until: float | None) -> None:
        """Mux audio up to time ``until`` (seconds; None = everything left)."""
        if self._audio_packets is None:
            return
        if self.audio_mode == "aac":
            # Decoded frames have no pts; track time from the samples already sent.
            while True:
                item = self._pending if self._pending is not None else next(self._audio_packets, None)
                self._pending = None
                if item is None:
                    self._audio_packets = None
                    return
                if until is not None and self._aac_time >= until:
                    self._pending = item
                    return
                self._aac_time += item.samples / float(item.sample_rate)
                self._emit_audio(item)
        while True:
            item = self._pending if self._pending is not None else next(self._audio_packets, None)
            self._pending = None
            if item is None:
                self._audio_packets = None
                return
            if until is not None and self._item_time(item) >= until:
                self._pending = item
                return
            self._emit_audio(item)

    # -- video -----------------------------------------------------------------------------------
    def _open_video(self, height: int, width: int) -> None:
        self._size = (height, width)
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width = width + (width % 2)
        stream.height = height + (height % 2)
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            # crf 18 is "visually lossless" for x264; the swapped face should not be smeared by the encoder.
            # preset "fast": about half the CPU time of "medium" for slightly larger files.
            stream.options = {"crf": str(self.crf), "preset": "fast"}
        else:
            stream.bit_rate = max(2_000_000, width * height * 8)  # mpeg4 has no crf: generous bitrate
        # Frames are stamped 0, 1, 2... in units of 1/fps; the muxer rescales to its own time base.
        self._time_base = Fraction(1, 1) / self.fps
        stream.codec_context.time_base = self._time_base
        self._vstream = stream

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame (HxWx3); the first frame fixes the size."""
        av = _av()
        frame_rgb = np.asarray(frame_rgb)
        if frame_rgb.dtype != np.uint8 or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"frames must be uint8 HxWx3 RGB, got {frame_rgb.dtype} {frame_rgb.shape}")
        h, w = frame_rgb.shape[:2]
        if self._vstream is None:
            self._open_video(h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame {self.frames_written} is {w}x{h}, the video is {self._size[1]}x{self._size[0]}")
        if h % 2 or w % 2:
            frame_rgb = np.pad(frame_rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._time_base
        self.frames_written += 1
        for packet in self._vstream.encode(frame):
            self._container.mux(packet)
        # Interleave: audio up to the end of this frame goes in now, not all at the end.
        self._pump_audio(self.frames_written / float(self.fps))

    def close(self) -> None:
        """Flush the encoders, append the remaining audio and close both files."""
        if self._container is None:
            return
        try:
            if self._vstream is not None:
                for packet in self._vstream.encode(None):
                    self._container.mux(packet)
                # Audio longer than the video is cut at the video's end, as players would anyway.
                self._pump_audio(self.frames_written / float(self.fps))
                self._audio_packets = None
                if self.audio_mode == "aac" and self._audio_out is not None:
                    for packet in self._audio_out.encode(None):
                        self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
            if self._audio_src is not None:
                self._audio_src.close()
                self._audio_src = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def read_metadata(path: str | Path) -> dict:
    """Container metadata of a video (e.g. ``comment``) as a plain dict; :class:`VideoError` if unreadable."""
    return probe(path).metadata
