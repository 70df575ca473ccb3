"""Edits of the library itself: rename, duplicate and delete a project, restore the losing value
of a sync conflict. Each is a QUndoCommand on one library-wide QUndoStack (active in the
project grid; an open project has its own stack), written in order on one background thread
through the Qt-free services, committed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from app.services.library import Library
from app.storage.db import storage_unavailable
from app.storage.sync import engine as sync_engine
from app.ui.workers import SerialWriter

log = logging.getLogger(__name__)


class OpCommand(QUndoCommand):
    """``do`` on redo, ``undo`` on undo, both run on the library's writer thread."""

    def __init__(self, ops: LibraryOps, text: str, kind: str, do: Callable[[], object],
                 undo: Callable[[], object]):
        super().__init__(text)
        self.ops, self.kind, self._do, self._undo = ops, kind, do, undo

    def redo(self) -> None:
        self.ops.writer.submit((self.kind, self.text()), self._do)

    def undo(self) -> None:
        self.ops.writer.submit((self.kind, f"Undo {self.text()}"), self._undo)


class LibraryOps(QObject):
    changed = Signal(str)  # kind ("project" or "conflict"): committed, the views reload
    failed = Signal(str, str)  # what, words

    def __init__(self, lib: Library, parent=None):
        super().__init__(parent)
        self.lib = lib
        self.stack = QUndoStack(self)
        self.writer = SerialWriter(self, retry_reason=storage_unavailable)  # a refused write waits, is retried
        self.writer.written.connect(lambda tag, _r: self.changed.emit(tag[0]))
        self.writer.failed.connect(self._on_failed)

    def _on_failed(self, tag, exc) -> None:
        log.warning("%s failed: %s", tag[1], exc)
        self.failed.emit(tag[1], str(exc))
        self.changed.emit(tag[0])

    def _push(self, text: str, do: Callable[[], object], undo: Callable[[], object], kind: str = "project"):
        cmd = OpCommand(self, text, kind, do, undo)
        self.stack.push(cmd)
        return cmd

    # ------------------------------------------------------------------ projects
    def rename(self, project_id: str, old: str, new: str) -> None:
        lib = self.lib
        self._push(f"Rename “{old}” to “{new.strip()}”", lambda: lib.rename_project(project_id, new),
                   lambda: lib.rename_project(project_id, old))

    def delete(self, project_id: str, name: str) -> None:
        lib = self.lib
        self._push(f"Delete “{name}”", lambda: lib.delete_project(project_id),
                   lambda: lib.restore_project(project_id))

    def duplicate(self, project_id: str, name: str) -> None:
        lib = self.lib
        made: list[str] = []

        def do():  # the first redo makes the copy, a later one brings the same copy back
            if made:
                lib.restore_project(made[0])
            else:
                made.append(lib.duplicate_project(project_id))

        self._push(f"Duplicate “{name}”", do, lambda: made and lib.delete_project(made[0]))

    # ------------------------------------------------------------------ sync conflicts
    def restore_conflict(self, conflict: dict) -> OpCommand:
        return self._conflict_op(f"Restore the other value of {conflict['field']}", conflict,
                                 sync_engine.restore_conflict, sync_engine.undo_restore)

    def dismiss_conflict(self, conflict: dict) -> OpCommand:
        return self._conflict_op(f"Dismiss the conflict on {conflict['field']}", conflict,
                                 sync_engine.dismiss_conflict, sync_engine.undo_dismiss)

    def _conflict_op(self, text: str, conflict: dict, do, undo) -> OpCommand:
        db, cid = self.lib.db, conflict["id"]
        return self._push(text, lambda: do(db, cid), lambda: undo(db, cid), kind="conflict")

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        return self.writer.stop(timeout)
