"""Keys as an editor's user presses them: real key events through Qt's shortcut machinery."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.ui.test_ui_framing import db_clip, open_editor


def _focused(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=3000)
    return QApplication.focusWidget()


def test_an_opened_project_takes_the_players_keys_at_once(qtbot, window, lib, tiny_video):
    """Open a project and press the keys: they reach the editor, not the header's "Projects"
    button that Qt's page switch left the focus on (space used to go back to the grid)."""
    _pid, _cid, _s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    w = _focused(qtbot, window)
    assert ed.isAncestorOf(w)
    qtbot.keyClick(w, Qt.Key.Key_Right)
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert abs(ed.t - 2 / 30) < 1e-6
    qtbot.keyClick(w, Qt.Key.Key_End)
    assert abs(ed.t - (2.0 - 1 / 30)) < 1e-6  # the last frame of the 2 s clip
    qtbot.keyClick(w, Qt.Key.Key_Home)
    assert ed.t == 0.0
    qtbot.keyClick(w, Qt.Key.Key_Space)
    assert window.pages.currentWidget() is window.editor_page and ed.rate == 1.0
    qtbot.keyClick(w, Qt.Key.Key_Space)
    assert ed.rate == 0.0


def _type_speed(qtbot, window, lib, video, text: str):
    """An editor open on a clip, with ``text`` typed over the segment speed: (pid, cid, session)."""
    pid, cid, s = open_editor(qtbot, window, lib, video)
    ed = window.framing
    _focused(qtbot, window)
    ed.speed.setFocus()
    ed.speed.lineEdit().selectAll()
    qtbot.keyClicks(ed.speed, text)
    return pid, cid, s


def test_ctrl_z_in_a_number_field_undoes_the_value_just_committed(qtbot, window, lib, tiny_video):
    pid, cid, s = _type_speed(qtbot, window, lib, tiny_video, "2")
    ed = window.framing
    qtbot.keyClick(ed.speed, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["segments"][0]["speed"] == 2.0, timeout=3000)
    assert QApplication.focusWidget() is ed.speed
    qtbot.keyClick(ed.speed, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["segments"][0]["speed"] == 1.0, timeout=3000)
    assert ed.speed.value() == 1.0
    qtbot.keyClick(ed.speed, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["segments"][0]["speed"] == 2.0, timeout=3000)


def test_esc_while_typing_a_value_puts_the_old_one_back_and_stays(qtbot, window, lib, tiny_video):
    pid, cid, s = _type_speed(qtbot, window, lib, tiny_video, "3")
    ed = window.framing
    qtbot.keyClick(ed.speed, Qt.Key.Key_Escape)
    assert window.pages.currentWidget() is window.editor_page  # still editing
    assert ed.speed.value() == 1.0
    qtbot.keyClick(ed.speed, Qt.Key.Key_Escape)  # not typing any more: Esc is "Back" again
    assert window.pages.currentWidget() is window.grid_page
    s.flush()
    qtbot.wait(200)
    assert db_clip(lib, pid, cid)["segments"][0]["speed"] == 1.0
    assert s.undo_stack.count() == 0


def test_i_and_o_trim_the_clip_to_the_frames_shown(qtbot, window, lib, tiny_video):
    """Frame-accurate in and out points whatever the clip's length (a timeline pixel of a
    90-minute clip is seconds), each an edit Ctrl+Z takes back."""
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    w = _focused(qtbot, window)
    ed.seek(10 / 30)
    qtbot.keyClick(w, Qt.Key.Key_I)
    ed.seek(40 / 30)
    qtbot.keyClick(w, Qt.Key.Key_O)
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["trim"]["end"] < 2.0, timeout=3000)
    trim = db_clip(lib, pid, cid)["trim"]
    assert abs(trim["start"] - 10 / 30) < 1e-6 and abs(trim["end"] - 41 / 30) < 1e-6  # frame 40 is the last kept
    qtbot.keyClick(w, Qt.Key.Key_End)
    assert abs(ed.t - 40 / 30) < 1e-6
    ed.seek(1.9)
    qtbot.keyClick(w, Qt.Key.Key_I)  # after the out point: refused, in words
    assert "before the out point" in window.statusBar().currentMessage()
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["trim"]["end"] == 2.0, timeout=3000)
    assert abs(db_clip(lib, pid, cid)["trim"]["start"] - 10 / 30) < 1e-6
