"""The errors the services raise, and how a failed write is told apart from a bad one."""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError


class UserError(Exception):
    """Bad usage or bad input: the message is shown to the user as is (CLI exit code 2)."""


class NotFound(UserError):
    """An id that does not exist (or was deleted)."""


class OperationFailed(Exception):
    """The operation ran and failed (CLI exit code 1)."""


# SQLite's messages for a write that failed because of where the data lives, not what it says
_SQLITE_UNAVAILABLE = (
    ("database or disk is full", "the disk is full"),
    ("database is locked", "the project file is locked by another program"),
    ("database is busy", "the project file is locked by another program"),
    ("disk i/o error", "the disk reported an error"),
    ("attempt to write a readonly database", "the project file cannot be written (read-only)"),
    ("unable to open database file", "the project file cannot be opened"),
)
_OS_UNAVAILABLE = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EIO: "the disk reported an error",
    errno.EROFS: "the disk is read-only",
}


def storage_unavailable(exc: BaseException) -> str | None:
    """Why a write failed, for the user, when the failure is the storage's and the same write is
    worth trying again later (a full disk, a lock held too long, an I/O error); None when the
    write itself was wrong (bad input, a bug): retrying it would fail the same way."""
    if isinstance(exc, DBAPIError):  # SQLAlchemy's wrapper of the sqlite3 error
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        msg = str(exc).lower()
        return next((why for text, why in _SQLITE_UNAVAILABLE if text in msg), None)
    if isinstance(exc, OSError):
        return _OS_UNAVAILABLE.get(exc.errno)
    return None
