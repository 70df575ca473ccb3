"""The framing export: clips -> keyframed crop -> export size -> one H.264/AAC MP4.

Entry point: :func:`render_framing`. Qt-free; the job layer calls it in a worker thread.

Timeline (all in whole output frames at the export rate, so that every timestamp is exact):

- Each clip lasts ``output_duration(trim, segments)`` seconds; clip boundaries are the rounded
  cumulative sums (so the total is within half a frame of the exact sum, whatever the number of
  clips). Output frame ``i`` of a clip shows the source frame for media time
  ``source_start + clip_time_at(parts, i / fps)`` (frame resampling by timestamp, see
  ``VideoSource.frames_at``: slow motion holds every frame equally long, fast motion skips
  frames, VFR sources come out CFR). Its crop box is
  ``crop_at(keyframes, clip_time_at(...), W, H, ratio, rotation)``: the geometry has one source.
- ``cut``: clips follow each other. Duration = sum of the clip durations.
- ``fade``: through black; the outgoing clip fades out over its last ``transition_duration / 2``
  and the incoming one fades in over its first ``transition_duration / 2`` (audio fades with it).
  Nothing overlaps, so the duration is still the sum of the clip durations. No fade at the very
  start or end of the export.
- ``dissolve``: the incoming clip starts ``transition_duration`` before the outgoing one ends
  and the two are cross-faded (video and audio). Duration = sum - (clips - 1) x duration.
  A transition never takes more than half of either clip it joins.

Threads: a video thread decodes, picks frames and crops/resizes them (numpy + swscale on the CPU,
torch on a GPU); an encoder thread runs libx264 and the audio (decode, atempo, AAC) and muxes;
the caller's thread polls ``should_cancel`` every 0.2 s and reports progress twice a second.
PyAV releases the GIL in decode, swscale, filter graphs and encode, so the stages overlap.

On failure or cancel nothing is left at ``out_path``: the partial file is closed and removed
before :class:`Cancelled` / :class:`RenderError` is raised.

FFmpeg's log is switched off (PyAV level ``None``) while rendering: PyAV's Python log callback
(any other level) takes the GIL from FFmpeg's own threads and can deadlock a frame-threaded
decoder being closed by another thread. Do not set another level in a process that renders.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av

from app.pipeline import device as devices
from app.pipeline.audio import SAMPLE_RATE, AudioSpan, audio_frames, clip_audio, timeline_audio
from app.pipeline.decode import VideoSource, main_video_stream, open_media, put_until_stopped
from app.pipeline.encode import Output, frame_rate
from app.pipeline.frames import AiFramer, CpuFramer, TorchFramer, fade_to_black, mix
from app.pipeline.keyframes import crop_at
from app.pipeline.plan import (
    WEIGHTS_NAME,
    CancelFn,
    Cancelled,
    ClipPlan,
    FramingPlan,
    ProgressFn,
    RenderError,
    RenderResult,
    Reporter,
    disk_full,
    write_failed,
)
from app.pipeline.timeline import Part, clip_time_at, kept_parts

log = logging.getLogger(__name__)

AI_WEIGHTS_MESSAGE = f"AI upscaler needs a weights file ({WEIGHTS_NAME}); set it in the settings"
TRANSITIONS = ("cut", "fade", "dissolve")
CANCEL_POLL_S = 0.2
PROGRESS_EVERY_S = 0.5
QUEUE_FRAMES = 6


@dataclass
class ClipSpan:
    """A clip placed on the output: frames [start, start + frames)."""

    index: int
    clip: ClipPlan
    parts: list[Part]
    start: int
    frames: int
    fade_in: int = 0  # frames of fade from black (fade) or of overlap with the previous clip (dissolve)
    fade_out: int = 0

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass
class Layout:
    rate: Fraction
    spans: list[ClipSpan]
    total: int  # output frames
    transition: str

    @property
    def duration(self) -> float:
        return float(self.total / self.rate)


def plan_layout(plan: FramingPlan) -> Layout:
    """Where every clip goes on the output, in frames (see the module docstring)."""
    if plan.fps <= 0:
        raise RenderError(f"Invalid export frame rate {plan.fps}")
    transition = plan.transition if plan.transition in TRANSITIONS else "cut"
    if transition != plan.transition:
        log.warning("unknown transition %r; using a cut", plan.transition)
    rate = frame_rate(plan.fps)
    spans: list[ClipSpan] = []
    cum = 0.0
    end = 0
    for i, clip in enumerate(plan.clips):
        parts = kept_parts(clip.trim_start, clip.trim_end, clip.segments)
        if not parts:
            log.info("clip %d keeps nothing after trim; skipped", i)
            continue
        cum += parts[-1].out_end
        new_end = max(end + 1, round(cum * rate))
        spans.append(ClipSpan(i, clip, parts, end, new_end - end))
        end = new_end
    if not spans:
        raise RenderError("Nothing to export: the project has no clips with a kept part")
    d = max(0.0, float(plan.transition_duration))
    if transition == "fade":
        want = round(d / 2 * rate)
        for a, b in zip(spans, spans[1:], strict=False):
            f = min(want, a.frames // 2, b.frames // 2)
            a.fade_out, b.fade_in = f, f
    elif transition == "dissolve":
        want = round(d * rate)
        shift = 0
        for a, b in zip(spans, spans[1:], strict=False):
            o = min(want, a.frames // 2, b.frames // 2)
            a.fade_out, b.fade_in = o, o
            shift += o
            b.start -= shift
    total = spans[-1].end
    return Layout(rate, spans, total, transition)


def _sample(frame_index: int, rate: Fraction) -> int:
    return round(frame_index * SAMPLE_RATE / rate)


def audio_spans(layout: Layout, warnings: list[str] | None = None) -> list[AudioSpan]:
    out = []
    for s in layout.spans:
        a, b = _sample(s.start, layout.rate), _sample(s.end, layout.rate)
        out.append(
            AudioSpan(
                start=a,
                length=b - a,
                fade_in=_sample(s.fade_in, layout.rate),
                fade_out=_sample(s.fade_out, layout.rate),
                source=(lambda clip=s.clip, n=b - a: clip_audio(clip, n, warnings)),
            )
        )
    return out


# --------------------------------------------------------------------------- checks


def _check_media(plan: FramingPlan) -> bool:
    """Every clip's media opens and has video; returns whether any clip contributes audio."""
    any_audio = False
    for clip in plan.clips:
        container = open_media(clip.media_path)
        try:
            if main_video_stream(container) is None:
                raise RenderError(f"{clip.label} has no video stream")
            if clip.audio and clip.has_audio and container.streams.audio:
                any_audio = True
        finally:
            container.close()
    return any_audio


def _load_ai(plan: FramingPlan, device: str) -> Callable:
    weights = plan.ai_weights
    if not weights or not os.path.isfile(weights):
        raise RenderError(AI_WEIGHTS_MESSAGE)
    try:
        from app.pipeline.upscaler import load_upscaler
    except ImportError as exc:
        raise RenderError(f"AI upscaler is not available in this build: {exc}") from exc
    try:
        return load_upscaler(weights, device)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"Cannot load the AI upscaler weights {os.path.basename(weights)}: {exc}") from exc


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    encoded: int = 0

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


class _Renderer:
    def __init__(self, plan: FramingPlan, layout: Layout, device: str, out_w: int, out_h: int, upscale):
        self.plan = plan
        self.layout = layout
        self.device = device
        self.out_w, self.out_h = out_w, out_h
        self.upscale = upscale
        self.warnings: list[str] = []

    def framer(self, clip: ClipPlan):
        args = (self.out_w, self.out_h, clip.width, clip.height, clip.display_rotation, clip.rotation, clip.label)
        if self.upscale is not None:
            return AiFramer(self.upscale, self.device, *args)
        if devices.is_gpu(self.device):
            return TorchFramer(self.device, *args)
        return CpuFramer(*args)

    def clip_frames(self, span: ClipSpan, stop: threading.Event) -> Iterator[av.VideoFrame]:
        clip, parts, rate = span.clip, span.parts, self.layout.rate
        clip_times = [clip_time_at(parts, float(i / rate)) for i in range(span.frames)]
        framer = self.framer(clip)
        with VideoSource(clip.media_path, clip.label) as source:
            frames = source.frames_at(clip.source_start + t for t in clip_times)
            try:
                for t, frame in zip(clip_times, frames, strict=False):
                    if stop.is_set():
                        return
                    box = crop_at(clip.crop_keyframes, t, clip.width, clip.height, self.plan.ratio, clip.rotation)
                    yield framer.process(frame, box)
            finally:
                frames.close()
                if framer.colour is not None and framer.colour.note:
                    self.warnings.append(framer.colour.note)
                if clip_times and (note := source.damage_note(clip.source_start + clip_times[0],
                                                               clip.source_start + clip_times[-1])):
                    self.warnings.append(note)

    def video(self, stop: threading.Event) -> Iterator[av.VideoFrame]:
        """Output frames in order, transitions applied."""
        spans = self.layout.spans
        gens: dict[int, Iterator[av.VideoFrame]] = {}
        fade = self.layout.transition == "fade"
        first = 0  # first span that may still be active
        try:
            for n in range(self.layout.total):
                while spans[first].end <= n:
                    gen = gens.pop(first, None)
                    if gen is not None:
                        gen.close()
                    first += 1
                layers = []
                k = first
                while k < len(spans) and spans[k].start <= n:
                    if k not in gens:
                        gens[k] = self.clip_frames(spans[k], stop)
                    frame = next(gens[k], None)
                    if frame is None:
                        if stop.is_set():
                            return
                        raise RenderError(f"{spans[k].clip.label} ended early")
                    layers.append((spans[k], n - spans[k].start, frame))
                    k += 1
                if len(layers) == 1:
                    span, i, frame = layers[0]
                    if fade:
                        amount = 1.0
                        if i < span.fade_in:
                            amount = (i + 0.5) / span.fade_in
                        tail = span.frames - 1 - i
                        if tail < span.fade_out:
                            amount = min(amount, (tail + 0.5) / span.fade_out)
                        if amount < 1.0:
                            frame = fade_to_black(frame, amount)
                    yield frame
                else:
                    (_, _, fa), (span_b, j, fb) = layers[0], layers[-1]
                    yield mix(fa, fb, (j + 0.5) / span_b.fade_in)
        finally:
            for gen in gens.values():
                gen.close()


def _video_worker(renderer: _Renderer, run: _Run, q: queue.Queue) -> None:
    frames = renderer.video(run.stop)
    try:
        for frame in frames:
            if not put_until_stopped(q, frame, run.stop):
                return
        put_until_stopped(q, None, run.stop)
    except BaseException as exc:  # handed to the caller's thread
        run.fail(exc)
    finally:
        frames.close()  # closes the media files here, not whenever the generator is collected


def _encode_worker(out: Output, layout: Layout, with_audio: bool, run: _Run, q: queue.Queue,
                   warnings: list[str]) -> None:
    try:
        audio = None
        audio_pos = 0
        if with_audio:
            total_samples = _sample(layout.total, layout.rate)
            audio = audio_frames(timeline_audio(audio_spans(layout, warnings), total_samples))
        for n in range(layout.total):
            frame = _get(q, run.stop)
            if frame is None:
                if not run.stop.is_set():
                    run.fail(RenderError("video ended before the expected number of frames"))
                return
            out.write_video(frame, n)
            run.encoded = n + 1
            if audio is not None:
                target = _sample(n + 1, layout.rate)
                while audio_pos < target:
                    af = next(audio, None)
                    if af is None:
                        break
                    out.write_audio(af)
                    audio_pos += af.samples
        if audio is not None:
            for af in audio:
                if run.stop.is_set():
                    return
                out.write_audio(af)
        if not run.stop.is_set():
            out.finish()
    except BaseException as exc:
        run.fail(exc)


def render_framing(
    plan: FramingPlan,
    out_path: str,
    progress: ProgressFn,
    should_cancel: CancelFn,
) -> RenderResult:
    """Render the framing export of ``plan`` to ``out_path`` (MP4, written at exactly that path).

    Raises :class:`RenderError` (user-facing message) or :class:`Cancelled`; in both cases
    nothing is left at ``out_path``.
    """
    t_start = time.monotonic()
    progress(0.0)
    if not plan.clips:
        raise RenderError("Nothing to export: the project has no clips")
    if plan.width < 2 or plan.height < 2:
        raise RenderError(f"Invalid export size {plan.width}x{plan.height}")
    out_w, out_h = plan.width - plan.width % 2, plan.height - plan.height % 2  # yuv420p needs even
    layout = plan_layout(plan)
    device = devices.pick_device(plan.device)
    upscale = _load_ai(plan, device) if plan.upscaler == "ai" else None
    with_audio = _check_media(plan)
    if should_cancel():
        raise Cancelled()

    renderer = _Renderer(plan, layout, device, out_w, out_h, upscale)
    out = Output(out_path, out_w, out_h, layout.rate, plan.crf, plan.preset, with_audio)
    run = _Run()
    q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    threads = [
        threading.Thread(target=_video_worker, args=(renderer, run, q), name="framing-video", daemon=True),
        threading.Thread(
            target=_encode_worker, args=(out, layout, with_audio, run, q, renderer.warnings), name="framing-encode",
            daemon=True
        ),
    ]
    rep = Reporter(progress, should_cancel, progress_every=PROGRESS_EVERY_S, cancel_every=CANCEL_POLL_S)
    try:
        for t in threads:
            t.start()
        encoder = threads[1]
        while encoder.is_alive():
            encoder.join(0.05)
            rep.tick(min(0.999, run.encoded / layout.total))  # raises Cancelled
    except BaseException:
        run.stop.set()
        for t in threads:
            t.join()
        out.abort()
        raise
    run.stop.set()
    for t in threads:
        t.join()
    if run.error is not None or run.encoded < layout.total:
        out.abort()
        err = run.error
        if isinstance(err, RenderError):
            raise err
        if isinstance(err, av.FFmpegError):
            raise write_failed("the working video", err) from err
        if isinstance(err, OSError) and (full := disk_full(err)):
            raise full from err
        if err is not None:
            raise err
        raise RenderError("Export stopped before the end")
    rep.done()
    elapsed = time.monotonic() - t_start
    return RenderResult(
        path=out_path,
        width=out_w,
        height=out_h,
        duration=layout.duration,
        device=devices.describe(device),
        extra={
            "frames": layout.total,
            "fps": float(layout.rate),
            "audio": with_audio,
            "transition": layout.transition,
            "upscaler": "ai" if upscale is not None else "lanczos",
            "seconds": round(elapsed, 3),
            "device_requested": plan.device,
        },
        warnings=renderer.warnings,
    )
