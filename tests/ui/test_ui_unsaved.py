"""No lost work when the storage refuses a write: the edit stays, is shown as not saved yet, and
is saved, in order with the edits after it, once the storage takes it again.

The refusal is real: another connection holds SQLite's write lock, and the app's busy timeout is
shortened from 30 s to 0.1 s so that the test does not wait half a minute for each refusal.
"""

from __future__ import annotations

import sqlite3

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.ui.test_ui_framing import db_clip, open_editor


def name_of(lib, pid) -> str:
    return next(r["name"] for r in lib.list_projects() if r["id"] == pid)


def hold_write_lock(lib, monkeypatch) -> sqlite3.Connection:
    """Another program takes the project file's write lock; the app waits 0.1 s for it, not 30 s."""
    from app.storage import db as dbmod

    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.1)
    lib.db.engine.dispose()  # the next connections take the short wait
    locker = sqlite3.connect(lib.db.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    return locker


@pytest.fixture(autouse=True)
def _short_retries(monkeypatch):
    from app.ui.workers import SerialWriter

    monkeypatch.setattr(SerialWriter, "RETRY_MAX_S", 1.0)  # the test waits less for the storage's return


def test_a_refused_edit_is_kept_shown_as_unsaved_and_saved_once_the_storage_takes_it(
        qtbot, window, lib, tiny_video, monkeypatch):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    assert s.flush()
    before = db_clip(lib, pid, cid)["trim"]
    ed = window.framing
    locker = hold_write_lock(lib, monkeypatch)
    try:
        ed.set_trim(0.25, 1.5)
        qtbot.waitUntil(lambda: window.unsaved_label.isVisible(), timeout=5000)
        assert "Not saved yet" in window.unsaved_label.text() and "locked" in window.unsaved_label.text()
        ed.set_trim(0.25, 1.0)  # a second edit waits behind the first
        qtbot.wait(700)  # refused again and again
        assert db_clip(lib, pid, cid)["trim"] == before  # nothing reached the file
        assert ed.clip()["trim"] == {"start": 0.25, "end": 1.0}  # but the editor keeps both edits
        assert s.undo_stack.count() == 2 and not hasattr(window, "last_error")  # no "not applied", no revert
        window.close()  # quitting now would lose them: the window asks first, and stays
        qtbot.waitUntil(lambda: window.unsaved_box.isVisible(), timeout=5000)
        assert window.isVisible() and "locked" in window.unsaved_box.text()
        window.unsaved_box.button(QMessageBox.StandardButton.Cancel).click()
        assert window.isVisible()
        window.start_export(pid, "framing")  # it would render the file's state, not the screen's
        assert "not saved yet" in window.last_error and not window.svc.list_jobs()
    finally:
        locker.rollback()
        locker.close()
    qtbot.waitUntil(lambda: not window.unsaved_label.isVisible(), timeout=10000)
    assert s.flush()
    assert db_clip(lib, pid, cid)["trim"] == {"start": 0.25, "end": 1.0}  # saved, in order
    assert ed.clip()["trim"] == {"start": 0.25, "end": 1.0}
    s.undo_stack.undo()
    assert s.flush() and db_clip(lib, pid, cid)["trim"] == {"start": 0.25, "end": 1.5}


def test_quitting_with_unsaved_edits_loses_them_only_when_the_user_says_so(qtbot, window, lib, tiny_video, monkeypatch):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    assert s.flush()
    before = db_clip(lib, pid, cid)["trim"]
    locker = hold_write_lock(lib, monkeypatch)
    try:
        window.framing.set_trim(0.25, 1.5)
        qtbot.waitUntil(lambda: window.unsaved_label.isVisible(), timeout=5000)
        window.close()
        qtbot.waitUntil(lambda: window.unsaved_box.isVisible(), timeout=5000)
        assert window.isVisible()
        window.unsaved_box.button(QMessageBox.StandardButton.Discard).click()  # "Quit and lose them"
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
        qtbot.waitUntil(lambda: s.writer.pending == 0, timeout=5000)  # given up: nothing retried behind it
    finally:
        locker.rollback()
        locker.close()
    assert db_clip(lib, pid, cid)["trim"] == before


def test_a_refused_rename_in_the_grid_waits_and_is_done_once_the_storage_takes_it(qtbot, window, lib, monkeypatch):
    from tests.ui.conftest import row, wait_rows

    pid = lib.create_project("Before")
    window.poll(force=True)
    wait_rows(qtbot, window, 1)
    locker = hold_write_lock(lib, monkeypatch)
    try:
        window.rename_project(pid, "After")
        qtbot.waitUntil(lambda: window.unsaved_label.isVisible(), timeout=5000)
        assert name_of(lib, pid) == "Before" and not hasattr(window, "last_error")
    finally:
        locker.rollback()
        locker.close()
    qtbot.waitUntil(lambda: not window.unsaved_label.isVisible(), timeout=10000)
    assert window.ops.flush() and name_of(lib, pid) == "After"
    qtbot.waitUntil(lambda: row(window, pid)["name"] == "After", timeout=5000)


def test_export_pressed_while_an_edit_is_still_being_written_does_not_freeze_the_window(
        qtbot, window, lib, tiny_video, monkeypatch):
    """Export waits for the edits still being written (2 s at most) by polling, not by blocking
    the GUI thread: with the file locked by another program the click took 2 s to return."""
    import time

    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    assert s.flush()
    locker = hold_write_lock(lib, monkeypatch)
    try:
        window.framing.set_trim(0.25, 1.5)
        t0 = time.monotonic()
        window.start_export(pid, "framing")
        assert time.monotonic() - t0 < 0.2
        qtbot.waitUntil(lambda: "not saved yet" in getattr(window, "last_error", ""), timeout=5000)
        assert not window.svc.list_jobs()  # it would render the file's state, not the screen's
    finally:
        locker.rollback()
        locker.close()
    qtbot.waitUntil(lambda: not window.unsaved_label.isVisible(), timeout=10000)
