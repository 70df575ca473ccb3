"""One open project: its document in memory, its QUndoStack, its writes to SQLite.

Every edit is a QUndoCommand. Its redo()/undo() set the editable fields in memory (the views
repaint at once) and hand the same snapshot to the serial writer, which commits it through the
Qt-free service (app.services.editing.apply_edit: validated like `project apply`). Nothing is
ever "saved": a commit follows each edit within milliseconds. When the storage refuses a write
(a full disk, a lock held too long), the edit stays in memory, on screen and on the undo stack,
and the writer tries it again until it goes through (``writer.stalled`` / ``writer.resumed``);
only an edit that is wrong in itself is reverted, with ``error``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from app.services import editing
from app.services.errors import ProjectNotFound
from app.services.library import Library
from app.storage.db import storage_unavailable
from app.ui.workers import SerialWriter

log = logging.getLogger(__name__)


class DocCommand(QUndoCommand):
    def __init__(self, session: ProjectSession, text: str, before: dict, after: dict):
        super().__init__(text)
        self.session, self.before, self.after = session, before, after

    def redo(self) -> None:
        self.session._set_editable(editing.changes(self.before, self.after))

    def undo(self) -> None:
        self.session._set_editable(editing.changes(self.after, self.before))


class ClipCommand(QUndoCommand):
    """Add (the clip already imported) or remove a clip: undo tombstones / restores it."""

    def __init__(self, session: ProjectSession, clip_id: str, add: bool, name: str):
        super().__init__(f"{'Add' if add else 'Remove'} clip {name}")
        self.session, self.clip_id, self.add = session, clip_id, add
        self._first = add  # an added clip is already in the database

    def _present(self, yes: bool) -> None:
        lib, cid = self.session.lib, self.clip_id
        self.session.submit("reload", (lambda: editing.restore_clip(lib, cid)) if yes
                            else (lambda: lib.remove_clip(cid)))

    def redo(self) -> None:
        if self._first:
            self._first = False
            self.session.submit("reload", lambda: None)
            return
        self._present(self.add)

    def undo(self) -> None:
        self._present(not self.add)


class ProjectSession(QObject):
    changed = Signal()  # the in-memory document changed (repaint)
    error = Signal(str)
    gone = Signal()  # the project was deleted (here or by another program): nothing to edit or read

    def __init__(self, lib: Library, project_id: str, parent=None):
        super().__init__(parent)
        self.lib = lib
        self.project_id = project_id
        self.doc: dict | None = None
        self.deleted = False  # the last read or write found the project deleted (see :meth:`_on_failed`)
        self.media_paths: dict[str, str] = {}  # clip id -> its media's local path (the preview opens these)
        self.undo_stack = QUndoStack(self)
        self.writer = SerialWriter(self, retry_reason=storage_unavailable)
        self.writer.written.connect(self._on_written)
        self.writer.failed.connect(self._on_failed)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """(Re)read the document on the writer thread (after pending writes)."""
        self.submit("reload", lambda: None)

    def load_sync(self) -> None:
        self.doc = self.lib.document(self.project_id)
        self.media_paths = editing.media_paths(self.lib, self.project_id)
        self.changed.emit()

    def submit(self, tag: str, fn: Callable[[], object]) -> None:
        """``fn`` on the writer thread, then the document re-read (and the media paths, when it
        names a clip whose path is not known yet)."""
        lib, pid = self.lib, self.project_id

        def job():
            out = fn()
            try:  # the write is committed: a failing re-read must not make the writer retry it
                doc = lib.document(pid)
                known = self.media_paths
                new_clip = any(c["id"] not in known for c in doc["clips"])
                return out, doc, editing.media_paths(lib, pid) if new_clip else None
            except Exception as exc:
                if storage_unavailable(exc) is None or tag == "reload":  # a reload is only the read: retried
                    raise
                return out, None, None  # read again later (_on_written)

        self.writer.submit(tag, job)

    def _on_written(self, tag, result) -> None:
        region_ids, fresh, paths = result
        self.deleted = False
        if tag == "edit" and isinstance(region_ids, list):
            self._name_new_regions(region_ids)
        if paths is not None:
            self.media_paths = paths
        if fresh is None:  # committed, but the re-read was refused: read once the storage answers
            self.load()
        elif self.writer.pending == 0:
            self.doc = fresh  # the database's word (aspect refits, new region ids, other processes)
            self.changed.emit()
        elif tag == "edit" and isinstance(region_ids, list) and self.doc is not None:
            regions = self.doc.get("overlay", {}).get("regions", [])
            if len(regions) == len(region_ids):
                for r, rid in zip(regions, region_ids, strict=True):
                    r["id"] = rid

    def _name_new_regions(self, region_ids: list[str]) -> None:
        """The edit just written made regions: its undo command learns their ids, so that a redo
        after an undo brings back the same regions (an undelete), not new ones beside tombstones."""
        i = self.undo_stack.index() - 1
        cmd = self.undo_stack.command(i) if i >= 0 else None
        if not isinstance(cmd, DocCommand):
            return
        regions = ((cmd.after.get("overlay") or {}).get("regions")) or []
        if len(regions) == len(region_ids) and any(r.get("id") is None for r in regions):
            for r, rid in zip(sorted(regions, key=lambda r: r["start"]), region_ids, strict=True):
                r["id"] = r.get("id") or rid

    def _on_failed(self, tag, exc) -> None:
        if isinstance(exc, ProjectNotFound):
            # deleted meanwhile: not an error of the edit, and nothing to read back (a re-read
            # would fail the same way, for ever)
            log.info("project %s was deleted; its %s was dropped", self.project_id, tag)
            self.mark_deleted(True)
            return
        log.warning("%s failed: %s", tag, exc)
        self.error.emit(str(exc))
        if tag != "reload":  # show the database's state again; a failed read is not read again
            self.load()

    def mark_deleted(self, deleted: bool) -> None:
        """Learn that the project was deleted (``gone``, once) or brought back (read again)."""
        if deleted and not self.deleted:
            self.deleted = True
            self.gone.emit()
        elif not deleted and self.deleted:
            self.deleted = False
            self.load()

    # ------------------------------------------------------------------ edits
    def editable(self) -> dict:
        return editing.editable(self.doc or {})

    def edit(self, text: str, mutate: Callable[[dict], None]) -> None:
        """Push an undoable edit: ``mutate`` changes a copy of the editable fields in place."""
        if self.doc is None:
            return
        before = self.editable()
        after = copy.deepcopy(before)
        mutate(after)
        if after == before:
            return
        self.undo_stack.push(DocCommand(self, text, before, after))

    def _set_editable(self, snap: dict) -> None:
        """Show ``snap`` (the fields an edit changes: :func:`editing.changes`) and write it."""
        doc = self.doc
        if doc is None or not snap:
            return
        if "aspect_ratio" in snap:
            doc["aspect_ratio"] = snap["aspect_ratio"]
        if "clips" in snap:
            by_id = {c["id"]: c for c in doc["clips"]}
            order = []
            for c in snap["clips"]:
                if c["id"] in by_id:
                    by_id[c["id"]].update(copy.deepcopy(c))
                    order.append(by_id.pop(c["id"]))
            doc["clips"] = order + list(by_id.values())
        if "transition" in snap:
            doc["transition"] = dict(snap["transition"])
        if "export_settings" in snap:
            doc["export_settings"] = {**(doc.get("export_settings") or {}), **snap["export_settings"]}
        if "overlay" in snap:
            ov = doc.setdefault("overlay", {})
            if "settings" in snap["overlay"]:
                ov["settings"] = {**(ov.get("settings") or {}), **snap["overlay"]["settings"]}
            if "regions" in snap["overlay"]:
                ov["regions"] = copy.deepcopy(snap["overlay"]["regions"])
        self.changed.emit()
        lib, pid, snap = self.lib, self.project_id, copy.deepcopy(snap)
        self.submit("edit", lambda: editing.apply_edit(lib, pid, snap))

    def clip_added(self, clip_id: str, name: str) -> None:
        self.undo_stack.push(ClipCommand(self, clip_id, True, name))

    def remove_clip(self, clip_id: str, name: str) -> None:
        self.undo_stack.push(ClipCommand(self, clip_id, False, name))

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` for pending writes; returns how many were given up."""
        return self.writer.stop(timeout)

    # ------------------------------------------------------------------ helpers
    def clip(self, clip_id: str | None) -> dict | None:
        if not self.doc or clip_id is None:
            return None
        return next((c for c in self.doc["clips"] if c["id"] == clip_id), None)
