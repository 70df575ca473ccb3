"""Screenshots of the grid, the framing editor and the overlay editor on a demo data directory.

    python scripts/screenshots.py [--out docs/screenshots] [--theme dark|light]

Runs on the offscreen platform (no display needed) and saves QWidget.grab() PNGs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def wait(app, cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False


def demo_library(data_dir: Path):
    from app.jobs.service import ExportService, Settings
    from app.services import editing
    from app.services.library import Library
    from tests.media import make_video

    media = data_dir.parent / "media"
    media.mkdir(exist_ok=True)
    lib = Library(data_dir)
    game = make_video(media / "U12 final - first half.mp4", width=640, height=360, duration=4.0, pattern="bars")
    other = make_video(media / "training.mp4", width=640, height=360, duration=3.0, pattern="coords")
    a = lib.create_project("U12 final — Mia #7", "9:16")
    c1 = lib.add_clip(a, game)
    lib.add_clip(a, other)
    editing.set_crop_keyframes(lib, c1, [
        {"time": 0.0, "x": 100.0, "y": 0.0, "width": 203.0, "height": 360.0},
        {"time": 2.0, "x": 300.0, "y": 0.0, "width": 203.0, "height": 360.0},
    ])
    editing.split_segment(lib, c1, 2.5)
    editing.set_segment_speed(lib, c1, 1, 0.5)
    b = lib.create_project("Saturday league highlights", "16:9")
    lib.add_clip(b, other)
    c = lib.create_project("Coach review", "1:1")
    lib.add_clip(c, game)
    lib.create_project("Empty project", "4:5")
    # a working video for the overlay editor (rendered by the real pipeline when present)
    svc = ExportService(lib, Settings(device="cpu"))
    try:
        job = svc.export(a, "framing")
        ok = job["status"] == "complete"
    except Exception:  # noqa: BLE001 - pipeline not there yet
        ok = False
    if ok:
        doc = lib.document(a)
        wv = doc["working_video"]
        editing.add_region(lib, a, 0.5, 3.0, [
            {"time": 0.5, "x": wv["width"] * 0.4, "y": wv["height"] * 0.5, "rx": wv["width"] * 0.12,
             "ry": wv["height"] * 0.2},
            {"time": 2.5, "x": wv["width"] * 0.6, "y": wv["height"] * 0.55, "rx": wv["width"] * 0.12,
             "ry": wv["height"] * 0.2},
        ])
    return lib, a


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--theme", default="dark")
    args = ap.parse_args(argv)
    os.environ["REELFORGE_THEME"] = args.theme
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="reelforge-shots-"))
    data_dir = tmp / "data"

    from app.ui.main import make_app

    app = make_app()
    app.setOrganizationName("ReelforgeScreenshots")
    lib, pid = demo_library(data_dir)
    from app.ui.main_window import MainWindow

    win = MainWindow(lib)
    win.resize(1360, 860)
    win.show()
    wait(app, lambda: len(win.model.rows) == 4)
    wait(app, lambda: len(win.model.posters) >= 3 and not win.model._loading, 20)
    wait(app, lambda: win.device != "…", 20)
    win.grab().save(str(out / "grid.png"))

    s = win.open_project(pid, "framing")
    wait(app, lambda: s.doc is not None)
    wait(app, lambda: win.framing.view.image is not None, 10)
    win.framing.seek(1.0)
    wait(app, lambda: win.framing._shown == win.framing._serial, 10)
    wait(app, win.framing.timeline.strip.complete, 20)
    time.sleep(0.2)
    app.processEvents()
    win.grab().save(str(out / "framing.png"))

    win.open_project(pid, "overlay")
    wait(app, lambda: True, 0.2)
    if s.doc.get("working_video"):
        win.overlay.select_region(0)
        win.overlay.seek(1.5)
        wait(app, lambda: win.overlay._shown == win.overlay._serial and win.overlay._serial > 0, 20)
        wait(app, win.overlay.timeline.strip.complete, 20)
    app.processEvents()
    win.grab().save(str(out / "overlay.png"))
    win.show_shortcuts()
    app.processEvents()
    win.shortcuts_dialog.grab().save(str(out / "shortcuts.png"))
    win.close()
    lib.close()
    print(f"saved screenshots to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
