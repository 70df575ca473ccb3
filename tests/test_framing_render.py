"""Framing export renderer on real generated media (tests/media.py): geometry, timing, sync."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline import device as devices
from app.pipeline.audio import tempo_factors
from app.pipeline.decode import VideoSource
from app.pipeline.frames import CpuFramer, TorchFramer, lanczos_matrix
from app.pipeline.framing import AI_WEIGHTS_MESSAGE, plan_layout, render_framing
from app.pipeline.keyframes import CropKey, crop_at
from app.pipeline.plan import Cancelled, ClipPlan, FramingPlan, RenderError
from app.pipeline.probe import probe
from app.pipeline.timeline import Segment, output_duration
from tests.media import (
    PATCHES,
    damage_packets,
    frame_index,
    make_audio_only,
    make_patches,
    make_video,
    slices_per_picture,
    truncate,
)

FPS = 30


def clip_of(
    path: Path,
    width: int,
    height: int,
    length: float,
    *,
    start: float = 0.0,
    trim: tuple[float, float] | None = None,
    segments: tuple[Segment, ...] | None = None,
    keys: tuple[CropKey, ...] = (),
    has_audio: bool = False,
    audio: bool = True,
    rotation: float = 0.0,
    display_rotation: int = 0,
) -> ClipPlan:
    trim_start, trim_end = trim if trim else (0.0, length)
    return ClipPlan(
        media_path=str(path),
        width=width,
        height=height,
        fps=FPS,
        has_audio=has_audio,
        source_start=start,
        source_end=start + length,
        trim_start=trim_start,
        trim_end=trim_end,
        segments=segments or (Segment(0.0, length, 1.0),),
        rotation=rotation,
        crop_keyframes=keys,
        audio=audio,
        display_rotation=display_rotation,
    )


def render(plan: FramingPlan, out: Path, **kw):
    seen: list[float] = []
    result = render_framing(plan, str(out), seen.append, kw.get("should_cancel", lambda: False))
    assert seen and seen[-1] == 1.0
    return result


def video_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def audio_samples(path: Path) -> tuple[np.ndarray, float]:
    """Mono samples at 48 kHz and the time of the first one."""
    with av.open(str(path)) as c:
        chunks, first = [], None
        for f in c.decode(audio=0):
            if first is None:
                first = float(f.time)
            chunks.append(f.to_ndarray().mean(axis=0))
    return np.concatenate(chunks), first or 0.0


def stream_info(path: Path) -> dict:
    with av.open(str(path)) as c:
        info = {"format": c.format.name, "audio": bool(c.streams.audio)}
        v = c.streams.video[0]
        info.update(
            width=v.codec_context.width,
            height=v.codec_context.height,
            pix_fmt=v.codec_context.pix_fmt,
            codec=v.codec_context.name,
            frames=sum(1 for _ in c.demux(v) if _.size),
        )
        if c.streams.audio:
            info["audio_codec"] = c.streams.audio[0].codec_context.name
    return info


@functools.lru_cache(maxsize=8)
def _source_rgb(path: str) -> tuple[np.ndarray, ...]:
    with av.open(path) as c:
        return tuple(f.to_ndarray(format="rgb24") for f in c.decode(video=0))


def source_index(img: np.ndarray, source: str, region: tuple[int, int, int, int]) -> int:
    """Which decoded source frame an unscaled, lossless output frame shows (region = x, y, w, h)."""
    x, y, w, h = region
    errors = [np.abs(f[y:y + h, x:x + w].astype(int) - img).mean() for f in _source_rgb(source)]
    return int(np.argmin(errors))


def _match(want: np.ndarray, ref: np.ndarray, crop: float) -> float:
    n_out, n_src = want.size, ref.size
    c = (np.arange(n_out) + 0.5) * (crop / n_out) - 0.5
    candidates = np.arange(0.0, n_src - crop + 0.01, 0.25)
    errors = np.array([np.abs(np.interp(x0 + c, np.arange(n_src), ref) - want).mean() for x0 in candidates])
    # the pattern is constant over 8 px, so several offsets can fit equally: take the middle of them
    best = candidates[errors <= errors.min() * 1.02 + 1e-9]
    return float((best.min() + best.max()) / 2)


def crop_origin(img: np.ndarray, source: str, index: int, crop_w: float, crop_h: float) -> tuple[float, float]:
    """Recover the crop's top-left corner from the coords pattern (red = x / 8, green = y / 8).

    H.264 keeps that chroma only to a few levels (+-2 of x / 8 is +-16 px), so the output's
    red (green) profile is matched against the same profile of the decoded source frame, taken
    over the rows (columns) the crop covers: output pixel c samples source
    x0 + (c + 0.5) * crop / out - 0.5; the best x0 wins. Two rounds refine the covered region.
    """
    src = _source_rgb(source)[index].astype(np.float64)
    red = img[:, :, 0].astype(np.float64).mean(axis=0)
    green = img[:, :, 1].astype(np.float64).mean(axis=1)
    h, w = src.shape[:2]
    x0 = _match(red, src[:, :, 0].mean(axis=0), crop_w)
    y0 = _match(green, src[:, :, 1].mean(axis=1), crop_h)
    for _ in range(2):
        rows = slice(int(y0), int(np.ceil(y0 + crop_h)))
        cols = slice(int(x0), int(np.ceil(x0 + crop_w)))
        x0 = _match(red, src[rows, :, 0].mean(axis=0), crop_w)
        y0 = _match(green, src[:, cols, 1].mean(axis=1), crop_h)
    return x0, y0


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("framing")


@pytest.fixture(scope="module")
def coords(media: Path) -> Path:
    return make_video(media / "coords.mp4", width=640, height=360, duration=2.0, pattern="coords", gop=10)


# --------------------------------------------------------------------------- geometry


def test_keyframed_crop_follows_crop_at(media: Path, coords: Path):
    keys = (
        CropKey(0.0, 40.0, 20.0, 90.0, 160.0),
        CropKey(0.8, 300.0, 150.0, 90.0, 160.0),
        CropKey(1.6, 520.0, 190.0, 90.0, 160.0),
    )
    clip = clip_of(coords, 640, 360, 2.0, keys=keys)
    # output size = crop size (no scaling) and crf 0 (lossless): the output is the decoded source's pixels
    plan = FramingPlan((clip,), ratio=9 / 16, width=90, height=160, fps=FPS, crf=0)
    out = media / "keyed.mp4"
    result = render(plan, out)
    assert result.device == "CPU" and (result.width, result.height) == (90, 160)
    frames = video_frames(out)
    assert len(frames) == 60
    for n in (0, 12, 24, 37, 48, 59):
        t, img = frames[n]
        assert t == pytest.approx(n / FPS, abs=1e-6)
        box = crop_at(keys, n / FPS, 640, 360, 9 / 16)
        x0, y0 = crop_origin(img, str(coords), n, 90, 160)
        assert abs(x0 + 45 - box.cx) <= 2.0, (n, x0, box)
        assert abs(y0 + 80 - box.cy) <= 2.0, (n, y0, box)
        # blue = source frame index: speed 1 shows source frame n at output frame n
        assert abs(float(img[:, :, 2].mean()) - n) <= 3


def test_zooming_crop_is_scaled_around_the_right_centre(media: Path, coords: Path):
    keys = (CropKey(0.0, 100.0, 40.0, 90.0, 160.0), CropKey(1.9, 300.0, 20.0, 180.0, 320.0))
    clip = clip_of(coords, 640, 360, 2.0, keys=keys)
    plan = FramingPlan((clip,), ratio=9 / 16, width=90, height=160, fps=FPS, crf=0)
    out = media / "zoom.mp4"
    render(plan, out)
    frames = video_frames(out)
    for n in (0, 20, 40, 59):
        box = crop_at(keys, n / FPS, 640, 360, 9 / 16)
        img = frames[n][1]
        x0, y0 = crop_origin(img, str(coords), n, box.width, box.height)
        # the scale (up to 2x) spreads the +-1 px rounding and the chroma blur: 2 px at the source
        assert abs(x0 + box.width / 2 - box.cx) <= 2.0 * max(1.0, box.width / 90), (n, x0, box)
        assert abs(y0 + box.height / 2 - box.cy) <= 2.0 * max(1.0, box.height / 160), (n, y0, box)


@pytest.mark.parametrize("rot", [90, 270])
def test_rotated_phone_video_gives_portrait_output(media: Path, rot: int):
    src = make_video(media / f"phone{rot}.mp4", width=320, height=180, duration=0.5, pattern="coords", rotation=rot)
    clip = clip_of(src, 180, 320, 0.5, display_rotation=rot)
    plan = FramingPlan((clip,), ratio=9 / 16, width=180, height=320, fps=FPS)
    out = media / f"phone{rot}_out.mp4"
    result = render(plan, out)
    assert (result.width, result.height) == (180, 320)
    img = video_frames(out)[0][1]
    assert img.shape[:2] == (320, 180)
    red, green = img[:, :, 0].astype(int), img[:, :, 1].astype(int)
    top_red, bottom_red = red[:8].mean(), red[-8:].mean()
    left_green, right_green = green[:, :8].mean(), green[:, -8:].mean()
    if rot == 90:  # turned counter-clockwise: the source's right edge is at the top
        assert top_red > 35 and bottom_red < 4 and left_green < 4 and right_green > 18
    else:  # clockwise: the source's right edge is at the bottom, its top on the right
        assert top_red < 4 and bottom_red > 35 and left_green > 18 and right_green < 4


def _rotation_model_error(img: np.ndarray, src: np.ndarray, box, degrees: float) -> float:
    """Mean |output - source at the point it should show| if the frame turned clockwise by ``degrees``."""
    h, w = src.shape[:2]
    out_h, out_w = img.shape[:2]
    px = box.x + (np.arange(out_w) + 0.5) * box.width / out_w - 0.5
    py = box.y + (np.arange(out_h) + 0.5) * box.height / out_h - 0.5
    dx, dy = np.meshgrid(px - (w - 1) / 2, py - (h - 1) / 2)
    a = np.radians(degrees)
    sx = (w - 1) / 2 + np.cos(a) * dx + np.sin(a) * dy  # the source point shown there
    sy = (h - 1) / 2 - np.sin(a) * dx + np.cos(a) * dy
    sxi = np.clip(np.rint(sx), 0, w - 1).astype(int)
    syi = np.clip(np.rint(sy), 0, h - 1).astype(int)
    err = np.abs(img[:, :, :2] - src[syi, sxi, :2].astype(float))
    return float(err[4:-4, 4:-4].mean())


def test_user_rotation_turns_clockwise_about_the_centre(media: Path, coords: Path):
    clip = clip_of(coords, 640, 360, 2.0, rotation=15.0, trim=(0.0, 0.5))
    plan = FramingPlan((clip,), ratio=9 / 16, width=90, height=160, fps=FPS, crf=0)
    out = media / "rotated.mp4"
    render(plan, out)
    frames = video_frames(out)
    assert len(frames) == 15
    img = frames[5][1].astype(float)
    src = _source_rgb(str(coords))[5]
    box = crop_at((), 5 / FPS, 640, 360, 9 / 16, 15.0)
    right, wrong, none = (_rotation_model_error(img, src, box, d) for d in (15.0, -15.0, 0.0))
    assert right < 1.5 and right < 0.5 * wrong and right < 0.5 * none, (right, wrong, none)


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize("transition", ["cut", "fade", "dissolve"])
def test_durations_with_speed_segments_and_transitions(media: Path, coords: Path, transition: str):
    segs_a = (Segment(0.0, 1.0, 0.5), Segment(1.0, 2.0, 2.0))
    segs_b = (Segment(0.0, 0.6, 1.0), Segment(0.6, 2.0, 0.25))
    a = clip_of(coords, 640, 360, 2.0, segments=segs_a, trim=(0.2, 1.8))
    b = clip_of(coords, 640, 360, 2.0, segments=segs_b, trim=(0.5, 1.1))
    # output = the default crop's size (202x360 at 219,0) and lossless, to tell source frames apart
    plan = FramingPlan(
        (a, b), ratio=9 / 16, width=202, height=360, fps=FPS, transition=transition, transition_duration=0.4,
        preset="ultrafast", crf=0,
    )
    da, db = output_duration(0.2, 1.8, segs_a), output_duration(0.5, 1.1, segs_b)
    expected = da + db - (0.4 if transition == "dissolve" else 0.0)
    out = media / f"speed_{transition}.mp4"
    result = render(plan, out)
    assert result.duration == pytest.approx(expected, abs=1 / FPS)
    frames = video_frames(out)
    assert abs(len(frames) - expected * FPS) <= 1
    times = np.array([t for t, _ in frames])
    assert np.allclose(np.diff(times), 1 / FPS, atol=1e-6)  # exact CFR
    if transition == "cut":
        # frame resampling: slow motion (0.5) repeats source frames, 2x skips every other one
        shown = [source_index(img, str(coords), (219, 0, 202, 360)) for _, img in frames[:40:3]]
        # clip A: trim 0.2, 0.5x until clip time 1.0 (output 1.6 s), then 2x
        for n, got in zip(range(0, 40, 3), shown, strict=True):
            src = (0.2 + n / FPS * 0.5) * FPS if n / FPS < 1.6 else (1.0 + (n / FPS - 1.6) * 2) * FPS
            # the nearest source frame (either one when exactly halfway)
            assert abs(got - src) <= 0.5 + 1e-6, (n, got, src)
    if transition == "fade":
        # the first clip's last frame is (nearly) black, the frames around it are not
        n_a = round(da * FPS)
        luma = [float(img.mean()) for _, img in frames]
        assert luma[n_a - 1] < 0.25 * luma[n_a - 10]
        assert luma[n_a] < 0.25 * luma[n_a + 10]


@pytest.mark.parametrize(("speed", "hold"), [(0.5, 2), (0.25, 4), (2.0, 1)])
def test_slow_motion_holds_every_source_frame_equally_long(media: Path, speed: float, hold: int):
    """At 0.5x of a 30 fps source into a 30 fps export every other output time falls exactly
    halfway between two source frames. Each tie is decided the same way, so every source frame
    shows for 2 output frames (4 at 0.25x): a steady slow motion, not a 1-3-1-3 judder."""
    src = make_video(media / "numbered.mp4", width=160, height=96, duration=4.0, pattern="binary")
    length = 4.0
    clip = clip_of(src, 160, 96, length, trim=(1.0, 2.0), segments=(Segment(0.0, length, speed),))
    plan = FramingPlan((clip,), ratio=16 / 9, width=160, height=90, fps=FPS, crf=12)
    render(plan, media / f"cadence-{speed}.mp4")
    shown = [frame_index(img) for _, img in video_frames(media / f"cadence-{speed}.mp4")]
    runs = [(i, len(list(g))) for i, g in itertools.groupby(shown)]
    assert [i for i, _ in runs] == list(range(FPS, 2 * FPS, max(1, round(speed))))  # every frame, in order
    assert {n for _, n in runs} == {hold}, runs


def _chosen_frames(src_fps: float, times: list[float]) -> list[int]:
    """The source frames (numbered) VideoSource.frames_at picks for ``times``, on a stream of
    frames at ``j / src_fps`` (the decoder left out: the choice alone)."""
    source = object.__new__(VideoSource)
    source.name, source.hold_s = "s.mp4", 1.0
    source._frames_from = lambda t: ((j / src_fps, j) for j in range(int(t * src_fps) - 2 if t > 1 else 0,
                                                                      10**6))
    return list(source.frames_at(times))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([24, 25, 30, 30000 / 1001, 50, 60]), st.sampled_from([24, 25, 30, 60]),
       st.floats(0.25, 4.0), st.floats(0.0, 100.0))
def test_frame_choice_is_even_at_any_speed_and_rate(src_fps: float, out_fps: int, speed: float, start: float):
    """Frames are held (slow motion, a lower source rate) or skipped (fast motion, a higher one)
    evenly: run lengths, or jumps, differ by at most one. The frame chosen is the one on show at
    that time, or the next one when its start is within half a step."""
    step = speed / out_fps
    times = [start + k * step for k in range(240)]
    chosen = _chosen_frames(src_fps, times)
    assert chosen == sorted(chosen)
    runs = [len(list(g)) for _, g in itertools.groupby(chosen)][1:-1]
    jumps = {b - a for a, b in itertools.pairwise(dict.fromkeys(chosen))}
    assert max(runs) - min(runs) <= 1 and max(jumps) - min(jumps) <= 1, (runs, jumps)
    interval = 1 / src_fps
    for t, j in zip(times, chosen, strict=True):
        assert t - interval - 1e-9 <= j / src_fps <= t + min(step, interval) / 2 + 1e-9


def test_dissolve_cross_fades_picture_and_sound(media: Path):
    gray = make_video(media / "gray.mp4", width=160, height=90, duration=1.0, pattern="gray", audio=True)
    dark = make_video(media / "dark.mp4", width=160, height=90, duration=1.0, pattern="flash")
    clips = (clip_of(gray, 160, 90, 1.0, has_audio=True), clip_of(dark, 160, 90, 1.0))
    plan = FramingPlan(
        clips, ratio=16 / 9, width=160, height=90, fps=FPS, transition="dissolve", transition_duration=0.4,
        preset="ultrafast",
    )
    out = media / "dissolve.mp4"
    result = render(plan, out)
    assert result.duration == pytest.approx(1.6, abs=1e-9)
    luma = [float(img.mean()) for _, img in video_frames(out)]
    assert len(luma) == 48
    overlap = luma[18:30]  # clip B starts at 0.6 s = frame 18, A ends at frame 30
    assert luma[17] > 120 and luma[30] < 8
    assert all(a > b for a, b in zip(overlap, overlap[1:], strict=False))  # a steady ramp down
    assert overlap[5] == pytest.approx(128 * (1 - 5.5 / 12), abs=6)
    samples, first = audio_samples(out)
    rms = lambda t0, t1: float(np.sqrt(np.mean(samples[int((t0 - first) * 48000):int((t1 - first) * 48000)] ** 2)))  # noqa: E731
    assert rms(0.2, 0.55) > 0.05 and rms(1.05, 1.55) < 0.005  # the tone, then B's silence
    assert rms(0.6, 0.7) > rms(0.8, 0.9) > rms(0.9, 0.99)  # faded out across the overlap


def test_vfr_and_ten_bit_sources_export(media: Path):
    vfr = make_video(media / "vfr.mp4", width=320, height=180, duration=1.0, pattern="coords", vfr=True)
    ten = make_video(media / "ten.mp4", width=320, height=180, duration=1.0, pattern="coords", ten_bit=True)
    with av.open(str(vfr)) as c:  # the VFR source's real timestamps
        src_times = [float(f.time) for f in c.decode(video=0)]
    length = src_times[-1]
    clips = (clip_of(vfr, 320, 180, length), clip_of(ten, 320, 180, 1.0))
    plan = FramingPlan(clips, ratio=16 / 9, width=320, height=180, fps=FPS, preset="ultrafast", crf=0)
    out = media / "vfr_ten.mp4"
    result = render(plan, out)
    info = stream_info(out)
    assert info["pix_fmt"] == "yuv420p" and info["codec"] == "h264"
    frames = video_frames(out)
    assert abs(len(frames) - (length + 1.0) * FPS) <= 1
    assert result.duration == pytest.approx(length + 1.0, abs=1 / FPS)
    times = np.array([t for t, _ in frames])
    assert np.allclose(np.diff(times), 1 / FPS, atol=1e-6)
    # VFR resampled by timestamp: output frame n shows the source frame nearest to n / 30
    for n in range(0, int(length * FPS), 2):
        want = int(np.argmin([abs(t - n / FPS) for t in src_times]))
        assert source_index(frames[n][1], str(vfr), (0, 0, 320, 180)) == want, n
    # 10-bit source: the picture survives the conversion (red/green ramps present)
    img = frames[-1][1]
    assert img[:, :, 0].max() > 20 and img[:, :, 1].max() > 10


# --------------------------------------------------------------------------- audio


def _onsets(x: np.ndarray, sr: int = 48000, thresh: float = 0.3) -> list[float]:
    loud = np.abs(x) > thresh
    out, last = [], -1.0
    for i in np.flatnonzero(loud):
        t = i / sr
        if t - last > 0.2:
            out.append(t)
        last = t
    return out


def test_audio_video_sync_across_clips(media: Path):
    src = make_video(media / "flash.mp4", width=160, height=90, duration=4.0, pattern="flash", audio=True, click_every=1.0)
    a = clip_of(src, 160, 90, 4.0, trim=(0.0, 2.5), has_audio=True)
    b = clip_of(src, 160, 90, 4.0, trim=(0.4, 3.6), has_audio=True)
    plan = FramingPlan((a, b), ratio=16 / 9, width=160, height=90, fps=FPS, preset="ultrafast")
    out = media / "sync.mp4"
    render(plan, out)
    info = stream_info(out)
    assert info["audio"] and info["audio_codec"] == "aac"
    flashes = [t for t, img in video_frames(out) if img.mean() > 128]
    samples, first = audio_samples(out)
    clicks = [first + t for t in _onsets(samples)]
    # A: flashes at 1, 2; B (from 0.4): source 1, 2, 3 at 2.5 + 0.6, 1.6, 2.6
    assert flashes == pytest.approx([1.0, 2.0, 3.1, 4.1, 5.1], abs=1e-3)
    assert len(clicks) == len(flashes)
    for f, c in zip(flashes, clicks, strict=True):
        assert abs(f - c) <= 1 / FPS, (flashes, clicks)
    assert len(samples) / 48000 == pytest.approx(5.7, abs=1 / FPS)


def test_a_damaged_stretch_of_sound_is_silence_and_the_sound_after_it_stays_in_sync(media: Path):
    """Sound packets that do not decode failed the whole export ("Invalid data found"). They are
    silence now, as FFmpeg skips them, said on a warning, and the clicks after them stay on their
    flashes (the samples that follow are placed by their time, not moved up into the hole)."""
    src = make_video(media / "click.mp4", width=160, height=90, duration=4.0, pattern="flash", audio=True,
                     click_every=1.0)
    bad = damage_packets(src, media / "dropped sound.mp4", range(62, 76), kind="audio")  # about 1.3-1.6 s
    clip = clip_of(bad, 160, 90, 4.0, has_audio=True)
    out = media / "dropped-out.mp4"
    result = render(FramingPlan((clip,), ratio=16 / 9, width=160, height=90, fps=FPS, preset="ultrafast"), out)
    assert any("dropped sound.mp4 is damaged from 1.3 to 1.6 s" in w and "sound packets" in w
               for w in result.warnings), result.warnings
    flashes = [t for t, img in video_frames(out) if img.mean() > 128]
    samples, first = audio_samples(out)
    clicks = [first + t for t in _onsets(samples)]
    assert flashes == pytest.approx([1.0, 2.0, 3.0], abs=1e-3)
    assert len(clicks) == len(flashes)
    for f, c in zip(flashes, clicks, strict=True):
        assert abs(f - c) <= 1 / FPS, (flashes, clicks)
    assert len(samples) / 48000 == pytest.approx(4.0, abs=1 / FPS)


def test_a_video_that_starts_after_its_sound_is_a_clip_of_all_its_pictures(media: Path):
    """Media time 0 is the first picture (where the probe's duration starts), not the file's
    start: the whole clip is every picture, none frozen at the start and none lost at the end,
    and the sound stays on them."""
    src = make_video(media / "late.mp4", width=160, height=90, duration=4.0, pattern="flash", audio=True,
                     click_every=1.0, video_delay=0.5)
    info = probe(str(src))
    assert info.duration == pytest.approx(4.0, abs=1e-3)
    clip = clip_of(src, 160, 90, info.duration, has_audio=True)
    out = media / "late-out.mp4"
    render(FramingPlan((clip,), ratio=16 / 9, width=160, height=90, fps=FPS, preset="ultrafast"), out)
    frames = video_frames(out)
    flashes = [t for t, img in frames if img.mean() > 128]
    assert len(frames) == 4 * FPS and flashes == pytest.approx([1.0, 2.0, 3.0], abs=1e-3)
    samples, first = audio_samples(out)
    clicks = [first + t for t in _onsets(samples)]
    assert len(clicks) == len(flashes) and all(abs(f - c) <= 1 / FPS for f, c in zip(flashes, clicks, strict=True))


def _bands_as_bt709(path: Path) -> list[tuple[int, int, int]]:
    """The RGB a player shows in the middle of each band of the first picture, reading the file
    by its own colour tags, and the tags (which must say BT.709)."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (1, 1, 1, 1)
        rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    return [tuple(int(v) for v in rgb[h // 2, (2 * k + 1) * w // 8]) for k in range(4)]


@pytest.mark.parametrize(("colour", "size"), [(None, (1280, 720)), ("bt601", (320, 240)), ("hlg", (640, 360))])
def test_colours_come_out_as_the_source_shows_them_in_a_tagged_bt709_file(media: Path, colour, size):
    """SD (BT.601) and phone HDR (BT.2020 HLG) sources are converted to BT.709, and every export
    says BT.709 in its stream, so a player shows what the source showed (untagged, a BT.601
    source's pure green would come out as RGB 0, 216, 0). HDR is said to come out as SDR.
    (An untagged source is BT.709 here because it is HD; players take untagged SD for BT.601.)"""
    w, h = size
    src = make_patches(media / f"patches-{colour}.mp4", width=w, height=h, colour=colour)
    clip = clip_of(src, w, h, 0.5)
    out = media / f"patches-{colour}-out.mp4"
    result = render(FramingPlan((clip,), ratio=w / h, width=320, height=320 * h // w, fps=FPS, crf=8), out)
    shown = _bands_as_bt709(out)
    if colour == "hlg":
        # BT.2020 primaries are wider: the same RGB numbers are more saturated colours in BT.709
        green, orange, grey, red = shown
        assert green[1] >= 245 and max(green[0], green[2]) <= 15
        assert orange[0] >= 230 and orange[2] <= 25 and 95 <= orange[1] <= 120
        assert max(grey) - min(grey) <= 4 and red[0] >= 230 and max(red[1:]) <= 15
        assert any("HDR (HLG)" in n and "standard-range" in n for n in result.warnings)
    else:
        for got, want in zip(shown, PATCHES, strict=True):
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 4, (shown, PATCHES)
        assert not result.warnings


def test_muted_and_silent_clips_keep_a_continuous_track(media: Path):
    loud = make_video(media / "tone.mp4", width=160, height=90, duration=1.0, audio=True)
    mute = make_video(media / "mute.mp4", width=160, height=90, duration=1.0)
    clips = (
        clip_of(loud, 160, 90, 1.0, has_audio=True, audio=False),  # muted by the user
        clip_of(mute, 160, 90, 1.0, has_audio=False),  # no audio in the media
        clip_of(loud, 160, 90, 1.0, has_audio=True, segments=(Segment(0.0, 1.0, 0.5),)),  # slowed
    )
    plan = FramingPlan(clips, ratio=16 / 9, width=160, height=90, fps=FPS, preset="ultrafast")
    out = media / "mixed_audio.mp4"
    render(plan, out)
    samples, first = audio_samples(out)
    sr = 48000
    assert len(samples) / sr == pytest.approx(4.0, abs=1 / FPS)
    pos = lambda t: int((t - first) * sr)  # noqa: E731
    assert np.abs(samples[pos(0.05):pos(1.95)]).max() < 0.02  # silence for the first two clips
    tone = samples[pos(2.1):pos(3.9)]
    assert np.abs(tone).max() > 0.1
    # atempo keeps the pitch: still 440 Hz when slowed to half speed
    spec = np.abs(np.fft.rfft(tone * np.hanning(tone.size)))
    assert np.fft.rfftfreq(tone.size, 1 / sr)[int(np.argmax(spec))] == pytest.approx(440, abs=5)

    silent_plan = FramingPlan(clips[1:2], ratio=16 / 9, width=160, height=90, fps=FPS, preset="ultrafast")
    render(silent_plan, media / "no_audio.mp4")
    assert not stream_info(media / "no_audio.mp4")["audio"]


def test_surround_sound_is_mixed_to_stereo_without_going_over_full_scale(media: Path):
    """A 5.1 source at -3 dBFS in every channel: the plain downmix adds centre and surrounds to
    each side and came out at +4.6 dBFS, clipped when played. Now it stays under full scale."""
    src = make_video(media / "surround.mp4", width=160, height=90, duration=1.0, audio=True, audio_layout="5.1",
                     tone=0.7)
    out = media / "surround-out.mp4"
    render(FramingPlan((clip_of(src, 160, 90, 1.0, has_audio=True),), ratio=16 / 9, width=160, height=90, fps=FPS,
                       preset="ultrafast"), out)
    samples, _ = audio_samples(out)
    peak = float(np.abs(samples).max())
    assert 0.5 < peak <= 1.0, peak


def test_tempo_factors_chain_atempo():
    assert tempo_factors(0.25) == [0.5, 0.5]
    assert tempo_factors(4.0) == [2.0, 2.0]
    assert tempo_factors(1.5) == [1.5]
    assert np.prod(tempo_factors(0.3)) == pytest.approx(0.3)


# --------------------------------------------------------------------------- output, errors, cancel


def test_output_is_h264_aac_faststart_at_the_exact_path(media: Path, coords: Path, tmp_path: Path):
    out = tmp_path / "export.tmp"  # the job layer's temporary name: no .mp4 suffix
    plan = FramingPlan((clip_of(coords, 640, 360, 2.0, trim=(0.0, 0.5)),), ratio=9 / 16, width=90, height=160, fps=FPS)
    render(plan, out)
    assert out.is_file() and list(tmp_path.iterdir()) == [out]
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: index first
    info = stream_info(out)
    assert info["format"].startswith("mov") and info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"


def test_encoder_uses_frame_threads_like_the_ffmpeg_cli(coords: Path, tmp_path: Path):
    """PyAV's default thread type (SLICE) makes libx264 cut every picture into one slice per
    thread and leaves cores idle (a 20 s 1080x1920 export took 10.8 s instead of 9.1 s on 2
    cores). Frame threads give one slice per picture, as ``ffmpeg -c:v libx264`` does."""
    out = tmp_path / "threads.mp4"
    plan = FramingPlan((clip_of(coords, 640, 360, 2.0, trim=(0.0, 1.0)),), ratio=9 / 16, width=360, height=640, fps=FPS)
    render(plan, out)
    assert slices_per_picture(out) == {1}


def test_missing_unreadable_and_audio_only_media_raise_render_error(media: Path, coords: Path, tmp_path: Path):
    broken = truncate(coords, tmp_path / "broken.mp4", 0.02)
    audio_only = make_audio_only(tmp_path / "voice.m4a")
    for path, words in (
        (tmp_path / "gone.mp4", "missing"),
        (broken, "Cannot read"),
        (audio_only, "no video"),
    ):
        plan = FramingPlan((clip_of(path, 640, 360, 1.0),), ratio=9 / 16, width=90, height=160, fps=FPS)
        out = tmp_path / "out.mp4"
        with pytest.raises(RenderError, match=words):
            render_framing(plan, str(out), lambda f: None, lambda: False)
        assert not out.exists()


def test_cancel_stops_quickly_and_leaves_nothing(media: Path, coords: Path, tmp_path: Path):
    clip = clip_of(coords, 640, 360, 2.0)
    plan = FramingPlan((clip,) * 6, ratio=9 / 16, width=360, height=640, fps=FPS, preset="medium")
    out = tmp_path / "cancelled.mp4"
    calls = []

    def should_cancel() -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 3

    started = time.monotonic()
    with pytest.raises(Cancelled):
        render_framing(plan, str(out), lambda f: None, should_cancel)
    assert time.monotonic() - calls[-1] < 1.0  # stopped within a second of the answer
    assert time.monotonic() - started < 10
    assert not out.exists()  # the partial file is removed before Cancelled is raised
    assert not [t for t in threading.enumerate() if t.name.startswith("framing-")]


def test_progress_is_reported_and_increases(media: Path, coords: Path, tmp_path: Path):
    seen: list[float] = []
    plan = FramingPlan((clip_of(coords, 640, 360, 2.0),), ratio=9 / 16, width=90, height=160, fps=FPS)
    render_framing(plan, str(tmp_path / "p.mp4"), seen.append, lambda: False)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_ai_upscaler_needs_weights(coords: Path, tmp_path: Path):
    for weights in (None, str(tmp_path / "nowhere.pth")):
        plan = FramingPlan(
            (clip_of(coords, 640, 360, 1.0),), ratio=9 / 16, width=90, height=160, fps=FPS, upscaler="ai",
            ai_weights=weights,
        )
        with pytest.raises(RenderError) as err:
            render_framing(plan, str(tmp_path / "ai.mp4"), lambda f: None, lambda: False)
        assert str(err.value) == AI_WEIGHTS_MESSAGE
        assert not (tmp_path / "ai.mp4").exists()


def test_ai_upscaler_renders_with_a_weights_file(coords: Path, tmp_path: Path):
    torch = pytest.importorskip("torch")
    upscaler = pytest.importorskip("app.pipeline.upscaler")
    torch.manual_seed(0)
    net = upscaler.SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4)
    weights = tmp_path / "realesr-general-x4v3.pth"
    torch.save({"params": net.state_dict()}, weights)
    plan = FramingPlan(
        (clip_of(coords, 640, 360, 2.0, trim=(0.0, 0.2)),), ratio=9 / 16, width=90, height=160, fps=FPS,
        upscaler="ai", ai_weights=str(weights), device="cpu",
    )
    out = tmp_path / "ai.mp4"
    result = render(plan, out)
    assert result.device == "CPU" and result.extra["upscaler"] == "ai"
    assert stream_info(out)["frames"] == 6


def test_ai_resize_on_the_gpu_matches_swscale(coords: Path):
    """On a GPU the AI path resizes the 4x picture where it is (lanczos matrices) instead of
    bringing it back for swscale; both give the same picture (here with torch on the CPU)."""
    torch = pytest.importorskip("torch")
    from app.pipeline.frames import AiFramer

    def upscale(t):  # a stand-in network: nearest 4x (the real one is tested in test_upscaler)
        return t.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)

    keys = (CropKey(0.0, 140.0, 100.0, 180.0, 320.0),)
    box = crop_at(keys, 0.0, 640, 360, 9 / 16, 0.0)
    with av.open(str(coords)) as c:
        frame = next(c.decode(video=0))
    pictures = []
    for on_device in (False, True):
        framer = AiFramer(upscale, "cpu", 90, 160, 640, 360, 0, 0.0)
        framer.resize_on_device = lambda on_device=on_device: on_device
        out = framer._render(frame, box)
        assert (out.width, out.height, out.format.name) == (90, 160, "yuv420p")
        pictures.append(out.to_ndarray(format="rgb24").astype(int))
    diff = np.abs(pictures[0] - pictures[1])
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), diff.max())
    assert torch.is_tensor(framer._matrix(720, 0.0, 720.0, 90)[0])


# --------------------------------------------------------------------------- units


def test_layout_in_whole_frames():
    clip = ClipPlan("x.mp4", 640, 360, 30, False, 0.0, 1.0, 0.0, 1.0, (Segment(0.0, 1.0, 1.0),))
    cut = plan_layout(FramingPlan((clip,) * 3, 9 / 16, 90, 160, 29.97))
    assert cut.rate == Fraction(30000, 1001) and cut.total == 90
    fade = plan_layout(FramingPlan((clip,) * 3, 9 / 16, 90, 160, 30, transition="fade", transition_duration=0.5))
    assert fade.total == 90 and [s.fade_out for s in fade.spans] == [8, 8, 0]
    diss = plan_layout(FramingPlan((clip,) * 3, 9 / 16, 90, 160, 30, transition="dissolve", transition_duration=0.5))
    assert diss.total == 90 - 2 * 15 and [s.start for s in diss.spans] == [0, 15, 30]
    # a transition never takes more than half a clip
    long = plan_layout(FramingPlan((clip,) * 2, 9 / 16, 90, 160, 30, transition="dissolve", transition_duration=5))
    assert long.total == 45


def test_device_choice_is_truthful():
    assert devices.pick_device("cpu") == "cpu"
    assert devices.describe("cpu") == "CPU"
    got = devices.pick_device("cuda")
    assert got == "cpu" or devices.describe(got).startswith("CUDA: ")
    with pytest.raises(RenderError, match="unknown device preference 'tpu'"):
        devices.pick_device("tpu")


def test_lanczos_matrix_rows_sum_to_one():
    m, first, last = lanczos_matrix(100, 10.3, 40.0, 90)
    assert m.shape == (90, last - first)
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("display_rotation", "rotation"), [(0, 0.0), (90, 0.0), (0, 6.0)])
def test_torch_framer_matches_the_cpu_framer(coords: Path, display_rotation: int, rotation: float):
    pytest.importorskip("torch")
    with av.open(str(coords)) as c:
        frame = next(c.decode(video=0))
    w, h = (360, 640) if display_rotation in (90, 270) else (640, 360)
    # (the coded frame carries no display matrix, so the plan's display_rotation is used)
    box = crop_at((), 0.0, w, h, 9 / 16, rotation)
    box = type(box)(box.x + 4, box.y, box.width - 8, box.height - 8 / (9 / 16))
    cpu = CpuFramer(90, 160, w, h, display_rotation, rotation).process(frame, box)
    torch_out = TorchFramer("cpu", 90, 160, w, h, display_rotation, rotation).process(frame, box)
    a = cpu.to_ndarray(format="rgb24").astype(int)
    b = torch_out.to_ndarray(format="rgb24").astype(int)
    assert a.shape == b.shape == (160, 90, 3)
    assert np.abs(a - b)[4:-4, 4:-4].mean() < 3.0


@pytest.mark.gpu
def test_cuda_render_says_so(coords: Path, tmp_path: Path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    keys = (CropKey(0.0, 40.0, 20.0, 90.0, 160.0), CropKey(1.0, 300.0, 150.0, 90.0, 160.0))
    plan = FramingPlan(
        (clip_of(coords, 640, 360, 2.0, keys=keys),), ratio=9 / 16, width=90, height=160, fps=FPS, device="cuda"
    )
    out = tmp_path / "gpu.mp4"
    result = render(plan, out)
    assert result.device.startswith("CUDA: ")
    frames = video_frames(out)
    for n in (0, 30, 59):
        box = crop_at(keys, n / FPS, 640, 360, 9 / 16)
        x0, _ = crop_origin(frames[n][1], str(coords), n, 90, 160)
        assert abs(x0 + 45 - box.cx) <= 2.0


def test_gpu_code_path_runs_end_to_end_on_the_cpu(coords: Path, tmp_path: Path, monkeypatch):
    """The torch framer (used on CUDA/MPS) through the whole renderer, with torch on the CPU."""
    pytest.importorskip("torch")
    from app.pipeline import framing

    monkeypatch.setattr(framing.devices, "is_gpu", lambda device: True)
    keys = (CropKey(0.0, 140.0, 100.0, 90.0, 160.0), CropKey(1.0, 300.0, 150.0, 180.0, 320.0))
    plan = FramingPlan(
        (clip_of(coords, 640, 360, 2.0, keys=keys, trim=(0.0, 1.0), rotation=10.0),), ratio=9 / 16, width=90,
        height=160, fps=FPS, crf=0, device="cpu",
    )
    out = tmp_path / "torch.mp4"
    result = render(plan, out)
    assert result.device == "CPU"
    frames = video_frames(out)
    assert len(frames) == 30
    box = crop_at(keys, 0.0, 640, 360, 9 / 16, 10.0)
    src = _source_rgb(str(coords))[0]
    img = frames[0][1].astype(float)
    right, wrong = (_rotation_model_error(img, src, box, d) for d in (10.0, -10.0))
    assert right < 1.5 and right < 0.5 * wrong, (right, wrong)


def test_names_with_a_colon_are_files_not_protocols(media: Path, tmp_path: Path, monkeypatch):
    # "clip:12.mp4" given relative would be read by FFmpeg as protocol "clip"
    src = make_video(tmp_path / "clip:12.mp4", width=320, height=180, duration=0.5)
    monkeypatch.chdir(tmp_path)
    plan = FramingPlan((clip_of(Path("clip:12.mp4"), 320, 180, 0.5),), ratio=9 / 16, width=90, height=160, fps=FPS)
    result = render(plan, Path("reel:final.mp4"))
    assert src.exists() and (tmp_path / "reel:final.mp4").exists()
    assert (result.width, result.height) == (90, 160)
    assert stream_info(tmp_path / "reel:final.mp4")["frames"] == 15
