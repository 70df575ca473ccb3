"""What a quick or careless hand does in the window: an edit still settling when the project
changes, a speed typed and then a click elsewhere, a keyframe dragged onto another, two camera
cards with files of the same name, closing the window mid-import, a very long name, the keyboard
on the projects. Each keeps the user's work where it belongs and says so when it refuses."""

from __future__ import annotations

import shutil

from PySide6.QtCore import QCoreApplication, QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tests.media import make_video
from tests.ui.conftest import FakeRenderer, overlay_with_working_video


def settle(qtbot, session, ms: int = 150) -> None:
    session.flush()
    qtbot.wait(ms)
    session.flush()


def mouse(widget, kind, pos: QPointF, buttons) -> None:
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons,
                                               Qt.KeyboardModifier.NoModifier))


def drag(widget, start: QPointF, end: QPointF, steps: int = 5) -> None:
    left = Qt.MouseButton.LeftButton
    mouse(widget, QEvent.Type.MouseButtonPress, start, left)
    for i in range(1, steps + 1):
        mouse(widget, QEvent.Type.MouseMove, start + (end - start) * (i / steps), left)
    mouse(widget, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def open_framing(qtbot, window, lib, video, name="F"):
    pid = lib.create_project(name)
    cid = lib.add_clip(pid, video)
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id == cid, timeout=5000)
    return pid, s


def test_a_dim_still_settling_goes_to_its_own_project_when_another_is_opened(qtbot, window, lib, tiny_video):
    pa, sa = overlay_with_working_video(qtbot, window, lib, tiny_video, "A")
    pb, sb = overlay_with_working_video(qtbot, window, lib, tiny_video, "B")
    ov = window.overlay
    window.open_project(pa, "overlay")
    qtbot.waitUntil(lambda: ov.session is sa, timeout=3000)
    b_before = lib.document(pb)["overlay"]["settings"]
    ov.dim.setValue(90)  # dragged in A, and B opened before the slider's edit is committed
    window.open_project(pb, "overlay")
    qtbot.wait(800)
    settle(qtbot, sa)
    settle(qtbot, sb)
    assert lib.document(pa)["overlay"]["settings"]["dim"] == 0.9
    assert lib.document(pb)["overlay"]["settings"] == b_before
    assert ov.dim.value() == round(b_before["dim"] * 100)  # the slider shows B's


def test_a_speed_typed_for_a_segment_is_kept_when_the_timeline_is_clicked(qtbot, window, lib, tiny_video):
    pid, s = open_framing(qtbot, window, lib, tiny_video)
    ed = window.framing
    ed.seek(1.0)
    ed.split()
    settle(qtbot, s)
    ed.seek(0.5)
    window.activateWindow()
    ed.speed.setFocus()
    qtbot.waitUntil(ed.speed.hasFocus, timeout=2000)
    ed.speed.lineEdit().selectAll()
    qtbot.keyClicks(ed.speed.lineEdit(), "2")
    tl = ed.timeline
    p = QPointF(tl.x_of(1.5), tl.track().top() + 40)  # the other segment, before Enter
    mouse(tl, QEvent.Type.MouseButtonPress, p, Qt.MouseButton.LeftButton)
    mouse(tl, QEvent.Type.MouseButtonRelease, p, Qt.MouseButton.NoButton)
    settle(qtbot, s)
    segs = lib.document(pid)["clips"][0]["segments"]
    assert [x["speed"] for x in segs] == [2.0, 1.0]
    assert ed.speed.value() == 1.0  # the box now shows the segment under the playhead
    qtbot.keyClick(ed.speed.lineEdit(), Qt.Key.Key_Return)
    settle(qtbot, s)
    assert [x["speed"] for x in lib.document(pid)["clips"][0]["segments"]] == [2.0, 1.0]


def test_a_keyframe_dragged_onto_another_is_refused_not_merged(qtbot, window, lib, tiny_video):
    pid, s = open_framing(qtbot, window, lib, tiny_video)
    ed = window.framing
    for t, dx in ((0.5, -50), (1.5, 50)):
        ed.seek(t)
        c = ed.view.to_widget(ed.view.box.cx, ed.view.box.cy)
        drag(ed.view, c, c + QPointF(dx, 0))
    settle(qtbot, s)
    keys = lib.document(pid)["clips"][0]["crop_keyframes"]
    assert len(keys) == 2
    tl = ed.timeline
    drag(tl, QPointF(tl.x_of(1.5), tl.key_y()), QPointF(tl.x_of(0.5), tl.key_y()))
    settle(qtbot, s)
    assert lib.document(pid)["clips"][0]["crop_keyframes"] == keys
    assert "already" in window.statusBar().currentMessage()


def test_same_named_files_from_two_cards_one_bad_the_good_one_is_imported(qtbot, window, lib, tiny_video,
                                                                            tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2").mkdir()
    (tmp_path / "cam1" / "GOPR0001.MP4").write_bytes(b"")
    shutil.copy(tiny_video, tmp_path / "cam2" / "GOPR0001.MP4")
    other = make_video(tmp_path / "cam2" / "GOPR0002.MP4", duration=1.0)
    window.create_project("Cards", "9:16", [str(tmp_path / "cam1" / "GOPR0001.MP4"),
                                            str(tmp_path / "cam2" / "GOPR0001.MP4"), str(other)])
    qtbot.waitUntil(lambda: hasattr(window, "last_error"), timeout=8000)
    qtbot.waitUntil(lambda: len(lib.list_projects()) == 1 and lib.list_projects()[0]["clip_count"] == 2,
                    timeout=8000)
    assert "GOPR0001.MP4" in window.last_error and "empty" in window.last_error
    pid = lib.list_projects()[0]["id"]
    assert [c["media"]["filename"] for c in lib.document(pid)["clips"]] == ["GOPR0001.MP4", "GOPR0002.MP4"]


def test_closing_the_window_during_an_import_leaves_no_empty_project(qtbot, lib, tmp_path):
    from app.jobs.service import ExportService, Settings
    from app.ui.main_window import MainWindow
    from tests.test_import import padded_video

    QCoreApplication.setOrganizationName("ReelforgeTests")
    src = padded_video(tmp_path / "match.mp4")
    svc = ExportService(lib, Settings(device="cpu"), renderers={"framing": FakeRenderer(), "overlay": FakeRenderer()})
    win = MainWindow(lib, svc, poll_ms=200)
    qtbot.addWidget(win)
    win.show()
    win.create_project("Match", "9:16", [str(src)])
    qtbot.waitUntil(lambda: bool(win.model.importing), timeout=10000)
    win.close()
    assert lib.list_projects() == []


def test_a_long_name_is_refused_on_rename_and_never_widens_the_window(qtbot, window, lib):
    pid = lib.create_project("Short")
    qtbot.waitUntil(lambda: window.model.row_of(pid) >= 0, timeout=5000)
    window.rename_project(pid, "Saturday final " + "x" * 285)
    assert "at most 200 characters" in window.last_error
    assert lib.list_projects()[0]["name"] == "Short"
    window.open_project(pid)
    qtbot.wait(200)
    short = window.minimumSizeHint().width()
    window.show_grid()
    window.rename_project(pid, "<b>N</b>" * 25)  # 200 characters, markup included
    window.ops.flush()
    qtbot.waitUntil(lambda: lib.list_projects()[0]["name"].startswith("<b>"), timeout=5000)
    window.open_project(pid)
    title = window.editor_page.title
    qtbot.waitUntil(lambda: "&lt;b&gt;" in title.text(), timeout=5000)  # shown as typed
    assert window.minimumSizeHint().width() <= short + 50
    assert "…" in title.text()  # shortened
    assert title.toolTip() == "<b>N</b>" * 25


def test_the_keyboard_opens_the_selected_project(qtbot, window, lib):
    pid = lib.create_project("Keys")
    qtbot.waitUntil(lambda: window.model.row_of(pid) >= 0, timeout=5000)
    v = window.grid_page.view
    window.activateWindow()
    v.setFocus()
    v.setCurrentIndex(window.grid_page.proxy.index(0, 0))
    qtbot.keyClick(v, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.editor_page, timeout=3000)
    assert window.current.project_id == pid


def test_an_edit_in_the_editor_keeps_what_changed_elsewhere_meanwhile(qtbot, window, lib, tiny_video, data_dir):
    """The project open in the editor is changed by another process on the same data directory
    (`reelforge project apply`, or a sync pull): the editor shows it, and an edit made there
    afterwards writes only what it changes, so the other change is not reverted."""
    from app.services.library import Library

    pid, s = open_framing(qtbot, window, lib, tiny_video)
    cid = s.doc["clips"][0]["id"]
    other = Library(data_dir)  # another process
    try:
        other.apply(pid, {"clips": [{"id": cid, "trim": {"start": 0.4, "end": 1.6}}],
                          "export_settings": {"crf": 28}})
    finally:
        other.close()
    ed = window.framing
    ed.rotation.setValue(50)  # an edit made at once, before the window noticed the other one
    settle(qtbot, s, 300)
    doc = lib.document(pid)
    assert doc["clips"][0]["rotation"] == 5.0
    assert doc["clips"][0]["trim"] == {"start": 0.4, "end": 1.6}
    assert doc["export_settings"]["crf"] == 28
    window.act_undo.trigger()  # the undo takes back the rotation only
    settle(qtbot, s, 300)
    doc = lib.document(pid)
    assert doc["clips"][0]["rotation"] == 0.0 and doc["clips"][0]["trim"] == {"start": 0.4, "end": 1.6}
    # and a change made elsewhere while nothing is edited shows up in the open editor
    other = Library(data_dir)
    try:
        other.apply(pid, {"clips": [{"id": cid, "trim": {"start": 0.2, "end": 1.8}}]})
    finally:
        other.close()
    window.poll(force=True)
    qtbot.waitUntil(lambda: s.doc["clips"][0]["trim"] == {"start": 0.2, "end": 1.8}, timeout=5000)
