"""The overlay editor's region panel follows the region under the playhead."""

from __future__ import annotations

import pytest

from tests.ui.conftest import overlay_with_working_video


def one_region(qtbot, window, lib, video, name: str, t: float):
    """A project in the overlay editor with one region added at ``t``: (project id, session, editor)."""
    pid, s = overlay_with_working_video(qtbot, window, lib, video, name)
    ed = window.overlay
    ed.seek(t)
    ed.add_region()
    s.flush()
    qtbot.waitUntil(lambda: len(lib.document(pid)["overlay"]["regions"]) == 1, timeout=3000)
    return pid, s, ed


def test_seeking_into_a_region_selects_it_everywhere(qtbot, window, lib, tiny_video):
    pid, s, ed = one_region(qtbot, window, lib, tiny_video, "Region panel", 0.5)
    ed.select_region(-1)  # nothing selected: nothing to delete, and the panel says how to pick one
    assert not ed.del_region_btn.isEnabled() and not ed.del_key_btn.isEnabled()
    assert ed.region_info.text().startswith("Click a region")

    ed.seek(0.75)  # the playhead enters the region: it is the one shown and edited
    qtbot.waitUntil(lambda: ed.selected == 0, timeout=3000)
    assert ed.timeline.selected == 0
    assert ed.del_region_btn.isEnabled()
    assert not ed.del_key_btn.isEnabled()  # its one keyframe is at 0.5 s, not under the playhead
    assert ed.region_info.text().startswith("0.50–1.00 s · 1 keyframe")
    ed.seek(0.5)
    assert ed.del_key_btn.isEnabled()
    ed.delete_region()  # the button acts on what the panel shows
    s.flush()
    qtbot.waitUntil(lambda: lib.document(pid)["overlay"]["regions"] == [], timeout=3000)


def test_a_new_regions_start_handle_moves_on_past_its_first_keyframe(qtbot, window, lib, tiny_video):
    """A new region's keyframe sits on its start, so the start handle could only move back. It
    now moves on, and the spotlight shown at the new start is held there by a keyframe."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    pid, s, ed = one_region(qtbot, window, lib, tiny_video, "Region handle", 0.1)
    [before] = lib.document(pid)["overlay"]["regions"]
    assert (before["start"], [k["time"] for k in before["keyframes"]]) == (0.1, [0.1])
    tl = ed.timeline
    y = int(tl.track().center().y())
    QTest.mousePress(tl, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(round(tl.x_of(0.1)), y))
    assert tl._drag is not None and tl._drag[0] == "start", tl._drag
    QTest.mouseMove(tl, QPoint(round(tl.x_of(0.4)), y))
    assert tl.regions[0]["start"] > 0.3, tl.regions
    QTest.mouseRelease(tl, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(int(tl.x_of(0.4)), y))
    s.flush()
    qtbot.waitUntil(lambda: lib.document(pid)["overlay"]["regions"][0]["start"] > 0.3, timeout=3000)
    [after] = lib.document(pid)["overlay"]["regions"]
    assert after["start"] == after["keyframes"][0]["time"] and len(after["keyframes"]) == 1
    for f in ("x", "y", "rx", "ry"):  # one keyframe: the spotlight is held as it was
        assert after["keyframes"][0][f] == pytest.approx(before["keyframes"][0][f], abs=0.01)


def test_keys_outside_a_resized_region_are_held_at_its_bounds():
    from app.services.editing import region_keys_within

    keys = [{"time": t, "x": x, "y": 100, "rx": 10, "ry": 20} for t, x in ((1.0, 100), (2.0, 200), (3.0, 300))]
    assert region_keys_within(keys, 1.0, 3.0) == keys
    got = region_keys_within(keys, 1.5, 2.5)
    assert [k["time"] for k in got] == [1.5, 2.0, 2.5]
    assert 100 < got[0]["x"] < 200 < got[-1]["x"] < 300  # the spline's values there
    assert region_keys_within(keys, 2.0, 4.0) == [k for k in keys if k["time"] >= 2.0]


def test_undoing_a_region_delete_brings_back_the_same_region(qtbot, window, lib, tiny_video):
    """Same id, not a new region that looks the same: the document is exactly the one before,
    and on other devices the region comes back (a synced undelete), not a copy beside a tombstone."""
    pid, s, ed = one_region(qtbot, window, lib, tiny_video, "Region undo", 0.1)
    before = lib.document(pid)["overlay"]["regions"]
    qtbot.waitUntil(lambda: s.doc["overlay"]["regions"][0]["id"] == before[0]["id"], timeout=3000)

    def step(act, regions) -> None:
        act()
        s.flush()
        qtbot.waitUntil(lambda: lib.document(pid)["overlay"]["regions"] == regions, timeout=3000)

    step(window.act_undo.trigger, [])  # undo the add, redo it: the same region again
    step(window.act_redo.trigger, before)
    qtbot.waitUntil(lambda: s.doc["overlay"]["regions"] == before, timeout=3000)
    ed.select_region(0)
    step(ed.delete_region, [])  # delete it, undo: the same region again
    step(window.act_undo.trigger, before)
    step(window.act_redo.trigger, [])
    step(window.act_undo.trigger, before)
