"""UI responsiveness: window shown with 500 projects, preview seek latency, one frame forward.

    python benchmarks/bench_ui.py [--quick]

* ``window_500_s``: MainWindow constructed and shown, and the first poll of 500 projects painted
  as cards (target <= 1.5 s).
* seek latency on a 1080p H.264 file with 250-frame GOPs (targets: median <= 80 ms, p95 <=
  250 ms), measured on the source (``seek_source_*``) and on the all-intra preview proxy that
  the editor builds in the background (``seek_proxy_*``; ``proxy_build_s`` is its build time).
* ``step_forward_*``: the next frame after a shown one (target <= 20 ms).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _wait(app, cond, timeout: float) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.001)
    return False


def bench_window(app, n: int) -> float:
    from app.services.library import Library
    from app.storage.models import ExportSettings, OverlaySettings, Project, Transition
    from app.ui.main_window import MainWindow

    d = Path(tempfile.mkdtemp(prefix="bench-ui-")) / "data"
    lib = Library(d)
    with lib.db.write() as s:  # 500 projects in one transaction (setup, not measured)
        for i in range(n):
            p = Project(name=f"Project {i:04d}", aspect_ratio="9:16")
            s.add(p)
            s.flush()
            s.add(Transition(project_id=p.id))
            s.add(ExportSettings(project_id=p.id))
            s.add(OverlaySettings(project_id=p.id))
    t0 = time.perf_counter()
    win = MainWindow(lib)
    win.resize(1400, 900)
    win.show()
    ok = _wait(app, lambda: len(win.model.rows) == n, 30)
    app.processEvents()
    win.grid_page.view.viewport().repaint()
    dt = time.perf_counter() - t0
    win.close()
    lib.close()
    return dt if ok else float("inf")


def make_1080p(path: Path, seconds: float) -> Path:
    from tests.media import make_video

    if not path.exists():
        make_video(path, width=1920, height=1080, fps=30, duration=seconds, gop=250, pattern="bars")
    return path


def bench_seek(path: Path, n: int, use_proxy: bool, cache_dir: Path) -> dict:
    from app.ui.video import FrameServer, make_proxy, proxy_path

    fs = FrameServer(cache_frames=0)
    out: dict = {}
    if use_proxy:
        t0 = time.perf_counter()
        proxy = make_proxy(str(path), proxy_path(cache_dir, str(path)))
        out["proxy_build_s"] = round(time.perf_counter() - t0, 2)
        fs.set_proxy(str(path), str(proxy))
    import av

    with av.open(str(path)) as c:
        dur = float(c.duration / 1_000_000)
    rng = random.Random(1)
    fs.decode_now(str(path), 0.0)
    seeks, steps = [], []
    for _ in range(n):
        t = rng.uniform(0, dur - 0.2)
        a = time.perf_counter()
        fs.decode_now(str(path), t)
        seeks.append((time.perf_counter() - a) * 1000)
        b = time.perf_counter()
        fs.decode_now(str(path), t + 1 / 30)
        steps.append((time.perf_counter() - b) * 1000)
    fs.stop()
    key = "proxy" if use_proxy else "source"
    out.update({
        f"seek_{key}_median_ms": round(statistics.median(seeks), 1),
        f"seek_{key}_p95_ms": round(_pct(seeks, 95), 1),
        f"step_forward_{key}_median_ms": round(statistics.median(steps), 1),
        f"step_forward_{key}_p95_ms": round(_pct(steps, 95), 1),
    })
    return out


def run(quick: bool = False) -> dict:
    from app.ui.main import make_app

    app = make_app()
    app.setOrganizationName("ReelforgeBench")
    res: dict = {"window_500_s": round(bench_window(app, 500), 3)}
    tmp = Path(tempfile.gettempdir()) / "reelforge-bench-ui"
    tmp.mkdir(exist_ok=True)
    src = make_1080p(tmp / ("gop250_1080p_q.mp4" if quick else "gop250_1080p.mp4"), 10.0 if quick else 20.0)
    n = 15 if quick else 40
    res.update(bench_seek(src, n, False, tmp / "proxies"))
    res.update(bench_seek(src, n, True, tmp / "proxies"))
    res["targets"] = {"window_500_s": 1.5, "seek_median_ms": 80, "seek_p95_ms": 250, "step_forward_ms": 20}
    return res


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
