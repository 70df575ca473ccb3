"""Sync in the GUI: the status-bar badge, the conflicts dialog and the remote settings dialog.

The :class:`~app.storage.sync.scheduler.SyncScheduler` runs on the qasync loop (its blocking work
in its own executor); its ``on_status`` callback is marshalled to the GUI thread through a Qt
signal. Everything that touches the database or the network from here runs on a worker thread
(``Pools``): the GUI thread only formats words.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.storage.sync import config as sync_config
from app.storage.sync import engine as sync_engine

log = logging.getLogger(__name__)

STATE_COLORS = {"synced": "#2e7d32", "pending": "#9e6a00", "syncing": "#1565c0", "offline": "#6d6d6d",
                "error": "#c62828", "disabled": "#6d6d6d"}


def badge_words(st: dict | None) -> str:
    """The badge's text for a status dict (``engine.status`` / the scheduler's callback)."""
    if not st or st.get("state") == "disabled":
        return "Sync off"
    state = st["state"]
    n = int(st.get("pending_changes") or 0)
    if state == "synced":
        text = "Synced"
    elif state == "pending":
        text = f"Pending {n}" if n else "Not synced yet"
    elif state == "syncing":
        text = "Syncing…"
    elif state == "offline":
        text = "Offline" + (f" ({n} pending)" if n else "")
    else:
        text = "Sync error"
    conflicts = len(st.get("conflicts") or [])
    if conflicts:
        text += f" · {conflicts} conflict{'s' if conflicts != 1 else ''}"
    return text


def _short(v, limit: int = 60) -> str:
    s = "—" if v is None else str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def value_text(c: dict, v, labels: dict[str, str]) -> str:
    """A conflict's value in words: a clip order (the document's ``clips``, a list of clip ids)
    as the clips' names in that order, anything else as it is."""
    if c["field"] == "clips" and isinstance(v, list):
        return "; ".join(f"{i}. {labels.get(cid, 'a removed clip')}" for i, cid in enumerate(v, 1))
    return "—" if v is None else str(v)


class StatusBridge(QObject):
    """``on_status`` for the scheduler, callable from any thread: re-emitted on the GUI thread."""

    status = Signal(object)

    progress = Signal(str, object, object)  # label ("upload …" / "download …"), bytes done, bytes in all

    def __call__(self, st: dict) -> None:
        try:
            self.status.emit(dict(st))
        except RuntimeError:  # the window is gone
            pass

    def tell_progress(self, label: str, done: int, total: int) -> None:
        try:
            self.progress.emit(label, done, total)
        except RuntimeError:
            pass


class SyncBadge(QWidget):
    """synced / pending N / syncing / offline / error (Retry) / N conflicts, in the status bar."""

    retry = Signal()
    showConflicts = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.retry_btn = QToolButton()
        self.retry_btn.setText("Retry")
        self.retry_btn.clicked.connect(self.retry.emit)
        self.conflicts_btn = QToolButton()
        self.conflicts_btn.clicked.connect(self.showConflicts.emit)
        for w in (self.label, self.retry_btn, self.conflicts_btn):
            lay.addWidget(w)
        self.status: dict | None = None
        self.history: list[str] = []  # states shown, in order (tests, diagnostics)
        self.set_status(None)

    @property
    def text(self) -> str:
        return self.label.text()

    def set_transfer(self, label: str, done: int, total: int) -> None:
        """A video going up or down while syncing: how far, on the badge and in its tooltip."""
        if (self.status or {}).get("state") != "syncing" or total <= 0:
            return
        from app.services.media import size_words

        verb = "Uploading" if label.startswith("upload") else "Downloading"
        self.label.setText(f"Syncing… {verb.lower()} {done * 100 // total}%")
        self.label.setToolTip(f"{verb} a video: {size_words(done)} of {size_words(total)}")

    def set_status(self, st: dict | None) -> None:
        self.status = st
        state = (st or {}).get("state", "disabled")
        if not self.history or self.history[-1] != state:
            self.history.append(state)
        words = badge_words(st)
        self.label.setText(words)
        color = STATE_COLORS.get(state, "#6d6d6d")
        self.label.setStyleSheet(f"QLabel {{ color: white; background: {color}; padding: 2px 8px; "
                                 f"border-radius: 8px; }}")
        tip = [words]
        if st and st.get("last_synced_at"):
            tip.append(f"Last synced {st['last_synced_at']}")
        if st and st.get("error"):
            tip.append(str(st["error"]))
        if st and st.get("waiting_rows"):
            tip.append(f"{st['waiting_rows']} change(s) from other devices wait for changes they need, "
                       "not arrived yet")
        if state == "disabled":
            tip.append("No remote is set: Sync → Remote settings…")
        self.setToolTip("\n".join(tip))
        self.label.setToolTip(self.toolTip())
        self.retry_btn.setVisible(state in ("error", "offline"))
        n = len((st or {}).get("conflicts") or [])
        self.conflicts_btn.setText(f"{n} conflict{'s' if n != 1 else ''}…")
        self.conflicts_btn.setVisible(n > 0)


class ConflictsDialog(QDialog):
    """The open conflicts. "Restore loser" makes the losing value the newest edit (it syncs);
    "Dismiss" closes the conflict and keeps the winner. Both are undoable edits on the library's
    undo stack ("Undo" here, or Edit → Undo in the grid)."""

    changed = Signal()  # a conflict was restored, un-restored or dismissed

    COLUMNS = ["Project / clip", "Field", "Local value", "Remote value", "Winner"]

    def __init__(self, db, pools, ops, names: dict | None = None, parent=None):
        super().__init__(parent)
        self.db, self.pools, self.ops, self.names = db, pools, ops, names or {}
        self.setWindowTitle("Sync conflicts")
        self.resize(760, 360)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Both devices changed these fields; the newest edit was kept everywhere. "
                             "“Restore loser” makes the other value the newest edit."))
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        bb = QDialogButtonBox()
        self.restore_btn = bb.addButton("Restore loser", QDialogButtonBox.ButtonRole.ActionRole)
        self.undo_btn = bb.addButton("Undo", QDialogButtonBox.ButtonRole.ActionRole)
        self.undo_btn.setShortcut(QKeySequence.StandardKey.Undo)
        self.dismiss_btn = bb.addButton("Dismiss", QDialogButtonBox.ButtonRole.ActionRole)
        bb.addButton(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        self.restore_btn.clicked.connect(self.restore)
        self.undo_btn.clicked.connect(self.undo)
        self.dismiss_btn.clicked.connect(self.dismiss)
        lay.addWidget(bb)
        self.conflicts: list[dict] = []
        self.busy = False
        self._mine: list[tuple[object, str]] = []  # (undo command, what it did) of this dialog's edits
        ops.changed.connect(self._on_op)  # after every library edit, its undo and redo
        self._update_undo()
        self.refresh()

    def refresh(self) -> None:
        self.busy = True
        db = self.db
        def load():
            conflicts = sync_engine.status(db)["conflicts"]
            ids = {cid for c in conflicts if c["field"] == "clips"
                   for v in (c["local_value"], c["remote_value"]) if isinstance(v, list) for cid in v}
            return conflicts, (sync_engine.clip_labels(db, ids) if ids else {})

        self.pools.submit(load, self._show, self._failed)

    def _show(self, loaded: tuple[list[dict], dict[str, str]]) -> None:
        self.busy = False
        conflicts, labels = loaded
        self.conflicts = conflicts
        self.table.setRowCount(len(conflicts))
        for i, c in enumerate(conflicts):
            what = c["table"]
            if c["table"] == "project" and c["row_id"] in self.names:
                what += f" “{self.names[c['row_id']]}”"
            else:
                what += f" {c['row_id'][:8]}"
            local, remote = value_text(c, c["local_value"], labels), value_text(c, c["remote_value"], labels)
            cells = [what, c["field"], _short(local), _short(remote),
                     "this device" if c["winner"] == "local" else "the other device"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(local if j == 2 else remote if j == 3 else text)
                self.table.setItem(i, j, item)
        if conflicts and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)
        self.restore_btn.setEnabled(bool(conflicts))
        self.dismiss_btn.setEnabled(bool(conflicts))
        if not conflicts and not self.message.text():
            self.message.setText("No open conflicts.")

    def _failed(self, exc: Exception) -> None:
        self.busy = False
        self.message.setText(str(exc))

    def selected(self) -> dict | None:
        rows = self.table.selectionModel().selectedRows()
        return self.conflicts[rows[0].row()] if rows and rows[0].row() < len(self.conflicts) else None

    def restore(self) -> None:
        self._edit(self.ops.restore_conflict, "The restore of {field}",
                   "Restored the losing value of {field}; it syncs like any edit. “Undo” takes it back.")

    def dismiss(self) -> None:
        self._edit(self.ops.dismiss_conflict, "The dismissal of the conflict on {field}",
                   "Conflict dismissed: the newest value stays. “Undo” brings the conflict back.")

    def _edit(self, op, undo_words: str, done_words: str) -> None:
        """``op`` (a LibraryOps conflict edit) on the selected conflict, remembered for "Undo"."""
        c = self.selected()
        if c is None:
            return
        self.busy = True
        self._mine.append((op(c), undo_words.format(field=c["field"])))
        self._update_undo()
        self.message.setText(done_words.format(field=c["field"]))

    def _top_edit(self) -> tuple[object, str] | None:
        """This dialog's edit on top of the undo stack, if the top one is."""
        st = self.ops.stack
        top = st.command(st.index() - 1) if st.index() > 0 else None
        return next((r for r in self._mine if r[0] is top), None)

    def _update_undo(self, *_a) -> None:
        self.undo_btn.setEnabled(self._top_edit() is not None)

    def undo(self) -> None:
        top = self._top_edit()
        if top is not None:
            self.busy = True
            self.ops.stack.undo()
            self._update_undo()
            self.message.setText(f"{top[1]} was undone; the conflict is open again.")


    def _on_op(self, kind: str) -> None:
        self._update_undo()
        if kind == "conflict":
            self.changed.emit()
            self.refresh()


def check_remote(cfg: sync_config.RemoteConfig, creds: sync_config.Credentials | None) -> tuple[bool, str]:
    """A HEAD on the bucket, once, with short timeouts (blocking: run it on a worker)."""
    from app.storage.sync.remote import Remote, RemoteError, RetryPolicy, Timeouts

    if creds is None:
        return False, ("No credentials: enter an access key id and secret, or set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY.")
    try:
        remote = Remote(cfg, creds, RetryPolicy(attempts=1), Timeouts(connect_s=3, read_s=10))
        remote.call(f"checking bucket {cfg.bucket}", lambda: remote.client.head_bucket(Bucket=cfg.bucket))
    except RemoteError as exc:
        return False, f"Failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - words for the user, never a secret
        return False, f"Failed: {sync_config.redact(f'{type(exc).__name__}: {exc}', creds)}"
    return True, f"Connected: bucket {cfg.bucket} at {cfg.endpoint} is reachable with these credentials."


def keyring_works() -> tuple[bool, str]:
    """(usable, backend name): the null/fail backends of headless systems do not keep anything."""
    try:
        import keyring

        kr = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001
        return False, type(exc).__name__
    name = type(kr).__module__ + "." + type(kr).__name__
    return not any(bad in name for bad in ("null", "fail", "Null", "Fail")), name


class RemoteSettingsDialog(QDialog):
    """Endpoint, bucket, prefix, region, access key id, secret. The remote goes into the database,
    the keys into the OS keyring (``config.store_credentials``), never into SQLite or logs."""

    saved = Signal()

    def __init__(self, db, pools, parent=None):
        super().__init__(parent)
        self.db, self.pools = db, pools
        self.setWindowTitle("Sync remote settings")
        form = QFormLayout(self)
        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText("https://ACCOUNT.r2.cloudflarestorage.com")
        self.bucket = QLineEdit()
        self.prefix = QLineEdit()
        self.region = QLineEdit("auto")
        self.key_id = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_id.setPlaceholderText("leave empty to use the keyring or the AWS environment")
        self.where = QLabel("Looking for the OS keyring…")
        self.where.setWordWrap(True)
        for label, w in (("Endpoint", self.endpoint), ("Bucket", self.bucket), ("Prefix", self.prefix),
                         ("Region", self.region), ("Access key id", self.key_id), ("Secret", self.secret)):
            form.addRow(label, w)
        form.addRow(self.where)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.test_btn = QPushButton("Test connection")
        self.test_btn.clicked.connect(self.test_connection)
        form.addRow(self.test_btn, self.result)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self.save)
        bb.rejected.connect(self.reject)
        form.addRow(bb)
        self.testing = False
        self.keyring_ok: bool | None = None  # None until the worker has looked
        self.pools.submit(self._load, self._loaded)

    def _load(self):
        """On a worker: the stored remote, and whether the OS keyring works (finding its backend
        can take a D-Bus round trip)."""
        return sync_engine.get_remote(self.db), keyring_works()

    def _loaded(self, result) -> None:
        cfg, (ok, backend) = result
        self.keyring_ok = ok
        self.where.setText(
            f"Keys are kept in the OS keyring ({backend}), never in the library database."
            if ok else f"No OS keyring is available here ({backend}): keys typed here are used for "
            f"“Test connection” only and not kept. Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            f"(or ~/.aws/credentials) for syncing; they would otherwise go to the OS keyring, "
            f"service “{sync_config.KEYRING_SERVICE}”.")
        if cfg is not None and not self.endpoint.text():
            self.endpoint.setText(cfg.endpoint)
            self.bucket.setText(cfg.bucket)
            self.prefix.setText(cfg.prefix)
            self.region.setText(cfg.region)

    def config(self) -> sync_config.RemoteConfig:
        return sync_config.validate(self.endpoint.text(), self.bucket.text(), self.prefix.text(),
                                    self.region.text() or "auto")

    def typed_credentials(self) -> sync_config.Credentials | None:
        key, secret = self.key_id.text().strip(), self.secret.text()
        return sync_config.Credentials(key, secret, source="dialog") if key and secret else None

    def checked_config(self) -> sync_config.RemoteConfig | None:
        """The typed remote, or None after saying in the dialog what is wrong with it."""
        try:
            return self.config()
        except sync_config.ConfigError as exc:
            self.result.setText(str(exc))
            return None

    def test_connection(self) -> None:
        cfg = self.checked_config()
        if cfg is None:
            return
        typed = self.typed_credentials()
        self.testing = True
        self.test_btn.setEnabled(False)
        self.result.setText("Testing…")

        def work():
            return check_remote(cfg, typed or sync_config.resolve_credentials())

        def done(r):
            self.testing = False
            self.test_btn.setEnabled(True)
            self.result.setText(r[1])

        def failed(exc):
            done((False, f"Failed: {type(exc).__name__}"))

        self.pools.submit(work, done, failed)

    def save(self) -> None:
        """The typed keys into the OS keyring (IPC that can block: on a worker, like the database
        write), then the remote; nothing is saved when the keys cannot be stored."""
        cfg = self.checked_config()
        if cfg is None:
            return
        typed = self.typed_credentials()
        db = self.db

        def work() -> str | None:
            if typed is not None and keyring_works()[0]:  # without a keyring they are not kept
                try:
                    sync_config.store_credentials(typed.access_key_id, typed.secret_access_key)
                except Exception as exc:  # noqa: BLE001 - the message never holds the secret
                    return (f"The keys could not be stored in the OS keyring ({type(exc).__name__}); "
                            f"set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY instead.")
            sync_engine.set_remote(db, cfg)
            return None

        def done(problem: str | None) -> None:
            if problem:
                self.result.setText(problem)
                return
            self.saved.emit()
            self.accept()

        self.pools.submit(work, done, lambda e: self.result.setText(f"Cannot save: {e}"))


class SyncController(QObject):
    """Owns the badge and the scheduler of a main window. ``start()`` and ``await stop()`` run on
    the qasync loop (``app.ui.main.run``); without a running loop the badge still shows the
    status polled with the window, but nothing syncs in the background."""

    def __init__(self, window, scheduler_kw: dict | None = None):
        super().__init__(window)
        self.win = window
        self.db = window.lib.db
        self.scheduler_kw = scheduler_kw or {}
        self.scheduler = None
        self.bridge = StatusBridge(self)
        self.bridge.status.connect(self._on_status)
        self.bridge.progress.connect(lambda label, done, total: self.badge.set_transfer(label, done, total))
        self.badge = SyncBadge()
        self.badge.retry.connect(self.sync_now)
        self.badge.showConflicts.connect(self.show_conflicts)
        self.dialogs: dict[str, QDialog] = {}
        self.started = False
        self._refreshing = False

    # ------------------------------------------------------------------ scheduler
    def start(self) -> None:
        """Call inside the running asyncio loop: starts the scheduler when a remote is set."""
        self.started = True
        self.win.pools.submit(lambda: sync_engine.status(self.db), self._maybe_start)

    def _maybe_start(self, st: dict) -> None:
        self._on_status(st)
        if self.scheduler is None and self.started and st["state"] != "disabled":
            from app.storage.sync.scheduler import SyncScheduler

            try:
                sched = SyncScheduler(self.db, self.win.lib.media, on_status=self.bridge,
                                      on_progress=self.bridge.tell_progress, **self.scheduler_kw)
                sched.start()
            except RuntimeError as exc:  # no running asyncio loop: nothing syncs in the background
                log.warning("sync scheduler not started: %s", exc)
                return
            self.scheduler = sched

    async def stop(self) -> None:
        self.started = False
        sched, self.scheduler = self.scheduler, None
        if sched is not None:
            await sched.stop()

    def sync_now(self) -> None:
        if self.scheduler is not None:
            self.scheduler.sync_now()
        elif self.started:
            self.start()

    def notify_commit(self) -> None:
        """A local change was seen (the window's poll, an editor write): push about 1 s later."""
        if self.scheduler is not None:
            self.scheduler.notify_commit()
        self.refresh()

    def refresh(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True

        def done(st):
            self._refreshing = False
            if self.scheduler is not None and self.badge.status and self.badge.status.get("state") == "syncing":
                st = dict(st, state="syncing")  # the cycle's end brings the real state
            self._on_status(st)

        def failed(_e):
            self._refreshing = False

        self.win.pools.submit(lambda: sync_engine.status(self.db), done, failed, pool=self.win.pools.poll)

    def _on_status(self, st: dict) -> None:
        self.badge.set_status(st)
        dlg = self.dialogs.get("conflicts")
        if dlg is not None and dlg.isVisible() and not dlg.busy:
            if [c["id"] for c in st.get("conflicts") or []] != [c["id"] for c in dlg.conflicts]:
                dlg.refresh()

    # ------------------------------------------------------------------ dialogs
    def show_conflicts(self) -> ConflictsDialog:
        dlg = self.dialogs.get("conflicts")
        if dlg is None:
            dlg = ConflictsDialog(self.db, self.win.pools, self.win.ops, self.win.names, self.win)
            dlg.changed.connect(self._after_restore)
            self.dialogs["conflicts"] = dlg
        else:
            dlg.message.clear()
            dlg.refresh()
        dlg.open()
        return dlg

    def _after_restore(self) -> None:
        self.win.poll(force=True)
        for s in self.win.sessions.values():
            s.load()
        self.notify_commit()

    def show_settings(self) -> RemoteSettingsDialog:
        dlg = RemoteSettingsDialog(self.db, self.win.pools, self.win)
        dlg.saved.connect(self._after_settings)
        self.dialogs["settings"] = dlg
        dlg.open()
        return dlg

    def _after_settings(self) -> None:
        if self.scheduler is not None:
            self.scheduler.notify_config_changed()
            self.refresh()
        elif self.started:
            self.start()
        else:
            self.refresh()
