"""The project grid: create/import through the UI, drops, bad input, search/sort, status badges."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from tests.ui.conftest import row, wait_rows


def test_create_project_and_import_clip_through_ui(qtbot, window, lib, tiny_video):
    window.create_project("Game day", "9:16", [str(tiny_video)])
    wait_rows(qtbot, window, 1)
    # the card can show before its clip is in (a poll between the two writes): wait for the clip
    qtbot.waitUntil(lambda: window.model.rows[0]["clip_count"] == 1, timeout=5000)
    r = window.model.rows[0]
    assert r["name"] == "Game day" and r["clip_count"] == 1 and r["status"] == "not_started"
    assert lib.list_projects()[0]["clip_count"] == 1
    # the card's poster arrives from a pool thread
    qtbot.waitUntil(lambda: isinstance(window.model.posters.get(r["id"]), QImage), timeout=5000)
    assert window.grid_page.stack.currentWidget() is window.grid_page.view


def test_drop_video_files_on_the_window(qtbot, window, tiny_video):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tiny_video))])
    ev = QDropEvent(QPoint(50, 50).toPointF(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    wait_rows(qtbot, window, 1)
    assert window.model.rows[0]["name"] == Path(tiny_video).stem


def test_bad_files_change_nothing(qtbot, window, lib, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    window.create_project("Broken", "9:16", [str(empty), str(text)])
    qtbot.waitUntil(lambda: hasattr(window, "last_error"), timeout=5000)
    assert "empty.mp4" in window.last_error and "notes.mp4" in window.last_error
    assert lib.list_projects() == []


def test_empty_state_search_sort_rename_duplicate_delete(qtbot, window, lib):
    assert window.grid_page.stack.currentWidget() is window.grid_page.empty
    a = lib.create_project("Zebra cup")
    lib.create_project("Alpha league")
    wait_rows(qtbot, window, 2)  # another writer (the CLI, say): the poll picks it up
    proxy = window.grid_page.proxy
    window.grid_page.sort.setCurrentIndex(1)  # Name
    assert [proxy.index(i, 0).data() for i in range(2)] == ["Alpha league", "Zebra cup"]
    window.grid_page.search.setText("zeb")
    assert proxy.rowCount() == 1
    window.grid_page.search.setText("nothing like it")
    assert window.grid_page.stack.currentWidget() is window.grid_page.no_match
    window.grid_page.search.clear()
    window.rename_project(a, "Zebra cup final")
    qtbot.waitUntil(lambda: any(r["name"] == "Zebra cup final" for r in window.model.rows), timeout=3000)
    window.duplicate_project(a)
    wait_rows(qtbot, window, 3)
    window.delete_project(a, confirm=False)
    wait_rows(qtbot, window, 2)
    assert a not in [r["id"] for r in lib.list_projects()]
    # each of those is an undoable edit: Edit → Undo in the grid walks them back
    assert window.act_undo.isEnabled() and "Delete" in window.act_undo.text()
    window.act_undo.trigger()  # the delete
    wait_rows(qtbot, window, 3)
    assert a in [r["id"] for r in lib.list_projects()]
    window.act_undo.trigger()  # the duplicate
    wait_rows(qtbot, window, 2)
    window.act_undo.trigger()  # the rename
    qtbot.waitUntil(lambda: any(r["name"] == "Zebra cup" for r in window.model.rows), timeout=3000)
    window.act_redo.trigger()
    qtbot.waitUntil(lambda: any(r["name"] == "Zebra cup final" for r in window.model.rows), timeout=3000)
    window.rename_project(a, "   ")  # refused in words, nothing on the undo stack
    assert window.last_error == "a project needs a name" and "Rename" in window.act_undo.text()


def test_badge_follows_changes_from_another_process_within_a_second(qtbot, window, lib, tiny_video):
    from app.services import editing

    pid = lib.create_project("Other process")
    cid = lib.add_clip(pid, tiny_video)
    wait_rows(qtbot, window, 1)
    assert row(window, pid)["status"] == "not_started"
    editing.set_rotation(lib, cid, 3.0)  # as the CLI would
    qtbot.waitUntil(lambda: row(window, pid)["status"] == "in_framing", timeout=1000)


def test_cards_repaint_from_cache_and_redraw_when_their_project_changes(qtbot, window, lib):
    pid = lib.create_project("Cup final")
    wait_rows(qtbot, window, 1)
    view = window.grid_page.view
    delegate = view.itemDelegate()
    drawn: list[str] = []
    real_draw = delegate._draw
    delegate._draw = lambda p, rect, option, r, *a: (drawn.append(r["name"]), real_draw(p, rect, option, r, *a))

    def card_image() -> QImage:
        rect = view.visualRect(window.grid_page.proxy.index(0, 0))
        return view.viewport().grab(rect).toImage()

    before = card_image()
    drawn.clear()
    view.viewport().repaint()
    assert card_image() == before and drawn == []  # nothing changed: blitted from the cache
    lib.rename_project(pid, "Cup final, second half")
    qtbot.waitUntil(lambda: window.model.rows[0]["name"] == "Cup final, second half", timeout=3000)
    after = card_image()
    assert "Cup final, second half" in drawn and after != before


def test_a_card_shows_the_file_it_imports_and_how_far(qtbot, window, tmp_path):
    from tests.test_import import padded_video

    src = padded_video(tmp_path / "match.mp4")  # 16 MB: read into the store with progress
    seen: list[tuple] = []
    real = window.model.set_importing

    def spy(pid, what, fraction=0.0):
        seen.append((what, fraction))
        real(pid, what, fraction)

    window.model.set_importing = spy
    window.create_project("Match", "9:16", [str(src)])
    qtbot.waitUntil(lambda: bool(window.model.rows) and window.model.rows[0]["clip_count"] == 1, timeout=10000)
    qtbot.waitUntil(lambda: not window.model.importing, timeout=5000)
    shown = [s for s in seen if s[0] is not None]
    assert shown[0] == ("“match.mp4”", 0.0) and shown[-1] == ("“match.mp4”", 1.0)
    assert [f for _, f in shown] == sorted(f for _, f in shown)
    assert seen[-1][0] is None  # cleared when the import is done

    # while a file is read in, the card says so instead of "0 clips", with a bar
    pid = window.model.rows[0]["id"]
    qtbot.waitUntil(lambda: isinstance(window.model.posters.get(pid), QImage), timeout=5000)
    view, delegate = window.grid_page.view, window.grid_page.view.itemDelegate()
    drawn: list[dict] = []
    real_draw = delegate._draw
    delegate._draw = lambda p, rect, option, r, *a: (drawn.append(r), real_draw(p, rect, option, r, *a))

    def card_image() -> QImage:
        rect = view.visualRect(window.grid_page.proxy.index(0, 0))
        return view.viewport().grab(rect).toImage()

    plain = card_image()
    real(pid, "“second half.mp4”", 0.4)
    busy = card_image()
    assert busy != plain and drawn[-1]["importing"] == ("“second half.mp4”", 0.4)
    real(pid, None)
    assert card_image() == plain


def test_an_import_cancelled_from_its_card_leaves_nothing_behind(qtbot, window, lib, tmp_path, data_dir):
    from tests.test_import import padded_video

    pid = lib.create_project("Match")
    wait_rows(qtbot, window, 1)
    first, second = padded_video(tmp_path / "first half.mp4", seed=5), padded_video(tmp_path / "second half.mp4", seed=6)
    window.add_clips(pid, [str(first), str(second)])
    window.cancel_import(pid)  # before the worker reads a byte
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "Import cancelled", timeout=10000)
    assert not hasattr(window, "last_error")  # a cancel is not an error
    assert lib.document(pid)["clips"] == []  # neither file was added
    assert not list((data_dir / "media").glob("*/*")) and not list((data_dir / "tmp").glob("*"))
    assert not window.model.importing and not window._import_stops
    window.add_clips(pid, [str(first)])  # and the next import runs as usual
    qtbot.waitUntil(lambda: len(lib.document(pid)["clips"]) == 1, timeout=10000)


def test_cancelling_the_import_that_made_a_project_takes_the_empty_project_away(qtbot, window, lib, tmp_path):
    import threading

    from tests.test_import import padded_video

    src = padded_video(tmp_path / "match.mp4")
    real_create = window.lib.create_project

    def create_then_cancel(*args):  # the user picks "Cancel import" as soon as the card is there
        pid = real_create(*args)
        window._import_stops.setdefault(pid, threading.Event()).set()
        return pid

    window.lib.create_project = create_then_cancel
    window.create_project("Match", "9:16", [str(src)])
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "Import cancelled", timeout=10000)
    assert lib.list_projects() == [] and not hasattr(window, "last_error")


def test_an_import_the_disk_cannot_hold_is_refused_in_readable_sizes_and_leaves_no_project(
        qtbot, window, lib, tmp_path, monkeypatch):
    """Dropping a file bigger than the free space: one message with sizes a user can read (not
    '0.0 GB free' for 40 MB), and no empty project named after the file left on the grid."""
    import shutil
    from collections import namedtuple

    from tests.test_import import padded_video

    src = padded_video(tmp_path / "match.mp4")
    usage = namedtuple("usage", "total used free")
    # the fault injected: a disk with 40 kB left (a real full disk needs a mount this test cannot make)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 40_000, 40_000))
    window.create_project("Match", "9:16", [str(src)])
    qtbot.waitUntil(lambda: hasattr(window, "last_error"), timeout=10000)
    assert "not enough free space" in window.last_error and "40 KB free" in window.last_error
    window.poll(force=True)
    qtbot.wait(300)
    assert lib.list_projects() == [] and window.model.rows == []


def test_the_sort_order_and_the_editors_splitters_come_back_after_a_restart(qtbot, lib, renderer):
    from tests.ui.conftest import _window

    first = _window(qtbot, lib, {"framing": renderer, "overlay": renderer})
    win = next(first)
    win.grid_page.sort.setCurrentIndex(1)  # Name
    win.framing.splitter.setSizes([400, 500, 300])
    sizes = win.framing.splitter.sizes()
    next(first, None)  # closes the window, as the user does
    second = _window(qtbot, lib, {"framing": renderer, "overlay": renderer})
    again = next(second)
    try:
        assert again.grid_page.proxy.sort_key == "Name" and again.grid_page.sort.currentIndex() == 1
        assert again.framing.splitter.sizes() == sizes
    finally:
        next(second, None)


def test_posters_load_newest_request_first_and_are_kept_within_a_bound(qtbot, window, lib, tiny_video,
                                                                      monkeypatch):
    """At 3,000 projects, a fling to the end of the grid left the cards on screen blank for
    30-140 s behind every card scrolled past, and the posters kept grew to 1.9 GB."""
    from app.ui import project_grid

    monkeypatch.setattr(project_grid, "POSTERS_KEPT", 10)
    ids = [lib.create_project(f"P{i:02d}") for i in range(30)]
    for pid in ids:
        lib.add_clip(pid, tiny_video)
    model = project_grid.ProjectListModel(lib, window.pools)  # no view: no card asks on its own
    model.set_rows(lib.list_projects())
    order = []
    done = model._poster_done
    monkeypatch.setattr(model, "_poster_done", lambda result: (order.append(result[0]), done(result)))
    model.request_posters(ids[:20])  # the cards scrolled past, asked for on the way
    model.request_posters(ids[20:])  # the ones on screen now
    qtbot.waitUntil(lambda: len(order) == 30, timeout=30000)
    assert set(order[:10]) - set(ids[20:]) <= set(order[:project_grid.POSTERS_PER_TURN])
    assert set(ids[20:]) <= set(order[:10 + project_grid.POSTERS_PER_TURN])
    assert len(model.posters) == 10  # the least recently shown were dropped
    assert set(model.posters) <= set(order[-10:])


def test_a_portrait_poster_fits_the_cards_area_not_its_width(tmp_path):
    from app.ui.project_grid import POSTER_BOX
    from app.ui.video import poster_image
    from tests.media import make_video

    portrait = make_video(tmp_path / "phone.mp4", width=320, height=180, duration=0.5, rotation=90)
    tall = make_video(tmp_path / "tall.mp4", width=180, height=320, duration=0.5)
    wide = make_video(tmp_path / "wide.mp4", width=640, height=360, duration=0.5)
    for path, size in ((portrait, (102, 180)), (tall, (102, 180)), (wide, POSTER_BOX)):
        img = poster_image(str(path), 0.0)
        assert abs(img.width() - size[0]) <= 2 and abs(img.height() - size[1]) <= 2, (path.name, img.size())
