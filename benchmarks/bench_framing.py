"""Framing export speed against the ffmpeg command line doing the same work.

    python -m benchmarks.bench_framing [--quick]

Source: 1080p30 H.264 (20 s; 5 s with --quick), made once with ffmpeg's testsrc2 (or PyAV's
filter graph when there is no ffmpeg program). Then, alternating so that both see the same
machine load:

  (a) render_framing: static 9:16 crop -> 1080x1920, crf 20, no audio (in-process), and
  (b) ffmpeg -i src -vf crop=608:1080:656:0,scale=1080:1920:flags=lanczos -c:v libx264
      -crf 20 -preset P -g 60 -an out.mp4   (a key picture every 2 s, as ours)

for presets veryfast and ultrafast, plus ours with 5 keyframes vs static: keyframes that pan and
zoom across the frame (KEYS), and keyframes that follow a player (FOLLOW: a pan, constant size).
Ratios are ours / ffmpeg (median of the runs). Targets: <= 1.10 veryfast, <= 1.30 ultrafast,
keyframed <= 1.05 x static. A panning, zooming picture is harder for x264 than a still crop
(about 1.5x its CPU at veryfast on testsrc2), so the keyframed entry also gives the processing
alone (decode, frame choice, crop, lanczos; no encoder), the encoder alone on both outputs, and
the keyframed ratio with that content cost taken out. ``whole_process`` also times ours in a fresh Python process
(imports included), which is closer to ``reelforge export framing``.
The ffmpeg program is only the yardstick here; the app never runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

SRC_W, SRC_H, FPS = 1920, 1080, 30
OUT_W, OUT_H = 1080, 1920
STATIC = (656.0, 0.0, 608.0, 1080.0)
STATIC_KEYS = ((0.0, *STATIC),)  # the static crop as a keyframe table
KEYS = (
    (0.0, 656.0, 0.0, 608.0, 1080.0),
    (0.25, 200.0, 100.0, 500.0, 889.0),
    (0.5, 1000.0, 50.0, 550.0, 978.0),
    (0.75, 300.0, 0.0, 608.0, 1080.0),
    (1.0, 1200.0, 200.0, 450.0, 800.0),
)  # times as fractions of the source length
# 5 keyframes that follow a player across the pitch: constant size, a pan of 700 px in the
# source at an uneven speed (about 1 px per frame), as a highlight's crop mostly moves
FOLLOW = (
    (0.0, 300.0, 0.0, 608.0, 1080.0),
    (0.25, 420.0, 0.0, 608.0, 1080.0),
    (0.5, 650.0, 0.0, 608.0, 1080.0),
    (0.75, 820.0, 0.0, 608.0, 1080.0),
    (1.0, 1000.0, 0.0, 608.0, 1080.0),
)


def make_source(path: Path, seconds: float, use_ffmpeg: bool = True) -> Path:
    ffmpeg = shutil.which("ffmpeg") if use_ffmpeg else None
    if ffmpeg:
        subprocess.run(
            [
                ffmpeg, "-v", "error", "-y", "-f", "lavfi",
                "-i", f"testsrc2=size={SRC_W}x{SRC_H}:rate={FPS}", "-t", str(seconds),
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(path),
            ],
            check=True,
        )
        return path
    import av

    g = av.filter.Graph()
    src = g.add("testsrc2", f"size={SRC_W}x{SRC_H}:rate={FPS}:duration={seconds}")
    fmt = g.add("format", "yuv420p")
    sink = g.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    g.configure()
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = SRC_W, SRC_H, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "18"}
        s.codec_context.time_base = Fraction(1, FPS)
        while True:
            try:
                f = sink.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            f.pict_type = av.video.frame.PictureType.NONE
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def make_plan(src: str, seconds: float, preset: str, keys: tuple = STATIC_KEYS):
    """``keys``: a keyframe table like KEYS (STATIC_KEYS: the static crop)."""
    from app.pipeline.keyframes import CropKey
    from app.pipeline.plan import ClipPlan, FramingPlan
    from app.pipeline.timeline import Segment

    clip = ClipPlan(
        media_path=src, width=SRC_W, height=SRC_H, fps=FPS, has_audio=False,
        source_start=0.0, source_end=seconds, trim_start=0.0, trim_end=seconds,
        segments=(Segment(0.0, seconds, 1.0),),
        crop_keyframes=tuple(CropKey(t * seconds, x, y, w, h) for t, x, y, w, h in keys),
    )
    return FramingPlan(
        clips=(clip,), ratio=9 / 16, width=OUT_W, height=OUT_H, fps=FPS, crf=20, preset=preset, device="cpu"
    )


def time_ours(src: str, seconds: float, out: str, preset: str, keys: tuple = STATIC_KEYS) -> float:
    from app.pipeline.framing import render_framing

    plan = make_plan(src, seconds, preset, keys)
    t = time.perf_counter()
    render_framing(plan, out, lambda f: None, lambda: False)
    return time.perf_counter() - t


def time_processing(src: str, seconds: float, keys: tuple) -> float:
    """Decode, pick frames, crop and resize every output frame, without encoding."""
    import threading

    from app.pipeline.framing import _Renderer, plan_layout

    plan = make_plan(src, seconds, "veryfast", keys)
    renderer = _Renderer(plan, plan_layout(plan), "cpu", OUT_W, OUT_H, None)
    t = time.perf_counter()
    for _ in renderer.video(threading.Event()):
        pass
    return time.perf_counter() - t


def time_encode_only(path: str) -> float:
    """Decode ``path`` and encode it again (libx264 veryfast crf 20), to price its content."""
    import av

    from app.pipeline.encode import Output

    with tempfile.TemporaryDirectory(prefix="bench-enc-") as tmp, av.open(path) as src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        out = Output(str(Path(tmp) / "re.mp4"), OUT_W, OUT_H, Fraction(FPS), 20, "veryfast", audio=False)
        t = time.perf_counter()
        for i, frame in enumerate(src.decode(stream)):
            out.write_video(frame, i)
        out.finish()
        return time.perf_counter() - t


def cli_project(src: str, data_dir: str, preset: str) -> tuple[list[str], str]:
    """A data directory with one project whose only clip is the whole source (default crop =
    the static 608x1080 crop at x=656 of the reference) and the reference's export settings."""
    root = str(Path(__file__).resolve().parent.parent)
    base = [sys.executable, "-m", "app", "--data-dir", data_dir]
    pid = subprocess.run([*base, "project", "create", "Bench"], capture_output=True, text=True, check=True,
                         cwd=root).stdout.strip()
    subprocess.run([*base, "clip", "add", pid, src], capture_output=True, check=True, cwd=root)
    doc = {"export_settings": {"width": OUT_W, "height": OUT_H, "fps": FPS, "crf": 20, "preset": preset}}
    subprocess.run([*base, "project", "apply", pid, "-"], input=json.dumps(doc), text=True, capture_output=True,
                   check=True, cwd=root)
    return base, pid


def time_ours_process(base: list[str], pid: str, kind: str = "framing") -> float:
    """Whole process: `reelforge export KIND PID` (start-up, imports, job, render, commit)."""
    root = str(Path(__file__).resolve().parent.parent)
    t = time.perf_counter()
    subprocess.run([*base, "export", kind, pid], check=True, cwd=root, capture_output=True)
    return time.perf_counter() - t


def time_ffmpeg(ffmpeg: str, src: str, out: str, preset: str) -> float:
    from app.pipeline.encode import KEY_EVERY_S  # ours places a key picture every 2 s: the same here

    x, y, w, h = (int(v) for v in STATIC)
    cmd = [
        ffmpeg, "-v", "error", "-y", "-i", src,
        "-vf", f"crop={w}:{h}:{x}:{y},scale={OUT_W}:{OUT_H}:flags=lanczos",
        "-c:v", "libx264", "-crf", "20", "-preset", preset, "-g", str(KEY_EVERY_S * FPS), "-an", out,
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def run(quick: bool = False) -> dict:
    """Measure and return the numbers (seconds, medians, and the ratios ours / reference)."""
    seconds = 5.0 if quick else 20.0
    reps = 1 if quick else 3
    ffmpeg = shutil.which("ffmpeg")
    result: dict = {"source": f"{SRC_W}x{SRC_H}@{FPS} {seconds:g}s", "reps": reps, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-framing-") as tmp:
        src = str(make_source(Path(tmp) / "src.mp4", seconds))
        ours_out, ref_out = str(Path(tmp) / "ours.mp4"), str(Path(tmp) / "ref.mp4")
        time_ours(src, min(seconds, 1.0), ours_out, "ultrafast")  # warm-up: imports, page cache
        for preset in ("veryfast", "ultrafast"):
            ours, ref = [], []
            for _ in range(reps):
                ours.append(time_ours(src, seconds, ours_out, preset))
                if ffmpeg:
                    ref.append(time_ffmpeg(ffmpeg, src, ref_out, preset))
            entry = {"ours_s": statistics.median(ours), "ours_runs": ours}
            if ref:
                entry.update(ffmpeg_s=statistics.median(ref), ffmpeg_runs=ref)
                entry["ratio"] = entry["ours_s"] / entry["ffmpeg_s"]
            result[preset] = entry
        static_out, keyed_out = str(Path(tmp) / "static.mp4"), str(Path(tmp) / "keyed.mp4")
        follow_out = str(Path(tmp) / "follow.mp4")
        static, keyed, p_static, p_keyed, e_static, e_keyed = [], [], [], [], [], []
        follow, e_follow = [], []
        for _ in range(reps):
            static.append(time_ours(src, seconds, static_out, "veryfast", keys=STATIC_KEYS))
            keyed.append(time_ours(src, seconds, keyed_out, "veryfast", keys=KEYS))
            follow.append(time_ours(src, seconds, follow_out, "veryfast", keys=FOLLOW))
            p_static.append(time_processing(src, seconds, keys=STATIC_KEYS))
            p_keyed.append(time_processing(src, seconds, keys=KEYS))
            e_static.append(time_encode_only(static_out))
            e_keyed.append(time_encode_only(keyed_out))
            e_follow.append(time_encode_only(follow_out))
        med = statistics.median
        extra_encode = med(e_keyed) - med(e_static)
        result["keyframed"] = {
            "static_s": med(static),
            "keyframed_s": med(keyed),
            "ratio": med(keyed) / med(static),
            "static_runs": static,
            "keyframed_runs": keyed,
            # decode + frame choice + crop + lanczos, no encoder: what keyframing itself costs
            "processing_static_s": med(p_static),
            "processing_keyframed_s": med(p_keyed),
            "processing_ratio": med(p_keyed) / med(p_static),
            # x264 alone on the two outputs: a moving, zooming picture costs the encoder more
            "encode_only_static_s": med(e_static),
            "encode_only_keyframed_s": med(e_keyed),
            "encode_content_ratio": med(e_keyed) / med(e_static),
            "ratio_without_encoder_content": (med(keyed) - extra_encode) / med(static),
            # the same measure with keyframes that follow a player (pan only)
            "follow_s": med(follow),
            "follow_runs": follow,
            "follow_ratio": med(follow) / med(static),
            "encode_follow_content_ratio": med(e_follow) / med(e_static),
        }
        if ffmpeg:
            for preset in ("veryfast", "ultrafast"):
                base, pid = cli_project(src, str(Path(tmp) / f"data-{preset}"), preset)
                proc, ref = [], []
                for _ in range(reps):
                    proc.append(time_ours_process(base, pid))
                    ref.append(time_ffmpeg(ffmpeg, src, ref_out, preset))
                result[f"whole_process_{preset}"] = {
                    "ours_s": statistics.median(proc),
                    "ffmpeg_s": statistics.median(ref),
                    "ratio": statistics.median(proc) / statistics.median(ref),
                }
    return result


def report(result: dict) -> str:
    lines = [f"framing export, source {result['source']}, {result['reps']} run(s) each, {result['cpus']} CPUs"]
    for preset, target in (("veryfast", 1.10), ("ultrafast", 1.30)):
        e = result[preset]
        if "ratio" in e:
            lines.append(
                f"  {preset:9s} ours {e['ours_s']:.2f}s  ffmpeg {e['ffmpeg_s']:.2f}s  "
                f"ratio {e['ratio']:.3f} (target <= {target:.2f})"
            )
        else:
            lines.append(f"  {preset:9s} ours {e['ours_s']:.2f}s  (no ffmpeg program to compare with)")
    k = result["keyframed"]
    lines.append(
        f"  keyframed {k['keyframed_s']:.2f}s vs static {k['static_s']:.2f}s  ratio {k['ratio']:.3f} (target <= 1.05)"
    )
    lines.append(
        f"    processing only (no encoder) {k['processing_keyframed_s']:.2f}s vs {k['processing_static_s']:.2f}s"
        f"  ratio {k['processing_ratio']:.3f}"
    )
    lines.append(
        f"    x264 alone on the two outputs: ratio {k['encode_content_ratio']:.3f}; keyframed ratio without"
        f" that content cost {k['ratio_without_encoder_content']:.3f}"
    )
    lines.append(
        f"  keyframed, following a player (pan only) {k['follow_s']:.2f}s vs static {k['static_s']:.2f}s"
        f"  ratio {k['follow_ratio']:.3f} (target <= 1.05); x264 alone: ratio {k['encode_follow_content_ratio']:.3f}"
    )
    for preset, target in (("veryfast", 1.10), ("ultrafast", 1.30)):
        w = result.get(f"whole_process_{preset}")
        if w:
            lines.append(
                f"  `reelforge export framing` {preset}: ours {w['ours_s']:.2f}s  ffmpeg {w['ffmpeg_s']:.2f}s"
                f"  ratio {w['ratio']:.3f} (target <= {target:.2f})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s source, one run each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
