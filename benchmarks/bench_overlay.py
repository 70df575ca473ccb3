"""Overlay export speed: render_overlay vs a plain ffmpeg CLI re-encode of the same video.

    python benchmarks/bench_overlay.py [--quick]

``run(quick)`` generates a 1080x1920 working video (cached in the temp folder), then alternates
render_overlay (one region covering most of it) with ``ffmpeg -i in -c:v libx264 -crf 20
-preset veryfast -g 60 -c:a copy out.mp4`` (a key picture every 2 s, as ours) and reports the ratio of the median times (target <= 1.15).
It also times the whole process, ``reelforge export overlay`` (start-up, imports, job, render,
commit) on a project made from that video, against the same ffmpeg command on the project's
working video (``ratio_process``).
The ffmpeg CLI is only the speed reference here; the app never runs it. Without it on PATH the
ratio is skipped. ``gpu_fps()`` measures the spotlight and the x4 upscaler on CUDA.
"""

from __future__ import annotations

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

import av
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.pipeline.encode import KEY_EVERY_S  # noqa: E402
from app.pipeline.keyframes import EllipseKey  # noqa: E402
from app.pipeline.overlay_render import render_overlay  # noqa: E402
from app.pipeline.plan import OverlayPlan, RegionPlan  # noqa: E402
from benchmarks.bench_framing import cli_project as framing_project  # noqa: E402
from benchmarks.bench_framing import time_ours_process  # noqa: E402

W, H, FPS = 1080, 1920, 30
TARGET = 1.15


def make_working_video(path: Path, seconds: float, fps: int = FPS, preset: str = "ultrafast", crf: int = 18) -> Path:
    """A textured, panning 1080x1920 H.264 video with AAC audio (x264 has real work to do)."""
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = np.random.default_rng(7)
    # a grass-like texture, bigger than the frame so it can pan
    big_h, big_w = H + 256, W + 512
    noise = rng.integers(0, 256, (big_h // 4, big_w // 4), dtype=np.uint8).astype(np.float32)
    tex = np.kron(noise, np.ones((4, 4), np.float32))
    tex = (tex + np.roll(tex, 2, 0) + np.roll(tex, 2, 1) + np.roll(tex, (2, 2), (0, 1))) / 4
    grad = np.linspace(0, 60, big_h, dtype=np.float32)[:, None]
    base_y = np.clip(60 + 0.35 * tex + grad, 16, 235).astype(np.uint8)
    n = round(seconds * fps)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"preset": preset, "crf": str(crf)}
        vs.codec_context.time_base = Fraction(1, fps)
        vs.codec_context.thread_type = "AUTO"
        vs.codec_context.gop_size = KEY_EVERY_S * fps  # a key picture every 2 s, as our exports write
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        u = np.full((H // 2, W // 2), 100, np.uint8)
        v = np.full((H // 2, W // 2), 110, np.uint8)
        yy, xx = np.mgrid[0:H, 0:W]
        for i in range(n):
            ox, oy = (i * 3) % 512, (i * 2) % 256
            y = base_y[oy:oy + H, ox:ox + W].copy()
            for k in range(6):  # moving "players"
                cx = (200 + k * 150 + i * (4 + k)) % W
                cy = 300 + k * 250 + int(40 * np.sin(i / 15 + k))
                y0, x0 = max(cy - 60, 0), max(cx - 25, 0)
                m = (yy[y0:cy + 60, x0:cx + 25] - cy) ** 2 / 3600 + (xx[y0:cy + 60, x0:cx + 25] - cx) ** 2 / 625 < 1
                y[y0:cy + 60, x0:cx + 25][m] = 200 - 20 * k
            arr = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(H * 3 // 2, W)
            frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        sr, total, pos = 48000, round(seconds * 48000), 0
        while pos < total:
            tt = (np.arange(pos, pos + 1024) / sr).astype(np.float32)
            chunk = np.stack([0.2 * np.sin(2 * np.pi * 440 * tt)] * 2).astype(np.float32)
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = sr, pos, Fraction(1, sr)
            pos += 1024
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def overlay_plan(src: Path, seconds: float, device: str = "auto") -> OverlayPlan:
    keys = tuple(
        EllipseKey(t, 300 + 480 * t / seconds, 900 + 200 * np.sin(t), 90, 180) for t in np.arange(0, seconds, 1.0)
    )
    region = RegionPlan(0.25, seconds - 0.25, keys)  # most of the video
    return OverlayPlan(working_path=str(src), regions=(region,), crf=20, preset="veryfast", device=device)


def _cpu_s(children: bool) -> float:
    """CPU seconds (user + system) of this process or of its finished children; 0 without rusage."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ffmpeg(src: Path, dst: Path) -> tuple[float, float]:
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(src), "-c:v", "libx264", "-crf", "20",
           "-preset", "veryfast", "-g", str(KEY_EVERY_S * FPS), "-c:a", "copy", str(dst)]
    c, t = _cpu_s(True), time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t, _cpu_s(True) - c


def cli_project(src: Path, data_dir: Path, seconds: float) -> tuple[list[str], str, str]:
    """A data directory with one project made from ``src`` (whole frame, 1080x1920, crf 20,
    veryfast: bench_framing's project), framing exported once (not timed) and the benchmark's
    region applied. Returns the command prefix, the project id and its working video's path."""
    root = str(Path(__file__).resolve().parent.parent)
    base, pid = framing_project(str(src), str(data_dir), "veryfast")

    def cli(*args: str, stdin: str | None = None) -> str:
        return subprocess.run([*base, *args], input=stdin, capture_output=True, text=True, check=True,
                              cwd=root).stdout

    cli("export", "framing", pid)
    region = overlay_plan(src, seconds).regions[0]
    keys = [{"time": float(k.time), "x": float(k.x), "y": float(k.y), "rx": float(k.rx), "ry": float(k.ry)}
            for k in region.keyframes if region.start <= k.time <= region.end]  # the document's rule
    doc = {"overlay": {"regions": [{"start": region.start, "end": region.end, "keyframes": keys}]}}
    cli("project", "apply", pid, "-", stdin=json.dumps(doc))
    working = json.loads(cli("project", "show", pid, "--json"))["working_video"]["path"]
    return base, pid, working


def _ours(plan: OverlayPlan, dst: Path) -> tuple[float, float, str]:
    c, t = _cpu_s(False), time.perf_counter()
    res = render_overlay(plan, str(dst), lambda f: None, lambda: False)
    return time.perf_counter() - t, _cpu_s(False) - c, res.device


def run(quick: bool = False) -> dict:
    """Alternate ours / ffmpeg; returns the timings and the ratio (None without ffmpeg)."""
    seconds = 6.0 if quick else 15.0
    rounds = 2 if quick else 3
    cache = Path(tempfile.gettempdir()) / "reelforge-bench"
    cache.mkdir(exist_ok=True)
    src = make_working_video(cache / f"working_{W}x{H}_{seconds:g}s_k{KEY_EVERY_S}.mp4", seconds)
    plan = overlay_plan(src, seconds, device="cpu")
    have_ffmpeg = shutil.which("ffmpeg") is not None
    ours, theirs, ours_cpu, theirs_cpu, device = [], [], [], [], "CPU"
    process, theirs_process = [], []
    with tempfile.TemporaryDirectory() as d:
        base, pid, working = cli_project(src, Path(d) / "data", seconds)
        for _ in range(rounds):
            dt, cpu, device = _ours(plan, Path(d) / "ours.mp4")
            ours.append(dt)
            ours_cpu.append(cpu)
            if have_ffmpeg:
                dt, cpu = _ffmpeg(src, Path(d) / "ffmpeg.mp4")
                theirs.append(dt)
                theirs_cpu.append(cpu)
            process.append(time_ours_process(base, pid, "overlay"))
            if have_ffmpeg:
                theirs_process.append(_ffmpeg(Path(working), Path(d) / "ffmpeg_working.mp4")[0])
        size_ours = os.path.getsize(Path(d) / "ours.mp4")
        size_ffmpeg = os.path.getsize(Path(d) / "ffmpeg.mp4") if have_ffmpeg else None
    result: dict = {
        "name": "overlay_export",
        "video": f"{W}x{H} {seconds:g}s {FPS}fps",
        "device": device,
        "ours_s": [round(x, 3) for x in ours],
        "ffmpeg_s": [round(x, 3) for x in theirs],
        "ours_cpu_s": [round(x, 3) for x in ours_cpu],
        "ffmpeg_cpu_s": [round(x, 3) for x in theirs_cpu],
        "ours_fps": round(seconds * FPS / statistics.median(ours), 1),
        "ours_process_s": [round(x, 3) for x in process],
        "ffmpeg_process_s": [round(x, 3) for x in theirs_process],
        "bytes_ours": size_ours,
        "bytes_ffmpeg": size_ffmpeg,
        "target_ratio": TARGET,
    }
    if theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        result["ratio"] = round(ratio, 3)
        result["ok"] = ratio <= TARGET
        result["ratio_process"] = round(statistics.median(process) / statistics.median(theirs_process), 3)
        if statistics.median(theirs_cpu) > 0:
            # CPU time is steadier than wall time on a shared machine: a second opinion
            result["cpu_ratio"] = round(statistics.median(ours_cpu) / statistics.median(theirs_cpu), 3)
    else:
        result["ratio"] = None
        result["skipped"] = "ffmpeg CLI not on PATH (speed reference only)"
    print(f"overlay export: ours {statistics.median(ours):.2f}s"
          + (f" / ffmpeg {statistics.median(theirs):.2f}s = {result['ratio']:.3f} (target <= {TARGET}),"
             f" cpu ratio {result.get('cpu_ratio')}; whole process {statistics.median(process):.2f}s /"
             f" {statistics.median(theirs_process):.2f}s = {result['ratio_process']:.3f}"
             if theirs else " (no ffmpeg CLI to compare)"))
    return result


def gpu_fps(seconds: float = 3.0, device: str = "cuda") -> dict:
    """Spotlight fps (1080x1920 I420 frames) and upscaler x4 fps (608x1080 crops) on CUDA.

    Skipped without CUDA. ``device="cpu"`` runs the same measurement on the CPU (a smoke test
    of this function, not a number to report).
    """
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_fps: skipped (no CUDA)")
        return {"name": "gpu_fps", "skipped": "no CUDA"}
    from app.pipeline.spotlight import draw_spotlight
    from app.pipeline.upscaler import SRVGGNetCompact, Upscaler

    dev = torch.device(device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    plan = overlay_plan(Path("unused.mp4"), 10.0, device=device)
    frame = torch.randint(16, 235, (H * 3 // 2, W), dtype=torch.uint8, device=dev)
    out = torch.empty_like(frame)
    for _ in range(5):
        draw_spotlight(frame, 2.0, plan, plan.regions, out=out)
    sync()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        draw_spotlight(frame, 2.0 + (n % 100) / 30, plan, plan.regions, out=out)
        n += 1
        if n % 50 == 0:
            sync()
    sync()
    spot = n / (time.perf_counter() - t)

    net = SRVGGNetCompact().to(dev).eval()
    up = Upscaler(net.half() if cuda else net, dev, half=cuda)
    crop = torch.rand(1, 3, 1080, 608, device=dev)
    up(crop)
    sync()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or n == 0:
        up(crop)
        n += 1
    sync()
    ups = n / (time.perf_counter() - t)
    name = torch.cuda.get_device_name(dev) if cuda else "CPU"
    res = {"name": "gpu_fps", "device": name,
           "spotlight_fps_1080x1920": round(spot, 1), "upscaler_x4_fps_608x1080": round(ups, 2)}
    print(f"{device}: spotlight {spot:.0f} fps, upscaler x4 {ups:.2f} fps ({name})")
    return res


if __name__ == "__main__":
    out = [run(quick="--quick" in sys.argv), gpu_fps()]
    print(json.dumps(out, indent=2))
