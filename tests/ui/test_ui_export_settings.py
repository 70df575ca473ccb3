"""The export settings dialog: one undoable edit of the project's export_settings in SQLite;
invalid values and "ai" without a weights file get a message and change nothing."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialogButtonBox

from app.ui.export_settings import WEIGHTS_KEY

DEFAULT = {"width": 1080, "height": 1920, "fps": 30.0, "crf": 20, "preset": "veryfast", "upscaler": "lanczos"}


@pytest.fixture(autouse=True)
def no_saved_weights():
    QSettings().remove(WEIGHTS_KEY)
    yield
    QSettings().remove(WEIGHTS_KEY)


def open_dialog(qtbot, window, lib, editor="framing"):
    pid = lib.create_project("Export settings", "9:16")
    s = window.open_project(pid, editor)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=5000)
    getattr(window, editor).settings_btn.click()
    d = window.export_settings_dialog
    qtbot.waitUntil(d.isVisible, timeout=3000)
    return pid, s, d


def fill(d, **fields) -> None:
    edits = {"width": d.width_edit, "height": d.height_edit, "crf": d.crf}
    for name, value in fields.items():
        if name in edits:
            edits[name].setText(value)
        elif name == "upscaler":
            d.upscaler.setCurrentIndex(d.upscaler.findData(value))
        else:  # fps, preset
            getattr(d, name).setCurrentText(value)


def ok(d) -> None:
    d.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def stored(lib, pid) -> dict:
    return lib.document(pid)["export_settings"]


def test_dialog_edit_is_one_undo_step(qtbot, window, lib):
    pid, s, d = open_dialog(qtbot, window, lib)
    assert stored(lib, pid) == DEFAULT
    steps = s.undo_stack.count()
    fill(d, width="720", height="1280", fps="25", crf="18", preset="slow")
    ok(d)
    assert not d.isVisible()
    want = {**DEFAULT, "width": 720, "height": 1280, "fps": 25.0, "crf": 18, "preset": "slow"}
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid) == want, timeout=5000)
    assert s.undo_stack.count() == steps + 1 and s.doc["export_settings"] == want
    window.act_undo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid) == DEFAULT, timeout=5000)
    window.act_redo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid) == want, timeout=5000)
    # a new aspect refits the output size; undoing it brings back the size chosen in the dialog
    window.framing.set_aspect("16:9")
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid)["width"] == 1920, timeout=5000)
    assert stored(lib, pid)["height"] == 1080 and stored(lib, pid)["crf"] == 18
    window.act_undo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: lib.document(pid)["aspect_ratio"] == "9:16", timeout=5000)
    assert stored(lib, pid) == want


@pytest.mark.parametrize("fields, words", [
    ({"crf": "60"}, "crf"),
    ({"crf": "high"}, "crf"),
    ({"fps": "0"}, "fps"),
    ({"width": "1081", "height": "1920"}, "even"),
    ({"width": "1000", "height": "1920"}, "aspect ratio 9:16"),
])
def test_invalid_values_get_a_message_and_change_nothing(qtbot, window, lib, fields, words):
    pid, s, d = open_dialog(qtbot, window, lib, "overlay")
    steps = s.undo_stack.count()
    fill(d, preset="slow", **fields)  # a valid change beside the invalid one is not applied either
    ok(d)
    assert d.isVisible() and words in d.error.text()
    s.flush()
    assert stored(lib, pid) == DEFAULT and s.undo_stack.count() == steps
    d.reject()


def test_ai_upscaler_needs_a_weights_file(qtbot, window, lib, tmp_path):
    pid, s, d = open_dialog(qtbot, window, lib)
    steps = s.undo_stack.count()
    d.weights.setText("")
    ai_item = d.upscaler.model().item(d.upscaler.findData("ai"))
    assert not ai_item.isEnabled() and "needs a weights file" in ai_item.text()  # says so, disabled
    fill(d, upscaler="ai")  # (a project may hold `ai` already, from another device)
    assert d.hint.isVisibleTo(d) and "weights file" in d.hint.text()
    ok(d)
    assert d.isVisible() and "weights file" in d.error.text()
    d.weights.setText(str(tmp_path / "missing.pth"))
    ok(d)
    assert d.isVisible() and "missing.pth" in d.error.text()
    s.flush()
    assert stored(lib, pid) == DEFAULT and s.undo_stack.count() == steps
    assert window.svc.settings.ai_weights is None and not QSettings().value(WEIGHTS_KEY)

    weights = tmp_path / "realesr-general-x4v3.pth"
    weights.write_bytes(b"weights")
    d.weights.setText(str(weights))
    assert "weights file" not in d.hint.text()
    assert ai_item.isEnabled() and ai_item.text() == "AI (Real-ESRGAN compact)"
    ok(d)
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid)["upscaler"] == "ai", timeout=5000)
    # the file is this device's choice, remembered for the next start and handed to the exports
    assert window.svc.settings.ai_weights == str(weights) and QSettings().value(WEIGHTS_KEY) == str(weights)
    window.act_undo.trigger()
    s.flush()
    qtbot.waitUntil(lambda: stored(lib, pid) == DEFAULT, timeout=5000)


@pytest.mark.parametrize("renders_on", ["CPU", "CUDA: NVIDIA H100 80GB HBM3"])
def test_ai_upscaler_on_the_cpu_is_said_to_be_slow(qtbot, window, lib, tmp_path, renders_on):
    qtbot.waitUntil(lambda: window.device != "…", timeout=10000)  # the device found at start
    window.device = renders_on
    _pid, _s, d = open_dialog(qtbot, window, lib)
    weights = tmp_path / "realesr-general-x4v3.pth"
    weights.write_bytes(b"weights")
    d.weights.setText(str(weights))
    assert not d.hint.isVisibleTo(d)  # Lanczos: nothing to say
    fill(d, upscaler="ai")
    if renders_on == "CPU":
        assert d.hint.isVisibleTo(d) and "no GPU on this computer" in d.hint.text() and "hours" in d.hint.text()
    else:
        assert not d.hint.isVisibleTo(d)
    d.reject()


def test_export_menu_opens_the_dialog_only_in_an_editor(qtbot, window, lib):
    window.act_export_settings.trigger()
    assert getattr(window, "export_settings_dialog", None) is None
    pid = lib.create_project("Menu", "1:1")
    s = window.open_project(pid, "overlay")
    qtbot.waitUntil(lambda: s.doc is not None, timeout=5000)
    window.act_export_settings.trigger()
    d = window.export_settings_dialog
    qtbot.waitUntil(d.isVisible, timeout=3000)
    assert (d.width_edit.text(), d.height_edit.text()) == ("1080", "1080")
    d.reject()
