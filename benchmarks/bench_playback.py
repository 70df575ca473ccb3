"""Playback of 1080p30 with the crop overlay: frames due, shown and dropped over 10 s.

    python -m benchmarks playback [--quick]      (or python benchmarks/bench_playback.py)

A 1080p30 H.264 clip of testsrc2 (moving content, 250-frame GOPs, made with PyAV) is opened in
the real FramingEditor (offscreen Qt) with two crop keyframes (the box pans and zooms, so the
crop is recomputed with ``crop_at`` and painted over every frame), and played from start to end
(10 s; 4 s with --quick) on the Qt event loop:

* ``source``: decoded from the H.264 file itself (no proxy);
* ``proxy``: from the all-intra preview proxy, as the editor plays once the proxy is built
  (``proxy_build_s`` is its build time);
* ``source_while_proxy_builds`` (not with --quick): the first play right after opening a clip,
  while the proxy is being built in the background on the same two cores.

Each reports frames due (presentation slots whose time passed), shown, dropped (a slot that
passed without its frame on screen), the longest gap between two presented frames (ideal
33.3 ms), the latest the GUI thread woke up (a stall there, not in decoding), the time from
play to the first frame, the clock (``audio`` with an output device,
else ``monotonic``) and the process CPU used per second played. Target: no frame dropped.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _editor(lib, data: Path, src: Path, seconds: float, build_proxies: bool):
    from app.services import editing
    from app.ui.framing_editor import FramingEditor
    from app.ui.session import ProjectSession
    from app.ui.video import FrameServer, ProxyBuilder

    pid = lib.create_project("Playback", "9:16")
    cid = lib.add_clip(pid, src)
    keys = [{"time": 0.0, "x": 0.0, "y": 0.0, "width": 608.0, "height": 1080.0},
            {"time": seconds, "x": 1060.0, "y": 240.0, "width": 473.0, "height": 840.0}]
    editing.set_crop_keyframes(lib, cid, keys)
    frames = FrameServer()
    proxies = ProxyBuilder(data / "cache" / "proxies")
    if not build_proxies:
        proxies.stop()
    ed = FramingEditor(frames, proxies)
    ed.resize(1280, 800)
    ed.show()
    session = ProjectSession(lib, pid)
    session.load_sync()
    ed.set_session(session)
    return ed, frames, proxies, session


def _run_loop(done, timeout: float) -> bool:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if done() else None)
    poll.start(50)
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    loop.exec()
    poll.stop()
    return done()


def play_once(ed, seconds: float) -> dict:
    ed.seek(0.0)
    _run_loop(lambda: ed.view.image is not None, 30)
    cpu0, t0 = time.process_time(), time.perf_counter()
    ed.toggle_play()
    if not _run_loop(lambda: ed.rate == 0.0, seconds + 30):
        ed.set_rate(0.0)
    wall = time.perf_counter() - t0
    s = ed.last_playback
    return {"due": s.due, "shown": s.shown, "dropped": s.dropped, "max_gap_ms": round(s.max_gap_ms, 1),
            "max_late_tick_ms": round(s.max_late_tick_ms, 1),
            "start_ms": round(s.start_ms, 1), "clock": s.clock,
            "cpu_per_s": round((time.process_time() - cpu0) / wall, 2)}


def run(quick: bool = False) -> dict:
    from app.services.library import Library
    from app.ui.main import make_app
    from app.ui.video import make_proxy, proxy_path
    from benchmarks.bench_framing import make_source

    app = make_app()
    app.setOrganizationName("ReelforgeBench")
    seconds = 4.0 if quick else 10.0
    cache = Path(tempfile.gettempdir()) / "reelforge-bench-playback"
    cache.mkdir(exist_ok=True)
    src = cache / f"testsrc2_1080p30_{seconds:g}s.mp4"
    if not src.exists():
        make_source(src, seconds, use_ffmpeg=False)
    res: dict = {"seconds": seconds, "cores": os.cpu_count()}
    cases = ["source", "proxy"] + ([] if quick else ["source_while_proxy_builds"])
    for case in cases:
        data = Path(tempfile.mkdtemp(prefix="bench-playback-")) / "data"
        lib = Library(data)
        ed, frames, proxies, session = _editor(lib, data, src, seconds,
                                             build_proxies=case == "source_while_proxy_builds")
        media = ed.media()[0]
        if case == "proxy":  # the builder was stopped in _editor: the proxy is made here, timed
            t0 = time.perf_counter()
            proxy = make_proxy(media, proxy_path(data / "cache" / "proxies", media))
            res["proxy_build_s"] = round(time.perf_counter() - t0, 2)
            frames.set_proxy(media, str(proxy))
        out = play_once(ed, seconds)
        res[case] = out
        print(f"{case:>26}: {out}", flush=True)
        proxies.stop()
        ed.close()
        frames.stop()
        session.close()
        lib.close()
    res["target"] = {"dropped": 0}
    return res


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
