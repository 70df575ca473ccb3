"""Opening media and frame-accurate video decoding with PyAV (threaded decoders).

Media time: seconds from the container's start (``container.start_time``, usually 0), the same
origin for video and audio so that their relative offset in the file is kept.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator

import av

from app.pipeline.plan import RenderError

log = logging.getLogger(__name__)


def local_file(path: str | os.PathLike) -> str:
    """The name to give FFmpeg for a file on disk: ``file:`` + the absolute path, so that a name
    with a colon in it ("a:b.mp4", "clip 12:30.mp4") is never taken for a protocol."""
    return "file:" + os.path.abspath(path)


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's log off stderr: PyAV's no-op log callback (level None).

    Not ``set_level(ERROR)``: that installs a callback that takes the GIL from FFmpeg's own
    threads, and a frame-threaded decoder closing (which joins those threads) while its worker
    logs an error then deadlocks against the GIL. Reproduced with this renderer's threads; with
    the no-op callback it does not happen. Errors still raise exceptions with FFmpeg's message.
    """
    if av.logging.get_level() is not None:
        log.debug("switching FFmpeg's log callback off for rendering (threads + GIL deadlock)")
    av.logging.set_level(None)


def open_media(path: str) -> av.container.InputContainer:
    """Open a media file for reading, or raise :class:`RenderError` with words the user can act on."""
    quiet_ffmpeg()
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise RenderError(f"Media file is missing: {path}")
    if os.path.isdir(path):
        raise RenderError(f"Media path is a folder, not a file: {path}")
    if os.path.getsize(path) == 0:
        raise RenderError(f"Media file is empty (0 bytes): {name}")
    try:
        return av.open(local_file(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"Cannot read media file {name}: {exc}") from exc


def main_video_stream(container: av.container.InputContainer):
    """The video stream a media file is probed, shown and exported by: the largest picture (a
    cover image excepted), the first of equals. None when it has none."""
    from av.stream import Disposition

    candidates = [s for s in container.streams.video if not (s.disposition & Disposition.attached_pic)]
    return max(candidates, key=lambda s: (_area(s), -s.index), default=None)


def _area(s) -> int:
    cc = s.codec_context
    return (cc.width * cc.height) if cc is not None else -1


# undecodable packets skipped in a row before a file counts as unreadable (FFmpeg itself skips
# any number; a damaged stretch of a long game is usually a few packets)
MAX_BAD_PACKETS = 300
# damaged stretches logged one by one per decode; the rest are counted in one line at its end
# (a 90-minute file damaged all along logged 80,000 lines, more than the log keeps)
LOGGED_BAD_STRETCHES = 5
TIE_S = 1e-6  # s: two distances this close are a tie (see frames_at)


def decode_frames(container: av.container.InputContainer, stream, name: str,
                  damaged: list[float] | None = None, what: str = "video") -> Iterator[av.frame.Frame]:
    """The decoded frames of ``stream`` (``what``: "video" or "sound", for the words). A packet
    that does not decode (a damaged stretch of the file) is skipped, as FFmpeg does: its frames
    are missing (the nearest good picture stands in for them; for sound, silence); its time
    (stream seconds, when known) goes into ``damaged`` so that the user can be told. A file that
    decodes nothing for ``MAX_BAD_PACKETS`` packets, or cannot be read on, raises
    :class:`RenderError` naming ``name``."""
    bad = 0  # in a row
    stretches = 0  # damaged stretches met (runs of bad packets)
    skipped = 0  # bad packets in all
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.codec_context.decode(packet if packet.size else None)
            except av.EOFError:
                return
            except av.FFmpegError as exc:  # this packet's data (AAC says EPERM or EINVAL for some)
                if isinstance(exc, MemoryError):
                    raise
                bad += 1
                skipped += 1
                if damaged is not None and packet.pts is not None and packet.time_base:
                    damaged.append(float(packet.pts * packet.time_base))
                if bad == 1:
                    stretches += 1
                    if stretches <= LOGGED_BAD_STRETCHES:
                        log.warning("%s: skipping undecodable %s data (%s)", name, what, exc)
                if bad >= MAX_BAD_PACKETS:
                    raise RenderError(f"Cannot decode {name}: the {what} data is damaged ({exc})") from exc
                continue
            if frames:
                bad = 0
            yield from frames
    except av.FFmpegError as exc:
        raise RenderError(f"Cannot decode {name}: {exc}") from exc
    finally:
        if stretches > LOGGED_BAD_STRETCHES:
            log.warning("%s: %d undecodable %s packet(s) skipped in %d damaged stretches (the first %d logged)",
                        name, skipped, what, stretches, LOGGED_BAD_STRETCHES)


def damage_note(name: str, damaged: list[float], origin: float, start: float, end: float, what: str,
                stands_in: str) -> str | None:
    """In words, the ``damaged`` packets (file times) of a source met between media times ``start``
    and ``end``, if any."""
    hit = sorted({round(t - origin, 3) for t in damaged if start - 1.0 <= t - origin <= end})
    if not hit:
        return None
    where = f"at {hit[0]:.1f} s" if hit[-1] - hit[0] < 0.05 else f"from {hit[0]:.1f} to {hit[-1]:.1f} s"
    return (f"{name} is damaged {where} ({len(hit)} {what} packet{'s' if len(hit) != 1 else ''} "
            f"could not be decoded): {stands_in}")


def media_origin(container: av.container.InputContainer) -> float:
    """The file time (s) of media time 0: the start of its main video stream, where the probe's
    duration starts and a clip's range is counted from. Not the file's start, which is earlier
    when the sound starts before the pictures (an MP4 edit list, a camera's or a screen
    recorder's offset): counted from there, "all of it" would freeze the first picture and lose
    as much of the end. Picture and sound are both read on this one clock."""
    vs = main_video_stream(container)
    if vs is not None and vs.start_time is not None and vs.time_base:
        return float(vs.start_time * vs.time_base)
    start = container.start_time
    return start / 1_000_000 if start is not None else 0.0


class VideoSource:
    """One media file's video stream, decoded forward from a seek point.

    :meth:`frames_at` picks, for each requested media time, the decoded frame to show then (frame
    resampling by timestamp, as FFmpeg's ``fps`` filter: works for CFR, VFR and any speed).
    """

    def __init__(self, path: str, name: str | None = None):
        self.path = path
        self.name = name or os.path.basename(path) or path
        self.container = open_media(path)
        self.stream = main_video_stream(self.container)
        if self.stream is None:
            self.container.close()
            raise RenderError(f"{self.name} has no video stream")
        self.stream.thread_type = "AUTO"  # frame + slice threads; thread_count 0 = one per core
        self.stream.codec_context.thread_count = 0
        self.origin = media_origin(self.container)
        self.time_base = self.stream.time_base
        rate = self.stream.average_rate or self.stream.guessed_rate or 30
        self.frame_interval = 1.0 / float(rate)
        self._last_time: float | None = None
        # how far past its last frame the stream may be asked for: what the probe lets a file
        # fall short of its header (max(0.5 s, 1 %)), and two frames. Further is a file that
        # changed or broke since it was added: an error, not a frozen picture to the end.
        declared = (self.container.duration or 0) / 1_000_000
        self.hold_s = max(0.5, 0.01 * declared) + 2 * self.frame_interval
        self.damaged: list[float] = []  # media times of the packets that did not decode

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _time(self, frame: av.VideoFrame) -> float:
        pts = frame.pts
        if pts is None:  # no timestamp: one frame after the previous one
            t = (self._last_time + self.frame_interval) if self._last_time is not None else 0.0
        else:
            t = float(pts * self.time_base) - self.origin
        self._last_time = t
        return t

    def _decode(self) -> Iterator[tuple[float, av.VideoFrame]]:
        for frame in decode_frames(self.container, self.stream, self.name, self.damaged):
            yield self._time(frame), frame

    def damage_note(self, start: float, end: float) -> str | None:
        """In words, the damaged packets met between media times ``start`` and ``end``, if any."""
        return damage_note(self.name, self.damaged, self.origin, start, end, "video",
                           "the nearest good picture stands in there")

    def _seek(self, t: float) -> None:
        if t <= 0:
            self.container.seek(0, backward=True, any_frame=False, stream=self.stream)
        else:
            target = int((t + self.origin) / self.time_base)
            self.container.seek(target, backward=True, any_frame=False, stream=self.stream)
        self._last_time = None

    def _frames_from(self, t: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """Decoded (time, frame) from the keyframe at or before ``t`` on."""
        # a little before t, so that the frame just before t is there to compare with
        seek_to = t - 2 * self.frame_interval
        try:
            self._seek(max(seek_to, 0.0))
        except av.FFmpegError as exc:
            raise RenderError(f"Cannot seek in {self.name}: {exc}") from exc
        frames = self._decode()
        first = next(frames, None)
        if first is not None and first[0] > t + self.frame_interval / 2 and seek_to > 0:
            # the demuxer landed after the target (bad index): decode from the start instead
            log.debug("seek to %.3f in %s landed at %.3f; decoding from 0", t, self.name, first[0])
            frames.close()
            self._seek(0.0)
            frames = self._decode()
            first = next(frames, None)
        if first is None:
            return
        yield first
        yield from frames

    def frames_at(self, times: Iterable[float]) -> Iterator[av.VideoFrame]:
        """For each media time (non-decreasing), the decoded frame to show then.

        A source frame is shown from the wanted time nearest to its own timestamp on, as FFmpeg's
        ``fps`` filter places frames on the output grid: the frame nearest to the time, except
        where the times are closer together than the frames (slow motion), where a frame waits
        for the time nearest to its start rather than showing half a step early. So at 0.5x of
        30 fps into 30 fps every source frame is held for exactly 2 output frames (4 at 0.25x),
        and no frame past the last wanted time shows. Ties (within ``TIE_S``, so that float
        rounding does not decide) go to the earlier frame.

        Frames before the first wanted time are decoded (from the keyframe before) and dropped.
        Past the end of the stream the last frame is held, up to ``hold_s``; a time further on
        raises RenderError (the file is shorter than it was when probed).
        """
        it = iter(times)
        t = next(it, None)
        if t is None:
            return
        following = next(it, None)
        step = math.inf if following is None else following - t  # to the next wanted time
        frames = self._frames_from(t)
        cur = next(frames, None)
        if cur is None:
            raise RenderError(f"{self.name} has no decodable video frames")
        nxt = next(frames, None)
        try:
            while True:
                while nxt is not None and nxt[0] <= t:
                    cur, nxt = nxt, next(frames, None)
                if nxt is not None and nxt[0] - t < min(step, nxt[0] - cur[0]) / 2 - TIE_S:
                    yield nxt[1]
                elif nxt is None and t - cur[0] > self.hold_s:
                    raise RenderError(f"{self.name} ends at {cur[0]:.2f} s, before {t:.2f} s: the file is "
                                      "shorter than when it was added (changed or damaged since)")
                else:
                    yield cur[1]
                if following is None:
                    return
                t, following = following, next(it, None)
                if following is not None:
                    step = following - t
        finally:
            frames.close()


def display_rotation_of(frame: av.VideoFrame, fallback: int) -> int:
    """Counter-clockwise display rotation (0/90/180/270) the frame carries, else ``fallback``.

    PyAV's ``VideoFrame.rotation`` reads the display matrix (counter-clockwise degrees); phones
    write 90 or -90 (= 270) for portrait video. The media's own matrix wins over the plan's copy.
    """
    try:
        rot = frame.rotation
    except Exception:  # no or unreadable side data
        rot = 0
    return round((rot or fallback or 0) / 90) * 90 % 360


def put_until_stopped(q: queue.Queue, item, stop: threading.Event, poll: float = 0.1) -> bool:
    """Put into a bounded queue, giving up when ``stop`` is set (a consumer that died or a cancel);
    ``stop`` is looked at every ``poll`` seconds while the queue is full."""
    while not stop.is_set():
        try:
            q.put(item, timeout=poll)
            return True
        except queue.Full:
            continue
    return False
