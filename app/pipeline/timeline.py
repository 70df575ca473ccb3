"""Clip time math: trim, speed segments, output duration (pure Python).

Clip-local time runs from 0 to the clip's length (``source_end - source_start``). The kept
parts are the segments intersected with the trim; each plays at its segment's speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.limits import MAX_SPEED, MIN_SPEED


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class Part:
    """A kept piece of the clip: clip-local [start, end) at ``speed``, placed at output [out_start, out_end)."""

    start: float
    end: float
    speed: float
    out_start: float

    @property
    def out_end(self) -> float:
        return self.out_start + (self.end - self.start) / self.speed


def kept_parts(trim_start: float, trim_end: float, segments: Sequence[Segment]) -> list[Part]:
    parts: list[Part] = []
    out = 0.0
    for seg in sorted(segments, key=lambda s: s.start):
        a, b = max(seg.start, trim_start), min(seg.end, trim_end)
        if b - a <= 1e-9:
            continue
        part = Part(a, b, seg.speed, out)
        parts.append(part)
        out = part.out_end
    return parts


def output_duration(trim_start: float, trim_end: float, segments: Sequence[Segment]) -> float:
    """Sum over the kept parts of (segment length / speed)."""
    parts = kept_parts(trim_start, trim_end, segments)
    return parts[-1].out_end if parts else 0.0


def joined_duration(durations: Sequence[float], transition: str, transition_duration: float) -> float:
    """The length of clips of these output durations joined in order, in seconds: a dissolve
    overlaps each pair by the transition's length, at most half of the shorter clip; a cut and a
    fade through black add nothing. Clips that keep nothing are left out. The same rule as
    ``framing.plan_layout``, which applies it in whole frames of the export rate (so the export
    can differ from this by a frame per join)."""
    kept = [d for d in durations if d > 1e-9]
    total = sum(kept)
    if transition == "dissolve":
        d = max(0.0, transition_duration)
        total -= sum(min(d, a / 2, b / 2) for a, b in zip(kept, kept[1:], strict=False))
    return total


def clip_time_at(parts: Sequence[Part], out_t: float) -> float:
    """Clip-local time shown at output time ``out_t`` (held at the ends)."""
    if not parts:
        raise ValueError("nothing kept")
    if out_t <= 0:
        return parts[0].start
    for p in parts:
        if out_t < p.out_end:
            return p.start + (out_t - p.out_start) * p.speed
    return parts[-1].end


def default_segments(length: float) -> list[Segment]:
    return [Segment(0.0, float(length), 1.0)]


def split_segments(segments: Sequence[Segment], at: float, *, margin: float = 0.0) -> list[Segment]:
    """Split the segment containing ``at`` in two of the same speed; ``at`` within ``margin`` of
    a segment's edge splits nothing. Segments not split are returned as they are."""
    out: list[Segment] = []
    for s in segments:
        if s.start + margin < at < s.end - margin:
            out += [Segment(s.start, at, s.speed), Segment(at, s.end, s.speed)]
        else:
            out.append(s)
    return out


def validate_segments(segments: Sequence[Segment], length: float, tol: float = 1e-3) -> str | None:
    """None when the segments cover [0, length] without gaps or overlaps at allowed speeds."""
    if not segments:
        return "segments must not be empty"
    segs = list(segments)
    if abs(segs[0].start) > tol:
        return "segments must start at 0"
    for a, b in zip(segs, segs[1:], strict=False):
        if abs(a.end - b.start) > tol:
            return f"segments must be contiguous (gap or overlap at {a.end:g})"
    if abs(segs[-1].end - length) > tol:
        return f"segments must end at the clip length {length:g}"
    for s in segs:
        if s.end - s.start <= 0:
            return "a segment must have a positive length"
        if not (MIN_SPEED <= s.speed <= MAX_SPEED):
            return f"speed {s.speed:g} is out of range {MIN_SPEED}-{MAX_SPEED}"
    return None
