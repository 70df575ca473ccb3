"""The timelines' filmstrip: thumbnails decoded off the GUI thread, painted over placeholders as
they arrive, at the timeline's time of each tile; stale requests dropped when the clip changes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtGui import QImage

from tests.ui.conftest import overlay_with_working_video, qimage_rgb


def pixels(img: QImage) -> np.ndarray:
    return qimage_rgb(img).astype(int)


@pytest.fixture
def gate(monkeypatch):
    """Thumbnail decodes wait for ``gate.open``; ``gate.keys`` lists every key decoded."""

    class Gate:
        def __init__(self):
            self.open, self.entered, self.keys = threading.Event(), threading.Event(), []

        def install(self, strip):
            real = strip._decode

            def gated(key):
                self.entered.set()
                assert self.open.wait(60)
                self.keys.append(key)
                return real(key)

            monkeypatch.setattr(strip, "_decode", gated)

    g = Gate()
    yield g
    g.open.set()


def open_clip(qtbot, window, pid: str, cid: str):
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id == cid, timeout=5000)
    return s


def all_cached(strip, tl) -> bool:
    tiles = strip.tiles(tl.strip_band(), tl.devicePixelRatioF())
    return bool(tiles) and strip.complete() and all(strip.cache[k] is not None for _r, k in tiles)


def test_thumbnails_arrive_follow_the_timeline_and_differ(qtbot, window, lib, media_dir, gate):
    from tests.media import make_video

    video = make_video(media_dir / "strip.mp4", width=320, height=180, fps=30, duration=4.0)
    tl = window.framing.timeline
    strip = tl.strip
    gate.install(strip)
    pid = lib.create_project("Filmstrip", "9:16")
    cid = lib.add_clip(pid, video, start=1.0, end=4.0)  # a clip that starts 1 s into its media
    open_clip(qtbot, window, pid, cid)
    qtbot.waitUntil(lambda: strip.path is not None, timeout=5000)
    placeholders = tl.grab().toImage()  # paints placeholders and queues the tiles
    qtbot.waitUntil(gate.entered.is_set, timeout=5000)
    assert not any(v is not None for v in strip.cache.values())

    gate.open.set()
    qtbot.waitUntil(lambda: all_cached(strip, tl), timeout=30000)
    painted = tl.grab().toImage()
    assert painted != placeholders

    band = tl.strip_band()
    tiles = strip.tiles(band, tl.devicePixelRatioF())
    assert len(tiles) >= 4
    for rect, (path, _w, ms) in tiles:
        assert path == strip.path
        # the frame of each tile is from the tile's own time span (clip time + the clip's start)
        assert tl.t_of(rect.left()) - 1e-3 <= ms / 1000 - 1.0 <= tl.t_of(rect.right()) + 1e-3
    # moving content: the first and the last thumbnails differ, in the cache and on screen
    first, last = strip.cache[tiles[0][1]], strip.cache[tiles[-1][1]]
    assert np.abs(pixels(first) - pixels(last)).mean() > 10
    shot, empty = pixels(painted), pixels(placeholders)
    dpr = painted.devicePixelRatio()

    def at(img, rect):
        c = rect.center()
        return img[int(c.y() * dpr), int(c.x() * dpr)]

    assert np.abs(at(shot, tiles[0][0]) - at(shot, tiles[-2][0])).sum() > 30
    assert np.abs(at(empty, tiles[0][0]) - at(empty, tiles[-2][0])).sum() < 10  # placeholders: all alike

    # a resize reuses what was decoded: at most a few new tiles
    n, width = len(gate.keys), tl.width()
    window.resize(window.width() - 60, window.height())
    qtbot.waitUntil(lambda: tl.width() < width, timeout=5000)
    tl.grab()
    qtbot.waitUntil(lambda: all_cached(strip, tl), timeout=30000)
    assert len(gate.keys) - n <= len(strip.tiles(tl.strip_band(), tl.devicePixelRatioF())) // 2


def test_changing_clip_drops_stale_requests(qtbot, window, lib, media_dir, gate):
    from tests.media import make_video

    a = make_video(media_dir / "strip-a.mp4", width=320, height=180, fps=30, duration=3.0)
    b = make_video(media_dir / "strip-b.mp4", width=320, height=180, fps=30, duration=3.0, pattern="coords")
    ed = window.framing
    strip = ed.timeline.strip
    gate.install(strip)
    pid = lib.create_project("Two clips", "9:16")
    ca = lib.add_clip(pid, a)
    lib.add_clip(pid, b)
    open_clip(qtbot, window, pid, ca)
    qtbot.waitUntil(lambda: strip.path is not None, timeout=5000)
    ed.timeline.grab()
    qtbot.waitUntil(gate.entered.is_set, timeout=5000)  # one decode of clip A in flight, more queued
    path_a = strip.path
    ed.clips.setCurrentRow(1)
    qtbot.waitUntil(lambda: strip.path not in (None, path_a), timeout=5000)
    gate.open.set()
    qtbot.waitUntil(lambda: all_cached(strip, ed.timeline), timeout=30000)
    assert sum(1 for k in gate.keys if k[0] == path_a) <= 1  # only the one in flight


def test_overlay_timeline_shows_the_working_video(qtbot, window, lib, tiny_video):
    _pid, s = overlay_with_working_video(qtbot, window, lib, tiny_video, "Overlay strip")
    tl = window.overlay.timeline
    qtbot.waitUntil(lambda: tl.strip.path == s.doc["working_video"]["path"], timeout=5000)
    tl.grab()
    qtbot.waitUntil(lambda: all_cached(tl.strip, tl), timeout=30000)
    tile = tl.strip.cache[tl.strip.tiles(tl.strip_band())[0][1]]
    assert tile.height() > tile.width()  # the 9:16 working video (the fake renderer's 90x160)
