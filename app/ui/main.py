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


def install_error_hooks(win):
    """Errors that no code path catches reach the log and the user: an exception in a slot (Qt
    hands it to ``sys.excepthook``, which printed it on a stderr that the windowed program does
    not have) is logged with its traceback and said in a window; Qt's own warnings go to the log.
    Returns a function that puts the previous hooks back."""
    import logging

    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    log = logging.getLogger("reelforge.gui")
    qt_log = logging.getLogger("qt")
    levels = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            return previous(exc_type, exc, tb)
        log.error("unexpected error on the GUI thread", exc_info=(exc_type, exc, tb))
        try:
            win.report_bug(exc)
        except Exception:  # noqa: BLE001 - the window itself is broken: the log has it
            log.exception("could not show the error")

    def on_qt_message(mode, _context, message) -> None:
        qt_log.log(levels.get(mode, logging.WARNING), "%s", message)

    previous = sys.excepthook
    sys.excepthook = hook
    previous_qt = qInstallMessageHandler(on_qt_message)

    def restore() -> None:
        sys.excepthook = previous
        qInstallMessageHandler(previous_qt)

    return restore


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
    restore_hooks = install_error_hooks(win)

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
        restore_hooks()
        app.setQuitOnLastWindowClosed(quit_on_close)
        asyncio.set_event_loop(None)
        lib.close()
