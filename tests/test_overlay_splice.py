"""The overlay export copies the GOPs with nothing to draw and re-encodes only the others.

The working videos here are made by the real framing export, as a user's would be: each second
is a new scene, so the encoder starts a GOP (an IDR picture) every second.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.pipeline import overlay_render, splice
from app.pipeline.framing import render_framing
from app.pipeline.keyframes import EllipseKey, region_fade
from app.pipeline.overlay_render import render_overlay
from app.pipeline.plan import Cancelled, FramingPlan, OverlayPlan, RegionPlan
from tests.media import make_video
from tests.test_framing_render import FPS, clip_of

W, H = 180, 320
DIM = 0.5
SECONDS = 5
KEY = EllipseKey(0.0, 90.0, 160.0, 30.0, 50.0)


def _working_video(folder: Path, crf: int = 20) -> Path:
    src = make_video(folder / "scenes.mp4", width=320, height=180, duration=SECONDS, pattern="scenes", audio=True)
    plan = FramingPlan((clip_of(src, 320, 180, SECONDS, has_audio=True),), ratio=9 / 16, width=W, height=H,
                       fps=FPS, crf=crf)
    out = folder / f"working-crf{crf}.mp4"
    render_framing(plan, str(out), lambda f: None, lambda: False)
    return out


@pytest.fixture(scope="module")
def working(tmp_path_factory) -> Path:
    return _working_video(tmp_path_factory.mktemp("splice"))


def _plan(path: Path, start: float, end: float, **kw) -> OverlayPlan:
    region = RegionPlan(start, end, (dataclasses.replace(KEY, time=start),))
    return OverlayPlan(working_path=str(path), dim=DIM, fill_opacity=0.3, regions=(region,), device="cpu", **kw)


def _video_packets(path: Path) -> dict[int, bytes]:
    with av.open(str(path)) as c:
        return {p.pts: bytes(p) for p in c.demux(c.streams.video[0]) if p.size}


def _time_base(path: Path):
    with av.open(str(path)) as c:
        return c.streams.video[0].time_base


def _keyframe_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sorted(float(p.pts * v.time_base) for p in c.demux(v) if p.size and p.is_keyframe)


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def _decode_cleanly(path: Path) -> list[tuple[int, np.ndarray]]:
    """Every picture (pts, I420 array); FFmpeg's decoder must not report a single error."""
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as c:
            frames = [(f.pts, f.to_ndarray()) for f in c.decode(video=0)]
    finally:
        av.logging.set_level(None)
    assert [entry for entry in logs if entry[0] <= av.logging.ERROR] == []
    return frames


def test_the_working_video_has_a_gop_a_second(working):
    assert _keyframe_times(working) == [float(s) for s in range(SECONDS)]


@pytest.mark.parametrize(("start", "end", "copied_seconds"), [
    (2.2, 2.8, [0, 1, 3, 4]),  # inside one GOP: copy, re-encode, copy
    (1.5, 2.5, [0, 3, 4]),  # across a GOP boundary: one re-encoded run of two GOPs
    (0.0, 0.4, [1, 2, 3, 4]),  # the first GOP
    (4.3, 9.0, [0, 1, 2, 3]),  # the last GOP, the region running past the end
    (1.2, 1.4, [0, 2, 3, 4]),  # a short region, its fade included
])
def test_only_the_gops_with_a_spotlight_are_re_encoded(working, tmp_path, start, end, copied_seconds):
    out = tmp_path / "final.mp4"
    seen: list[float] = []
    res = render_overlay(_plan(working, start, end), str(out), seen.append, lambda: False)
    assert res.extra["spliced"] is True
    assert res.extra["frames"] == SECONDS * FPS
    assert res.extra["copied_frames"] == len(copied_seconds) * FPS
    assert res.extra["drawn_frames"] == pytest.approx((min(end, SECONDS) - start) * FPS, abs=1)
    assert seen[-1] == 1.0 and seen == sorted(seen)

    def copied(t: float) -> bool:
        return int(t) in copied_seconds

    # the copied GOPs are the working video's own bytes; every picture is there, at its time
    src_packets, out_packets = _video_packets(working), _video_packets(out)
    assert sorted(out_packets) == sorted(src_packets)
    tb = _time_base(working)
    for pts, data in src_packets.items():
        if copied(pts * tb):
            assert out_packets[pts] == data, pts
    assert any(out_packets[p] != d for p, d in src_packets.items() if not copied(p * tb))  # re-encoded
    # the spliced stream decodes without an error, picture for picture
    src, dst = _decode_cleanly(working), _decode_cleanly(out)
    assert [p for p, _ in dst] == [p for p, _ in src]
    corner_dimmed = 0
    for (pts, a), (_, b) in zip(src, dst, strict=True):
        t = float(pts * tb)
        if copied(t):
            assert np.array_equal(a, b), t  # not a single value changed
        elif start + 0.05 < t < end - 0.05:
            want = 16 + (a[:16, :16].mean() - 16) * (1 - DIM * region_fade(start, end, t))
            assert abs(b[:16, :16].mean() - want) <= 3, t  # dimmed outside the ellipse
            corner_dimmed += 1
        elif not start <= t < end:
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.5, t  # re-encoded, untouched
    assert corner_dimmed > 0
    assert _audio_packets(out) == _audio_packets(working)  # the sound is copied as it is
    head = out.read_bytes()[:4096]  # faststart, as every export
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_a_working_video_made_with_other_settings_is_re_encoded_whole(working, tmp_path):
    """Another crf writes other picture parameters: the copied and re-encoded pictures would
    not share one set of headers, so nothing is copied, and the spotlight is still right."""
    out = tmp_path / "final.mp4"
    res = render_overlay(_plan(working, 2.2, 2.8, crf=26), str(out))
    assert "spliced" not in res.extra and res.extra["reencoded"] is True
    frames = _decode_cleanly(out)
    assert len(frames) == SECONDS * FPS
    src = dict(_decode_cleanly(working))
    pts, b = frames[int(2.5 * FPS)]
    assert abs(b[:16, :16].mean() - (16 + (src[pts][:16, :16].mean() - 16) * (1 - DIM))) <= 3


def test_a_video_from_another_encoder_setup_is_re_encoded_whole(tmp_path):
    """A working video not made with the export's settings (here ultrafast, a GOP every 10
    pictures) cannot be spliced; the export still succeeds."""
    video = make_video(tmp_path / "other.mp4", width=W, height=H, duration=2.0, gop=10, audio=True)
    res = render_overlay(_plan(video, 0.5, 1.0), str(tmp_path / "final.mp4"))
    assert "spliced" not in res.extra and res.extra["drawn_frames"] == 15


def test_cancel_while_splicing_leaves_no_file(working, tmp_path, monkeypatch):
    monkeypatch.setattr(overlay_render, "CANCEL_POLL", 0.0)
    out = tmp_path / "final.mp4"
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 40  # mid-way, past the first copied GOP

    with pytest.raises(Cancelled):
        render_overlay(_plan(working, 2.2, 2.8), str(out), None, cancel)
    assert not out.exists()


def test_a_splice_that_fails_half_way_is_re_encoded_and_its_progress_keeps_moving(working, tmp_path, monkeypatch):
    """The splice meets what its scan could not foresee (here injected: the GOP plan no longer
    knows a picture, as if the working video changed under it) after half the video. The video
    is re-encoded whole, and the bar goes on from where it stood to the end, moving all the way,
    instead of holding its value while the re-encode catches up."""
    monkeypatch.setattr(overlay_render, "PROGRESS_EVERY", 0.0)
    real_copies, calls, seen = splice.GopPlan.copies, {"n": 0}, []

    def copies(self, pts: int) -> bool:
        calls["n"] += 1
        if calls["n"] == SECONDS * FPS // 2:
            calls["failed_at"] = len(seen)
            raise ValueError("a picture in no GOP")
        return real_copies(self, pts)

    monkeypatch.setattr(splice.GopPlan, "copies", copies)
    res = render_overlay(_plan(working, 0.2, 0.8), str(tmp_path / "final.mp4"), seen.append, lambda: False)
    assert "spliced" not in res.extra and res.extra["reencoded"] is True and calls["n"] >= SECONDS * FPS // 2
    assert seen == sorted(seen) and seen[-1] == 1.0
    during = seen[calls["failed_at"] - 1:]  # from the last value the splice reported to the end
    assert 0.3 < during[0]  # the splice had copied about half the pictures
    longest, run = 1, 1  # the longest run of one value: a few polls while the re-encode starts
    for a, b in zip(during, during[1:], strict=False):
        run = run + 1 if b == a else 1
        longest = max(longest, run)
    assert longest < 15, f"the bar held {during[0]:.2f} for {longest} reports"


# --------------------------------------------------------------------------- the GOP plan


def _packets(gops: list[list[int]], step: int = 1, idr: bool = True) -> list[splice.Packet]:
    """Decode-order packets; each inner list is one GOP's display indices in decode order."""
    return [splice.Packet(i * step, k == 0, idr and k == 0) for g in gops for k, i in enumerate(g)]


def test_gop_plan_copies_the_gops_with_nothing_drawn():
    gops = [[0, 3, 1, 2], [4, 7, 5, 6], [8, 11, 9, 10]]  # closed GOPs with B-pictures
    plan = splice.plan_gops(_packets(gops, step=512), 512, lambda pts: pts == 5 * 512)
    assert plan is not None and plan.copy == (True, False, True)
    assert plan.bounds == (0, 4 * 512, 8 * 512, 12 * 512)
    assert [plan.copies(i * 512) for i in range(12)] == [True] * 4 + [False] * 4 + [True] * 4
    with pytest.raises(ValueError):
        plan.copies(12 * 512)


@pytest.mark.parametrize(("gops", "why"), [
    ([[0, 1, 2], [4, 3, 5]], "open GOP: picture 3 belongs to the GOP before in display order"),
    ([[0, 1], [2, 4]], "a gap: picture 3 is missing"),
    ([[0, 1], [2, 2]], "a repeat"),
])
def test_gop_plan_refuses_what_cannot_be_spliced(gops, why):
    assert splice.plan_gops(_packets(gops), 1, lambda pts: pts == 0) is None, why


def test_gop_plan_refuses_key_pictures_that_are_not_idr_and_odd_timestamps():
    assert splice.plan_gops(_packets([[0, 1], [2, 3]], idr=False), 1, lambda pts: pts == 0) is None
    assert splice.plan_gops(_packets([[0, 1], [2, 3]], step=3), 2, lambda pts: pts == 0) is None


def test_gop_plan_has_nothing_to_gain_when_all_or_nothing_is_drawn():
    packets = _packets([[0, 1], [2, 3]])
    assert splice.plan_gops(packets, 1, lambda pts: True) is None
    assert splice.plan_gops(packets, 1, lambda pts: False) is None


@given(st.lists(st.integers(1, 6), min_size=2, max_size=8), st.sets(st.integers(0, 47)))
def test_gop_plan_copies_exactly_the_gops_without_a_drawn_picture(sizes, drawn):
    gops, i = [], 0
    for n in sizes:
        gops.append(list(range(i, i + n)))
        i += n
    plan = splice.plan_gops(_packets(gops), 1, drawn.__contains__)
    want = [not drawn.intersection(g) for g in gops]
    if all(want) or not any(want):
        assert plan is None
    else:
        assert plan is not None and list(plan.copy) == want
        assert all(plan.copies(t) == want[k] for k, g in enumerate(gops) for t in g)


# --------------------------------------------------------------------------- the bytes


_nal = st.binary(min_size=1, max_size=40).map(lambda b: bytes([0x41]) + b.replace(b"\x00", b"\x01"))


@given(st.lists(_nal, min_size=1, max_size=6), st.sampled_from([3, 4]))
def test_an_annex_b_picture_becomes_a_length_prefixed_sample(nals, start_code):
    code = b"\x00" * (start_code - 1) + b"\x01"
    sps, aud = bytes([0x67, 1, 2]), bytes([0x09, 0xF0])
    stream = b"".join(code + n for n in [aud, sps, *nals])
    assert splice.sample_nals(splice.to_sample(stream, 4), 4) == nals  # headers and delimiters left out


def test_avcc_parameter_sets_of_a_real_working_video(working):
    with av.open(str(working)) as c:
        extradata = c.streams.video[0].codec_context.extradata
    length_size, sps, pps = splice.avcc_parameter_sets(extradata)
    assert length_size == 4 and [splice.nal_type(n) for n in sps + pps] == [7, 8]
    assert splice.avcc_parameter_sets(b"\x00\x00\x00\x01\x67") is None  # Annex B, not avcC
    assert not splice.same_headers(extradata, b"\x00\x00\x00\x01" + sps[0])  # the PPS is missing
    assert splice.same_headers(extradata, b"\x00\x00\x00\x01" + sps[0] + b"\x00\x00\x01" + pps[0])


def test_scan_refuses_a_picture_without_a_time():
    """It could be placed in no GOP: the video is then re-encoded whole rather than copied short."""
    class NoTime:
        size, pts, is_keyframe = 100, None, False

    with pytest.raises(ValueError, match="without a presentation time"):
        splice.scan([NoTime()], 4)


def test_a_reel_without_scene_cuts_still_has_a_key_picture_every_2_s(tmp_path):
    """ultrafast places no key picture at scene cuts and x264 waits 250 pictures by default: a
    whole reel was one GOP, so one spotlight re-encoded all of it. Key pictures every 2 s keep
    the copy around a spotlight (and seeking in players) fine-grained."""
    src = make_video(tmp_path / "smooth.mp4", width=320, height=180, duration=SECONDS, audio=True)
    plan = FramingPlan((clip_of(src, 320, 180, SECONDS, has_audio=True),), ratio=9 / 16, width=W, height=H,
                       fps=FPS, preset="ultrafast")
    work = tmp_path / "working.mp4"
    render_framing(plan, str(work), lambda f: None, lambda: False)
    assert _keyframe_times(work) == [0.0, 2.0, 4.0]
    out = tmp_path / "final.mp4"
    res = render_overlay(_plan(work, 2.3, 3.2, preset="ultrafast"), str(out), lambda f: None, lambda: False)
    assert res.extra["spliced"] is True
    before, after = _video_packets(work), _video_packets(out)
    tb = _time_base(work)
    kept = [pts for pts in before if not 2.0 <= float(pts * tb) < 4.0]
    assert kept and all(after.get(pts) == before[pts] for pts in kept)  # outside its GOP: copied untouched
