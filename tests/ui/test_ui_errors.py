"""Errors no code path expected reach the log and the user, once: a bug in a slot, a background
task that fails without a handler, Qt's own warnings."""

from __future__ import annotations

import logging
import sys


def _raise_in_slot() -> BaseException:
    try:
        {}["missing"]  # noqa: B018 - the bug
    except KeyError as exc:
        return exc
    raise AssertionError("not reached")


def test_a_bug_in_a_slot_is_logged_and_said_once(qtbot, window, caplog):
    from app.ui.main import install_error_hooks

    restore = install_error_hooks(window)
    try:
        exc = _raise_in_slot()
        with caplog.at_level(logging.ERROR, logger="reelforge.gui"):
            for _ in range(3):  # a repeating timer's slot: one window, not three
                sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        restore()
    assert window.bug_box.isVisible()
    assert "KeyError: 'missing'" in window.bug_box.text() and "log" in window.bug_box.text()
    boxes = [w for w in window.findChildren(type(window.bug_box)) if w.isVisible()]
    assert boxes == [window.bug_box]
    records = [r for r in caplog.records if r.name == "reelforge.gui"]
    assert len(records) == 3 and records[0].exc_info[0] is KeyError  # each with its traceback


def test_qt_warnings_go_to_the_log(qtbot, window, caplog):
    from PySide6.QtCore import qWarning

    from app.ui.main import install_error_hooks

    restore = install_error_hooks(window)
    try:
        with caplog.at_level(logging.WARNING, logger="qt"):
            qWarning("a warning from Qt")
    finally:
        restore()
    assert [r.getMessage() for r in caplog.records if r.name == "qt"] == ["a warning from Qt"]


def test_reveal_outputs_of_a_project_deleted_elsewhere_says_so(qtbot, window, lib):
    pid = lib.create_project("Gone")
    lib.delete_project(pid)  # from the CLI, say, while the grid still shows it
    window.last_error = ""
    window.reveal_outputs(pid)
    qtbot.waitUntil(lambda: bool(window.last_error), timeout=5000)
    assert window.last_error == f"no project with id {pid!r}"  # it did nothing at all before
