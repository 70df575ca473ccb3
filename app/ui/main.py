"""Application entry: QApplication, the main window on a data directory."""

from __future__ import annotations

import sys
from pathlib import Path


def run(data_dir: Path) -> int:
    from PySide6.QtWidgets import QApplication

    from app.services.library import Library
    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Reelforge")
    app.setOrganizationName("Reelforge")
    app.setStyle("Fusion")
    lib = Library(data_dir)
    win = MainWindow(lib)
    win.show()
    try:
        return app.exec()
    finally:
        lib.close()
