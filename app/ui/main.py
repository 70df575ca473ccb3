"""Application entry: QApplication, the main window on a data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def make_app():
    from PySide6.QtWidgets import QApplication

    from app.ui import theme
    from app.ui.icons import icon

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Reelforge")
    app.setOrganizationName("Reelforge")
    app.setWindowIcon(icon("reelforge"))
    theme.apply(app, os.environ.get("REELFORGE_THEME") or None)
    return app


def run(data_dir: Path) -> int:
    from app.services.library import Library
    from app.ui.main_window import MainWindow

    app = make_app()
    lib = Library(data_dir)
    win = MainWindow(lib)
    win.show()
    try:
        return app.exec()
    finally:
        lib.close()
