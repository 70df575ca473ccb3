"""The overlay editor's region panel follows the region under the playhead."""

from __future__ import annotations

from tests.ui.conftest import overlay_with_working_video


def test_seeking_into_a_region_selects_it_everywhere(qtbot, window, lib, tiny_video):
    pid, s = overlay_with_working_video(qtbot, window, lib, tiny_video, "Region panel")
    ed = window.overlay
    ed.seek(0.5)
    ed.add_region()
    s.flush()
    qtbot.waitUntil(lambda: len(lib.document(pid)["overlay"]["regions"]) == 1, timeout=3000)
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
