"""Exports in a QThreadPool: ExportService.run on a pool thread, progress as Qt signals; the queue panel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.jobs.service import ExportService
from app.throttle import every
from app.ui.workers import Pools


class ExportSignals(QObject):
    queued = Signal(str, str, str)  # job id, project id, kind: in the queue, waiting for a thread
    started = Signal(str, str, str)  # job id, project id, kind
    progress = Signal(str, float)  # job id, 0-100
    finished = Signal(dict)  # the final job dict
    failed = Signal(str, str)  # project id, message (could not even queue)
    joined = Signal(str, str, str)  # project id, kind, id of the live job that already renders it


class ExportRunnable:
    """ExportService.run on a pool thread (started as a callable: QtPool wraps it in a Python-owned QRunnable)."""

    def __init__(self, svc: ExportService, project_id: str, kind: str, signals: ExportSignals,
                 cancel: threading.Event, job_id: str, registry: dict[str, threading.Event]):
        self.svc, self.project_id, self.kind = svc, project_id, kind
        self.signals, self.cancel, self.job_id, self.registry = signals, cancel, job_id, registry

    def run(self) -> None:
        job_id = self.job_id  # queued, its cancel registered, by ExportManager._queue
        self.signals.started.emit(job_id, self.project_id, self.kind)
        def tell(p: float) -> None:
            self.signals.progress.emit(job_id, float(p))

        progress = every(0.1, tell, always=lambda p: p >= 100.0)  # at most 10 signals a second

        try:
            result = self.svc.run(job_id, progress=progress, cancel_event=self.cancel)
        finally:
            self.registry.pop(job_id, None)
        self.signals.finished.emit(result)


class ExportManager(QObject):
    """Starts exports in the export pool and tracks live progress of this process's jobs."""

    jobsChanged = Signal()  # noqa: N815 - Qt naming
    saveRequested = Signal(dict)  # noqa: N815 - a finished job whose video the user wants to save elsewhere

    def __init__(self, svc: ExportService, pools: Pools, parent=None):
        super().__init__(parent)
        self.svc, self.pools = svc, pools
        self.signals = ExportSignals(self)
        self.cancels: dict[str, threading.Event] = {}
        self.waiting: dict[str, dict] = {}  # job id -> {project_id, kind}: queued, no thread yet
        self.live: dict[str, dict] = {}  # job id -> {project_id, kind, progress, t0}
        self.jobs: list[dict] = []  # last polled list (all processes)
        self.signals.started.connect(self._on_started)
        self.signals.progress.connect(self._on_progress)
        self.signals.finished.connect(self._on_finished)

    def start(self, project_id: str, kind: str, job_id: str | None = None) -> None:
        """Queue an export: the job row is written at once (off the GUI thread), so it is seen in
        the queue and the grid, and can be cancelled, while it waits for an export thread."""
        cancel = threading.Event()
        if job_id is not None:  # a restart: its row exists
            self._queue(project_id, kind, job_id, cancel)
            return

        def enqueued(res) -> None:
            jid, new = res
            if not new:  # Export pressed again while the same export runs: no second render
                self.signals.joined.emit(project_id, kind, jid)
                return
            self._queue(project_id, kind, jid, cancel)

        self.pools.submit(lambda: self.svc.enqueue_unless_in_flight(project_id, kind), enqueued,
                          lambda e: self.signals.failed.emit(project_id, str(e)))

    def _queue(self, project_id: str, kind: str, job_id: str, cancel: threading.Event) -> None:
        self.cancels[job_id] = cancel  # Cancel and quitting reach it before it has a thread
        self.waiting[job_id] = {"project_id": project_id, "kind": kind}
        self.signals.queued.emit(job_id, project_id, kind)
        r = ExportRunnable(self.svc, project_id, kind, self.signals, cancel, job_id, self.cancels)
        self.pools.exports.start(r.run)

    def beat(self) -> None:
        """Heartbeat of the queued jobs waiting for a thread (the window's timer calls it)."""
        ids = list(self.waiting)
        if ids:
            self.pools.submit(lambda: self.svc.beat(ids), lambda _r: None, lambda _e: None)

    def cancel(self, job_id: str) -> None:
        ev = self.cancels.get(job_id)
        if ev is not None:
            ev.set()
        self.pools.submit(lambda: self.svc.cancel(job_id), lambda _r: None, lambda _e: None)

    def restart(self, job_id: str) -> None:
        def go():
            return self.svc.restart(job_id)

        def done(new_id):
            info = next((j for j in self.jobs if j["id"] == job_id), None)
            if info:
                self.start(info["project_id"], info["type"], new_id)

        self.pools.submit(go, done, lambda e: self.signals.failed.emit("", str(e)))

    def clear_finished(self) -> None:
        """Forget the ended jobs (their videos stay); the list shows only what is still to come."""
        def done(_n):
            self.jobs = [j for j in self.jobs if j["status"] in ("queued", "running") or j["id"] in self.live]
            self.jobsChanged.emit()

        self.pools.submit(self.svc.clear_finished, done, lambda e: self.signals.failed.emit("", str(e)))

    def set_polled(self, jobs: list[dict]) -> None:
        self.jobs = jobs
        self.jobsChanged.emit()

    def _on_started(self, job_id: str, project_id: str, kind: str) -> None:
        self.waiting.pop(job_id, None)
        self.live[job_id] = {"project_id": project_id, "kind": kind, "progress": 0.0, "t0": time.monotonic()}
        self.jobsChanged.emit()

    def _on_progress(self, job_id: str, p: float) -> None:
        if job_id in self.live:
            self.live[job_id]["progress"] = p
        self.jobsChanged.emit()

    def _on_finished(self, job: dict) -> None:
        self.waiting.pop(job["id"], None)
        self.live.pop(job["id"], None)
        self.jobs = [job if j["id"] == job["id"] else j for j in self.jobs]
        if not any(j["id"] == job["id"] for j in self.jobs):
            self.jobs.insert(0, job)
        self.jobsChanged.emit()

    def eta(self, job_id: str) -> float | None:
        info = self.live.get(job_id)
        if not info or info["progress"] <= 1:
            return None
        elapsed = time.monotonic() - info["t0"]
        return elapsed * (100 - info["progress"]) / info["progress"]


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return ""
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d} left"


class ElidedLabel(QLabel):
    """One line of text cut with "…" to the width it is given; the whole text in its tooltip."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(20, self.width())))


class JobRow(QWidget):
    def __init__(self, mgr: ExportManager, job: dict, name: str, parent=None):
        super().__init__(parent)
        self.mgr, self.job_id = mgr, job["id"]
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        self.label = QLabel()
        self.label.setMinimumWidth(180)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.reason = ElidedLabel()  # why an export failed or stopped, in place of its bar
        self.eta = QLabel()
        self.eta.setMinimumWidth(70)
        self.cancel_btn = QPushButton("Cancel")
        self.restart_btn = QPushButton("Restart")
        self.open_btn = QPushButton("Open output")
        self.open_btn.setToolTip("Show the folder of the library that holds this video")
        self.save_btn = QPushButton("Save as…")
        self.save_btn.setToolTip("Save a copy of this video under a name and in a folder of your choice")
        for w in (self.label, self.bar, self.reason, self.eta, self.cancel_btn, self.restart_btn, self.save_btn,
                  self.open_btn):
            lay.addWidget(w, 1 if w in (self.bar, self.reason) else 0)
        self.cancel_btn.clicked.connect(lambda: mgr.cancel(self.job_id))
        self.restart_btn.clicked.connect(lambda: mgr.restart(self.job_id))
        self.open_btn.clicked.connect(self._open)
        self.save_btn.clicked.connect(lambda: mgr.saveRequested.emit(dict(self.job)))
        self.output = None
        self.job: dict = job
        self.update_job(job, name)

    def update_job(self, job: dict, name: str) -> None:
        live = self.mgr.live.get(job["id"])
        status = "running" if live else job["status"]
        progress = live["progress"] if live else job["progress"]
        self.output, self.job = job.get("output"), job
        shown = status + (" · replaced by a later export" if status == "complete" and job.get("current") is False else "")
        self.label.setText(f"<b>{name}</b> · {job['type']} · {shown}")
        err = job.get("error")
        self.label.setToolTip(err or "")
        self.bar.setValue(int(progress * 10))
        self.bar.setFormat(f"{progress:.0f}%")
        self.eta.setText(_fmt_eta(self.mgr.eta(job["id"])) if live else (job.get("device") or ""))
        active = status in ("queued", "running")
        stopped = status in ("failed", "cancelled", "interrupted")
        self.bar.setVisible(not stopped)
        self.reason.setVisible(stopped)
        if stopped:
            self.reason.setStyleSheet("color: #8a8a8a" if status == "cancelled" else "color: #c62828")
            self.reason.set_full_text(f"{status.capitalize()} at {progress:.0f}%: {err or 'no reason recorded'}")
        self.cancel_btn.setVisible(active)
        self.restart_btn.setVisible(status in ("interrupted", "failed", "cancelled"))
        self.open_btn.setVisible(status == "complete" and bool(self.output))
        self.save_btn.setVisible(status == "complete" and bool(self.output))

    def _open(self) -> None:
        if self.output:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.output).parent)))


class QueuePanel(QWidget):
    """Export queue: every job of this data directory (any process), newest first."""

    def __init__(self, mgr: ExportManager, names: dict[str, str], parent=None):
        super().__init__(parent)
        self.mgr, self.names = mgr, names
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addStretch(1)
        self.clear_btn = QPushButton("Clear finished")
        self.clear_btn.setToolTip("Remove the ended exports from this list (their videos stay)")
        self.clear_btn.clicked.connect(mgr.clear_finished)
        top.addWidget(self.clear_btn)
        outer.addLayout(top)
        self.empty = QLabel("No exports yet. Use Export in the framing or overlay editor.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.area = QScrollArea()
        self.area.setWidgetResizable(True)
        self.inner = QWidget()
        self.rows_layout = QVBoxLayout(self.inner)
        self.rows_layout.addStretch(1)
        self.area.setWidget(self.inner)
        outer.addWidget(self.empty)
        outer.addWidget(self.area)
        self.rows: dict[str, JobRow] = {}
        mgr.jobsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        jobs = list(self.mgr.jobs)[:30]
        ids = [j["id"] for j in jobs]
        for jid in list(self.rows):
            if jid not in ids:
                self.rows.pop(jid).deleteLater()
        for i, j in enumerate(jobs):
            name = self.names.get(j["project_id"], "(deleted project)")
            row = self.rows.get(j["id"])
            if row is None:
                row = JobRow(self.mgr, j, name)
                self.rows[j["id"]] = row
                self.rows_layout.insertWidget(i, row)
            else:
                row.update_job(j, name)
        self.empty.setVisible(not jobs)
        self.area.setVisible(bool(jobs))
        self.clear_btn.setVisible(any(j["status"] not in ("queued", "running") and j["id"] not in self.mgr.live
                                      for j in jobs))
