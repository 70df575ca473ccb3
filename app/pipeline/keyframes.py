"""Keyframe math shared by preview and export (pure Python, no Qt, no storage).

The single source of the framing geometry is :func:`crop_at`; the single source of the
spotlight geometry is :func:`ellipse_at`. Whatever executes a render (torch on a GPU,
FFmpeg filters, the Qt preview) asks these functions where the box or ellipse is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_CROP = 16.0


def parse_ratio(aspect: str) -> float:
    """'9:16' -> 0.5625 (width / height)."""
    try:
        w, h = (float(p) for p in aspect.split(":"))
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"invalid aspect ratio {aspect!r}") from exc
    if w <= 0 or h <= 0:
        raise ValueError(f"invalid aspect ratio {aspect!r}")
    return w / h


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    def rounded(self) -> tuple[int, int, int, int]:
        """Integer pixel box (x, y, w, h), kept inside the box it was clamped into."""
        return round(self.x), round(self.y), round(self.width), round(self.height)


@dataclass(frozen=True, slots=True)
class CropKey:
    time: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Ellipse:
    x: float
    y: float
    rx: float
    ry: float


@dataclass(frozen=True, slots=True)
class EllipseKey:
    time: float
    x: float
    y: float
    rx: float
    ry: float


def catmull_rom(p0: float, p1: float, p2: float, p3: float, u: float) -> float:
    """Uniform Catmull-Rom through p1 (u=0) and p2 (u=1)."""
    return 0.5 * (
        2 * p1
        + (p2 - p0) * u
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u * u
        + (3 * p1 - p0 - 3 * p2 + p3) * u * u * u
    )


def interpolate(times: Sequence[float], values: Sequence[Sequence[float]], t: float) -> tuple[float, ...]:
    """Interpolate every channel of ``values`` (one tuple per keyframe) at time ``t``.

    Values hold before the first and after the last keyframe; one keyframe is static.
    ``times`` must be sorted ascending.
    """
    n = len(times)
    if n == 0:
        raise ValueError("no keyframes")
    if n == 1 or t <= times[0]:
        return tuple(values[0])
    if t >= times[-1]:
        return tuple(values[-1])
    i = bisect.bisect_right(times, t) - 1  # times[i] <= t < times[i+1]
    t1, t2 = times[i], times[i + 1]
    u = (t - t1) / (t2 - t1)
    v0 = values[max(i - 1, 0)]
    v1, v2 = values[i], values[i + 1]
    v3 = values[min(i + 2, n - 1)]
    return tuple(catmull_rom(a, b, c, d, u) for a, b, c, d in zip(v0, v1, v2, v3, strict=True))


# --------------------------------------------------------------------------- framing


def default_crop(frame_w: float, frame_h: float, ratio: float) -> Box:
    """Largest box of ``ratio`` (w/h) that fits the frame, centred, in whole pixels."""
    h = float(frame_h)
    w = float(round(h * ratio))
    if w > frame_w:
        w = float(frame_w)
        h = float(round(w / ratio))
    w, h = min(w, frame_w), min(h, frame_h)
    return Box(float(round((frame_w - w) / 2)), float(round((frame_h - h) / 2)), w, h)


def rotation_safe_area(frame_w: float, frame_h: float, degrees: float) -> Box:
    """Largest axis-aligned box inside the frame rotated by ``degrees`` about its centre."""
    if abs(degrees) < 1e-9:
        return Box(0.0, 0.0, float(frame_w), float(frame_h))
    a = math.radians(abs(degrees)) % math.pi
    if a > math.pi / 2:
        a = math.pi - a
    sin_a, cos_a = math.sin(a), math.cos(a)
    long_side, short_side = max(frame_w, frame_h), min(frame_w, frame_h)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        # half-constrained: two crop corners touch the longer side
        x = 0.5 * short_side
        if frame_w >= frame_h:
            wr, hr = x / sin_a, x / cos_a
        else:
            wr, hr = x / cos_a, x / sin_a
    else:
        cos_2a = cos_a * cos_a - sin_a * sin_a
        wr = (frame_w * cos_a - frame_h * sin_a) / cos_2a
        hr = (frame_h * cos_a - frame_w * sin_a) / cos_2a
    wr, hr = min(wr, frame_w), min(hr, frame_h)
    return Box((frame_w - wr) / 2, (frame_h - hr) / 2, wr, hr)


def fit_box(cx: float, cy: float, height: float, ratio: float, bounds: Box, width: float | None = None) -> Box:
    """A box of ``ratio`` centred near (cx, cy), as tall as asked where it fits, inside bounds.

    A ``width`` already within 1 px of height x ratio (whole-pixel boxes such as 608x1080 for
    9:16) is kept, so keyframes are hit exactly; otherwise the ratio is restored exactly.
    """
    h = max(float(height), MIN_CROP)
    w = h * ratio
    if width is not None and abs(width - w) <= 1.0:
        w = float(width)
    if w < MIN_CROP:
        w, h = MIN_CROP, MIN_CROP / ratio
    if w > bounds.width:
        w, h = bounds.width, bounds.width / ratio
    if h > bounds.height:
        h, w = bounds.height, bounds.height * ratio
    x = min(max(cx - w / 2, bounds.x), bounds.x + bounds.width - w)
    y = min(max(cy - h / 2, bounds.y), bounds.y + bounds.height - h)
    return Box(x, y, w, h)


def clamp_box(box: Box, frame_w: float, frame_h: float, ratio: float, rotation: float = 0.0) -> Box:
    """Restore the ratio (keeping centre and height) and clamp into the frame's safe area."""
    bounds = rotation_safe_area(frame_w, frame_h, rotation)
    return fit_box(box.cx, box.cy, box.height, ratio, bounds, box.width)


def crop_at(
    keyframes: Sequence[CropKey],
    t: float,
    frame_w: float,
    frame_h: float,
    ratio: float,
    rotation: float = 0.0,
) -> Box:
    """The crop box at clip-local time ``t``: THE framing function for preview and export."""
    if not keyframes:
        box = default_crop(frame_w, frame_h, ratio)
        if abs(rotation) < 1e-9:
            return box
        return clamp_box(box, frame_w, frame_h, ratio, rotation)
    keys = sorted(keyframes, key=lambda k: k.time)
    x, y, w, h = interpolate(
        [k.time for k in keys], [(k.x, k.y, k.width, k.height) for k in keys], t
    )
    return clamp_box(Box(x, y, w, h), frame_w, frame_h, ratio, rotation)


def refit_keyframes(
    keyframes: Sequence[CropKey], frame_w: float, frame_h: float, new_ratio: float
) -> list[CropKey]:
    """Project ratio changed: keep each box centre, same height where it fits (else same width)."""
    out = []
    bounds = Box(0.0, 0.0, float(frame_w), float(frame_h))
    for k in keyframes:
        cx, cy = k.x + k.width / 2, k.y + k.height / 2
        h = k.height
        if h * new_ratio > frame_w:
            h = k.width / new_ratio
        b = fit_box(cx, cy, h, new_ratio, bounds)
        w = float(round(b.height * new_ratio))
        hh = float(round(b.height))
        if w > frame_w:
            w = float(frame_w)
            hh = float(round(w / new_ratio))
        x = float(min(max(round(b.cx - w / 2), 0), frame_w - w))
        y = float(min(max(round(b.cy - hh / 2), 0), frame_h - hh))
        out.append(CropKey(k.time, x, y, w, hh))
    return out


def round_half_up(x: float) -> int:
    """``x`` rounded as the specs and people round it, halves up (2.5 is 3; Python's round gives 2)."""
    return math.floor(x + 0.5)


def box_has_ratio(width: float, height: float, ratio: float) -> bool:
    """A box is of the ratio when its width is height x ratio rounded, +-1 px (360 x 9/16 = 202.5
    is 203)."""
    return abs(width - round_half_up(height * ratio)) <= 1.0


def keyframes_of_ratio(keyframes: Sequence[CropKey], frame_w: float, frame_h: float, ratio: float) -> list[CropKey]:
    """The keyframes a clip is shown and exported with in a project of ``ratio``: each key not of
    that ratio refitted around its centre (as an aspect change refits them), the others as they
    are. Sync merges field by field, so a project's new aspect ratio from one device can meet
    keyframes drawn for the old one on another; preview and export both read them through here."""
    if all(box_has_ratio(k.width, k.height, ratio) for k in keyframes):
        return list(keyframes)
    return [k if box_has_ratio(k.width, k.height, ratio) else refit_keyframes([k], frame_w, frame_h, ratio)[0]
            for k in keyframes]


# --------------------------------------------------------------------------- overlay


def ellipse_at(keyframes: Sequence[EllipseKey], t: float) -> Ellipse:
    """Ellipse centre and radii at working-video time ``t`` (same spline as the crop)."""
    if not keyframes:
        raise ValueError("a region needs at least one keyframe")
    keys = sorted(keyframes, key=lambda k: k.time)
    x, y, rx, ry = interpolate([k.time for k in keys], [(k.x, k.y, k.rx, k.ry) for k in keys], t)
    return Ellipse(x, y, max(rx, 1.0), max(ry, 1.0))


def ground_ring(e: Ellipse) -> Ellipse:
    """The 'ground' shape: a flattened ring at the player's feet."""
    return Ellipse(e.x, e.y + e.ry / 1.3, e.rx * 2 / 1.3, e.ry * 0.3)


def region_fade(start: float, end: float, t: float) -> float:
    """Opacity factor: 1 inside the region, fading with the square of the remaining fraction
    over its last min(0.25 s, length/2); 0 outside."""
    if t < start or t > end:
        return 0.0
    fade = min(0.25, (end - start) / 2)
    remaining = end - t
    if fade <= 0 or remaining >= fade:
        return 1.0
    return (remaining / fade) ** 2


def stroke_thickness(stroke_width: float, frame_h: float) -> int:
    return max(2, round_half_up(stroke_width * frame_h / 1080))
