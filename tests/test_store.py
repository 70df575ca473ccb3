"""The store: SQLite settings, migrations with a backup, stamps, tombstones, two processes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import uuid

import pytest
from sqlalchemy import func, select

from app.storage.db import Database
from app.storage.migrations import HEAD
from app.storage.models import Change, Clip, Media, Project
from tests.conftest import run_cli


def test_sqlite_is_wal_with_foreign_keys_and_busy_timeout(lib):
    with lib.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_head_constant_matches_the_migration_scripts():
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path("app/storage/migrations").resolve()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


def test_every_id_is_a_uuid_and_every_write_is_stamped(lib):
    pid = lib.create_project("Stamped")
    uuid.UUID(pid)
    with lib.db.read() as s:
        p = s.get(Project, pid)
        assert p.hlc and p.device_id == lib.db.device_id
        assert set(p.stamps) >= {"name", "aspect_ratio"}
        before = p.stamps["name"]
    lib.rename_project(pid, "Renamed")
    with lib.db.read() as s:
        p = s.get(Project, pid)
        assert p.stamps["name"] > before  # a later HLC stamp
        assert p.stamps["aspect_ratio"] == before  # untouched field keeps its stamp
        changes = s.scalars(select(Change).where(Change.row_id == pid).order_by(Change.seq)).all()
        assert changes[-1].fields == {"name": "Renamed"}
        assert not changes[-1].pushed


def test_delete_is_a_tombstone_hidden_from_reads(lib, sample_video):
    pid = lib.create_project("Doomed")
    cid = lib.add_clip(pid, sample_video)
    lib.delete_project(pid)
    assert [p["id"] for p in lib.list_projects()] == []
    with lib.db.read() as s:
        assert s.get(Project, pid, execution_options={"include_deleted": True}).deleted
        assert s.scalars(select(Clip)).all() == []
        assert s.get(Clip, cid, execution_options={"include_deleted": True}).deleted


def test_undoing_a_delete_brings_back_what_it_took_and_nothing_removed_before(lib, sample_video):
    pid = lib.create_project("Undo me")
    keep = lib.add_clip(pid, sample_video)
    gone = lib.add_clip(pid, sample_video)
    lib.remove_clip(gone)  # removed last week: stays removed
    lib.apply(pid, {**lib.document(pid), "name": "Undo me"})
    before = lib.document(pid)
    lib.delete_project(pid)
    assert lib.list_projects() == []
    lib.restore_project(pid)
    after = lib.document(pid)
    assert [c["id"] for c in after["clips"]] == [keep]
    assert after["export_settings"] == before["export_settings"] and after["overlay"] == before["overlay"]
    assert [p["id"] for p in lib.list_projects()] == [pid]
    with lib.db.read() as s:  # both the delete and its undo are stamped writes that sync
        p = s.get(Project, pid)
        assert not p.deleted and p.stamps["deleted"] > p.stamps["name"]


def test_applying_the_shown_document_after_a_clip_removal_changes_nothing(lib, sample_video):
    """The positions left with a gap (0, 2) are the same order: applying the document as shown
    stamped both positions as a new reorder, which would beat a real one from another device."""
    pid = lib.create_project("Gap")
    a, b, c = (lib.add_clip(pid, sample_video) for _ in range(3))
    lib.remove_clip(b)

    def state():
        with lib.db.read() as s:
            return (s.scalar(select(func.count()).select_from(Change)),
                    [(x.id, x.position, x.hlc) for x in s.scalars(select(Clip).where(Clip.project_id == pid))],
                    s.get(Project, pid).updated_at)

    before = state()
    lib.apply(pid, lib.document(pid))
    assert state() == before
    doc = lib.document(pid)
    doc["clips"].reverse()  # a real reorder still is one
    lib.apply(pid, doc)
    assert [x["id"] for x in lib.document(pid)["clips"]] == [c, a]


def test_leftovers_of_killed_processes_are_swept_a_day_later(lib, sample_video):
    """A copy killed mid-way leaves its file in tmp/, an import or export killed between storing
    its file and the commit leaves one in the store that no row knows. A day on they are removed
    when a library opens (once a day); a stored video a row knows, and anything recent, stay."""
    import os
    import time as clock

    from app.services.library import Library

    pid = lib.create_project("Kept")
    lib.add_clip(pid, sample_video)
    with lib.db.read() as s:
        kept = lib.media.path_for(*s.execute(select(Media.sha256, Media.ext)).one())
    half_copy = lib.media.temp_path(".mp4")
    half_copy.write_bytes(b"x" * 1000)
    unrecorded = lib.media.path_for("cd" * 32, ".mp4")
    unrecorded.parent.mkdir(parents=True, exist_ok=True)
    unrecorded.write_bytes(b"y" * 1000)
    recent = lib.media.temp_path(".mp4")
    recent.write_bytes(b"z")
    day_ago = clock.time() - 25 * 3600
    for p in (kept, half_copy, unrecorded):
        os.utime(p, (day_ago, day_ago))
    Library(lib.data_dir).close()  # swept less than a day ago (when `lib` opened): not yet
    assert half_copy.exists() and unrecorded.exists()
    marker = lib.data_dir / ".swept"
    os.utime(marker, (day_ago, day_ago))
    Library(lib.data_dir).close()  # a day later
    assert not half_copy.exists() and not unrecorded.exists()
    assert kept.exists() and recent.exists() and marker.stat().st_mtime > day_ago


def test_stored_files_and_commits_are_on_the_disk_before_anyone_relies_on_them(lib, sample_video, monkeypatch):
    """A power cut cannot be made here, so the calls that make a stored file durable are watched:
    its bytes are flushed before it takes its final name and the folder's entry after, all before
    the row that points at it is committed; and every commit waits for the disk (FULL)."""
    import os

    from app.storage import media_store

    seen: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        seen.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        return real_fsync(fd)

    def replace(a, b):
        seen.append("rename")
        return real_replace(a, b)

    monkeypatch.setattr(media_store.os, "fsync", fsync)
    monkeypatch.setattr(media_store.os, "replace", replace)
    pid = lib.create_project("Durable")
    lib.add_clip(pid, sample_video)
    i = seen.index("rename")
    assert "fsync file" in seen[:i] and seen[i + 1] == "fsync dir"
    with lib.db.write() as s:
        assert s.connection().exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with lib.db.write(passing=True) as s:  # an export's heartbeat: replaced within a second
        assert s.connection().exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with lib.db.write() as s:  # and the next write on that connection waits for the disk again
        assert s.connection().exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_reading_commands_do_not_wait_for_another_programs_write_lock(lib):
    """Opening a library wrote its device id in a write transaction every time, so `project
    list` waited out another program's write (30 s, then failed). It reads now."""
    import time as clock

    lib.create_project("Listed")
    holder = sqlite3.connect(lib.db.path, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t = clock.monotonic()
        r = run_cli("project", "list", data_dir=lib.data_dir)
        assert r.returncode == 0 and "Listed" in r.stdout, r.stderr
        assert clock.monotonic() - t < 15
    finally:
        holder.rollback()
        holder.close()


def test_migration_from_an_older_schema_takes_a_backup_first(tmp_path):
    d = tmp_path / "old"
    Database(d).close()
    db_file = d / "reelforge.db"
    con = sqlite3.connect(db_file)
    con.execute("UPDATE alembic_version SET version_num = '0002'")
    con.commit()
    con.close()
    # an older revision (its tables here are already the newest, so the upgrade itself fails):
    # the backup is taken before alembic is even asked
    try:
        Database(d)
    except Exception:
        pass
    backups = list((d / "backups").glob("reelforge-*-from-0002.db"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0002",)
    con.close()


def _library_file(tmp_path, version: str | None = None, empty: bool = False) -> tuple:
    """A data directory with one project and one imported video (and its database as bytes)."""
    from app.services.library import Library

    d = tmp_path / "lib"
    lib = Library(d)
    lib.create_project("Kept")
    video = lib.media.path_for("ab" * 32, ".mp4")  # stands for an imported video
    video.parent.mkdir(parents=True)
    video.write_bytes(b"video")
    lib.close()
    db_file = d / "reelforge.db"
    if version is not None:
        con = sqlite3.connect(db_file)
        con.execute("UPDATE alembic_version SET version_num = ?", (version,))
        con.commit()
        con.close()
    if empty:
        db_file.write_bytes(b"")
    for side in ("-wal", "-shm"):
        (d / f"reelforge.db{side}").unlink(missing_ok=True)
    return d, db_file, db_file.read_bytes()


@pytest.mark.parametrize(("version", "empty", "words"), [
    ("0999", False, "written by a newer version of Reelforge (its schema is 0999"),
    (None, True, "is empty (0 bytes) while the data directory holds 1 imported video(s)"),
])
def test_a_library_it_must_not_open_is_refused_in_words_and_left_as_it_is(tmp_path, version, empty, words):
    """A database from a newer version gave a migration tool's error and wrote a backup on every
    try; an emptied one was silently replaced by a new, empty library. Both are refused with
    what happened and what to do, and nothing in the data directory is written."""
    d, db_file, before = _library_file(tmp_path, version, empty)
    for _ in range(2):
        r = run_cli("project", "list", data_dir=d)
        assert r.returncode == 1, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and words in last, last
    assert db_file.read_bytes() == before
    assert not (d / "backups").exists()


def test_a_first_start_stopped_before_its_first_write_starts_again(tmp_path):
    """An empty database in a data directory with nothing else is a new library (a first start
    killed before its first write), not a lost one."""
    d = tmp_path / "new"
    d.mkdir()
    (d / "reelforge.db").write_bytes(b"")
    r = run_cli("project", "create", "First", data_dir=d)
    assert r.returncode == 0, r.stderr


def test_the_window_says_why_it_cannot_open_a_library(tmp_path, qapp, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from app.ui import main

    d, db_file, before = _library_file(tmp_path, version="0999")
    said = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: said.append((title, text)))
    monkeypatch.setattr(main, "make_app", lambda: qapp)
    assert main.run(d) == 1
    assert len(said) == 1 and "newer version of Reelforge" in said[0][1]
    assert db_file.read_bytes() == before


def test_a_fresh_database_needs_no_backup(tmp_path):
    Database(tmp_path / "fresh").close()
    assert not (tmp_path / "fresh" / "backups").exists()


def _create_many(data_dir: str, n: int, tag: str) -> None:
    from app.services.library import Library

    lib = Library(data_dir)
    for i in range(n):
        lib.create_project(f"{tag}-{i}")
    lib.close()


def test_two_processes_write_one_data_directory(data_dir):
    Database(data_dir).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_create_many, args=(str(data_dir), 25, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    from app.services.library import Library

    lib = Library(data_dir)
    names = {p["name"] for p in lib.list_projects()}
    lib.close()
    assert len(names) == 50
    # one clock: every stamp unique across both processes
    con = sqlite3.connect(data_dir / "reelforge.db")
    stamps = [r[0] for r in con.execute("SELECT hlc FROM projects")]
    con.close()
    assert len(set(stamps)) == 50


def test_the_grid_signature_sees_every_synced_write(lib, sample_video):
    from app.services import editing

    pid = lib.create_project("Signed")
    cid = lib.add_clip(pid, sample_video)
    before = editing.change_signature(lib)
    with lib.db.write() as s:  # a synced write that leaves the project's updated_at alone
        s.get(Clip, cid).rotation = 5.0
    assert editing.change_signature(lib) != before


def test_storage_failures_are_told_apart_from_bad_writes(tmp_path):
    """A full database, a held lock and a full disk are the storage's (the write is retried
    later, never dropped); a constraint or a bad value is the write's own (retrying is useless)."""
    import os
    from pathlib import Path

    import pytest
    from sqlalchemy.exc import IntegrityError, OperationalError

    from app.services.errors import UserError
    from app.storage.db import storage_unavailable

    con = sqlite3.connect(tmp_path / "small.db", isolation_level=None)
    con.execute("CREATE TABLE t (b BLOB)")
    con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0] + 2}")
    with pytest.raises(sqlite3.OperationalError) as full:  # SQLite's own SQLITE_FULL
        for _ in range(10):
            con.execute("INSERT INTO t VALUES (?)", (os.urandom(4096),))
    assert storage_unavailable(full.value) == "the disk is full"
    assert storage_unavailable(OperationalError("INSERT", {}, full.value)) == "the disk is full"  # as SQLAlchemy raises it

    other = sqlite3.connect(tmp_path / "small.db", timeout=0.05, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN IMMEDIATE")
    con.execute("ROLLBACK")
    assert "locked" in storage_unavailable(locked.value)

    if Path("/dev/full").exists():
        with pytest.raises(OSError) as enospc, open("/dev/full", "wb", buffering=0) as f:
            f.write(b"x")
        assert storage_unavailable(enospc.value) == "the disk is full"

    mem = sqlite3.connect(":memory:")
    mem.execute("CREATE TABLE u (k INTEGER UNIQUE)")
    mem.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as dup:
        mem.execute("INSERT INTO u VALUES (1)")
    assert storage_unavailable(IntegrityError("INSERT", {}, dup.value)) is None
    assert storage_unavailable(UserError("speed must be between 0.25 and 4.0")) is None
    assert storage_unavailable(FileNotFoundError(2, "No such file")) is None
