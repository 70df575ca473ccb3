"""Overlay export: working video + spotlight regions -> final video (PyAV, no ffmpeg CLI).

- Frames inside a region are drawn with :func:`app.pipeline.spotlight.draw_spotlight` on their
  YUV 4:2:0 planes: numpy on the CPU (torch is not even imported), torch tensors on a GPU when
  there is one and the plan allows it; frames outside all regions go to the encoder untouched.
- Video is encoded with libx264 (crf/preset from the plan, yuv420p), audio packets are copied
  unchanged, the MP4 is written with faststart.
- A plan with nothing to draw (no regions, or none that meets the video) is a pure remux: the
  packets are copied, nothing is re-encoded.
- Decoding runs in its own thread (PyAV releases the GIL inside FFmpeg), feeding the drawing
  and encoding loop through a bounded queue.
- ``progress(fraction)`` is called at least every ``PROGRESS_EVERY`` s and ``should_cancel`` is
  polled every ``CANCEL_POLL`` s; a cancel raises :class:`Cancelled`. On any failure or cancel
  the partial output file is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

from app.pipeline import splice
from app.pipeline.decode import local_file, put_until_stopped, quiet_ffmpeg
from app.pipeline.device import describe, pick_device
from app.pipeline.encode import add_x264, copy_colour, open_mp4, x264_encoder
from app.pipeline.frames import plane_view
from app.pipeline.plan import OverlayPlan, RenderError, RenderResult, Reporter, write_failed
from app.pipeline.spotlight import SpotlightStyle, draw_spotlight, spotlight_at

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.25  # s
CANCEL_POLL = 0.5  # s
QUEUE_FRAMES = 8  # decoded frames buffered ahead of the drawing/encoding loop

# --------------------------------------------------------------------------- devices


def _device(preference: str) -> tuple[str, str]:
    """The device that will really draw (app.pipeline.device rules) and its truthful label."""
    dev = pick_device(preference)
    return dev, describe(dev)


# --------------------------------------------------------------------------- helpers


def _open_input(path: str) -> Any:
    if not path or not os.path.isfile(path):
        raise RenderError(f"working video not found: {path}")
    quiet_ffmpeg()  # decodes on FFmpeg's threads: no Python log callback (see decode.quiet_ffmpeg)
    try:
        return av.open(local_file(path), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise RenderError(f"cannot read the working video {path}: {exc}") from exc


def _open_output(path: str) -> Any:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise RenderError(f"output folder does not exist: {parent}")
    return open_mp4(path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _stream_duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _start_time(stream: Any) -> float:
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


def has_drawing(plan: OverlayPlan, duration: float) -> bool:
    """True when some region with keyframes meets the video's time span [0, duration]
    (any region counts when the duration is unknown)."""
    def meets(r: Any) -> bool:
        return bool(r.keyframes) and r.end > r.start and r.end > 0 and (duration <= 0 or r.start < duration)

    return any(meets(r) for r in plan.regions)


# --------------------------------------------------------------------------- public entry


def render_overlay(
    plan: OverlayPlan,
    out_path: str,
    progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> RenderResult:
    """Render the final video of ``plan`` to ``out_path`` (an MP4, whatever its extension)."""
    rep = Reporter(progress, should_cancel, progress_every=PROGRESS_EVERY, cancel_every=CANCEL_POLL)
    rep.tick(0.0, force=True)
    try:
        style = SpotlightStyle.from_settings(plan)
    except ValueError as exc:
        raise RenderError(f"invalid overlay settings: {exc}") from exc
    inp = _open_input(plan.working_path)
    try:
        vin, ain, duration = _streams(inp, plan.working_path)
        try:
            if not has_drawing(plan, duration):
                result = _remux(inp, vin, ain, out_path, rep, duration)
            else:
                result = _splice(plan, style, inp, vin, ain, out_path, rep, duration)
                if result is None:  # this video cannot be spliced: it is re-encoded whole
                    rep.start_over()
                    inp.close()
                    inp = _open_input(plan.working_path)
                    vin, ain, duration = _streams(inp, plan.working_path)
                    result = _reencode(plan, style, inp, vin, ain, out_path, rep, duration)
        except BaseException:
            _remove(out_path)
            raise
    finally:
        inp.close()
    rep.done()
    return result


def _streams(inp: Any, path: str) -> tuple[Any, Any | None, float]:
    """(video stream, audio stream or None, duration in s) of the working video."""
    vstreams = [s for s in inp.streams if s.type == "video"]
    if not vstreams:
        raise RenderError(f"the working video has no video stream: {path}")
    vin = vstreams[0]
    ain = next((s for s in inp.streams if s.type == "audio"), None)
    return vin, ain, _stream_duration(inp, vin)


# --------------------------------------------------------------------------- no drawing: remux


def _remux(inp: Any, vin: Any, ain: Any | None, out_path: str, rep: Reporter, duration: float) -> RenderResult:
    out = _open_output(out_path)
    try:
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream_from_template(ain) if ain is not None else None
        packets = 0
        streams = [vin] + ([ain] if ain is not None else [])
        for pkt in inp.demux(streams):
            if pkt.dts is None:
                continue
            if pkt.stream is vin:
                pkt.stream = vout
                if pkt.pts is not None and duration > 0:
                    rep.tick(float(pkt.pts * vin.time_base) / duration * 0.95)
            else:
                pkt.stream = aout
            out.mux(pkt)
            packets += 1
            rep.tick()
    except av.FFmpegError as exc:
        raise RenderError(f"copying the working video failed: {exc}") from exc
    finally:
        out.close()
    return RenderResult(
        path=out_path, width=vin.codec_context.width, height=vin.codec_context.height,
        duration=duration, device="CPU", extra={"reencoded": False, "packets": packets},
    )


# --------------------------------------------------------------------------- drawing: re-encode


def _decoder(inp: Any, vin: Any, ain: Any | None, q: queue.Queue, stop: threading.Event) -> None:
    """Demux + decode in a thread: puts ('v', frame), ('a', packet), then ('end', None) or ('err', exc)."""

    def put(item: Any) -> bool:
        return put_until_stopped(q, item, stop)

    try:
        streams = [vin] + ([ain] if ain is not None else [])
        for pkt in inp.demux(streams):
            if stop.is_set():
                return
            if pkt.stream is vin:
                for frame in vin.codec_context.decode(pkt if pkt.size else None):
                    if not put(("v", frame)):
                        return
            elif pkt.dts is not None:
                if not put(("a", pkt)):
                    return
        put(("end", None))
    except BaseException as exc:  # handed to the consumer, which raises it
        put(("err", exc))


def _items(q: queue.Queue, rep: Reporter) -> Any:
    """What a reader thread puts, (kind, item), until its ('end', None); its ('err', exc) is
    raised here (an FFmpeg error as a RenderError). Progress and cancel are ticked while waiting."""
    while True:
        try:
            kind, item = q.get(timeout=CANCEL_POLL / 2)
        except queue.Empty:
            rep.tick()
            continue
        if kind == "end":
            return
        if kind == "err":
            if isinstance(item, av.FFmpegError):
                raise RenderError(f"decoding the working video failed: {item}") from item
            raise item
        yield kind, item


def _stop_reader(stop: threading.Event, reader: threading.Thread, q: queue.Queue) -> None:
    """Stop a reader thread, also one blocked on the full queue, and wait for it."""
    stop.set()
    if reader.is_alive():
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        reader.join(timeout=5)


def _reencode(plan: OverlayPlan, style: SpotlightStyle, inp: Any, vin: Any, ain: Any | None, out_path: str,
              rep: Reporter, duration: float) -> RenderResult:
    device, label = _device(plan.device)
    cc_in = vin.codec_context
    width, height = cc_in.width, cc_in.height
    if width % 2 or height % 2:
        raise RenderError(f"the working video's size must be even, got {width}x{height}")
    tb = vin.time_base or Fraction(1, 90000)
    rate = vin.average_rate or vin.guessed_rate or Fraction(30, 1)
    total = vin.frames or max(1, round(duration * float(rate)))
    step = max(1, round(1 / (float(rate) * float(tb))))  # one frame in time-base units
    t0 = _start_time(vin)

    vin.thread_type = "AUTO"
    out = _open_output(out_path)
    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    dec = threading.Thread(target=_decoder, args=(inp, vin, ain, q, stop), name="overlay-decode", daemon=True)
    frames = drawn = 0
    try:
        vout = add_x264(out, rate, width, height, plan.crf, plan.preset, tb)
        vout.time_base = tb
        copy_colour(cc_in, vout.codec_context)
        aout = out.add_stream_from_template(ain) if ain is not None else None

        def mux_video(frame: Any) -> None:
            try:
                for p in vout.encode(frame):
                    out.mux(p)
            except av.FFmpegError as exc:
                raise RenderError(f"encoding the final video failed: {exc}") from exc

        dec.start()
        next_pts = 0
        for kind, item in _items(q, rep):
            if kind == "a":
                item.stream = aout
                out.mux(item)
                continue
            frame = item
            pts = frame.pts if frame.pts is not None else next_pts
            next_pts = pts + step
            t = float(pts * tb) - t0
            shape = spotlight_at(style, plan.regions, t, height)
            if shape is not None:
                frame = _draw(frame, t, style, plan, shape, device)
                drawn += 1
            frame.pts = pts
            frame.time_base = tb
            frame.pict_type = PictureType.NONE
            mux_video(frame)
            frames += 1
            rep.tick(0.97 * frames / total)
        for i, p in enumerate(vout.encode(None)):
            out.mux(p)
            if i % 4 == 0:
                rep.tick()
    except av.FFmpegError as exc:
        raise write_failed("the final video", exc) from exc
    finally:
        _stop_reader(stop, dec, q)
        out.close()
    return RenderResult(
        path=out_path, width=width, height=height, duration=duration, device=label,
        extra={"reencoded": True, "frames": frames, "drawn_frames": drawn, "encoder": "libx264",
               "requested_device": plan.device},
    )


# --------------------------------------------------------------------------- drawing: splice


class _NotSpliceable(Exception):
    """The splice met what its checks could not foresee; the video is re-encoded whole instead."""


def _splice_plan(plan: OverlayPlan, vin: Any, style: SpotlightStyle, step: int, length_size: int,
                 rep: Reporter) -> splice.GopPlan | None:
    """Which GOPs to copy (see :mod:`app.pipeline.splice`), or None to re-encode the whole video.
    The packets are read by a container of their own (demuxing only: no decoding; a cancel is
    still heard)."""
    tb, t0, height = vin.time_base, _start_time(vin), vin.codec_context.height
    scan_in = _open_input(plan.working_path)

    def demuxed() -> Any:
        for i, p in enumerate(scan_in.demux(scan_in.streams.video[0])):
            if i % 64 == 0:
                rep.tick()
            yield p

    try:
        packets = splice.scan(demuxed(), length_size)
    except (av.FFmpegError, ValueError):  # unreadable, or a picture without a time
        return None
    finally:
        scan_in.close()

    def drawn(pts: int) -> bool:
        return spotlight_at(style, plan.regions, float(pts * tb) - t0, height) is not None

    return splice.plan_gops(packets, step, drawn)


def _splice(plan: OverlayPlan, style: SpotlightStyle, inp: Any, vin: Any, ain: Any | None, out_path: str,
            rep: Reporter, duration: float) -> RenderResult | None:
    """The final video with the GOPs that have nothing to draw copied from the working video
    (the same bytes: no time spent, no quality lost) and the others re-encoded; None when this
    working video cannot be spliced (then nothing was written)."""
    cc_in = vin.codec_context
    avcc = splice.avcc_parameter_sets(cc_in.extradata)
    rate, tb = vin.average_rate or vin.guessed_rate, vin.time_base
    if cc_in.name != "h264" or avcc is None or not rate or not tb or cc_in.format is None \
            or cc_in.format.name != "yuv420p" or (1 / (rate * tb)).denominator != 1:
        return None
    step = int(1 / (rate * tb))  # one frame in time-base units
    width, height = cc_in.width, cc_in.height

    def encoder() -> Any:
        return x264_encoder(rate, width, height, plan.crf, plan.preset, like=cc_in)

    try:
        spare = encoder()  # first, as it is the cheaper check (~20 ms against ~35 ms for 15 s)
    except (av.FFmpegError, ValueError) as exc:
        raise RenderError(f"cannot set up the encoder: {exc}") from exc
    if not splice.same_headers(cc_in.extradata, spare.extradata):
        return None  # made with other settings (or by another encoder): re-encoded whole
    gops = _splice_plan(plan, vin, style, step, avcc[0], rep)
    if gops is None:
        return None
    try:
        return _splice_render(plan, inp, vin, ain, out_path, rep, duration, style, gops, step, encoder, spare,
                              avcc[0])
    except _NotSpliceable as exc:
        log.info("the working video could not be spliced (%s); re-encoding it whole", exc)
        _remove(out_path)
        return None


def _splice_reader(inp: Any, vin: Any, ain: Any | None, gops: splice.GopPlan, q: queue.Queue,
                   stop: threading.Event) -> None:
    """Demux in a thread: ('copy', packet) for the GOPs copied; ('v', frame) decoded from the
    others, each run of them by a fresh decoder drained at the run's end, then ('cut', None);
    ('a', packet); then ('end', None) or ('err', exc)."""

    def put(item: Any) -> bool:
        return put_until_stopped(q, item, stop)

    dec = None

    def drain() -> bool:
        nonlocal dec
        if dec is None:
            return True
        frames, dec = dec.decode(None), None
        return all(put(("v", f)) for f in frames) and put(("cut", None))

    try:
        streams = [vin] + ([ain] if ain is not None else [])
        for pkt in inp.demux(streams):
            if stop.is_set():
                return
            if pkt.stream is not vin:
                if pkt.dts is not None and not put(("a", pkt)):
                    return
                continue
            if not pkt.size:
                continue
            if pkt.pts is None:  # the scan refuses these; met here, the file changed since
                raise _NotSpliceable("a picture without a presentation time")
            try:
                copy = gops.copies(pkt.pts)
            except ValueError as exc:
                raise _NotSpliceable(str(exc)) from exc
            if copy:
                if not drain() or not put(("copy", pkt)):
                    return
                continue
            if dec is None:
                dec = av.CodecContext.create(vin.codec_context.name, "r")
                dec.extradata = vin.codec_context.extradata
                dec.thread_type = "AUTO"
            for frame in dec.decode(pkt):
                if not put(("v", frame)):
                    return
        if drain():
            put(("end", None))
    except BaseException as exc:  # handed to the consumer, which raises it
        put(("err", exc))


def _splice_render(plan: OverlayPlan, inp: Any, vin: Any, ain: Any | None, out_path: str, rep: Reporter,
                   duration: float, style: SpotlightStyle, gops: splice.GopPlan, step: int,
                   encoder: Callable[[], Any], spare: Any, length_size: int) -> RenderResult:
    device, label = _device(plan.device)
    tb = vin.time_base
    t0, height, width = _start_time(vin), vin.codec_context.height, vin.codec_context.width
    total = vin.frames or max(1, round(duration * float(1 / (step * tb))))
    out = _open_output(out_path)
    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    reader = threading.Thread(target=_splice_reader, args=(inp, vin, ain, gops, q, stop),
                              name="overlay-splice-read", daemon=True)
    frames = drawn = copied = 0
    last_dts: int | None = None
    try:
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream_from_template(ain) if ain is not None else None

        def mux(pkt: Any) -> None:
            nonlocal last_dts
            if pkt.dts is None or (last_dts is not None and pkt.dts <= last_dts):
                raise _NotSpliceable(f"decode times would go back at {pkt.dts} (after {last_dts})")
            last_dts = pkt.dts
            pkt.stream = vout
            out.mux(pkt)

        def mux_encoded(packets: list[Any]) -> None:
            for p in packets:
                pkt = av.Packet(splice.to_sample(bytes(p), length_size))
                pkt.pts, pkt.dts, pkt.duration = p.pts * step, p.dts * step, step
                pkt.time_base = tb
                pkt.is_keyframe = p.is_keyframe
                mux(pkt)

        enc = None
        reader.start()
        for kind, item in _items(q, rep):
            if kind == "a":
                item.stream = aout
                out.mux(item)
                continue
            if kind == "cut":  # a run of re-encoded GOPs ends: its encoder is flushed
                if enc is not None:
                    mux_encoded(enc.encode(None))
                enc = None
                rep.tick()
                continue
            if kind == "copy":
                mux(item)
                copied += 1
            else:
                frame, pts = item, item.pts
                if pts is None:
                    raise _NotSpliceable("a decoded picture without a time")
                t = float(pts * tb) - t0
                shape = spotlight_at(style, plan.regions, t, height)
                if shape is not None:
                    frame = _draw(frame, t, style, plan, shape, device)
                    drawn += 1
                frame.pts, frame.time_base = pts // step, step * tb  # the encoder counts in frames
                frame.pict_type = PictureType.NONE
                if enc is None:
                    enc, spare = spare or encoder(), None
                try:
                    mux_encoded(enc.encode(frame))
                except av.FFmpegError as exc:
                    raise RenderError(f"encoding the final video failed: {exc}") from exc
            frames += 1
            rep.tick(0.97 * frames / total)
    except av.FFmpegError as exc:
        raise write_failed("the final video", exc) from exc
    finally:
        _stop_reader(stop, reader, q)
        out.close()
    return RenderResult(
        path=out_path, width=width, height=height, duration=duration, device=label,
        extra={"reencoded": True, "frames": frames, "drawn_frames": drawn, "copied_frames": copied,
               "spliced": True, "encoder": "libx264", "requested_device": plan.device},
    )


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Zero-copy (Y, U, V) numpy views of a yuv420p frame (line padding cut off)."""
    return [plane_view(frame, i) for i in range(3)]


def _draw(frame: Any, t: float, style: SpotlightStyle, plan: OverlayPlan, shape: Any, device: str) -> Any:
    """Decoded frame -> a new yuv420p frame with the spotlight drawn.

    The decoder's buffer is only read (it may still be a reference picture). On CPU the
    drawing reads the decoded planes and writes the new frame's planes directly (the dim pass
    is the copy); on a GPU the planes travel as one packed I420 array.
    """
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    if device == "cpu":
        new = av.VideoFrame(frame.width, frame.height, "yuv420p")
        draw_spotlight(_planes(frame), t, style, plan.regions, shape=shape, out=_planes(new))
        return new
    import torch  # a GPU is there: torch is already loaded (app.pipeline.device)

    ten = torch.from_numpy(frame.to_ndarray()).to(device, non_blocking=True)
    draw_spotlight(ten, t, style, plan.regions, shape=shape)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(ten.cpu().numpy()), format="yuv420p")
