"""Opening a data directory: the SQLite file (WAL, foreign keys, busy timeout), migrations
(backup first), the device identity, and the two kinds of session (read / write).

Write sessions begin with ``BEGIN IMMEDIATE``: a second process waits on the busy timeout
instead of failing a read-to-write upgrade, so a GUI and a CLI can share one data directory.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from app.storage import stamping
from app.storage.migrations import HEAD
from app.storage.models import SYNCED_MODELS

log = logging.getLogger(__name__)

DB_NAME = "reelforge.db"
BUSY_TIMEOUT_S = 30.0
LOCK_POLL_S = 0.004  # how often a write waiting for another's lock tries again


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


class StoreSession(Session):
    """Session class of the store; the stamping listener is installed on it once."""


stamping.install(StoreSession)


@event.listens_for(StoreSession, "do_orm_execute")
def _hide_tombstones(state: ORMExecuteState) -> None:
    if state.is_select and not state.execution_options.get("include_deleted", False):
        for model in SYNCED_MODELS:
            state.statement = state.statement.options(
                with_loader_criteria(model, lambda cls: cls.deleted.is_(False), include_aliases=True)
            )


class LibraryUnusable(sqlite3.DatabaseError):
    """The data directory's database is there but must not be opened (made by a newer version,
    or emptied outside the app): the message says why and what to do. Nothing was written."""


def _known_revisions() -> list[str]:
    folder = Path(__file__).parent / "migrations" / "versions"
    return sorted(p.name.split("_", 1)[0] for p in folder.glob("[0-9]*_*.py"))


def _check_empty(path: Path) -> None:
    """A 0-byte database is a new one (a first start stopped before its first write) unless the
    data directory holds a library's media or backups: then the file was emptied outside the
    app, and making a new, empty library over it would hide that."""
    media = path.parent / "media"
    kept = [p for p in media.rglob("*") if p.is_file()] if media.is_dir() else []
    backups = sorted((path.parent / "backups").glob("*.db"), key=lambda p: p.stat().st_mtime)
    if not kept and not backups:
        return
    what = f"{len(kept)} imported video(s)" if kept else f"{len(backups)} backup(s)"
    restore = (f"restore the newest backup ({backups[-1].relative_to(path.parent)}) over it, or "
               if backups else "")
    raise LibraryUnusable(
        f"{path.name} is empty (0 bytes) while the data directory holds {what}: it was emptied "
        f"outside Reelforge; {restore}move it away to start an empty library")


def _schema_version(path: Path) -> str | None:
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        _check_empty(path)
        return None
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        row = con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        if row is None:
            return None
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def backup_database(path: Path, label: str) -> Path:
    """Consistent copy (SQLite backup API, WAL-safe) next to the database, under backups/."""
    dest_dir = path.parent / "backups"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{label}.db"
    src = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    log.info("backed up %s to %s before migrating", path.name, dest.name)
    return dest


class Database:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self.engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        event.listen(self.engine, "connect", _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        self._write_engine = self.engine.execution_options(rf_immediate=True)
        self._read = sessionmaker(self.engine, class_=StoreSession, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, class_=StoreSession, expire_on_commit=False)
        self._passing = sessionmaker(self.engine.execution_options(rf_immediate=True, rf_passing=True),
                                  class_=StoreSession, expire_on_commit=False)
        self.migrate()
        self.device_id = self._ensure_device_id()

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self, *, remote: bool = False, passing: bool = False) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception. Its commit is
        on the disk when it returns, unless ``passing``: a record that the next one replaces
        within a second (an export's heartbeat and progress), whose loss to a power cut costs
        nothing; flushing those twice a second flushed the export's own output with them
        (ext4 commits its journal whole) and slowed a 10 s export by about 0.5 s."""
        with (self._passing if passing else self._write)() as session:
            if remote:
                session.info["remote"] = True
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # ------------------------------------------------------------------ set-up
    def migrate(self) -> None:
        version = _schema_version(self.path)
        if version == HEAD:
            return
        if version is not None and version not in _known_revisions():
            raise LibraryUnusable(
                f"{self.path.name} was written by a newer version of Reelforge (its schema is {version}; "
                f"this version knows up to {HEAD}): update Reelforge to open it")
        if version is not None:
            backup_database(self.path, f"from-{version}")
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._write_engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _ensure_device_id(self) -> str:
        """This data directory's device id, made on its first opening. Read first: a write
        transaction on every opening would make each command wait for another's write lock, and
        fail on a data directory it may only read."""
        with self.read() as s:
            device = stamping.get_meta(s, "device_id")
        if device is not None:
            return device
        with self.write() as s:
            device = stamping.get_meta(s, "device_id")  # another process may have made it meanwhile
            if device is None:
                device = str(uuid.uuid4())
                stamping.set_meta(s, "device_id", device)
        return device

    def close(self) -> None:
        self.engine.dispose()


def _on_connect(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _on_begin(conn) -> None:
    opts = conn.get_execution_options()
    if opts.get("rf_immediate"):
        # FULL: a commit is on the disk when it returns (NORMAL, in WAL mode, could lose the last
        # commits to a power cut: edits the user saw saved, and the records of stored files);
        # NORMAL for a passing write (see Database.write)
        conn.exec_driver_sql(f"PRAGMA synchronous = {'NORMAL' if opts.get('rf_passing') else 'FULL'}")
        _begin_immediate(conn)
    else:
        conn.exec_driver_sql("BEGIN")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(exc).lower()


def _begin_immediate(conn) -> None:
    """``BEGIN IMMEDIATE``, waiting for another connection's write lock by trying again every
    few milliseconds for up to ``BUSY_TIMEOUT_S``. SQLite's own busy handler naps 100 ms at a
    time once a wait passes a third of a second, so an edit behind a sync apply transaction
    started up to 100 ms after the lock was free, and on a loaded machine could miss the pause
    the sync leaves between two of them (``YIELD_S``) and wait for the next one as well."""
    dbc = conn.connection.dbapi_connection
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    dbc.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                dbc.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            if time.monotonic() >= deadline:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # once more, raising SQLAlchemy's error
                return
            time.sleep(LOCK_POLL_S)
    finally:
        dbc.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
