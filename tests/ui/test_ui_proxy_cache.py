"""The preview proxy cache does not grow without end."""

from __future__ import annotations

import os
import time
from pathlib import Path

from app.services import editing
from app.ui.video import PART_GRACE_S, PROXY_GRACE_S, ProxyBuilder, proxy_path, prune_proxies

DAY = 86400


def _file(path: Path, size: int, age_s: float) -> Path:
    path.write_bytes(b"\0" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_prune_keeps_what_is_wanted_or_recent_and_drops_the_rest(tmp_path, tiny_video):
    cache = tmp_path / "proxies"
    cache.mkdir()
    wanted = _file(proxy_path(cache, str(tiny_video)), 1000, 30 * DAY)  # old, but a live clip needs it
    orphan_old = _file(cache / "aaaaaaaaaaaaaaaaaaaaaaaa.mkv", 1000, PROXY_GRACE_S + DAY)
    orphan_new = _file(cache / "bbbbbbbbbbbbbbbbbbbbbbbb.mkv", 1000, DAY)  # an undone delete still finds it
    crashed = _file(cache / "cccccccccccccccccccccccc.part.mkv", 500, PART_GRACE_S + 60)
    building = _file(cache / "dddddddddddddddddddddddd.part.mkv", 500, 5)
    other = _file(cache / "notes.txt", 10, 365 * DAY)  # not ours: left alone

    assert prune_proxies(cache, [str(tiny_video), str(tmp_path / "vanished.mp4")]) == (2, 1500)
    assert {p.name for p in cache.iterdir()} == {wanted.name, orphan_new.name, building.name, other.name}
    assert not orphan_old.exists() and not crashed.exists()


def test_over_the_size_cap_the_least_recently_used_go_first(tmp_path, tiny_video):
    cache = tmp_path / "proxies"
    cache.mkdir()
    files = [_file(cache / f"{i:024d}.mkv", 1000, age) for i, age in enumerate((5 * DAY, 1 * DAY, 3 * DAY))]
    builder = ProxyBuilder(cache)
    wanted = _file(proxy_path(cache, str(tiny_video)), 1000, 10 * DAY)
    assert builder.existing(str(tiny_video)) == str(wanted)  # opening it in an editor marks it used
    assert prune_proxies(cache, [str(tiny_video)], max_bytes=2500) == (2, 2000)
    assert {p.name for p in cache.iterdir()} == {files[1].name, wanted.name}


def test_the_window_prunes_the_cache_at_start(qtbot, lib, tiny_video):
    from tests.ui.conftest import _window

    pid = lib.create_project("Cup final")
    lib.add_clip(pid, tiny_video)
    cache = Path(lib.data_dir) / "cache" / "proxies"
    cache.mkdir(parents=True)
    (live,) = editing.live_media_paths(lib)
    needed = _file(proxy_path(cache, live), 100, 30 * DAY)
    stale = _file(cache / "eeeeeeeeeeeeeeeeeeeeeeee.mkv", 100, 30 * DAY)
    gen = _window(qtbot, lib, None)
    next(gen)
    try:
        qtbot.waitUntil(lambda: not stale.exists(), timeout=5000)
        assert needed.exists()
    finally:
        next(gen, None)


def test_building_a_proxy_says_how_far_it_is(qtbot, tmp_path):
    """A long file's scrubbing preview takes a while: its progress is told (the window shows it in
    the status bar) up to the end, then it is ready."""
    from tests.media import make_video

    src = make_video(tmp_path / "long.mp4", width=320, height=180, fps=30, duration=4.0)
    builder = ProxyBuilder(tmp_path / "proxies")
    seen: list[float] = []
    builder.progress.connect(lambda _m, f: seen.append(f))
    with qtbot.waitSignal(builder.ready, timeout=30000):
        builder.request(str(src))
    qtbot.wait(50)
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)


def test_the_window_shows_a_proxy_build_beside_its_messages(qtbot, window):
    """In its own place in the status bar: a message the user must read stays up."""
    window.statusBar().showMessage("Export of “Final” failed: the disk is full", 8000)
    window.proxies.progress.emit("/media/game.mp4", 0.4)
    assert window.proxy_label.isVisible() and window.proxy_label.text().endswith("40%")
    assert window.statusBar().currentMessage().startswith("Export of “Final” failed")
    window.proxies.ready.emit("/media/game.mp4", "/cache/game.mkv")
    assert window.proxy_label.text() == "Preview ready for smooth scrubbing"


def test_long_media_is_previewed_from_the_file_without_a_proxy(qtbot, window, lib, tiny_video, monkeypatch):
    """A proxy is built of the whole file, ~40 times its size: for a 90-minute game that is half
    an hour of CPU and gigabytes, started again each session. Past PROXY_MAX_MEDIA_S the preview
    seeks in the original (here the limit is lowered under the 2 s test clip); shorter media
    still gets its proxy."""
    import app.ui.framing_editor as fe

    cache = Path(lib.data_dir) / "cache" / "proxies"
    monkeypatch.setattr(fe, "PROXY_MAX_MEDIA_S", 1.0)
    pid = lib.create_project("Whole game")
    cid = lib.add_clip(pid, tiny_video)
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id == cid, timeout=5000)
    (media,) = editing.live_media_paths(lib)
    qtbot.waitUntil(lambda: window.framing.view.image is not None, timeout=5000)  # the frame is shown
    qtbot.wait(1500)
    assert not proxy_path(cache, media).exists() and not window.proxies._queue

    monkeypatch.setattr(fe, "PROXY_MAX_MEDIA_S", 600.0)
    window.framing._proxied = None
    window.framing._use_proxies(s.media_paths)
    qtbot.waitUntil(lambda: proxy_path(cache, media).exists(), timeout=30000)
