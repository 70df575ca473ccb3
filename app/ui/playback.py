"""Real-time playback for both editors: frames decoded ahead, audio through QtMultimedia, a clock.

Output time runs from 0 when play starts; presentation slots are at the clip's frame rate (slot
``k`` at ``k / fps``), and each shows the frame at the clip time that output time maps to
through the speed segments (``clip_time_at``), as the export does. A :class:`FramePump` thread
decodes forward from one seek (no per-frame seeks), converts each slot's frame to a QImage and
puts it in a small bounded queue. The GUI thread only takes the frame due at the clock's time
and hands it to the editor to paint; a slot that passes without its frame shown counts as
dropped (:class:`PlaybackStats`).

The clock is the audio sink's processed time when there is an audio output device (the PCM of
the played range, time-stretched per segment by :func:`app.pipeline.audio.range_audio`, is
produced on a thread and pushed into a ``QAudioSink``), else the monotonic clock: no device
means silent playback, never an error.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import monotonic

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QImage

from app.pipeline.audio import CHANNELS, SAMPLE_RATE, range_audio, to_s16
from app.pipeline.decode import display_rotation_of, put_until_stopped
from app.pipeline.timeline import Part, Segment, clip_time_at, kept_parts
from app.ui.video import PREVIEW_MAX_W, PostFn, VideoReader, preview_image

log = logging.getLogger(__name__)

_END = object()
PREROLL_MAX_S = 5.0  # the clock starts with the first frame decoded (a long GOP takes a while), or after this
AUDIO_START_MAX_S = 3.0  # a sink not playing this long after its start is dropped (silent playback)
STOP_POLL_S = 0.02  # a stopped decode or audio thread waiting on a full queue ends this soon


@dataclass
class PlaybackStats:
    due: int = 0  # slots whose time passed (shown + dropped)
    shown: int = 0
    dropped: int = 0
    max_gap_ms: float = 0.0  # longest wall time between two presented frames
    max_late_tick_ms: float = 0.0  # longest the GUI thread woke up late (a stall there, not in decoding)
    start_ms: float = 0.0  # play -> first frame presented
    clock: str = "monotonic"  # or "audio"


def _take(q: queue.Queue):
    try:
        return q.get_nowait()
    except queue.Empty:
        return None


class FramePump:
    """Decodes ahead on its own thread: ``(slot, clip time, QImage)`` for each slot, then ``_END``.

    ``due`` is the slot on screen now (set by the presenter). A pump that fell behind it skips
    ahead (decoding forward, converting nothing) to the slot it can still deliver in time, judged
    by what a frame has been costing, so a machine too slow for the full rate shows fewer frames
    on time instead of every frame late.
    """

    def __init__(self, src: str, auto_rotate: bool, offset: float, parts: Sequence[Part], fps: float,
                 post: PostFn | None, depth: int = 12, max_w: int = PREVIEW_MAX_W):
        self.frames: queue.Queue = queue.Queue(depth)
        self.error: str | None = None
        self.due = 0
        self.post = post  # what is drawn on each frame; the GUI may replace it during play
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="reelforge-playback",
                                        args=(src, auto_rotate, offset, parts, fps, max_w))
        self._thread.start()

    def _run(self, src, auto_rotate, offset, parts, fps, max_w) -> None:
        reader = None
        try:
            reader = VideoReader(src)
            total, shown, img = parts[-1].out_end, None, None
            k, cost = 0, 0.0  # seconds per delivered frame (moving average)
            while not self._stop.is_set() and k / fps < total - 1e-9:
                if k < self.due:
                    k = self.due + math.ceil(1.5 * cost * fps)
                    continue
                t0 = monotonic()
                ct = clip_time_at(parts, k / fps)
                got = reader.frame_at(offset + ct)
                if got is None:
                    break
                ft, frame = got
                post = self.post
                if (ft, post) != shown:  # slow motion repeats a frame: convert it once
                    rot = display_rotation_of(frame, 0) if auto_rotate else 0
                    img = preview_image(frame, max_w, rot, post, offset + ct)
                    shown, img = (ft, post), img.convertToFormat(QImage.Format.Format_RGB32)  # paints 2x faster
                cost = 0.8 * cost + 0.2 * (monotonic() - t0)
                if not put_until_stopped(self.frames, (k, ct, img), self._stop, STOP_POLL_S):
                    return
                k += 1
        except Exception as exc:  # noqa: BLE001 - playback stops, the editor shows the frame as before
            log.warning("playback decode failed", exc_info=True)
            self.error = str(exc)
        finally:
            if reader is not None:
                reader.close()
        put_until_stopped(self.frames, _END, self._stop, STOP_POLL_S)

    def stop(self) -> None:
        self._stop.set()  # the thread ends within one frame's decode; the GUI does not wait for it


def audio_device():
    """The default audio output, or None (no device, or QtMultimedia unavailable): play silently."""
    try:
        from PySide6.QtMultimedia import QMediaDevices
    except ImportError:  # pragma: no cover - PySide6-Addons missing
        return None
    dev = QMediaDevices.defaultAudioOutput()
    return None if dev.isNull() else dev


class AudioOut:
    """The played range's PCM (s16 stereo 48 kHz), made on a thread, pushed into a QAudioSink by the GUI."""

    def __init__(self, device, path: str | None, offset: float, start: float, end: float,
                 segments: Sequence[Segment], muted: bool):
        from PySide6.QtMultimedia import QAudioFormat, QAudioSink

        fmt = QAudioFormat()
        fmt.setSampleRate(SAMPLE_RATE)
        fmt.setChannelCount(CHANNELS)
        fmt.setSampleFormat(QAudioFormat.SampleFormat.Int16)
        self.sink = QAudioSink(device, fmt)
        self.sink.setBufferSize(SAMPLE_RATE * CHANNELS * 2 // 4)  # 250 ms
        self.set_muted(muted)
        self._pcm: queue.Queue = queue.Queue(64)  # ~1.4 s of decoded chunks
        self._rest = b""
        self._io = None
        self.started_at: float | None = None
        self._dead = False  # the PCM thread failed: the sink would starve and stop the clock
        self._stop = threading.Event()
        threading.Thread(target=self._produce, daemon=True, name="reelforge-audio",
                         args=(path, offset, start, end, segments)).start()

    def _produce(self, path, offset, start, end, segments) -> None:
        try:
            for chunk in range_audio(path, offset, start, end, segments):
                if not put_until_stopped(self._pcm, to_s16(chunk), self._stop, STOP_POLL_S):
                    return
        except Exception:  # noqa: BLE001 - the rest plays silent on the monotonic clock
            log.warning("playback audio failed", exc_info=True)
            self._dead = True

    def ready(self) -> bool:
        return not self._pcm.empty()

    def start(self) -> None:
        self._io = self.sink.start()
        self.started_at = monotonic()
        self.feed()

    def feed(self) -> None:
        """Write as much PCM as the sink has room for (GUI thread, a memcpy)."""
        if self._io is None:
            return
        free = self.sink.bytesFree()
        while free > 0:
            if not self._rest:
                self._rest = _take(self._pcm) or b""
                if not self._rest:
                    return
            n = self._io.write(self._rest[:free])
            if n <= 0:
                return
            self._rest, free = self._rest[n:], free - n

    def position(self) -> float:
        return self.sink.processedUSecs() / 1e6

    def failed(self) -> bool:
        from PySide6.QtMultimedia import QtAudio

        return self._dead or self.sink.error() not in (QtAudio.Error.NoError, QtAudio.Error.UnderrunError)

    def set_muted(self, muted: bool) -> None:
        self.sink.setVolume(0.0 if muted else 1.0)

    def stop(self) -> None:
        self._stop.set()
        self.sink.stop()


class Playback(QObject):
    """One run of play, from clip time ``start`` to ``end``; ``stop()`` returns its stats.

    ``on_frame(clip_time, image)`` presents a frame and ``on_end()`` says the end of the range
    was reached (or decoding failed: ``pump.error``); both are plain calls on the GUI thread,
    where the presenter and the editor live.
    """

    def __init__(self, src: str, media_path: str, offset: float, start: float, end: float,
                 segments: Sequence[Segment], fps: float, on_frame: Callable[[float, QImage], None],
                 on_end: Callable[[], None], post: PostFn | None = None, audio_path: str | None = None,
                 muted: bool = False, parent=None):
        super().__init__(parent)
        self._pressed = monotonic()
        self.on_frame, self.on_end = on_frame, on_end
        self.parts = kept_parts(start, end, segments) or [Part(start, max(end, start + 1e-3), 1.0, 0.0)]
        self.total = self.parts[-1].out_end
        self.fps = fps
        self.n_slots = max(1, math.ceil(self.total * fps - 1e-9))
        self.stats = PlaybackStats()
        self.pump = FramePump(src, src == media_path, offset, self.parts, fps, post)
        dev = audio_device()
        self.audio = AudioOut(dev, audio_path, offset, start, end, segments, muted) if dev is not None else None
        self.stats.clock = "audio" if self.audio else "monotonic"
        self._head = None  # the next queued item not yet due
        self._t0: float | None = None  # monotonic time of output 0
        self._out = 0.0
        self._audio_pos, self._audio_wall = -1.0, 0.0
        self._last_k, self._last_wall = -1, 0.0
        self._done = False
        self._wake: float | None = None  # when the presenter asked to be woken
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.start(0)

    def set_muted(self, muted: bool) -> None:
        if self.audio is not None:
            self.audio.set_muted(muted)

    def set_post(self, post: PostFn | None) -> None:
        """Draw ``post`` on the frames decoded from now on (those already queued, at most
        ``FramePump``'s depth, keep the old drawing)."""
        self.pump.post = post

    # ------------------------------------------------------------------ clock
    def _drop_audio(self, why: str) -> None:
        log.info("playback continues silently: %s", why)
        self.audio.stop()
        self.audio = None
        self.stats.clock = "monotonic"

    def _preroll(self, now: float) -> bool:
        """Ready to start the clock: the first frame decoded and the audio sink playing."""
        waited = now - self._pressed
        if self._next() is None and waited < PREROLL_MAX_S:
            return False
        a = self.audio
        if a is None:
            return True
        if a.failed() or (a.started_at is not None and now - a.started_at > AUDIO_START_MAX_S):
            self._drop_audio("the audio output did not start")
            return True
        if a.started_at is None:
            if not a.ready() and waited < PREROLL_MAX_S:
                return False
            a.start()
        a.feed()
        return a.position() > 0  # sinks take from a few ms to a second or two to start

    def _clock(self, now: float) -> float:
        t = now - self._t0
        if self.audio is not None and self.audio.failed():  # the device went away: go on from here
            self._drop_audio("the audio output failed")
            self._t0 = now - self._out
            t = self._out
        elif self.audio is not None:
            pos = self.audio.position()
            if pos != self._audio_pos:
                self._audio_pos, self._audio_wall = pos, now
            t = pos + min(now - self._audio_wall, 0.1)  # interpolated between the sink's updates
        self._out = max(self._out, t)
        return self._out

    def _slot(self) -> int:
        return int(self._out * self.fps + 1e-6)

    # ------------------------------------------------------------------ presentation (GUI thread)
    def _next(self):
        if self._head is None:
            self._head = _take(self.pump.frames)
        return self._head

    def _tick(self) -> None:
        if self._done:
            return
        now = monotonic()
        if self._wake is not None:
            self.stats.max_late_tick_ms = max(self.stats.max_late_tick_ms, (now - self._wake) * 1000)
        if self._t0 is None:
            if not self._preroll(now):
                self.timer.start(3)
                return
            self._t0 = now
        if self.audio is not None:
            self.audio.feed()
        self._clock(now)
        slot = min(self._slot(), self.n_slots)
        self.pump.due = slot
        while (item := self._next()) is not None and item is not _END and item[0] <= slot:
            self._head = None
            if item[0] == slot:
                self._present(item, now)
        ended = item is _END
        if self._out >= self.total - 1e-9 or (ended and self.pump.error):
            self._finish(self.n_slots if self._out >= self.total - 1e-9 else slot)
            self.on_end()
            return
        if self._last_k == slot or ended:  # wait for the next slot
            delay = (slot + 1) / self.fps - self._out
        else:  # the frame due now is not decoded yet
            delay = 0.003
        ms = max(1, min(50, math.ceil(delay * 1000)))
        self._wake = now + ms / 1000
        self.timer.start(ms)

    def _present(self, item, now: float) -> None:
        k, ct, img = item
        s = self.stats
        if s.shown == 0:
            s.start_ms = (now - self._pressed) * 1000
        else:
            s.max_gap_ms = max(s.max_gap_ms, (now - self._last_wall) * 1000)
        s.shown += 1
        s.dropped += k - self._last_k - 1
        self._last_k, self._last_wall = k, now
        self.on_frame(ct, img)

    def _finish(self, passed: int) -> None:
        """Account for the slots before ``passed`` that were never shown, and stop the workers."""
        if self._done:
            return
        self._done = True
        self.timer.stop()
        self.stats.dropped += max(0, passed - 1 - self._last_k)
        self.stats.due = self.stats.shown + self.stats.dropped
        self.pump.stop()
        if self.audio is not None:
            self.audio.stop()

    def stop(self) -> PlaybackStats:
        self._finish(self._slot() if self._t0 is not None else 0)
        return self.stats
