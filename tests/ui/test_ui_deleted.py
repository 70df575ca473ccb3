"""An open project deleted from under its editor: by this window's grid while the project still
has work in flight, or by another program. One word of it at most, never a flood of dialogs."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from tests.ui.test_ui_framing import open_editor


def _boxes(window) -> list[QMessageBox]:
    return [w for w in window.findChildren(QMessageBox) if w.isVisible()]


def test_a_project_deleted_from_the_grid_while_it_is_read_again_raises_no_dialogs(qtbot, window, lib, tiny_video):
    """The export of a deleted project ends (cancelled) and the window reads the project again:
    that read used to fail, show "That edit was not applied" and read again, hundreds of dialogs
    a second. Now the session learns the project is gone, quietly, and the delete's undo brings
    it back editable."""
    pid, _cid, s = open_editor(qtbot, window, lib, tiny_video)
    window.show_grid()
    window.delete_project(pid, confirm=False)
    qtbot.waitUntil(lambda: lib.list_projects() == [], timeout=5000)
    s.load()  # what the end of its export does
    qtbot.wait(1000)
    assert _boxes(window) == [] and not hasattr(window, "last_error")

    window.undo_group.undo()  # Edit → Undo in the grid: the delete
    qtbot.waitUntil(lambda: [p["id"] for p in lib.list_projects()] == [pid], timeout=5000)
    window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id is not None, timeout=5000)
    window.framing.add_key()
    qtbot.waitUntil(lambda: len(lib.document(pid)["clips"][0]["crop_keyframes"]) == 1, timeout=5000)
    assert _boxes(window) == []


def test_a_project_deleted_by_another_program_closes_its_editor_with_one_message(qtbot, window, lib, tiny_video):
    from app.services.library import Library

    pid, _cid, s = open_editor(qtbot, window, lib, tiny_video)
    other = Library(lib.data_dir)  # another program on the same data directory
    try:
        other.delete_project(pid)
    finally:
        other.close()
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.grid_page, timeout=5000)
    assert "was deleted elsewhere" in window.last_error
    window.framing.add_key()  # a key press still reaching the hidden editor changes nothing
    qtbot.wait(1000)
    assert len(_boxes(window)) == 1


def test_a_clip_whose_stored_video_is_gone_says_so_in_words(qtbot, window, lib, tmp_path):
    """The library's own copy deleted behind its back: the preview says what happened and what
    to do, not "[Errno 2] No such file or directory: 'file:/…'"."""
    from tests.media import make_video

    src = make_video(tmp_path / "game.mp4", width=160, height=90, duration=1.0)
    pid = lib.create_project("Gone")
    lib.add_clip(pid, src)
    (stored,) = [p for p in (lib.data_dir / "media").glob("*/*") if p.is_file()]
    stored.unlink()
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=5000)
    window.framing.request_frame()
    qtbot.waitUntil(lambda: "missing from the library" in (window.framing.view.message or ""), timeout=5000)
    assert "Errno" not in window.framing.view.message
