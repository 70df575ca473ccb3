"""Deletes are tombstones: the one place that deletes a synced row or brings it back.

A project takes the rows that belong to it along. Bringing a project back restores the rows its
delete took (their ``deleted`` stamp is the delete's, or newer from the same device), and not
the ones that had been removed before it (a clip removed last week stays removed).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from app.storage.models import (
    Clip,
    ExportSettings,
    FinalVideo,
    OverlaySettings,
    Region,
    Transition,
    WorkingVideo,
)
from app.storage.sync.merge import device_of

# rows that belong to a project (a project's delete takes them with it), by sync table name
CHILD_MODELS: tuple[type, ...] = (Transition, ExportSettings, OverlaySettings, Clip, Region, WorkingVideo,
                                  FinalVideo)
CHILD_TABLES: tuple[str, ...] = tuple(m.__sync_table__ for m in CHILD_MODELS)


def set_deleted(s: Session, row, deleted: bool) -> None:
    """Delete ``row`` or bring it back; a project takes the rows deleted with it along.

    Always a write, even when the column already says so (a tombstone shown undone by the sync
    merge is re-stamped), so that it syncs as the newest edit of ``deleted``.
    """
    stamp = (row.stamps or {}).get("deleted", "")
    if row.deleted == deleted:
        flag_modified(row, "deleted")
    row.deleted = deleted
    if row.__sync_table__ != "project":
        return
    for model in CHILD_MODELS:
        for child in s.scalars(select(model).where(model.project_id == row.id)
                               .execution_options(include_deleted=True)):
            c_stamp = (child.stamps or {}).get("deleted", "")
            if deleted and not child.deleted:
                child.deleted = True
            elif not deleted and child.deleted and c_stamp >= stamp and device_of(c_stamp) == device_of(stamp):
                child.deleted = False
