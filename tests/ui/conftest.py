"""Fixtures for the UI tests: a real MainWindow (offscreen) on a throwaway data directory, with
export renderers that are fast and controllable (the real pipeline has its own tests)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest


class FakeRenderer:
    """Reports progress in ``steps`` steps of ``delay`` s, honours cancel, writes a tiny MP4."""

    def __init__(self, steps: int = 10, delay: float = 0.05, work: bool = False):
        self.steps, self.delay, self.work = steps, delay, work
        self.started = threading.Event()
        self.nice: int | None = None  # the OS priority (nice) the export thread ran at, on Linux

    def __call__(self, plan, out_path, progress, should_cancel):
        from app.pipeline.plan import Cancelled, RenderResult
        from tests.media import make_video

        if sys.platform.startswith("linux"):
            self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.started.set()
        for i in range(self.steps):
            if should_cancel():
                raise Cancelled()
            if self.work:  # real CPU work on this thread (GIL pressure for the stall probe)
                make_video(Path(out_path).with_suffix(f".w{i}.mp4"), width=320, height=180, duration=0.2)
                Path(out_path).with_suffix(f".w{i}.mp4").unlink()
            else:
                time.sleep(self.delay)
            progress((i + 1) / self.steps)
        make_video(out_path, width=90, height=160, duration=1.0)
        return RenderResult(str(out_path), 90, 160, 1.0, "CPU")


@pytest.fixture
def renderer():
    return FakeRenderer()


@pytest.fixture
def window(qtbot, lib, renderer):
    yield from _window(qtbot, lib, {"framing": renderer, "overlay": renderer})


@pytest.fixture
def real_window(qtbot, lib):
    """The window with the real export pipeline (on the CPU)."""
    yield from _window(qtbot, lib, None)


def _window(qtbot, lib, renderers):
    from PySide6.QtCore import QCoreApplication, QSettings

    from app.jobs.service import ExportService, Settings
    from app.ui.main_window import MainWindow

    QCoreApplication.setOrganizationName("ReelforgeTests")
    # each test's window starts from no saved settings (sort order, splitters, geometry), in a
    # folder of its own: not the user's, and not what the previous test left
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(lib.data_dir / "settings"))
    svc = ExportService(lib, Settings(device="cpu"), **({"renderers": renderers} if renderers else {}))
    win = MainWindow(lib, svc, poll_ms=200)
    win._cancel_exports_on_quit = True  # closing at a test's end cancels what it left running, without asking
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    yield win
    for s in win.sessions.values():
        s.flush()
    win.close()


@pytest.fixture(scope="session")
def tiny_video(media_dir):
    from tests.media import make_video

    return make_video(media_dir / "tiny.mp4", width=320, height=180, fps=30, duration=2.0)


def qimage_rgb(img):
    """A QImage's pixels as an (h, w, 3) uint8 array, copied while the converted image is alive
    (PySide's bits view does not keep it alive: reading after the return read freed memory)."""
    import numpy as np
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB888)
    buf = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return buf[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def overlay_with_working_video(qtbot, window, lib, video, name: str):
    """A project open in the overlay editor once its framing export has made the working video:
    (project id, session)."""
    pid = lib.create_project(name)
    lib.add_clip(pid, video)
    s = window.open_project(pid, "overlay")
    qtbot.waitUntil(lambda: s.doc is not None, timeout=5000)
    window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: bool((s.doc.get("working_video") or {}).get("local")), timeout=20000)
    return pid, s


def wait_rows(qtbot, win, n: int, timeout: int = 5000):
    qtbot.waitUntil(lambda: len(win.model.rows) == n, timeout=timeout)


def row(win, project_id: str) -> dict:
    from app.ui.project_grid import ROW_ROLE

    i = win.model.row_of(project_id)
    assert i >= 0
    return win.model.index(i).data(ROW_ROLE)
