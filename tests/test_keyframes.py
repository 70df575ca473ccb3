"""Keyframe math: crop at t, default crop, refit, rotation safe area, spotlight ellipse."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.pipeline.keyframes import (
    Box,
    CropKey,
    EllipseKey,
    box_has_ratio,
    catmull_rom,
    crop_at,
    default_crop,
    ellipse_at,
    ground_ring,
    interpolate,
    keyframes_of_ratio,
    parse_ratio,
    refit_keyframes,
    region_fade,
    rotation_safe_area,
    stroke_thickness,
)
from app.pipeline.timeline import Segment, clip_time_at, kept_parts, output_duration, split_segments

RATIOS = [parse_ratio(a) for a in ("9:16", "16:9", "1:1", "4:5")]
frames = st.sampled_from([(1920, 1080), (1080, 1920), (640, 360), (3840, 2160), (720, 720)])


def inside(b: Box, w: float, h: float, tol: float = 1e-6) -> bool:
    return b.x >= -tol and b.y >= -tol and b.x + b.width <= w + tol and b.y + b.height <= h + tol


@st.composite
def crop_keys(draw, min_size=1, max_size=6):
    w, h = draw(frames)
    ratio = draw(st.sampled_from(RATIOS))
    n = draw(st.integers(min_size, max_size))
    times = sorted(draw(st.lists(st.floats(0, 60), min_size=n, max_size=n, unique=True)))
    keys = []
    for t in times:
        full = default_crop(w, h, ratio)
        scale = draw(st.floats(0.1, 1.0))
        bh = max(16.0, full.height * scale)
        bw = bh * ratio
        if bw > w:
            bw, bh = float(w), w / ratio
        x = draw(st.floats(0, max(0.0, w - bw)))
        y = draw(st.floats(0, max(0.0, h - bh)))
        keys.append(CropKey(t, x, y, bw, bh))
    return w, h, ratio, keys


def test_default_crop_matches_the_document_example():
    assert default_crop(1920, 1080, parse_ratio("9:16")) == Box(656, 0, 608, 1080)
    assert default_crop(1080, 1920, parse_ratio("16:9")).width == 1080
    assert box_has_ratio(608, 1080, parse_ratio("9:16"))
    assert not box_has_ratio(600, 1080, parse_ratio("9:16"))
    # 360 x 9/16 = 202.5 rounds to 203 (halves up), so 202..204 are 9:16 and 201 is not
    assert box_has_ratio(204, 360, 9 / 16) and box_has_ratio(202, 360, 9 / 16)
    assert not box_has_ratio(201, 360, 9 / 16) and not box_has_ratio(205, 360, 9 / 16)


def test_no_keyframes_is_the_default_crop():
    assert crop_at([], 3.0, 1920, 1080, 9 / 16) == default_crop(1920, 1080, 9 / 16)


@settings(max_examples=200, deadline=None)
@given(crop_keys(), st.floats(-5, 70), st.floats(-20, 20))
def test_box_always_inside_the_frame_and_of_the_ratio(data, t, rotation):
    w, h, ratio, keys = data
    b = crop_at(keys, t, w, h, ratio, rotation)
    safe = rotation_safe_area(w, h, rotation)
    assert inside(b, w, h)
    assert b.x >= safe.x - 1e-6 and b.x + b.width <= safe.x + safe.width + 1e-6
    assert b.y >= safe.y - 1e-6 and b.y + b.height <= safe.y + safe.height + 1e-6
    assert abs(b.width - b.height * ratio) <= 1.0 + 1e-9
    assert b.width >= 16 - 1e-9 or b.height >= 16 - 1e-9


@settings(max_examples=200, deadline=None)
@given(crop_keys())
def test_keyframes_are_hit_exactly(data):
    w, h, ratio, keys = data
    for k in keys:
        b = crop_at(keys, k.time, w, h, ratio)
        assert b.x == pytest.approx(k.x, abs=1e-6)
        assert b.y == pytest.approx(k.y, abs=1e-6)
        assert b.height == pytest.approx(k.height, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(crop_keys(min_size=1, max_size=1), st.floats(-100, 100))
def test_single_keyframe_is_static(data, t):
    w, h, ratio, keys = data
    assert crop_at(keys, t, w, h, ratio) == crop_at(keys, keys[0].time, w, h, ratio)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1000, 1000), min_size=2, max_size=8), st.floats(0, 50))
def test_monotone_input_stays_within_its_keyframes_range_at_the_ends(values, beyond):
    """Before the first and after the last keyframe the value holds the end keyframe's value,
    so monotone input never leaves [first, last] there."""
    vals = sorted(values)
    times = [float(i) for i in range(len(vals))]
    keys = [(v,) for v in vals]
    before = interpolate(times, keys, -beyond)[0]
    after = interpolate(times, keys, times[-1] + beyond)[0]
    assert before == vals[0] and after == vals[-1]
    assert vals[0] <= before <= vals[-1] and vals[0] <= after <= vals[-1]


@settings(max_examples=100, deadline=None)
@given(st.floats(-500, 500), st.floats(-50, 50), st.integers(2, 8), st.floats(0, 1))
def test_evenly_spaced_monotone_input_is_interpolated_linearly(a, step, n, frac):
    """Evenly stepped keyframes (e.g. a steady pan) interpolate without overshoot inside every span."""
    vals = [a + step * i for i in range(n)]
    t = frac * (n - 1)
    v = interpolate([float(i) for i in range(n)], [(x,) for x in vals], t)[0]
    if n > 2:
        i = min(int(t), n - 2)
        lo, hi = sorted((vals[i], vals[i + 1]))
        assert lo - 1e-6 <= v <= hi + 1e-6
    assert min(vals) - 1e-6 <= v <= max(vals) + 1e-6


def test_catmull_rom_formula_endpoints_and_midpoint():
    assert catmull_rom(0, 1, 2, 3, 0) == 1
    assert catmull_rom(0, 1, 2, 3, 1) == 2
    assert catmull_rom(0, 1, 2, 3, 0.5) == pytest.approx(1.5)  # linear data stays linear


def test_between_two_keyframes_the_crop_moves_smoothly():
    keys = [CropKey(0, 0, 0, 608, 1080), CropKey(10, 1312, 0, 608, 1080)]
    xs = [crop_at(keys, t, 1920, 1080, 9 / 16).x for t in range(11)]
    assert xs[0] == 0 and xs[-1] == 1312
    assert all(b > a for a, b in zip(xs, xs[1:], strict=False))  # monotone, no overshoot


@settings(max_examples=100, deadline=None)
@given(crop_keys(), st.sampled_from(RATIOS))
def test_refit_keeps_centre_and_fits(data, new_ratio):
    w, h, ratio, keys = data
    out = refit_keyframes(keys, w, h, new_ratio)
    assert [k.time for k in out] == [k.time for k in keys]
    for old, new in zip(keys, out, strict=True):
        assert inside(Box(new.x, new.y, new.width, new.height), w, h)
        assert box_has_ratio(new.width, new.height, new_ratio)
        # the centre moves only as far as clamping into the frame needs
        cx_old, cx_new = old.x + old.width / 2, new.x + new.width / 2
        if new.x > 0.5 and new.x + new.width < w - 0.5:
            assert abs(cx_old - cx_new) <= 1.0


@settings(max_examples=100, deadline=None)
@given(crop_keys(), crop_keys(), st.data())
def test_keyframes_of_another_ratio_are_refitted_and_the_others_kept(data, other, pick):
    """Keys merged from a device that still had the old aspect ratio: only those are refitted."""
    w, h, ratio, keys = data
    _, _, old_ratio, old = other
    old = [dataclasses.replace(refit_keyframes([k], w, h, old_ratio)[0], time=k.time + 61) for k in old]
    mixed = sorted(pick.draw(st.permutations(keys + old)), key=lambda k: k.time)
    out = keyframes_of_ratio(mixed, w, h, ratio)
    assert [k.time for k in out] == [k.time for k in mixed]
    for before, after in zip(mixed, out, strict=True):
        assert box_has_ratio(after.width, after.height, ratio)
        assert inside(Box(after.x, after.y, after.width, after.height), w, h)
        if box_has_ratio(before.width, before.height, ratio):
            assert after == before
    assert keyframes_of_ratio(out, w, h, ratio) == out


def test_refit_same_height_where_it_fits():
    keys = [CropKey(0, 656, 0, 608, 1080)]
    (k,) = refit_keyframes(keys, 1920, 1080, 1.0)
    assert (k.width, k.height) == (1080, 1080)
    assert k.x + k.width / 2 == pytest.approx(960, abs=0.5)


@given(st.floats(-20, 20))
def test_rotation_safe_area_is_centred_and_shrinks(angle):
    b = rotation_safe_area(1920, 1080, angle)
    assert b.cx == pytest.approx(960) and b.cy == pytest.approx(540)
    assert inside(b, 1920, 1080)
    if abs(angle) > 0.5:
        assert b.width < 1920 and b.height < 1080
        # the box's corners lie inside the rotated frame
        a = math.radians(angle)
        for dx in (-b.width / 2, b.width / 2):
            for dy in (-b.height / 2, b.height / 2):
                u = dx * math.cos(a) + dy * math.sin(a)
                v = -dx * math.sin(a) + dy * math.cos(a)
                assert abs(u) <= 960 + 1e-6 and abs(v) <= 540 + 1e-6


def test_ellipse_keyframes_and_ground_ring():
    keys = [EllipseKey(1.0, 100, 200, 50, 80), EllipseKey(3.0, 300, 200, 50, 80)]
    assert ellipse_at(keys, 0).x == 100 and ellipse_at(keys, 5).x == 300
    assert ellipse_at(keys, 2).x == pytest.approx(200)
    g = ground_ring(ellipse_at(keys, 1.0))
    assert g.y == pytest.approx(200 + 80 / 1.3)
    assert g.rx == pytest.approx(50 * 2 / 1.3) and g.ry == pytest.approx(80 * 0.3)


def test_region_fade_and_stroke():
    assert region_fade(1, 3, 2) == 1
    assert region_fade(1, 3, 3) == 0
    assert region_fade(1, 3, 2.875) == pytest.approx(0.25)  # half the 0.25 s fade left -> 0.5^2
    assert region_fade(1, 1.4, 1.3) == pytest.approx(0.25)  # fade is length/2 = 0.2 s
    assert region_fade(1, 3, 0.5) == 0
    assert stroke_thickness(2, 1920) == 4 and stroke_thickness(1, 360) == 2
    assert stroke_thickness(2, 1350) == 3  # 2.5: halves round up (a 4:5 project's default stroke)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 5), st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0])), min_size=1, max_size=5),
       st.floats(0, 1), st.floats(0, 1))
def test_output_duration_is_sum_of_kept_parts_over_speed(segs, a, b):
    bounds, t = [], 0.0
    for length, speed in segs:
        bounds.append(Segment(t, t + length, speed))
        t += length
    lo, hi = sorted((a * t, b * t))
    assume(hi - lo > 1e-3)
    expected = sum((min(s.end, hi) - max(s.start, lo)) / s.speed for s in bounds if min(s.end, hi) > max(s.start, lo))
    assert output_duration(lo, hi, bounds) == pytest.approx(expected)
    parts = kept_parts(lo, hi, bounds)
    assert clip_time_at(parts, 0) == pytest.approx(lo)
    assert clip_time_at(parts, expected + 1) == pytest.approx(hi)


def test_split_keeps_speed():
    assert split_segments([Segment(0, 10, 0.5)], 4) == [Segment(0, 4, 0.5), Segment(4, 10, 0.5)]
