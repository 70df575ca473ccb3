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
    """The window on a qasync loop: sync runs as asyncio tasks beside Qt (blocking boto3 calls in
    the scheduler's executor); the scheduler is stopped before the library is closed."""
    import asyncio

    import qasync
    from PySide6.QtWidgets import QMessageBox

    from app.services.errors import OperationFailed, UserError
    from app.services.library import open_library
    from app.ui.main_window import MainWindow

    app = make_app()
    try:
        lib = open_library(data_dir)
    except (UserError, OperationFailed) as exc:  # said in a window: no terminal may be watching
        QMessageBox.critical(None, "Reelforge cannot open its library", str(exc))
        return 1
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    win = MainWindow(lib)
    # Qt would stop the loop as the window closes, before the scheduler's stop (an await) could
    # finish: the program ended in "Event loop stopped before Future completed" (exit 1). The
    # window's close ends main() instead; a quit from outside (the session ending) still does.
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)

    async def main() -> None:
        ending = asyncio.Event()
        win.closed.connect(ending.set)
        app.aboutToQuit.connect(ending.set)
        win.show()
        win.sync_ui.start()  # starts the scheduler when a remote is set (or once one is saved)
        await ending.wait()
        await win.sync_ui.stop()

    try:
        with loop:
            loop.run_until_complete(main())
        return 0
    finally:
        app.setQuitOnLastWindowClosed(quit_on_close)
        asyncio.set_event_loop(None)
        lib.close()
