"""The framing editor: crop handles -> keyframes in SQLite, undo/redo, split + speed, trim, aspect, reorder."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from app.pipeline.keyframes import CropKey, crop_at


def _mouse(widget, kind, pos: QPointF, buttons):
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def drag(widget, start: QPointF, end: QPointF, steps: int = 5) -> None:
    left = Qt.MouseButton.LeftButton
    _mouse(widget, QEvent.Type.MouseButtonPress, start, left)
    for i in range(1, steps + 1):
        p = start + (end - start) * (i / steps)
        _mouse(widget, QEvent.Type.MouseMove, p, left)
    _mouse(widget, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def open_editor(qtbot, window, lib, video, aspect="9:16"):
    pid = lib.create_project("Framing test", aspect)
    cid = lib.add_clip(pid, video)
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id == cid, timeout=5000)
    return pid, cid, s


def db_clip(lib, pid, cid) -> dict:
    return next(c for c in lib.document(pid)["clips"] if c["id"] == cid)


def test_drag_crop_handle_makes_a_keyframe_undo_redo(qtbot, window, lib, tiny_video):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    qtbot.waitUntil(lambda: ed.view.image is not None, timeout=5000)  # the decoder thread delivered
    ed.seek(0.5)
    box0 = ed.view.box
    assert box0 == crop_at([], 0.5, 320, 180, 9 / 16)
    handles = ed.view.handle_points(box0)
    start = handles["br"]
    drag(ed.view, start, start + QPointF(-30, -30))
    s.flush()
    qtbot.waitUntil(lambda: bool(db_clip(lib, pid, cid)["crop_keyframes"]), timeout=3000)
    key = db_clip(lib, pid, cid)["crop_keyframes"][0]
    assert abs(key["time"] - 0.5) < 1e-6
    assert key["height"] < 180 and key["x"] == box0.x and key["y"] == box0.y  # top-left corner stayed
    assert abs(key["width"] - round(key["height"] * 9 / 16)) <= 1
    # what the preview draws is crop_at of the stored keyframes
    assert ed.view.box == crop_at([CropKey(**key)], 0.5, 320, 180, 9 / 16)
    assert window.act_undo.isEnabled()
    window.act_undo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["crop_keyframes"] == [], timeout=3000)
    window.act_redo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["crop_keyframes"] == [key], timeout=3000)
    # drag to move: a second keyframe at another time; the grid badge says in framing
    ed.seek(1.5)
    centre = ed.view.to_widget(ed.view.box.cx, ed.view.box.cy)
    drag(ed.view, centre, centre + QPointF(40, 0))
    s.flush()
    qtbot.waitUntil(lambda: len(db_clip(lib, pid, cid)["crop_keyframes"]) == 2, timeout=3000)
    assert lib.list_projects()[0]["status"] == "in_framing"


def test_split_and_speed(qtbot, window, lib, tiny_video):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    ed.seek(1.0)
    ed.split()
    s.flush()
    qtbot.waitUntil(lambda: len(db_clip(lib, pid, cid)["segments"]) == 2, timeout=3000)
    segs = db_clip(lib, pid, cid)["segments"]
    assert abs(segs[0]["end"] - 1.0) < 1e-6 and abs(segs[1]["start"] - 1.0) < 1e-6
    ed.seek(1.5)
    ed.speed.setValue(2.0)
    ed.speed.editingFinished.emit()
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["segments"][1]["speed"] == 2.0, timeout=3000)
    assert db_clip(lib, pid, cid)["segments"][0]["speed"] == 1.0
    assert abs(lib.list_projects()[0]["duration"] - 1.5) < 1e-3  # 1 s + 1 s / 2
    window.act_undo.trigger()  # speed
    window.act_undo.trigger()  # split
    s.flush()
    qtbot.waitUntil(lambda: len(db_clip(lib, pid, cid)["segments"]) == 1, timeout=3000)


def test_delete_key_is_offered_only_on_a_keyframe(qtbot, window, lib, tiny_video):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    ed.seek(0.5)
    assert ed.add_key_btn.isEnabled() and not ed.del_key_btn.isEnabled()  # nothing to delete here
    ed.add_key()
    qtbot.waitUntil(ed.del_key_btn.isEnabled, timeout=3000)
    ed.seek(1.0)
    assert not ed.del_key_btn.isEnabled()
    ed.seek(0.5)  # back on the keyframe's frame
    assert ed.del_key_btn.isEnabled()
    ed.del_key_btn.click()
    qtbot.waitUntil(lambda: not ed.del_key_btn.isEnabled(), timeout=3000)
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["crop_keyframes"] == [], timeout=3000)


def test_trim_never_drops_keyframes(qtbot, window, lib, tiny_video):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    for t in (0.2, 1.0, 1.8):
        ed.seek(t)
        ed.add_key()
    s.flush()
    qtbot.waitUntil(lambda: len(db_clip(lib, pid, cid)["crop_keyframes"]) == 3, timeout=3000)
    keys = db_clip(lib, pid, cid)["crop_keyframes"]
    tl = ed.timeline
    # drag the trim-start handle to 0.6 s and the trim-end handle to 1.4 s on the timeline widget
    y = tl.track().bottom() - 10
    drag(tl, QPointF(tl.x_of(0.0), y), QPointF(tl.x_of(0.6), y))
    drag(tl, QPointF(tl.x_of(2.0), y), QPointF(tl.x_of(1.4), y))
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["trim"]["start"] > 0.5
                    and db_clip(lib, pid, cid)["trim"]["end"] < 1.5, timeout=3000)
    assert db_clip(lib, pid, cid)["crop_keyframes"] == keys  # all three kept, outside the trim too


def test_rotation_aspect_transition_reorder(qtbot, window, lib, tiny_video, sample_video):
    pid, cid, s = open_editor(qtbot, window, lib, tiny_video)
    cid2 = lib.add_clip(pid, sample_video)
    s.load()
    ed = window.framing
    qtbot.waitUntil(lambda: ed.clips.count() == 2, timeout=3000)
    ed.add_key()
    ed.rotation.setValue(55)  # keyboard / programmatic change commits at once
    ed.set_aspect("1:1")
    ed.transition.setCurrentText("dissolve")
    ed.set_transition()
    ed.reorder([cid2, cid])
    s.flush()

    def done():
        doc = lib.document(pid)
        return (doc["aspect_ratio"] == "1:1" and doc["transition"]["type"] == "dissolve"
                and [c["id"] for c in doc["clips"]] == [cid2, cid])

    qtbot.waitUntil(done, timeout=3000)
    c = db_clip(lib, pid, cid)
    assert c["rotation"] == 5.5
    k = c["crop_keyframes"][0]
    assert k["width"] == k["height"]  # refitted to 1:1
    for _ in range(5):
        window.act_undo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: lib.document(pid)["aspect_ratio"] == "9:16", timeout=3000)
    doc = lib.document(pid)
    assert [c["id"] for c in doc["clips"]] == [cid, cid2] and doc["transition"]["type"] == "cut"


def test_m_mutes_and_unmutes_the_preview(qtbot, window, lib, tiny_video):
    from PySide6.QtCore import Qt

    open_editor(qtbot, window, lib, tiny_video)
    ed = window.framing
    window.activateWindow()
    ed.view.setFocus()
    qtbot.waitUntil(lambda: ed.view.hasFocus(), timeout=3000)
    assert not ed.transport.mute.isChecked()
    qtbot.keyClick(ed.view, Qt.Key.Key_M)
    assert ed.transport.mute.isChecked()
    qtbot.keyClick(ed.view, Qt.Key.Key_M)
    assert not ed.transport.mute.isChecked()
