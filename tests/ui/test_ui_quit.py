"""Closing the window ends the program cleanly: the sync scheduler is stopped (an await on the
qasync loop) before the library is closed, and the exit status is 0. The real entry point runs
in a child process, as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from tests.sync.servers import serve_bucket, use_test_credentials

use_test_credentials()

BUCKET = "reelforge-ui-quit"

# the window closes itself, as the user's click on its close button does, once a sync has run
CHILD = textwrap.dedent("""
    import sys
    from PySide6.QtCore import QTimer
    import app.ui.main_window as mw

    init = mw.MainWindow.__init__

    def patched(self, *a, **k):
        init(self, *a, **k)
        def check():
            sched = self.sync_ui.scheduler
            if sched is not None and sched.cycles >= 1:
                self.close()
            else:
                QTimer.singleShot(50, check)
        QTimer.singleShot(50, check)

    mw.MainWindow.__init__ = patched
    from app.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def s3():
    yield from serve_bucket(BUCKET)


def test_closing_the_window_with_a_remote_set_exits_0(s3, tmp_path):
    from app.services.library import open_library
    from app.storage.sync import config, engine

    data = tmp_path / "lib"
    lib = open_library(data)
    lib.create_project("Kept")
    engine.set_remote(lib.db, config.validate(s3.url, BUCKET, "quit"))
    lib.close()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", REELFORGE_LOG_DIR=str(tmp_path / "log"))
    r = subprocess.run([sys.executable, "-c", CHILD, "--data-dir", str(data)], cwd=str(ROOT), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "error:" not in r.stderr
    log = (tmp_path / "log" / "reelforge.log").read_text()
    assert "Traceback" not in log and "failed" not in log, log[-2000:]
    lib = open_library(data)
    try:
        assert engine.status(lib.db)["pending_changes"] == 0  # the sync ran, then the window closed
    finally:
        lib.close()
