"""The project's export settings in a dialog: output size, fps, H.264 crf and preset, upscaler.

The fields are checked by the services exactly as `project apply` checks them (an invalid value
gets the service's words and changes nothing); OK applies them as one undoable edit of the
project. The AI upscaler's weights file is this device's choice (QSettings), not the project's:
the dialog refuses "ai" without one, as the export would.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QToolButton,
)

from app.jobs.service import Settings
from app.pipeline.plan import WEIGHTS_NAME
from app.services.document import PRESETS, check_export_settings
from app.services.errors import UserError
from app.services.library import DEFAULT_SIZES
from app.ui.icons import icon
from app.ui.session import ProjectSession

WEIGHTS_KEY = "export/ai_weights"
WEIGHTS_DIR_KEY = "export/ai_weights_dir"
NO_WEIGHTS = (f"The AI upscaler needs a weights file ({WEIGHTS_NAME}) on this computer: choose it below, "
              "or use Lanczos.")
AI_ON_CPU = ("There is no GPU on this computer, so the AI upscaler would run on the CPU: several seconds a "
             "frame (measured: 18 s on 2 cores), hours for a minute of video. Lanczos exports faster than real time.")
SIZES = ((2 / 3, "720p"), (1.0, "1080p"), (4 / 3, "1440p"), (2.0, "4K"))
FPS_CHOICES = ("24", "25", "30", "50", "60")


def settings_button(on_click) -> QToolButton:
    """The button beside an editor's Export button that opens this dialog."""
    b = QToolButton()
    b.setIcon(icon("settings"))
    b.setToolTip("Export settings… (size, frame rate, quality, upscaler)")
    b.setMinimumSize(36, 36)
    b.clicked.connect(on_click)
    return b


def saved_weights() -> str | None:
    """The weights file chosen on this device (None when none is set)."""
    return QSettings().value(WEIGHTS_KEY) or None


def weights_problem(path: str) -> str | None:
    if not path:
        return NO_WEIGHTS
    if not os.path.isfile(path):
        return f"The AI upscaler weights file is not there: {path}"
    return None


class ExportSettingsDialog(QDialog):
    def __init__(self, session: ProjectSession, device: Settings, parent=None, renders_on: str = ""):
        """``renders_on``: the main window's words for the device exports use ("CPU", "CUDA: …")."""
        super().__init__(parent)
        self.session, self.device, self.renders_on = session, device, renders_on
        doc = session.doc or {}
        self.aspect = doc.get("aspect_ratio", "9:16")
        es = doc.get("export_settings") or {}
        self.setWindowTitle(f"Export settings — {doc.get('name', 'project')}")
        form = QFormLayout(self)

        size = QHBoxLayout()
        self.width_edit = QLineEdit(str(es.get("width", "")))
        self.height_edit = QLineEdit(str(es.get("height", "")))
        presets = QToolButton()
        presets.setText("Presets")
        presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(presets)
        dw, dh = DEFAULT_SIZES[self.aspect]
        for f, name in SIZES:
            w, h = round(dw * f / 2) * 2, round(dh * f / 2) * 2
            menu.addAction(f"{w} × {h}  ({name})", lambda w=w, h=h: self.set_size(w, h))
        presets.setMenu(menu)
        for w in (self.width_edit, QLabel("×"), self.height_edit, presets):
            size.addWidget(w)
        form.addRow(f"Output size ({self.aspect})", size)

        self.fps = QComboBox()
        self.fps.setEditable(True)
        self.fps.addItems(FPS_CHOICES)
        self.fps.setCurrentText(f"{es.get('fps', 30):g}")
        form.addRow("Frame rate (fps)", self.fps)
        self.crf = QLineEdit(str(es.get("crf", "")))
        self.crf.setToolTip("H.264 quality, 0–51: lower is better and bigger; 18–23 is usual")
        form.addRow("Quality (CRF 0–51)", self.crf)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(es.get("preset", "veryfast"))
        self.preset.setToolTip("H.264 speed preset: slower makes smaller files of the same quality")
        form.addRow("Encoder preset", self.preset)
        self.upscaler = QComboBox()
        self.upscaler.addItem("Lanczos (high-quality resize)", "lanczos")
        self.upscaler.addItem("AI (Real-ESRGAN compact)", "ai")
        self.upscaler.setCurrentIndex(max(self.upscaler.findData(es.get("upscaler", "lanczos")), 0))
        form.addRow("Upscaler", self.upscaler)

        wrow = QHBoxLayout()
        self.weights = QLineEdit(device.ai_weights or saved_weights() or "")
        self.weights.setPlaceholderText(f"{WEIGHTS_NAME} (this computer only)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse_weights)
        wrow.addWidget(self.weights, 1)
        wrow.addWidget(browse)
        form.addRow("AI weights file", wrow)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #F9A825")
        form.addRow(self.hint)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #E53935")
        form.addRow(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.upscaler.currentIndexChanged.connect(self._update_hint)
        self.weights.textChanged.connect(self._update_hint)
        self._update_hint()
        self.setMinimumWidth(460)

    def set_size(self, w: int, h: int) -> None:
        self.width_edit.setText(str(w))
        self.height_edit.setText(str(h))

    def browse_weights(self) -> None:
        st = QSettings()
        path, _ = QFileDialog.getOpenFileName(self, "AI upscaler weights", st.value(WEIGHTS_DIR_KEY, ""),
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            st.setValue(WEIGHTS_DIR_KEY, str(Path(path).parent))
            self.weights.setText(path)

    def _update_hint(self) -> None:
        # the AI option is offered only with a weights file that is there, and says so (the
        # project may hold `ai` from another device: then it stays chosen, with the hint below)
        item = self.upscaler.model().item(self.upscaler.findData("ai"))
        usable = weights_problem(self.weights.text().strip()) is None
        item.setEnabled(usable)
        item.setText("AI (Real-ESRGAN compact)" if usable else "AI (Real-ESRGAN compact): needs a weights file")
        ai = self.upscaler.currentData() == "ai"
        words = [weights_problem(self.weights.text().strip()) or "", AI_ON_CPU if self.renders_on == "CPU" else ""]
        self.hint.setText("\n\n".join(w for w in words if w) if ai else "")
        self.hint.setVisible(bool(self.hint.text()))

    def values(self) -> dict:
        """The form as the services read it (text where the user types)."""
        return {"width": self.width_edit.text().strip(), "height": self.height_edit.text().strip(),
                "fps": self.fps.currentText().strip(), "crf": self.crf.text().strip(),
                "preset": self.preset.currentText(), "upscaler": self.upscaler.currentData()}

    def accept(self) -> None:
        """Check everything first; only a valid form changes anything (then as one undo step)."""
        try:
            es = check_export_settings(self.values(), self.aspect)
        except UserError as exc:
            self.error.setText(str(exc))
            return
        weights = self.weights.text().strip()
        problem = weights_problem(weights) if es["upscaler"] == "ai" else None
        if problem:
            self.error.setText(problem)
            return
        QSettings().setValue(WEIGHTS_KEY, weights)
        self.device.ai_weights = weights or None
        self.session.edit("Export settings", lambda d: d.__setitem__("export_settings", es))
        super().accept()
