"""The main window: project grid, the two editors, the export queue, menus and status bar."""

from __future__ import annotations

import html
import logging
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QShortcut, QUndoGroup
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QSystemTrayIcon,
    QTabWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs.service import ExportService
from app.limits import MAX_NAME
from app.logs import where_words
from app.services import editing
from app.services.errors import Cancelled, UserError, unexpected_words
from app.services.library import ASPECTS, Library
from app.services.outputs import VIDEO_WORDS, project_output, save_copy, suggested_name
from app.throttle import every
from app.ui.export_settings import ExportSettingsDialog, saved_weights
from app.ui.exports import ExportManager, QueuePanel
from app.ui.framing_editor import FramingEditor
from app.ui.icons import icon
from app.ui.library_ops import LibraryOps
from app.ui.overlay_editor import OverlayEditor
from app.ui.project_grid import (
    ROW_ROLE,
    STATUS_COLORS,
    STATUS_LABELS,
    ProjectFilter,
    ProjectGridView,
    ProjectListModel,
)
from app.ui.session import ProjectSession
from app.ui.sync_ui import SyncController
from app.ui.video import FrameServer, ProxyBuilder, prune_proxies
from app.ui.workers import Pools, collect_on_gui_thread, settle_heap

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mts", ".m2ts", ".3gp", ".mpg", ".mpeg", ".ts")
TITLE_CHARS = 60  # a longer project name is shortened in the editor's header (whole in its tooltip)
VIDEO_FILTER = f"Videos ({' '.join('*' + e for e in VIDEO_EXTS)});;All files (*)"  # for the file dialogs

SHORTCUTS = [
    ("Space", "Play / pause"),
    ("J / K / L", "Play backwards / pause / play forwards (press again: faster)"),
    ("← / →", "Previous / next frame"),
    ("Home / End", "First / last frame of the clip"),
    ("K", "Add a keyframe at the playhead (when paused)"),
    ("S", "Split the segment at the playhead (framing)"),
    ("I / O", "The clip starts / ends at the frame shown (framing)"),
    ("M", "Mute / unmute the preview's sound"),
    ("Delete", "Delete the keyframe on this frame"),
    ("Ctrl+Z", "Undo"),
    ("Ctrl+Shift+Z / Ctrl+Y", "Redo"),
    ("Ctrl+N", "New project"),
    ("Ctrl+I", "Import videos as a new project"),
    ("Ctrl+F", "Search projects"),
    ("Ctrl+E", "Export (in an editor)"),
    ("Ctrl+Shift+S", "Save the exported video as… (in an editor)"),
    ("Esc", "Back to the projects (while typing a value: put the old one back)"),
    ("Enter / F2 / Delete", "Open / rename / delete the selected project (in the projects)"),
]


def device_words() -> tuple[str, str]:
    """("CUDA: <name>" or "CPU", torch version): runs on a worker (imports torch)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:  # the version without importing torch (pick_device imports it only where a GPU may exist)
        version = dist_version("torch")
    except PackageNotFoundError:
        version = "not installed"
    try:
        from app.pipeline.device import describe, pick_device

        return describe(pick_device("auto")), version
    except Exception:  # noqa: BLE001
        try:
            import torch

            if torch.cuda.is_available():
                return f"CUDA: {torch.cuda.get_device_name(0)}", version
        except Exception:  # noqa: BLE001
            pass
        return "CPU", version


class NewProjectDialog(QDialog):
    def __init__(self, parent=None, name: str = ""):
        super().__init__(parent)
        self.setWindowTitle("New project")
        f = QFormLayout(self)
        self.name = QLineEdit(name or "Untitled project")
        self.name.selectAll()
        self.aspect = QComboBox()
        self.aspect.addItems(list(ASPECTS))
        f.addRow("Name", self.name)
        f.addRow("Aspect ratio", self.aspect)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        f.addRow(bb)


class GridPage(QWidget):
    def __init__(self, model: ProjectListModel, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        bar = QHBoxLayout()
        title = QLabel("<span style='font-size:16pt; font-weight:600'>Projects</span>")
        bar.addWidget(title)
        bar.addStretch(1)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search projects…")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(280)
        self.sort = QComboBox()
        self.sort.addItems([f"Sort: {s}" for s in ProjectFilter.SORTS])
        self.new_btn = QPushButton(icon("add"), "New project")
        self.import_btn = QPushButton(icon("clip"), "Import videos…")
        for w in (self.search, self.sort, self.import_btn, self.new_btn):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.proxy = ProjectFilter(self)
        self.proxy.setSourceModel(model)
        self.proxy.set_sort("Recent")
        self.search.textChanged.connect(self.proxy.set_text)
        self.sort.currentIndexChanged.connect(lambda i: self.proxy.set_sort(ProjectFilter.SORTS[i]))
        self.view = ProjectGridView()
        self.view.setModel(self.proxy)
        self.view.setAcceptDrops(False)  # the window takes file drops
        self.empty = QLabel(
            "<div style='text-align:center'>"
            "<p style='font-size:14pt; font-weight:600'>No projects yet</p>"
            "<p>Drop video files anywhere on this window to start a project,<br>"
            "or click <b>New project</b>.</p></div>")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_match = QLabel("No project matches the search.")
        self.no_match.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        for w in (self.empty, self.view, self.no_match):
            self.stack.addWidget(w)
        lay.addWidget(self.stack, 1)
        for sig in (model.modelReset, model.rowsInserted, model.rowsRemoved, self.proxy.layoutChanged,
                    self.proxy.modelReset, self.proxy.rowsInserted, self.proxy.rowsRemoved):
            sig.connect(self.update_state)
        self.model = model
        self.update_state()

    def update_state(self, *_a) -> None:
        if not self.model.rowCount():
            self.stack.setCurrentWidget(self.empty)
        elif not self.proxy.rowCount():
            self.stack.setCurrentWidget(self.no_match)
        else:
            self.stack.setCurrentWidget(self.view)


class EditorPage(QWidget):
    """Header (back, project name, undo state) + tabs Framing | Overlay."""

    back = Signal()

    def __init__(self, framing: FramingEditor, overlay: OverlayEditor, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.back_btn = QToolButton()
        self.back_btn.setIcon(icon("back"))
        self.back_btn.setText("Projects")
        self.back_btn.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.back_btn.clicked.connect(self.back.emit)
        self.title = QLabel()
        # a long name never widens the window: it is shortened, and clipped if there is less room
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status = QLabel()
        top.addWidget(self.back_btn)
        top.addWidget(self.title)
        top.addStretch(1)
        top.addWidget(self.status)
        lay.addLayout(top)
        self.tabs = QTabWidget()
        self.tabs.addTab(framing, "1  Framing")
        self.tabs.addTab(overlay, "2  Overlay")
        lay.addWidget(self.tabs, 1)


def add_files(lib: Library, project_id: str, files: list[str], progress_for) -> tuple[list, list[str], bool]:
    """Add ``files`` as clips (on a pool thread): ([(clip id, file name)], ["name: why" for each
    refused file], whether the user cancelled; a cancel stops at the file being read)."""
    added, bad = [], []
    for i, f in enumerate(files):
        try:
            added.append((lib.add_clip(project_id, f, progress=progress_for(project_id, f, i, len(files))),
                          Path(f).name))
        except Cancelled:
            return added, bad, True
        except Exception as exc:  # noqa: BLE001 - shown to the user in one message
            bad.append(f"{Path(f).name}: {exc}")
    return added, bad, False


SAVE_WAIT_S = 2.0  # how long Export waits for edits still being written before it says so


def _merge_jobs(known: list[dict], fresh: list[dict]) -> list[dict]:
    """The job list with the rows of ``fresh`` (the running jobs, re-read) in place."""
    by_id = {j["id"]: j for j in fresh}
    out = [by_id.pop(j["id"], j) for j in known]
    return list(by_id.values()) + out


class MainWindow(QMainWindow):
    closed = Signal()  # the window accepted its close: the program is ending

    def __init__(self, lib: Library, export_service: ExportService | None = None, poll_ms: int = 1000):
        super().__init__()
        # worker threads (posters, imports, exports) hold the GIL for up to the switch interval
        # at a time; 1 ms instead of 5 ms keeps the GUI thread's turn short when they all run
        sys.setswitchinterval(0.001)
        self.lib = lib
        self.setWindowTitle("Reelforge")
        self.setWindowIcon(icon("reelforge"))
        self.setAcceptDrops(True)
        self.pools = Pools()
        self.svc = export_service or ExportService(lib)
        if self.svc.settings.ai_weights is None:
            self.svc.settings.ai_weights = saved_weights()  # this device's choice (export settings dialog)
        self.exports = ExportManager(self.svc, self.pools, self)
        self.sessions: dict[str, ProjectSession] = {}
        self.undo_group = QUndoGroup(self)
        self.ops = LibraryOps(lib, self)  # rename / duplicate / delete / conflict restore: undoable
        self.ops.changed.connect(lambda _kind: self.poll(force=True))
        self.ops.failed.connect(lambda what, words: self.error(f"{what}: not done", words))
        self.ops.writer.stalled.connect(self._on_unsaved)
        self.ops.writer.resumed.connect(self._on_saved)
        self.undo_group.addStack(self.ops.stack)
        self.undo_group.setActiveStack(self.ops.stack)
        self.current: ProjectSession | None = None
        self.device = "…"
        self.torch_version = "…"

        cache = Path(lib.data_dir) / "cache" / "proxies"
        self.frames = FrameServer(self)
        self.proxies = ProxyBuilder(cache, self)

        self.model = ProjectListModel(lib, self.pools, self)
        self.grid_page = GridPage(self.model)
        self.framing = FramingEditor(self.frames, self.proxies)
        self.overlay = OverlayEditor(self.frames)
        self.editor_page = EditorPage(self.framing, self.overlay)
        self.editor_page.back.connect(self.show_grid)
        self.editor_page.tabs.currentChanged.connect(self._on_tab)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.grid_page)
        self.pages.addWidget(self.editor_page)
        self.setCentralWidget(self.pages)

        self.names: dict[str, str] = {}
        self.queue = QueuePanel(self.exports, self.names)
        self.queue_dock = QDockWidget("Export queue", self)
        self.queue_dock.setObjectName("exportQueue")
        self.queue_dock.setWidget(self.queue)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.queue_dock)

        self.unsaved_label = QLabel()  # shown while the storage refuses an edit's write
        self.unsaved_label.setStyleSheet("color: #ffb74d; font-weight: bold")
        self.unsaved_label.hide()
        self.statusBar().addPermanentWidget(self.unsaved_label)
        self._discard_unsaved = False  # the user chose to quit with edits not saved
        self._cancel_exports_on_quit = False  # the user chose to quit while exports run
        self._import_stops: dict[str, threading.Event] = {}  # project id -> "stop its import"
        self._quitting = threading.Event()  # imports in flight stop when the window closes
        self.proxy_label = QLabel()  # a clip's scrubbing preview being built: how far (its own place,
        self.proxy_label.hide()      # so that it never hides a message the user must read)
        self._proxy_label_timer = QTimer(self, singleShot=True, interval=3000, timeout=self.proxy_label.hide)
        self.statusBar().addPermanentWidget(self.proxy_label)
        self.device_label = QLabel("Renders on: …")
        self.device_label.setMinimumWidth(160)
        self.statusBar().addPermanentWidget(self.device_label)
        self.sync_ui = SyncController(self)  # the scheduler starts on the qasync loop (app.ui.main)
        self.statusBar().addPermanentWidget(self.sync_ui.badge)
        self.tray = QSystemTrayIcon(icon("reelforge"), self) if QSystemTrayIcon.isSystemTrayAvailable() else None
        if self.tray:
            self.tray.show()
        self.notifications: list[str] = []

        self._build_menus()
        self._wire()
        self._restore_geometry()

        self._poll_sig = None
        self._polling = self._poll_again = False
        self._full_read_at, self._full_read_s = 0.0, 0.0  # the last full re-read: when, how long
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(poll_ms)
        self.poll_timer.timeout.connect(self.poll)
        self.poll_timer.start()
        self.beat_timer = QTimer(self)  # queued exports waiting for a thread are not "gone"
        self.beat_timer.setInterval(2000)
        self.beat_timer.timeout.connect(self.exports.beat)
        self.beat_timer.start()
        self.poll(force=True)
        self.pools.submit(device_words, self._on_device)
        self.pools.submit(lambda: prune_proxies(cache, editing.live_media_paths(lib)))
        settle_heap()
        self.collector = collect_on_gui_thread()

    # ------------------------------------------------------------------ setup
    def _build_menus(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_new = fm.addAction(icon("add"), "&New project…", self.new_project_dialog)
        self.act_new.setShortcut(QKeySequence.StandardKey.New)
        self.act_import = fm.addAction(icon("clip"), "&Import videos as a new project…", self.import_dialog)
        self.act_import.setShortcut(QKeySequence("Ctrl+I"))
        self.act_export = fm.addAction(icon("export"), "&Export", self.export_current)
        self.act_export.setShortcut(QKeySequence("Ctrl+E"))
        self.act_export_settings = fm.addAction(icon("settings"), "Export se&ttings…", self.export_settings_current)
        self.act_save_video = fm.addAction("&Save exported video as…", self.save_current_output)
        self.act_save_video.setShortcut(QKeySequence("Ctrl+Shift+S"))
        fm.addSeparator()
        fm.addAction("&Quit", self.close).setShortcut(QKeySequence.StandardKey.Quit)
        em = mb.addMenu("&Edit")
        self.act_undo = self.undo_group.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts([QKeySequence.StandardKey.Undo])
        self.act_redo = self.undo_group.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        em.addAction(self.act_undo)
        em.addAction(self.act_redo)
        fsearch = QAction("Find", self)
        fsearch.setShortcut(QKeySequence.StandardKey.Find)
        fsearch.triggered.connect(lambda: (self.show_grid(), self.grid_page.search.setFocus()))
        self.addAction(fsearch)
        esc = QAction("Back", self)
        esc.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        esc.triggered.connect(self.show_grid)
        self.addAction(esc)
        sm = mb.addMenu("&Sync")
        sm.addAction("Sync &now", lambda: self.sync_ui.sync_now())
        sm.addAction("&Remote settings…", lambda: self.sync_ui.show_settings())
        sm.addAction("&Conflicts…", lambda: self.sync_ui.show_conflicts())
        vm = mb.addMenu("&View")
        vm.addAction(self.queue_dock.toggleViewAction())
        hm = mb.addMenu("&Help")
        hm.addAction("&Keyboard shortcuts", self.show_shortcuts).setShortcut(QKeySequence("F1"))
        hm.addAction("&About Reelforge", self.show_about)

    def _wire(self) -> None:
        g = self.grid_page
        g.new_btn.clicked.connect(self.new_project_dialog)
        g.import_btn.clicked.connect(self.import_dialog)
        g.view.doubleClicked.connect(lambda idx: self.open_project(idx.data(Qt.ItemDataRole.UserRole)["id"]))
        for keys, fn in (((Qt.Key.Key_Return, Qt.Key.Key_Enter), self.open_project),
                         ((Qt.Key.Key_F2,), self.rename_dialog),
                         ((Qt.Key.Key_Delete,), self.delete_project)):
            for key in keys:  # the keyboard on the selected card
                sc = QShortcut(QKeySequence(key), g.view, context=Qt.ShortcutContext.WidgetShortcut)
                sc.activated.connect(lambda fn=fn: self._on_current_card(fn))
        g.view.customContextMenuRequested.connect(self._context_menu)
        self.framing.exportRequested.connect(self.start_export)
        self.overlay.exportRequested.connect(self.start_export)
        self.framing.exportSettingsRequested.connect(self.show_export_settings)
        self.overlay.exportSettingsRequested.connect(self.show_export_settings)
        self.framing.addClipsRequested.connect(self.add_clips_dialog)
        self.framing.message.connect(lambda m: self.statusBar().showMessage(m, 4000))
        self.overlay.message.connect(lambda m: self.statusBar().showMessage(m, 4000))
        self.exports.signals.progress.connect(self._on_export_progress)
        self.exports.signals.finished.connect(self._on_export_finished)
        self.exports.signals.failed.connect(lambda _p, m: self.error("Cannot export", m))
        self.exports.signals.joined.connect(self._on_export_joined)
        self.exports.saveRequested.connect(lambda job: self.save_output_as(job["project_id"], job["type"], job["output"]))
        self.exports.signals.started.connect(lambda *_a: self.poll(force=True))
        self.exports.signals.started.connect(lambda *_a: self._on_export_progress("", 0))
        self.exports.signals.queued.connect(lambda *_a: self.poll(force=True))
        self.proxies.progress.connect(self._on_proxy_progress)
        self.proxies.ready.connect(lambda *_a: self._on_proxy_progress("", 1.0))

    def _on_proxy_progress(self, _media: str, fraction: float) -> None:
        """The scrubbing preview of a clip being built (a long file takes a while): how far, then
        that it is ready; gone a few seconds after the last word (a build that fails says no more)."""
        self.proxy_label.setText("Preview ready for smooth scrubbing" if fraction >= 1.0
                                 else f"Preparing the preview for smooth scrubbing… {fraction * 100:.0f}%")
        self.proxy_label.show()
        self._proxy_label_timer.start()

    def _restore_geometry(self) -> None:
        st = QSettings()
        geo = st.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 820)
        state = st.value("window/state")
        if state is not None:
            self.restoreState(state)
        for key, split in (("framing/splitter", self.framing.splitter), ("overlay/splitter", self.overlay.splitter)):
            if (saved := st.value(key)) is not None:
                split.restoreState(saved)
        sort = st.value("grid/sort")
        if sort in ProjectFilter.SORTS:
            self.grid_page.sort.setCurrentIndex(ProjectFilter.SORTS.index(sort))

    def _writers(self) -> list:
        """Every serial writer: the library's and each open project's."""
        return [self.ops.writer, *(s.writer for s in self.sessions.values())]

    def _unsaved(self) -> set[str]:
        """Why edits are waiting to be saved (empty when every edit is in the project file)."""
        return {w.stalled_reason or "the project file is busy" for w in self._writers() if w.stalled_reason or w.pending}

    def closeEvent(self, ev) -> None:  # noqa: N802
        stalled = self._unsaved()
        if stalled and not self._discard_unsaved:
            for w in self._writers():  # a refusal that is just ending
                w.flush(1.0)
            stalled = self._unsaved()
        if stalled and not self._discard_unsaved:
            ev.ignore()  # the edits keep being retried while the question is open
            self.unsaved_box = self._ask_before_quitting(
                "Edits not saved", f"Some edits are not saved yet: {'; '.join(sorted(stalled))}.\n\nReelforge "
                "keeps trying while it is open. Quit anyway and lose those edits?", "Quit and lose them",
                "_discard_unsaved")
            return
        running = self._running_exports()
        if running and not self._cancel_exports_on_quit:
            ev.ignore()  # an export minutes long is not thrown away by a stray close
            one = len(running) == 1
            self.exports_box = self._ask_before_quitting(
                "Exports running", f"{'An export is' if one else 'Exports are'} still running: {'; '.join(running)}."
                f"\n\nQuitting cancels {'it' if one else 'them'}; the projects stay as they were.", "Quit and cancel",
                "_cancel_exports_on_quit", keep_text="Keep exporting")
            return
        st = QSettings()
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState())
        st.setValue("framing/splitter", self.framing.splitter.saveState())
        st.setValue("overlay/splitter", self.overlay.splitter.saveState())
        st.setValue("grid/sort", self.grid_page.proxy.sort_key)
        self.poll_timer.stop()
        self.beat_timer.stop()
        for ed in (self.framing, self.overlay):
            ed._flush_pending()  # a slider at rest soon, a speed being typed
        for s in self.sessions.values():
            s.close(0.5 if stalled else 10.0)
        self.ops.close(0.5 if stalled else 10.0)
        for ev_cancel in list(self.exports.cancels.values()):
            ev_cancel.set()
        self._quitting.set()  # an import in flight stops at its next chunk; its temporary copy goes
        self.proxies.stop()
        self.frames.stop()
        self.pools.close(5000)
        super().closeEvent(ev)
        self.closed.emit()

    def _on_device(self, result) -> None:
        self.device, self.torch_version = result
        settle_heap(collect=False)  # what importing torch left alive
        self.device_label.setText(f"Renders on: {self.device}")
        self.device_label.setToolTip("Exports run on this device" + (
            "" if self.device != "CPU" else " (no supported GPU found: exports use the CPU)"))

    # ------------------------------------------------------------------ polling (off the GUI thread)
    def poll(self, force: bool = False) -> None:
        if self._polling:  # a forced poll asked for meanwhile runs when this one is done
            self._poll_again = self._poll_again or force
            return
        self._polling, self._poll_again = True, False
        lib, svc, last = self.lib, self.svc, None if force else self._poll_sig
        # a full re-read costs 0.5-0.8 s of CPU at 3,000 projects: while something changes every
        # second (an edit, another process's export), it runs at most once per 4 times its cost
        full_ok = force or time.monotonic() - self._full_read_at >= 4 * self._full_read_s

        def work():
            sig = editing.change_signature(lib)
            if sig == last:
                return sig, None, None, None
            if last is not None and editing.only_progress_changed(last, sig):
                return sig, None, svc.list_jobs(active_only=True), None
            if not full_ok:
                return last, None, None, None  # seen again at the next poll
            t0 = time.perf_counter()
            rows, jobs = lib.list_projects(), svc.list_jobs()
            return sig, rows, jobs, time.perf_counter() - t0

        def done(result):
            self._polling = False
            sig, rows, jobs, took = result
            self._poll_sig = sig
            if self._poll_again:
                self.poll(force=True)
            if rows is None:
                if jobs is not None:  # running exports moved on: their rows, not the library
                    self.exports.set_polled(_merge_jobs(self.exports.jobs, jobs))
                    running = {j["project_id"]: j["progress"] for j in jobs if j["status"] == "running"}
                    self.model.set_export_progress(running)
                    self._update_editor_header()
                return
            self._full_read_at, self._full_read_s = time.monotonic(), took
            self.names.clear()
            self.names.update({r["id"]: r["name"] for r in rows})
            self.model.set_rows(rows)
            for r in rows:  # an open project changed elsewhere (a sync pull, another process): show it
                s = self.sessions.get(r["id"])
                if s is not None and s.deleted:
                    s.mark_deleted(False)  # brought back (an undo, here or elsewhere): read again
                elif s is not None and s.doc is not None and s.writer.pending == 0 \
                        and r["updated_at"] != s.doc.get("updated_at"):
                    s.load()
            for pid, s in self.sessions.items():  # not listed: deleted elsewhere? its re-read tells
                if pid not in self.names and not s.deleted and s.doc is not None:
                    s.load()
            if self.pages.currentWidget() is self.grid_page:  # else when the grid is shown
                self.grid_page.proxy.invalidate()  # (show_grid polls in full)
            self.exports.set_polled(jobs)
            self.grid_page.update_state()
            self._update_editor_header()
            self.sync_ui.notify_commit()

        def failed(exc):
            self._polling = False
            log.warning("status poll failed: %s", exc)
            if self._poll_again:
                self.poll(force=True)

        self.pools.submit(work, done, failed, pool=self.pools.poll)

    def _on_export_progress(self, _job_id: str, _p: float) -> None:
        live: dict[str, tuple[str, float]] = {}
        for info in self.exports.live.values():  # a framing export wins the badge, as in the status rule
            if info["project_id"] not in live or info["kind"] == "framing":
                live[info["project_id"]] = (info["kind"], info["progress"])
        self.model.set_live_progress(live)
        self._update_editor_header()  # its badge says the same percentage as the queue

    def _on_export_joined(self, project_id: str, kind: str, _job_id: str) -> None:
        name, what = self.names.get(project_id, "project"), VIDEO_WORDS[kind]
        self.queue_dock.show()
        self.statusBar().showMessage(
            f"The {what} of “{name}” is already being exported from these edits: see the export queue.", 8000)

    def _on_export_finished(self, job: dict) -> None:
        self._on_export_progress("", 0)
        name = self.names.get(job["project_id"], "project")
        kind = VIDEO_WORDS[job["type"]].capitalize()
        if job["status"] == "complete":
            text = f"{kind} of “{name}” is ready."
            if job.get("warnings"):
                text += " Note: " + " ".join(job["warnings"])
        elif job["status"] == "cancelled":
            text = f"Export of “{name}” was cancelled; the project is as it was."
        else:
            text = f"Export of “{name}” failed: {job.get('error')}"
        self.notify("Export finished" if job["status"] == "complete" else "Export stopped", text)
        self.poll(force=True)
        s = self.sessions.get(job["project_id"])
        if s is not None:
            s.load()

    def _on_session_gone(self, s: ProjectSession) -> None:
        """An open project was deleted by another window, the command line or a sync. The
        editor showing it goes back to the grid, once, with the reason; a session that is not
        on screen (deleted from this grid, which said so) goes quietly."""
        if s is not self.current or self.pages.currentWidget() is not self.editor_page:
            return
        name = (s.doc or {}).get("name") or "The project"
        self.show_grid()
        self.error("Project deleted", f"“{name}” was deleted elsewhere (another window, the command line or "
                   "another device).")

    def notify(self, title: str, text: str) -> None:
        self.notifications.append(text)
        self.statusBar().showMessage(text, 8000)
        if self.tray is not None and self.tray.supportsMessages():
            self.tray.showMessage(title, text, icon("reelforge"), 6000)

    def error(self, title: str, text: str) -> None:
        self.statusBar().showMessage(text, 8000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # non-blocking
        self.last_error = text

    # ------------------------------------------------------------------ projects
    def new_project_dialog(self) -> None:
        d = NewProjectDialog(self)
        if d.exec() == QDialog.DialogCode.Accepted:
            self.create_project(d.name.text(), d.aspect.currentText())

    def import_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Import videos", "", VIDEO_FILTER)
        if files:
            self.create_project(Path(files[0]).stem, "9:16", files)

    def create_project(self, name: str, aspect: str = "9:16", files: list[str] | None = None,
                       open_after: bool = False) -> None:
        """Create a project (with clips from ``files``) off the GUI thread. Unreadable files are
        rejected before anything is created, with a message naming them."""
        lib, progress_for, started, stops, quitting = (self.lib, self._import_progress(), [], self._import_stops,
                                                       self._quitting)
        files = [str(f) for f in files or []]

        def work():
            from app.pipeline.probe import probe
            from app.services.media import check_readable_file

            bad, good = [], []
            for f in files:  # by path: two camera cards often hold files of the same name
                try:
                    check_readable_file(Path(f))
                    probe(f)
                    good.append(f)
                except Exception as exc:  # noqa: BLE001 - ProbeError or an unreadable file
                    bad.append(f"{Path(f).name}: {exc}")
            if files and not good:
                return None, bad, False
            pid = lib.create_project(name, aspect)
            started.append(pid)
            added, more, cancelled = add_files(lib, pid, good, progress_for)
            stop = stops.get(pid)
            if cancelled and not added and (quitting.is_set() or (stop is not None and stop.is_set())):
                # cancelled, or the window closed: nothing of it left, no empty project either
                lib.delete_project(pid)
                return None, [], True
            if not added and not cancelled:  # every file refused (a full disk): no empty project left
                lib.delete_project(pid)
                return None, bad + more, False
            return pid, bad + more, cancelled

        def finished() -> None:
            for pid in started:
                self._import_ended(pid)

        def done(result):
            finished()
            pid, bad, cancelled = result
            if cancelled:
                self.statusBar().showMessage("Import cancelled", 4000)
            if bad:
                self.error("Some files could not be imported", "\n".join(bad))
            self.poll(force=True)
            if pid and open_after:
                self.open_project(pid)

        def failed(exc):
            finished()
            self.error("Cannot create the project", str(exc))

        self.statusBar().showMessage(f"Importing {len(files)} file(s)…" if files else "Creating project…", 3000)
        self.pools.submit(work, done, failed)

    def _import_progress(self):
        """``progress_for(project_id, file, i, n)``: a progress(done, total) for ``lib.add_clip``
        that shows the file being read into the store, on the project's card and in the status
        bar, at most four times a second, from any thread."""
        deliver, quitting = self.pools.dispatcher.deliver, self._quitting

        def show(state) -> None:
            pid, what, fraction = state
            self.model.set_importing(pid, what, fraction)
            self.statusBar().showMessage(f"Importing {what}… {fraction * 100:.0f}%", 3000)

        def progress_for(pid: str, file: str, i: int, n: int):
            what = f"“{Path(file).name}”" + (f" ({i + 1} of {n})" if n > 1 else "")
            stop = self._import_stops.setdefault(pid, threading.Event())
            tell = every(0.25, lambda done, total: deliver.emit(show, (pid, what, done / total if total else 1.0)),
                         always=lambda done, total: done == 0 or done >= total)

            def progress(done: int, total: int) -> None:
                if stop.is_set() or quitting.is_set():
                    raise Cancelled("import cancelled")
                tell(done, total)

            return progress

        return progress_for

    def add_clips(self, project_id: str, files: list[str]) -> None:
        lib, progress_for = self.lib, self._import_progress()
        self._import_stops.setdefault(project_id, threading.Event())  # cancellable before it starts

        def done(result):
            self._import_ended(project_id)
            added, bad, cancelled = result
            if cancelled:
                self.statusBar().showMessage("Import cancelled", 4000)
            s = self.sessions.get(project_id)
            for cid, name in added:
                if s is not None:
                    s.clip_added(cid, name)
            if bad:
                self.error("Some files could not be added", "\n".join(bad))
            self.poll(force=True)

        def failed(exc):
            self._import_ended(project_id)
            self.error("Cannot add the clip", str(exc))

        self.statusBar().showMessage(f"Importing {len(files)} file(s)…", 3000)
        self.pools.submit(lambda: add_files(lib, project_id, files, progress_for), done, failed)

    def _import_ended(self, project_id: str) -> None:
        self.model.set_importing(project_id, None)
        self._import_stops.pop(project_id, None)

    def cancel_import(self, project_id: str) -> None:
        """Stop the import running into ``project_id``: the file being read is dropped (the clips
        imported before it stay), the rest are not started."""
        stop = self._import_stops.get(project_id)
        if stop is not None:
            stop.set()

    def add_clips_dialog(self, project_id: str) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add clips", "", VIDEO_FILTER)
        if files:
            self.add_clips(project_id, files)

    def _on_current_card(self, fn) -> None:
        idx = self.grid_page.view.currentIndex()
        if idx.isValid():
            fn(idx.data(Qt.ItemDataRole.UserRole)["id"])

    def rename_dialog(self, project_id: str) -> None:
        old = self.names.get(project_id, "")
        name, ok = QInputDialog.getText(self, "Rename project", "Name", text=old)
        if ok and name.strip():
            self.rename_project(project_id, name)

    def rename_project(self, project_id: str, name: str) -> None:
        old = self.names.get(project_id, "")
        if not name.strip():
            self.error("Cannot rename", "a project needs a name")
        elif len(name.strip()) > MAX_NAME:
            self.error("Cannot rename", f"a project name has at most {MAX_NAME} characters")
        elif name.strip() != old:
            self.ops.rename(project_id, old, name)

    def duplicate_project(self, project_id: str) -> None:
        self.ops.duplicate(project_id, self.names.get(project_id, "project"))

    def delete_project(self, project_id: str, confirm: bool = True) -> None:
        if confirm:
            name = self.names.get(project_id, "this project")
            ans = QMessageBox.question(self, "Delete project",
                                       f"Delete “{name}”? Its clips, edits and exports are removed from this "
                                       "library (Edit → Undo brings them back).",
                                       QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                       QMessageBox.StandardButton.Cancel)
            if ans != QMessageBox.StandardButton.Yes:
                return
        if self.current is not None and self.current.project_id == project_id:
            self.show_grid()
        self.ops.delete(project_id, self.names.get(project_id, "project"))
        self.statusBar().showMessage("Project deleted: Edit → Undo brings it back.", 8000)

    def reveal_outputs(self, project_id: str) -> None:
        def work():
            doc = self.lib.document(project_id)
            for key in ("final_video", "working_video"):
                if doc.get(key) and doc[key]["local"]:
                    return doc[key]["path"]
            return None

        def done(path):
            if path:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))
            else:
                self.statusBar().showMessage("This project has no exported video yet", 4000)

        self.pools.submit(work, done, lambda e: self.error("Cannot show the exported videos", str(e)))

    def save_current_output(self) -> None:
        """File → Save exported video as…: the open project's video of the editor shown (the final
        video from the overlay editor, the working video from the framing editor)."""
        if self.current is None or self.pages.currentWidget() is not self.editor_page:
            self.statusBar().showMessage("Open a project to save its exported video", 4000)
            return
        kind = "framing" if self.editor_page.tabs.currentIndex() == 0 else "overlay"
        self.save_output_as(self.current.project_id, kind)

    def save_output_as(self, project_id: str, kind: str, src: str | None = None, dest: str | None = None) -> None:
        """Save a copy of an exported video (``src``; the project's own when None) as ``dest``
        (asked for with a file dialog when None), in the background with progress."""
        name, what = self.names.get(project_id, "project"), VIDEO_WORDS[kind]
        if src is None:  # the project's own video, fetched from the sync remote if it is not here
            def not_found(exc):
                if isinstance(exc, UserError):
                    self.statusBar().showMessage(f"“{name}” has no {what} yet: export it first", 6000)
                else:
                    self.error("Cannot save the video", str(exc))

            self.pools.submit(lambda: str(project_output(self.lib, project_id, kind)),
                              lambda path: self.save_output_as(project_id, kind, path, dest), not_found)
            return
        if dest is None:
            folder = (QSettings().value("save_folder")
                      or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
                      or str(Path.home()))
            d = QFileDialog(self, f"Save the {what} of “{name}” as", str(Path(folder) / suggested_name(name, kind)),
                            "MP4 video (*.mp4)")
            d.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
            d.setDefaultSuffix("mp4")
            d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            d.fileSelected.connect(lambda path: self.save_output_as(project_id, kind, src, path))
            self.save_dialog = d
            d.open()  # non-blocking
            return
        target, deliver = Path(dest), self.pools.dispatcher.deliver

        def say(f: float) -> None:
            self.statusBar().showMessage(f"Saving “{target.name}”… {f * 100:.0f}%", 3000)

        progress = every(0.25, lambda f: deliver.emit(say, f))

        def saved(path):
            QSettings().setValue("save_folder", str(path.parent))
            self.notify("Video saved", f"The {what} of “{name}” is saved as {path}.")

        self.pools.submit(lambda: save_copy(src, target, progress), saved,
                          lambda e: self.error("Cannot save the video", str(e)))

    def _context_menu(self, pos) -> None:
        view = self.grid_page.view
        idx = view.indexAt(pos)
        if not idx.isValid():
            return
        row = idx.data(Qt.ItemDataRole.UserRole)
        pid = row["id"]
        m = QMenu(self)
        if pid in self.model.importing:
            m.addAction("Cancel import", lambda: self.cancel_import(pid))
            m.addSeparator()
        m.addAction("Open in framing", lambda: self.open_project(pid, "framing"))
        m.addAction("Open in overlay", lambda: self.open_project(pid, "overlay"))
        m.addSeparator()

        m.addAction("Rename…", lambda: self.rename_dialog(pid))
        m.addAction("Duplicate", lambda: self.duplicate_project(pid))
        m.addAction("Reveal outputs", lambda: self.reveal_outputs(pid))
        if row.get("has_final_video"):
            m.addAction("Save final video as…", lambda: self.save_output_as(pid, "overlay"))
        if row.get("has_working_video"):
            m.addAction("Save working video as…", lambda: self.save_output_as(pid, "framing"))
        m.addSeparator()
        m.addAction("Delete…", lambda: self.delete_project(pid))
        m.popup(view.viewport().mapToGlobal(pos))

    def _running_exports(self) -> list[str]:
        """The exports this window runs, in words ("“Saturday final”, working video, 42 %")."""
        return [f"“{self.names.get(info['project_id'], 'project')}”, {VIDEO_WORDS[info['kind']]}, {where}"
                for info, where in [*((i, f"{i['progress']:.0f} %") for i in self.exports.live.values()),
                                    *((i, "waiting") for i in self.exports.waiting.values())]]

    def _ask_before_quitting(self, title: str, text: str, quit_text: str, consent: str,
                             keep_text: str | None = None) -> QMessageBox:
        """Ask without blocking (work goes on meanwhile); the quit button sets the flag ``consent``
        and closes again, which then passes that question."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text,
                          QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        quit_btn = box.button(QMessageBox.StandardButton.Discard)
        quit_btn.setText(quit_text)
        if keep_text:
            box.button(QMessageBox.StandardButton.Cancel).setText(keep_text)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(_result: int) -> None:
            if box.clickedButton() is quit_btn:
                setattr(self, consent, True)
                self.close()

        box.finished.connect(answered)
        box.open()
        return box

    # ------------------------------------------------------------------ editors
    def _on_unsaved(self, why: str) -> None:
        """An edit's write is refused by the storage: it is kept and retried; say so until it is saved."""
        self.unsaved_label.setText(f"⚠ Not saved yet: {why}. Your edits are kept and saved as soon as it can.")
        self.unsaved_label.setToolTip("Reelforge retries every few seconds. Free some disk space or close the "
                                      "program holding the project file; quitting now would lose these edits.")
        self.unsaved_label.show()

    def _on_saved(self, saved: bool) -> None:
        if not any(w.stalled_reason for w in self._writers()):
            self.unsaved_label.hide()
            if saved:
                self.statusBar().showMessage("All edits saved.", 4000)

    def session(self, project_id: str) -> ProjectSession:
        s = self.sessions.get(project_id)
        if s is None:
            s = ProjectSession(self.lib, project_id, self)
            s.error.connect(lambda m: self.error("That edit was not applied", m))
            s.gone.connect(lambda s=s: self._on_session_gone(s))
            s.writer.stalled.connect(self._on_unsaved)
            s.writer.resumed.connect(self._on_saved)
            s.changed.connect(self._update_editor_header)
            s.writer.written.connect(lambda *_a: self.sync_ui.notify_commit())
            self.undo_group.addStack(s.undo_stack)
            self.sessions[project_id] = s
            s.load()
        return s

    def open_project(self, project_id: str, tab: str = "framing") -> ProjectSession:
        s = self.session(project_id)
        self.current = s
        self.undo_group.setActiveStack(s.undo_stack)
        self.framing.set_session(s)
        self.overlay.set_session(s)
        self.editor_page.tabs.setCurrentIndex(0 if tab == "framing" else 1)
        self.pages.setCurrentWidget(self.editor_page)
        self._focus_editor()
        self._update_editor_header()
        return s

    def _focus_editor(self) -> None:
        """The keys (space, arrows, J/K/L, Home/End) go to the editor shown, not to whatever button
        Qt's page switch left the focus on (the header's "Projects": space then went back)."""
        (self.framing if self.editor_page.tabs.currentIndex() == 0 else self.overlay).view.setFocus(
            Qt.FocusReason.OtherFocusReason)

    def show_grid(self) -> None:
        self.framing.set_rate(0.0)
        self.overlay.set_rate(0.0)
        self.pages.setCurrentWidget(self.grid_page)
        self.grid_page.view.setFocus(Qt.FocusReason.OtherFocusReason)  # arrows and Enter pick a card
        self.undo_group.setActiveStack(self.ops.stack)  # in the grid, Edit → Undo undoes library edits
        self.poll(force=True)

    def _on_tab(self, i: int) -> None:
        self.framing.set_rate(0.0)
        self.overlay.set_rate(0.0)
        (self.framing if i == 0 else self.overlay).refresh()
        if self.pages.currentWidget() is self.editor_page:
            self._focus_editor()

    def _update_editor_header(self) -> None:
        s = self.current
        if s is None:
            return
        i = self.model.row_of(s.project_id)
        row = self.model.data(self.model.index(i), ROW_ROLE) if i >= 0 else None  # live export progress
        name = (s.doc or {}).get("name") or (row or {}).get("name", "")
        short = name if len(name) <= TITLE_CHARS else name[:TITLE_CHARS - 1] + "…"
        self.editor_page.title.setText(f"<span style='font-size:14pt; font-weight:600'>{html.escape(short)}</span>")
        self.editor_page.title.setToolTip(name if short != name else "")
        if row:
            label = STATUS_LABELS.get(row["status"], row["status"])
            if row.get("progress") is not None:
                label += f" {row['progress']:.0f}%"
            self.editor_page.status.setText(
                f"<span style='background:{STATUS_COLORS.get(row['status'])}; color:white; "
                f"padding:3px 8px; border-radius:8px'>&nbsp;{label}&nbsp;</span>")

    def export_current(self) -> None:
        if self.current is not None and self.pages.currentWidget() is self.editor_page:
            kind = "framing" if self.editor_page.tabs.currentIndex() == 0 else "overlay"
            self.start_export(self.current.project_id, kind)

    def export_settings_current(self) -> None:
        if self.current is not None and self.pages.currentWidget() is self.editor_page:
            self.show_export_settings(self.current.project_id)
        else:
            self.statusBar().showMessage("Open a project to change its export settings", 4000)

    def show_export_settings(self, project_id: str) -> None:
        s = self.sessions.get(project_id)
        if s is None or s.doc is None:
            return
        d = ExportSettingsDialog(s, self.svc.settings, self, renders_on=self.device)
        d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.export_settings_dialog = d
        d.open()

    def start_export(self, project_id: str, kind: str, until: float | None = None) -> None:
        """Every edit is committed before the export snapshots the project. Edits still being
        written are waited for (2 s at most) by polling, never by blocking the GUI thread."""
        s = self.sessions.get(project_id)
        if s is not None and (s.writer.stalled_reason or s.writer.pending):
            until = time.monotonic() + SAVE_WAIT_S if until is None else until
            if time.monotonic() < until and not s.writer.stalled_reason:
                QTimer.singleShot(50, lambda: self.start_export(project_id, kind, until))
                return
            why = s.writer.stalled_reason or "the project file is busy"
            self.error("Export not started", f"Some edits are not saved yet ({why}), so the export would not "
                       "include them. Reelforge keeps trying to save them: export again in a moment.")
            return
        self.exports.start(project_id, kind)
        self.queue_dock.show()
        self.statusBar().showMessage(f"Export queued ({kind}) — renders on {self.device}", 4000)

    # ------------------------------------------------------------------ drops
    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if not files:
            return
        ev.acceptProposedAction()
        self.handle_dropped_files(files)

    def handle_dropped_files(self, files: list[str]) -> None:
        if self.pages.currentWidget() is self.editor_page and self.current is not None:
            self.add_clips(self.current.project_id, files)
        else:
            self.create_project(Path(files[0]).stem, "9:16", files)

    # ------------------------------------------------------------------ help
    def show_shortcuts(self) -> None:
        d = QDialog(self)
        d.setWindowTitle("Keyboard shortcuts")
        lay = QVBoxLayout(d)
        rows = "".join(f"<tr><td style='padding:3px 14px 3px 0'><b>{k}</b></td><td>{v}</td></tr>"
                       for k, v in SHORTCUTS)
        tb = QTextBrowser()
        tb.setHtml(f"<table>{rows}</table>")
        tb.setMinimumSize(460, 360)
        lay.addWidget(tb)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(d.reject)
        lay.addWidget(bb)
        self.shortcuts_dialog = d
        d.open()

    def about_text(self) -> str:
        import av
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion

        from app import __version__

        try:
            ffmpeg = ".".join(str(x) for x in av.library_versions.get("libavcodec", ()))
            ffmpeg = f"libavcodec {ffmpeg}"
        except Exception:  # noqa: BLE001
            ffmpeg = "unknown"
        return (f"<h3>Reelforge {__version__}</h3><p>Highlight reels from long footage: framing, spotlight, "
                f"GPU exports, R2 sync.</p><p>Qt {qVersion()} · PySide6 {pyside_version}<br>"
                f"FFmpeg (PyAV {av.__version__}): {ffmpeg}<br>torch {self.torch_version}<br>"
                f"Renders on: {self.device}</p><p>Log: {html.escape(where_words())}</p>")

    def report_bug(self, exc: BaseException) -> None:
        """An error no code path expected (a bug): said in a window, one at a time (the same bug
        in a repeating slot would open one per tick), the details in the log."""
        box = getattr(self, "bug_box", None)
        if box is not None and box.isVisible():
            return
        words = unexpected_words(exc)
        self.bug_box = QMessageBox(
            QMessageBox.Icon.Critical, "Reelforge hit a bug",
            f"Something went wrong that Reelforge did not expect: {words}\n\nThe window "
            f"goes on; edits already made are saved. To report it, include the log ({where_words()}).",
            QMessageBox.StandardButton.Ok, self)
        self.bug_box.open()  # non-blocking
        self.last_error = words

    def show_about(self) -> None:
        QMessageBox.about(self, "About Reelforge", self.about_text())
