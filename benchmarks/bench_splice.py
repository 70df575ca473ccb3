"""Overlay export of a working video with a short spotlight: spliced vs re-encoded whole.

    python -m benchmarks splice [--quick]

The working video is written as the framing export writes one (libx264 crf 20 veryfast, a key
picture at least every 2 s). One 4 s spotlight region leaves most GOPs with nothing to draw:
the export copies them and re-encodes only the GOP(s) the region meets. Alternated, 3 rounds,
medians: ours (spliced), ours with the splice switched off (everything re-encoded, as before),
and ``ffmpeg -i in -c:v libx264 -crf 20 -preset veryfast -c:a copy`` (a plain re-encode, the
reference of ``bench_overlay``). The ratios are the figures.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from app.pipeline import overlay_render
from app.pipeline.encode import KEY_EVERY_S
from app.pipeline.keyframes import EllipseKey
from app.pipeline.plan import OverlayPlan, RegionPlan
from benchmarks.bench_overlay import FPS, H, W, _ffmpeg, _ours, make_working_video


def _whole(plan: OverlayPlan, dst: Path) -> tuple[float, float, str]:
    """Ours with the splice switched off: the export as it was before it."""
    splice = overlay_render._splice
    overlay_render._splice = lambda *a, **k: None
    try:
        return _ours(plan, dst)
    finally:
        overlay_render._splice = splice


def run(quick: bool = False) -> dict:
    seconds = 20.0 if quick else 30.0
    rounds = 2 if quick else 3
    cache = Path(tempfile.gettempdir()) / "reelforge-bench"
    cache.mkdir(exist_ok=True)
    src = make_working_video(cache / f"working_{W}x{H}_{seconds:g}s_veryfast_k{KEY_EVERY_S}.mp4", seconds, preset="veryfast", crf=20)
    start = 10.0
    keys = tuple(EllipseKey(start + k, 400 + 60 * k, 900, 90, 180) for k in range(5))
    plan = OverlayPlan(working_path=str(src), regions=(RegionPlan(start, start + 4.0, keys),), crf=20,
                       preset="veryfast", device="cpu")
    spliced, whole, theirs = [], [], []
    with tempfile.TemporaryDirectory() as d:
        probe = overlay_render.render_overlay(plan, str(Path(d) / "probe.mp4"))
        for _ in range(rounds):
            spliced.append(_ours(plan, Path(d) / "spliced.mp4")[0])
            whole.append(_whole(plan, Path(d) / "whole.mp4")[0])
            theirs.append(_ffmpeg(src, Path(d) / "ffmpeg.mp4")[0])
    s, w, f = (statistics.median(x) for x in (spliced, whole, theirs))
    result = {
        "name": "overlay_splice",
        "video": f"{W}x{H} {seconds:g}s {FPS}fps, one 4 s region",
        "spliced": bool(probe.extra.get("spliced")),
        "copied_frames": probe.extra.get("copied_frames"),
        "frames": probe.extra.get("frames"),
        "spliced_s": [round(x, 3) for x in spliced],
        "whole_s": [round(x, 3) for x in whole],
        "ffmpeg_s": [round(x, 3) for x in theirs],
        "spliced_over_whole": round(s / w, 3),
        "spliced_over_ffmpeg": round(s / f, 3),
        "whole_over_ffmpeg": round(w / f, 3),
    }
    print(f"overlay splice: {result['copied_frames']}/{result['frames']} pictures copied; spliced {s:.2f}s,"
          f" whole {w:.2f}s, ffmpeg re-encode {f:.2f}s: spliced/whole {s / w:.3f}, spliced/ffmpeg {s / f:.3f}")
    return result
