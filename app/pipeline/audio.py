"""Audio of the framing export: cut to the kept parts, time-stretched with FFmpeg ``atempo``
(pitch kept) through PyAV's filter graph, faded and cross-faded, streamed in order.

Everything runs at 48 kHz, float planar stereo (``fltp``), in numpy chunks of shape (2, n).
Sample counts are fixed by the video: a clip's audio is exactly as long as its frames, so audio
and video stay in sync across any number of clips.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from app.pipeline.decode import damage_note, decode_frames, media_origin, open_media
from app.pipeline.filters import chain, pull_all
from app.pipeline.plan import ClipPlan, RenderError
from app.pipeline.timeline import Part, Segment, kept_parts

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
LAYOUT = "stereo"
CHANNELS = 2
FRAME_SIZE = 1024  # AAC


def silence(n: int) -> np.ndarray:
    return np.zeros((CHANNELS, max(0, n)), np.float32)


def _audio_frame(chunk: np.ndarray, pts: int) -> av.AudioFrame:
    """A 48 kHz stereo ``fltp`` frame of a (2, n) chunk, ``pts`` in samples (time base 1/48000)."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, np.float32), format="fltp", layout=LAYOUT)
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


def tempo_factors(speed: float) -> list[float]:
    """atempo factors whose product is ``speed``, each in [0.5, 2] (best quality per stage)."""
    factors = []
    s = float(speed)
    while s > 2.0 + 1e-9:
        factors.append(2.0)
        s /= 2.0
    while s < 0.5 - 1e-9:
        factors.append(0.5)
        s /= 0.5
    if abs(s - 1.0) > 1e-9 or not factors:
        factors.append(s)
    return factors


class Tempo:
    """Streaming ``atempo`` chain (e.g. 0.25 -> atempo=0.5,atempo=0.5)."""

    def __init__(self, speed: float):
        self.graph = g = av.filter.Graph()
        src = g.add_abuffer(
            sample_rate=SAMPLE_RATE, format="fltp", layout=LAYOUT, time_base=Fraction(1, SAMPLE_RATE)
        )
        stages = [g.add("atempo", f"tempo={f!r}") for f in tempo_factors(speed)]
        # atempo prefers packed samples; ask for planar stereo back
        fmt = g.add("aformat", f"sample_fmts=fltp:channel_layouts={LAYOUT}:sample_rates={SAMPLE_RATE}")
        self.src, self.sink = chain(g, src, *stages, fmt, g.add("abuffersink"))
        self.pts = 0

    def _drain(self) -> list[np.ndarray]:
        return [frame.to_ndarray().astype(np.float32, copy=False) for frame in pull_all(self.sink)]

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        self.src.push(_audio_frame(chunk, self.pts))
        self.pts += chunk.shape[1]
        return self._drain()

    def flush(self) -> list[np.ndarray]:
        self.src.push(None)
        return self._drain()


def fit(chunks: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Exactly ``n`` samples: the chunks, cut at n, padded with silence when short."""
    left = n
    for c in chunks:
        if left <= 0:
            break
        if c.shape[1] > left:
            c = c[:, :left]
        if c.shape[1]:
            yield c
            left -= c.shape[1]
    if left > 0:
        yield silence(left)


class Downmix:
    """Surround sound (5.1, 7.1, ...) to 48 kHz stereo ``fltp``, as ``av.AudioResampler`` does
    but with the mix scaled so that it cannot go over full scale (swresample's
    ``rematrix_maxval=1``). The default mix adds the centre and the surrounds to each side at
    -3 dB: a 5.1 source at -3 dBFS came out at +4.6 dBFS and clipped when played."""

    def __init__(self, first: av.AudioFrame):
        self.graph = g = av.filter.Graph()
        src = g.add_abuffer(format=first.format.name, sample_rate=first.sample_rate,
                            layout=first.layout.name, time_base=first.time_base or Fraction(1, first.sample_rate))
        mix = g.add("aresample", f"osr={SAMPLE_RATE}:ochl={LAYOUT}:osf=fltp:rematrix_maxval=1.0")
        self.src, self.sink = chain(g, src, mix, g.add("abuffersink"))

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        self.src.push(frame)
        return pull_all(self.sink)


def _resampler(first: av.AudioFrame) -> av.AudioResampler | Downmix:
    if len(first.layout.channels) > CHANNELS:
        try:
            return Downmix(first)
        except (av.FFmpegError, ValueError):  # a layout the filter cannot name: the plain mix
            log.warning("no scaled downmix for the %s layout; using the plain one", first.layout.name)
    return av.AudioResampler(format="fltp", layout=LAYOUT, rate=SAMPLE_RATE)


class SampleReader:
    """Sample-exact reads of a media file's audio, resampled to 48 kHz stereo float.

    Sequential reads continue the same decode; a jump re-seeks (to the packet before).
    Indices are samples at 48 kHz from the media origin (see :mod:`app.pipeline.decode`).
    """

    # a jump forward in the audio's timestamps (a packet skipped as damaged, a gap in the file)
    # longer than this is kept as silence, so the sound after it stays with its pictures
    GAP_S = 0.015

    def __init__(self, path: str, name: str | None = None):
        self.container = open_media(path)
        self.name = name or os.path.basename(path)
        self.damaged: list[float] = []  # file times of the packets that did not decode
        self.stream = self.container.streams.audio[0] if self.container.streams.audio else None
        self.origin = media_origin(self.container)
        self._frames: Iterator | None = None
        self._pending: list[tuple[int, np.ndarray]] = []
        self._next_index: int | None = None  # index of the next sample the decoder will give
        self._pos: int | None = None  # where the last read ended

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self.container.close()

    def _decode(self) -> Iterator[tuple[float, av.AudioFrame]]:
        resampler: av.AudioResampler | Downmix | None = None
        try:
            for frame in decode_frames(self.container, self.stream, self.name, self.damaged, "sound"):
                if resampler is None:  # by the first frame's own layout: a stream header can lie
                    resampler = _resampler(frame)
                t = float(frame.pts * frame.time_base) - self.origin if frame.pts is not None else None
                for rf in resampler.resample(frame):
                    yield t, rf
                    t = None
            if resampler is not None:
                for rf in resampler.resample(None):
                    yield None, rf
        except av.FFmpegError as exc:
            raise RenderError(f"Cannot decode the audio of {self.container.name}: {exc}") from exc

    def _restart(self, index: int) -> None:
        if self._frames is not None:
            self._frames.close()
        t = index / SAMPLE_RATE - 0.25
        if t > 0:
            self.container.seek(int((t + self.origin) / self.stream.time_base), backward=True, stream=self.stream)
        else:
            self.container.seek(0, backward=True, stream=self.stream)
        self._frames = self._decode()
        self._pending = []
        self._next_index = None

    def _next_chunk(self) -> tuple[int, np.ndarray] | None:
        if self._pending:
            return self._pending.pop()
        assert self._frames is not None
        for t, frame in self._frames:
            arr = frame.to_ndarray()
            if arr.ndim == 1:
                arr = arr[None, :]
            arr = arr.astype(np.float32, copy=False)
            if self._next_index is None:
                self._next_index = round((t or 0.0) * SAMPLE_RATE)
            elif t is not None and t * SAMPLE_RATE - self._next_index > self.GAP_S * SAMPLE_RATE:
                self._next_index = round(t * SAMPLE_RATE)  # read() fills the gap with silence
            start = self._next_index
            self._next_index += arr.shape[1]
            if arr.shape[1]:
                return start, arr
        return None

    def read(self, s0: int, s1: int) -> Iterator[np.ndarray]:
        """Samples [s0, s1), silence where the media has none."""
        if self.stream is None:
            yield from fit((), s1 - s0)
            return
        if self._pos is None or s0 != self._pos:
            self._restart(s0)
        cursor = s0
        while cursor < s1:
            chunk = self._next_chunk()
            if chunk is None:
                yield silence(s1 - cursor)
                cursor = s1
                break
            cs, arr = chunk
            ce = cs + arr.shape[1]
            if ce <= cursor:
                continue
            if cs > cursor:  # a gap in the media's audio
                gap_end = min(cs, s1)
                yield silence(gap_end - cursor)
                cursor = gap_end
                if cursor >= s1:
                    self._pending.append(chunk)
                    break
            a, b = cursor - cs, min(ce, s1) - cs
            yield arr[:, a:b]
            cursor = cs + b
            if ce > s1:
                self._pending.append((s1, arr[:, b:]))
        self._pos = s1


def clip_audio(clip: ClipPlan, n_samples: int, warnings: list[str] | None = None) -> Iterator[np.ndarray]:
    """The clip's output audio, exactly ``n_samples`` long (silence when muted or absent). A
    damaged stretch of its sound is silence, and said in ``warnings``."""
    if not (clip.audio and clip.has_audio):
        yield from fit((), n_samples)
        return
    parts = kept_parts(clip.trim_start, clip.trim_end, clip.segments)
    yield from _media_audio(clip.media_path, clip.source_start, parts, n_samples, clip.label, warnings)


def range_audio(path: str | None, source_start: float, start: float, end: float,
                segments: Sequence[Segment]) -> Iterator[np.ndarray]:
    """What plays from clip-local ``start`` to ``end`` (the preview's audio): exactly the output
    duration of that range in samples, each segment time-stretched to its speed like the export;
    silence when ``path`` is None or has no audio."""
    parts = kept_parts(start, end, segments)
    n = round(parts[-1].out_end * SAMPLE_RATE) if parts else 0
    if path is None:
        yield from fit((), n)
        return
    yield from _media_audio(path, source_start, parts, n)


def _media_audio(path: str, source_start: float, parts: Sequence[Part], n: int, name: str | None = None,
                 warnings: list[str] | None = None) -> Iterator[np.ndarray]:
    """The kept ``parts`` of the media's audio, each at its speed, exactly ``n`` samples long."""
    reader = SampleReader(path, name)
    try:
        if reader.stream is None:
            yield from fit((), n)
            return
        yield from fit(_parts_audio(reader, source_start, parts), n)
    finally:
        reader.close()
        if warnings is not None and parts and (note := damage_note(
                reader.name, reader.damaged, reader.origin, source_start + parts[0].start,
                source_start + parts[-1].end, "sound", "silence stands in there")):
            warnings.append(note)


def to_s16(chunk: np.ndarray) -> bytes:
    """Interleaved signed 16-bit little-endian PCM of a float (channels, n) chunk."""
    return (np.clip(chunk.T, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _parts_audio(reader: SampleReader, source_start: float, parts: Sequence[Part]) -> Iterator[np.ndarray]:
    for part in parts:
        s0 = round((source_start + part.start) * SAMPLE_RATE)
        s1 = round((source_start + part.end) * SAMPLE_RATE)
        n_out = round(part.out_end * SAMPLE_RATE) - round(part.out_start * SAMPLE_RATE)
        source = reader.read(s0, s1)
        stream = source if abs(part.speed - 1.0) < 1e-9 else _stretched(source, part.speed)
        yield from fit(stream, n_out)
        for _ in source:  # finish the read (a sample or so) so that the next part needs no seek
            pass


def _stretched(chunks: Iterable[np.ndarray], speed: float) -> Iterator[np.ndarray]:
    tempo = Tempo(speed)
    for c in chunks:
        yield from tempo.push(c)
    yield from tempo.flush()


@dataclass(frozen=True)
class AudioSpan:
    """A clip's audio placed on the output: samples [start, start + length), with linear ramps."""

    start: int
    length: int
    fade_in: int
    fade_out: int
    source: Callable[[], Iterator[np.ndarray]]


def _enveloped(span: AudioSpan) -> Iterator[np.ndarray]:
    pos = 0
    for c in span.source():
        n = c.shape[1]
        idx = np.arange(pos, pos + n)
        gain = None
        if span.fade_in and pos < span.fade_in:
            gain = np.minimum(1.0, (idx + 0.5) / span.fade_in)
        if span.fade_out and pos + n > span.length - span.fade_out:
            g2 = np.clip((span.length - idx - 0.5) / span.fade_out, 0.0, 1.0)
            gain = g2 if gain is None else np.minimum(gain, g2)
        yield c if gain is None else (c * gain[None, :].astype(np.float32))
        pos += n


def timeline_audio(spans: Sequence[AudioSpan], total: int) -> Iterator[np.ndarray]:
    """Mix the spans (which may overlap for dissolves) into one stream of exactly ``total`` samples."""
    buf = silence(0)
    buf_start = 0  # output sample index of buf[:, 0]
    emitted = 0
    for k, span in enumerate(spans):
        safe_limit = spans[k + 1].start if k + 1 < len(spans) else None
        pos = span.start
        if pos > buf_start + buf.shape[1]:  # a gap before this span
            buf = np.concatenate([buf, silence(pos - buf_start - buf.shape[1])], axis=1)
        for c in fit(_enveloped(span), span.length):
            end = pos + c.shape[1]
            need = end - buf_start - buf.shape[1]
            if need > 0:
                buf = np.concatenate([buf, silence(need)], axis=1)
            buf[:, pos - buf_start:end - buf_start] += c
            pos = end
            safe = pos if safe_limit is None else min(pos, safe_limit)
            if safe > buf_start:
                cut = min(safe, total) - buf_start
                if cut > 0:
                    yield buf[:, :cut]
                    emitted += cut
                buf = buf[:, safe - buf_start:].copy()
                buf_start = safe
    if emitted < total:
        rest = buf[:, : total - emitted]
        if rest.shape[1]:
            yield rest
            emitted += rest.shape[1]
        if emitted < total:
            yield silence(total - emitted)


def audio_frames(chunks: Iterable[np.ndarray]) -> Iterator[av.AudioFrame]:
    """Re-chunk to AAC-sized frames with sample-count timestamps (time base 1/48000)."""
    pending: list[np.ndarray] = []
    have = 0
    pts = 0

    def make(arr: np.ndarray) -> av.AudioFrame:
        nonlocal pts
        f = _audio_frame(arr, pts)
        pts += arr.shape[1]
        return f

    for c in chunks:
        pending.append(c)
        have += c.shape[1]
        if have >= FRAME_SIZE:
            data = np.concatenate(pending, axis=1)
            n_full = data.shape[1] // FRAME_SIZE * FRAME_SIZE
            for i in range(0, n_full, FRAME_SIZE):
                yield make(data[:, i:i + FRAME_SIZE])
            rest = data[:, n_full:]
            pending, have = [rest], rest.shape[1]
    if have:
        yield make(np.concatenate(pending, axis=1))
