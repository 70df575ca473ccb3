"""MP4 output: H.264 (libx264, yuv420p, CFR timestamps n / fps) + AAC, faststart."""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from typing import Any

import av

from app.pipeline.audio import CHANNELS, LAYOUT, SAMPLE_RATE
from app.pipeline.decode import local_file, quiet_ffmpeg
from app.pipeline.plan import RenderError, write_failed

_NTSC = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), Fraction(120000, 1001))


def frame_rate(fps: float) -> Fraction:
    """The exact rate for an fps given as a float (29.97 -> 30000/1001)."""
    for r in _NTSC:
        if abs(float(r) - fps) < 0.005:
            return r
    rate = Fraction(fps).limit_denominator(1000)
    if rate <= 0:
        raise RenderError(f"Invalid export frame rate {fps}")
    return rate


def open_mp4(path: str) -> Any:
    """An MP4 container writing at exactly ``path`` (whatever its extension: the job layer writes
    to a temporary name), with faststart: the index is moved in front of the media data."""
    try:
        open(path, "wb").close()  # FFmpeg opens the file only at the first packet: ask now, and say where
        return av.open(local_file(path), "w", format="mp4", options={"movflags": "+faststart"})
    except (av.FFmpegError, OSError) as exc:
        raise write_failed("the video", exc, path) from exc


def add_x264(container: Any, rate: Fraction, width: int, height: int, crf: int, preset: str, time_base: Fraction) -> Any:
    """A libx264 yuv420p video stream with the export's crf and preset, threaded as the ffmpeg CLI.

    Frame threads: PyAV's default thread type, SLICE, makes libx264 cut every picture into one
    slice per thread with a barrier per picture, which left ~15 % of 2 cores idle. ``thread_count``
    0 lets x264 pick the number (frame threads + lookahead).
    """
    v = container.add_stream("libx264", rate=rate)
    _x264_settings(v.codec_context, width, height, crf, preset, time_base, rate)
    return v


def x264_encoder(rate: Fraction, width: int, height: int, crf: int, preset: str, like: Any = None) -> Any:
    """A stand-alone, opened libx264 encoder set up as :func:`add_x264` with time base 1/rate (as
    the working video's own), global headers (SPS and PPS in ``extradata``, not in the pictures)
    and the colour description of the codec context ``like``."""
    cc = av.CodecContext.create("libx264", "w")
    _x264_settings(cc, width, height, crf, preset, 1 / rate, rate)
    cc.framerate = rate
    cc.flags = cc.flags | av.codec.context.Flags.global_header
    copy_colour(like, cc)
    cc.open()
    return cc


def copy_colour(src: Any, dst: Any) -> None:
    """The colour description (range, matrix, primaries, transfer) of ``src`` on ``dst``, where set."""
    if src is None:
        return
    for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            val = getattr(src, attr)
            if val:
                setattr(dst, attr, val)


KEY_EVERY_S = 2


def _x264_settings(cc: Any, width: int, height: int, crf: int, preset: str, time_base: Fraction,
                   rate: Fraction) -> None:
    cc.width, cc.height = width, height
    cc.pix_fmt = "yuv420p"
    cc.options = {"crf": str(crf), "preset": str(preset)}
    cc.time_base = time_base
    # a key picture at least every 2 s (x264's default is 250 pictures, and ultrafast places none
    # at scene cuts: a whole reel in one GOP): the overlay export then re-encodes at most the
    # 2 s around a spotlight and copies the rest untouched, players seek quickly, and it is what
    # video platforms ask of uploads; it costs a few per cent of size at the same crf
    cc.gop_size = max(1, round(KEY_EVERY_S * rate))
    cc.thread_count = 0
    cc.thread_type = "AUTO"
    # BT.709 in limited range, what the framers produce, said in the stream (VUI) so that no
    # player has to guess (an untagged SD-sized export would be read as BT.601)
    cc.colorspace = cc.color_primaries = cc.color_trc = 1
    cc.color_range = 1


class Output:
    """The export file. Video frames get pts = their index in 1/fps units (exact CFR)."""

    def __init__(
        self,
        path: str,
        width: int,
        height: int,
        rate: Fraction,
        crf: int,
        preset: str,
        audio: bool,
    ):
        quiet_ffmpeg()
        self.path = path
        self.rate = rate
        self.time_base = 1 / rate
        self.container = open_mp4(path)
        try:
            v = add_x264(self.container, rate, width, height, crf, preset, self.time_base)
            cc = v.codec_context
            cc.framerate = rate
            self.video = v
            self.audio = None
            if audio:
                a = self.container.add_stream("aac", rate=SAMPLE_RATE, layout=LAYOUT)
                a.bit_rate = 96_000 * CHANNELS
                self.audio = a
        except (av.FFmpegError, ValueError) as exc:
            self.container.close()
            raise RenderError(f"Cannot set up the encoder: {exc}") from exc
        self._closed = False

    def write_video(self, frame: av.VideoFrame, index: int) -> None:
        frame.pts = index
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def write_audio(self, frame: av.AudioFrame) -> None:
        assert self.audio is not None
        for packet in self.audio.encode(frame):
            self.container.mux(packet)

    def finish(self) -> None:
        """Flush the encoders and write the index (moved to the front: faststart)."""
        for packet in self.video.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            for packet in self.audio.encode(None):
                self.container.mux(packet)
        self.container.close()
        self._closed = True

    def abort(self) -> None:
        """Close without finishing and remove the partial file."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self.container.close()
            self._closed = True
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
