"""The sync engine: push the outbox, pull other devices' batches, media, snapshots, status.

Blocking and Qt-free; the GUI runs :meth:`SyncEngine.run_cycle` in an executor (see
:mod:`app.storage.sync.scheduler`), the CLI calls it directly. Its transactions are short: the
network is never touched while a write transaction is open.

Push
    Unpushed ``sync_changes`` rows (the durable outbox filled by :mod:`app.storage.stamping`),
    coalesced per row and field into one batch, gzip JSON, written to
    ``changes/DEVICE/FIRST_SEQ.json.gz`` with ``If-None-Match: *``: the key is fixed by the first
    sequence number, so a retry writes the same key; if it exists already, the object is read
    back and, when it holds exactly our changes (digest of their seq and stamps), they are marked
    pushed. The media those rows point at are uploaded and verified first.

Pull
    For every other device: list its batches after our cursor, download and validate each one,
    check the chain (each batch names the last sequence number of the one before it), and apply
    them in rounds: one ``db.write(remote=True)`` transaction per round merges the rows (see
    :mod:`app.storage.sync.merge`) and moves the cursors, so a crash leaves the old state or the
    new one, and re-running is idempotent. A new device (or one whose missing batches were
    compacted away) first applies the snapshot named by ``manifest.json``.

    A batch waits while its rows need rows a batch of another device brings. When nothing can
    be applied, the rows that need what this device does not have (a row it lacks and that no
    entry creates, or a project or media it lacks) are parked in ``sync_parked`` and the rest of
    the batch is applied, so one missing row (say, created by a batch that was rejected) never
    holds back its device's later batches. Parked rows are merged in the first apply
    transaction in which what they need exists, and snapshots carry them. A project needs its
    three settings rows (a device writes them in one transaction), so a project row alone waits.

    A batch stamped more than a day ahead of this device's clock is not garbage but a wrong
    clock: it is not rejected, it and its device's later batches wait (the wait is a reported
    problem) until the clocks agree. Batches under our own device id that this data directory
    did not push mean it is a restored backup or a copy: it takes a new device id and pulls the
    old one's batches like another device's.

Snapshots
    When no changes are pending and enough batches have gone by, a device writes a snapshot of
    every synced row (tombstones included) with the cursors it covers, then swaps
    ``manifest.json`` by compare-and-swap (``If-Match: ETAG``, ``If-None-Match: *`` when new);
    the loser of a race deletes its snapshot. Batches covered by the manifest and older than
    ``prune_after_s`` are deleted, and so are multipart uploads abandoned that long.

Media garbage
    The device that writes a snapshot deletes the media objects no live row of it points at,
    once neither the object nor its ``media-touched/SHA`` marker changed for ``media_grace_s``
    (14 days). A device that publishes a row pointing at an old object first touches it, and
    a row brought back (an undone delete) needs its media uploaded again like a new one. The
    same listing finds media that live rows use and the remote lost (a bucket emptied or put
    back from an old copy): that device uploads again those it has.

The database file itself is never uploaded or downloaded: rows are merged field by field, so
a pull can never roll back a local commit (the T248 failure cannot happen by construction).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from app.storage import hlc, stamping
from app.storage.db import storage_unavailable
from app.storage.media_store import MediaStore
from app.storage.models import (
    Change,
    Clip,
    Media,
    Project,
    SyncBase,
    SyncConflict,
    SyncCursor,
    SyncMedia,
    SyncObject,
    SyncParked,
    iso,
    renumber,
    utcnow,
)
from app.storage.procs import HOST, pid_alive
from app.storage.sync import config as sync_config
from app.storage.sync import schema
from app.storage.sync.config import Credentials, RemoteConfig, redact
from app.storage.sync.merge import (
    ORDER_FIELD,
    Conflict,
    RowState,
    Write,
    apply_writes,
    device_of,
    normalize,
    order_conflicts,
)
from app.storage.sync.remote import PreconditionFailed, Remote, RemoteError, RetryPolicy, Timeouts
from app.storage.sync.schema import FIELDS, MODELS, Batch, Entry, SchemaError
from app.storage.tombstones import CHILD_TABLES, set_deleted

log = logging.getLogger(__name__)

M_IDENTITY = stamping.SYNC_IDENTITY
M_PUSHED = "sync.pushed_through"
M_LAST_OK = "sync.last_synced_at"
M_ERROR = "sync.error"
M_ERROR_KIND = "sync.error_kind"
M_RUNNING = "sync.running"
M_SINCE_SNAPSHOT = "sync.objects_since_snapshot"
M_SNAPSHOT = "sync.snapshot"  # the manifest snapshot this device last applied or wrote

BATCH_MAX_CHANGES = 1000  # per batch: a batch is applied in one transaction on the other side
# between two apply transactions: a local write waiting for the lock tries again every few ms
# (db.LOCK_POLL_S), so it gets the lock before the next round even when a loaded machine wakes
# it late; longer than SQLite's longest busy-handler nap (100 ms), for a writer that uses that
YIELD_S = 0.11
SNAPSHOT_IF_BEHIND = 200  # batches to fetch beyond which a covering snapshot is applied instead
RUNNING_STALE_S = 600.0

PK_IS_PROJECT = ("transition", "export_settings", "overlay_settings")
# fields that point at another synced row, and that row's table
REF_FIELDS = {"project_id": "project", "media_sha256": "media"}
# parents before children, so a snapshot can be applied in rounds
TABLE_ORDER = ("media", "project", *CHILD_TABLES)
# the rows that point at a media object, and the field that does
MEDIA_FIELD = {"clip": "media_sha256", "working_video": "sha256", "final_video": "sha256"}
TOUCH_AFTER_S = 86400.0  # a device re-checks (and touches) an old media object it publishes once a day
DOC_TABLE = {"overlay_settings": "overlay"}
DOC_FIELD = {("clip", "trim_start"): "trim.start", ("clip", "trim_end"): "trim.end", ("project", ORDER_FIELD): "clips"}


class SyncUserError(ValueError):
    """Bad input to a sync command (unknown conflict id, ...): nothing was changed."""


class MediaUnavailable(RuntimeError):
    """A media file is not on this device and cannot be fetched (message in words)."""


@functools.cache
def _pk(model):
    return model.__table__.primary_key.columns.values()[0]


def _required(table: str) -> set[str]:
    cols = MODELS[table].__table__.c
    return {f for f in FIELDS[table] if not cols[f].nullable and cols[f].default is None
            and cols[f].server_default is None}


REQUIRED = {t: _required(t) for t in MODELS}


def _to_db(table: str, f: str, v):
    if v is not None and FIELDS[table][f].kind == "iso":
        return datetime.fromisoformat(v)
    return v


def _stamp_time(stamp: str) -> datetime:
    return datetime.fromtimestamp(hlc.parse_stamp(stamp)[0] / 1000.0, UTC)


def doc_names(table: str, f: str) -> tuple[str, str]:
    return DOC_TABLE.get(table, table), DOC_FIELD.get((table, f), f)


def _changes_digest(changes: Iterable[Change]) -> str:
    """What a pushed batch holds (its ``digest``): the seq and stamp of each outbox row."""
    return hashlib.sha256("".join(f"{c.seq}:{c.hlc}\n" for c in changes).encode()).hexdigest()


def _cursors(s: Session) -> dict[str, int]:
    return {c.device_id: c.seq for c in s.scalars(select(SyncCursor))}


def _advance_cursor(s: Session, device: str, seq: int) -> None:
    row = s.get(SyncCursor, device)
    if row is None:
        s.add(SyncCursor(device_id=device, seq=seq, updated_at=utcnow()))
    elif seq > row.seq:
        row.seq, row.updated_at = seq, utcnow()


def _pending_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Change).where(Change.pushed.is_(False))) or 0


def _project_of(st: RowState) -> str | None:
    """The project a row belongs to (a project is its own); None for media."""
    return st.row_id if st.table in ("project", *PK_IS_PROJECT) else st.values.get("project_id")


def _bump_since_snapshot(s: Session, n: int) -> None:
    """Count ``n`` more batches since the last snapshot (in the caller's write transaction)."""
    stamping.set_meta(s, M_SINCE_SNAPSHOT, str(int(stamping.get_meta(s, M_SINCE_SNAPSHOT) or 0) + n))


def _by_table(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for t, i in keys:
        out[t].append(i)
    return out


def _refs(e: Entry) -> list[tuple[str, str]]:
    """The rows an entry points at, which must exist before it is merged (foreign keys): the
    project of a row keyed by its project, and the project or media its fields name. A project
    also needs its settings rows (a device creates them in the same transaction): a project
    without them cannot be edited or exported, so one that comes without them waits for them."""
    if e.table == "project":
        out = [(t, e.row_id) for t in PK_IS_PROJECT]
    else:
        out = [("project", e.row_id)] if e.table in PK_IS_PROJECT else []
    out += [(t, e.fields[f][0]) for f, t in REF_FIELDS.items() if f in e.fields]
    return out


_ORDER = {t: i for i, t in enumerate(TABLE_ORDER)}
# (database, device id, prefix) whose own stream on the remote this process has listed (_restored)
_OWN_STREAM_CHECKED: set[tuple[str, str, str]] = set()


def _snapshot_order(e: Entry) -> tuple:
    """Parents before children, and each project next to its settings rows, so that the chunks
    a snapshot is applied in rarely part a row from what it needs (parted ones are parked and
    merged with the last chunk)."""
    if e.table == "project" or e.table in PK_IS_PROJECT:
        return (_ORDER["project"], e.row_id, e.table != "project")
    return (_ORDER[e.table], "", False)


def _rejected_between(prefix: str, dev: str, after: int, upto: int, rejected: set[str]) -> bool:
    """A rejected object of ``dev`` holds some of the changes after ``after`` up to ``upto``: a
    gap there is explained (and was reported when it was rejected)."""
    for key in rejected:
        parsed = schema.parse_change_key(prefix, key)
        if parsed is not None and parsed[0] == dev and after < parsed[1] <= upto:
            return True
    return False


def _keys(entries: Iterable[Entry]) -> set[tuple[str, str]]:
    """The rows ``entries`` write to or point at: what :func:`_split_entries` asks about."""
    return {k for e in entries for k in ((e.table, e.row_id), *_refs(e))}


def _split_entries(entries: list[Entry], existing: set[tuple[str, str]]) -> tuple[list[Entry], list[Entry]]:
    """(ok, parked): the entries that can be merged on top of the rows in ``existing``, and the
    others. An entry can be merged when its row exists or the ok entries create it (with all its
    required fields), and so do the rows it points at (:func:`_refs`). Repeated until nothing more
    is parked: parking an entry can take away fields that created a row another entry writes to
    or points at. The one rule for a round's batches, a parked head and parked rows alike."""
    ok, parked = list(entries), []
    while True:
        creates: dict[tuple[str, str], set[str]] = defaultdict(set)
        for e in ok:
            creates[(e.table, e.row_id)] |= set(e.fields)
        will_exist = existing | {k for k, fs in creates.items() if REQUIRED[k[0]] <= fs}
        bad = {id(e) for e in ok
               if (e.table, e.row_id) not in will_exist or not all(r in will_exist for r in _refs(e))}
        if not bad:
            return ok, parked
        parked += [e for e in ok if id(e) in bad]
        ok = [e for e in ok if id(e) not in bad]


def _parked_fields(e: Entry) -> dict[str, list]:
    return {f: [v, st] for f, (v, st) in e.fields.items()}


@dataclass
class CycleResult:
    ok: bool = True
    state: str = "synced"
    pushed_changes: int = 0
    pushed_objects: int = 0
    applied_objects: int = 0
    applied_rows: int = 0
    conflicts: int = 0
    rejected: list[dict] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    parked: int = 0  # remote rows set aside until the rows they need exist (not an error)
    unparked: int = 0  # parked rows merged at last
    media_uploaded: int = 0
    media_downloaded: int = 0
    snapshot_applied: str | None = None
    snapshot_written: str | None = None
    error: str | None = None
    error_kind: str | None = None
    retry_later: bool = False  # the local storage refused (full disk, lock): not the remote's fault
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0

    def problem(self, words: str) -> None:
        self.problems.append(words)
        self.ok = False

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class _Pending:
    """A downloaded, validated batch waiting to be applied; ``parked``: entries taken out of it
    because they need rows this device does not have (stored when the batch is applied)."""

    key: str
    batch: Batch
    min_stamp: str
    parked: list[Entry] = field(default_factory=list)


class SyncEngine:
    """One data directory (``db``, ``media``) against one remote (``cfg``).

    ``creds`` default to :func:`config.resolve_credentials`; ``retry``/``timeouts`` to the
    remote's defaults. ``compact_after``: batches seen since the last snapshot before this device
    writes a new one; ``prune_after_s``: age after which batches covered by the snapshot are
    deleted (and unfinished multipart uploads aborted, and this device's log of applied objects
    trimmed); ``media_grace_s``: age after which a media object that no live row of the snapshot
    uses, and that no device touched meanwhile, is deleted from the remote; ``round_rows``: rows
    merged per apply transaction (batches are never split).
    ``hooks`` are for fault-injection tests: ``before_apply(keys)`` runs after the download, before
    an apply transaction; ``in_apply(keys)`` inside it, before the commit.
    """

    def __init__(self, db, media: MediaStore, cfg: RemoteConfig, creds: Credentials | None = None, *,
                 remote: Remote | None = None, retry: RetryPolicy | None = None,
                 timeouts: Timeouts | None = None, compact_after: int = 64,
                 prune_after_s: float = 7 * 86400.0, media_grace_s: float = 14 * 86400.0,
                 round_rows: int = 500, hooks: dict[str, Callable] | None = None):
        self.db = db
        self.media = media
        self.cfg = cfg
        self.creds = creds
        self._remote = remote
        self.retry = retry
        self.timeouts = timeouts
        self.compact_after = compact_after
        self.prune_after_s = prune_after_s
        self.media_grace_s = media_grace_s
        self.round_rows = round_rows
        self.hooks = hooks or {}
        self._manifest_raw: tuple[bytes, str] | None | bool = False  # manifest read by this cycle's pull

    @classmethod
    def for_db(cls, db, media: MediaStore, **kw) -> SyncEngine | None:
        """An engine for the remote configured in ``db``, or None when there is none."""
        with db.read() as s:
            cfg = sync_config.load(s)
        return None if cfg is None else cls(db, media, cfg, **kw)

    # ------------------------------------------------------------------ plumbing
    @property
    def remote(self) -> Remote:
        if self._remote is None:
            creds = self.creds or sync_config.resolve_credentials()
            if creds is None:
                raise RemoteError("no credentials for the remote: enter them in Settings → Sync, or set "
                                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "error")
            self.creds = creds
            self._remote = Remote(self.cfg, creds, self.retry, self.timeouts)
        return self._remote

    @property
    def prefix(self) -> str:
        return self.cfg.prefix

    def device(self, s: Session | None = None) -> str:
        if s is not None:
            return stamping.get_meta(s, "device_id") or self.db.device_id
        with self.db.read() as s2:
            return stamping.get_meta(s2, "device_id") or self.db.device_id

    def _hook(self, name: str, *args) -> None:
        fn = self.hooks.get(name)
        if fn is not None:
            fn(*args)

    def _max_ms(self) -> int:
        return hlc.now_ms() + schema.MAX_FUTURE_MS

    # ------------------------------------------------------------------ the cycle
    def run_cycle(self, *, fetch_media: bool = True,
                  progress: Callable[[str, int, int], None] | None = None) -> CycleResult:
        """One complete sync: push, pull, fetch the source media of pulled clips, compact."""
        t0 = time.monotonic()
        result = CycleResult()
        try:
            self._mark_running()
            self.push(result, progress)
            self.pull(result)
            self.push(result, progress)  # what was committed meanwhile (cheap when nothing was)
            if fetch_media:
                self.fetch_missing_media(result, progress)
            self.maybe_compact(result)
            self._trim_log()
        except RemoteError as exc:
            result.ok, result.error, result.error_kind = False, str(exc), exc.kind
            log.warning("sync cycle ended (%s): %s", exc.kind, result.error)  # a support case starts here
        except Exception as exc:  # the local storage refused (a lock, a full disk), or a bug: in words
            result.ok, result.error_kind = False, "error"
            why = storage_unavailable(exc)
            if why is not None:  # the scheduler retries it with backoff
                result.retry_later = True
                result.error = redact(f"{why}; local changes are kept ({getattr(exc, 'orig', exc)})", self.creds)
                log.warning("sync cycle ended: %s", result.error)
            else:
                log.exception("sync cycle failed")
                result.error = redact(f"{type(exc).__name__}: {exc}", self.creds)
        finally:
            if self._remote is not None:
                c = self._remote.counters
                result.requests, result.bytes_up, result.bytes_down = c.requests, c.bytes_up, c.bytes_down
            result.seconds = round(time.monotonic() - t0, 3)
            self._finish(result)
        return result

    def _trim_log(self) -> None:
        """Forget applied remote objects older than ``prune_after_s`` (the cursors say what was
        applied; rejected ones are kept: they are skipped by key and reported)."""
        cutoff = datetime.fromtimestamp(time.time() - self.prune_after_s, UTC)
        with self.db.write(remote=True) as s:
            s.execute(delete(SyncObject).where(SyncObject.status == "applied", SyncObject.at < cutoff))

    def _mark_running(self) -> None:
        """Tell :func:`status` (any process) that a cycle runs; :meth:`_finish` clears it."""
        with self.db.write(remote=True) as s:
            stamping.set_meta(s, M_RUNNING, json.dumps({"pid": os.getpid(), "host": HOST, "since": time.time()}))

    def _finish(self, result: CycleResult) -> None:
        if result.error is None and result.problems:
            result.error = "; ".join(result.problems)
            result.error_kind = "error"
        if result.error is not None:
            result.ok = False
            result.state = result.error_kind or "error"
        try:
            with self.db.write(remote=True) as s:
                stamping.delete_meta(s, M_RUNNING)
                if result.ok:
                    stamping.set_meta(s, M_LAST_OK, utcnow().isoformat())
                    stamping.delete_meta(s, M_ERROR, M_ERROR_KIND)
                    result.state = "pending" if _pending_count(s) else "synced"
                else:
                    stamping.set_meta(s, M_ERROR, result.error or "sync failed")
                    stamping.set_meta(s, M_ERROR_KIND, result.error_kind or "error")
        except OperationalError as exc:  # the storage still refuses: the result says why, the next cycle retries
            if storage_unavailable(exc) is None:
                raise
            log.warning("sync status not recorded: %s", exc)

    # ------------------------------------------------------------------ push
    def push(self, result: CycleResult | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> int:
        """Publish every unpushed local change (media first). Returns the number of changes."""
        result = result or CycleResult()
        total = 0
        for _ in range(10_000):
            with self.db.read() as s:
                me = self.device(s)
                changes = s.scalars(select(Change).where(Change.pushed.is_(False))
                                    .order_by(Change.seq).limit(BATCH_MAX_CHANGES)).all()
                if not changes:
                    break
                prev = int(stamping.get_meta(s, M_PUSHED) or 0)
                doc, needed = self._build_batch(s, me, changes, prev)
            first, last = doc["first"], doc["last"]
            self._ensure_media(needed, result, progress)
            key = schema.change_key(self.prefix, me, first)
            body = schema.gzip_json(doc)
            try:
                self.remote.put(key, body, if_none_match=True, content_type="application/gzip")
            except PreconditionFailed:
                last = self._resolve_existing(key, me, first)
                if last is None:  # another data directory writes under our device id: take a new one
                    self._rotate_device(me)
                    continue
            n = self._mark_pushed(me, first, last)
            total += n
            result.pushed_changes += n
            result.pushed_objects += 1
        return total

    def _build_batch(self, s: Session, me: str, changes: list[Change], prev: int) -> tuple[dict, dict]:
        rows: dict[tuple[str, str], dict] = {}
        for ch in changes:
            entry = rows.setdefault((ch.table, ch.row_id), {"t": ch.table, "id": ch.row_id, "f": {}})
            for f, v in ch.fields.items():
                entry["f"][f] = [v, ch.hlc]
        bases = self._load_bases(s, rows.keys())
        needed: dict[str, str] = {}  # sha256 -> extension of the local file
        revived: list[tuple[str, str]] = []
        media_rows = {}
        shas = {e["f"]["media_sha256"][0] for e in rows.values() if "media_sha256" in e["f"]}
        shas |= {rid for (t, rid) in rows if t == "media"}
        if shas:
            media_rows = {m.sha256: m for m in s.scalars(
                select(Media).where(Media.sha256.in_(shas)).execution_options(include_deleted=True))}
        for (t, rid), e in rows.items():
            base = bases.get((t, rid), {})
            b = {f: base.get(f, "") for f in e["f"]}
            b.setdefault("deleted", base.get("deleted", ""))
            if e["f"].get("deleted", [False])[0]:
                b.update({f: st for f, st in base.items() if f in FIELDS[t]})
            e["b"] = b
            if e["f"].get("deleted", [False])[0]:
                continue  # a tombstone needs no media
            if t in MEDIA_FIELD and MEDIA_FIELD[t] not in e["f"] and "deleted" in e["f"]:
                revived.append((t, rid))  # brought back: its media must be on the remote again
                continue
            sha = None
            if t == "media":
                sha = rid
            elif "media_sha256" in e["f"]:
                sha = e["f"]["media_sha256"][0]
            elif t in ("working_video", "final_video") and "sha256" in e["f"]:
                needed[e["f"]["sha256"][0]] = ".mp4"
                continue
            if sha:
                m = media_rows.get(sha)
                needed[sha] = m.ext if m else ""
        for t, rid in revived:
            row = s.get(MODELS[t], rid, execution_options={"include_deleted": True})
            sha = getattr(row, MEDIA_FIELD[t], None) if row is not None else None
            if sha:
                m = s.get(Media, sha, execution_options={"include_deleted": True}) if t == "clip" else None
                needed[sha] = (m.ext if m else "") if t == "clip" else ".mp4"
        doc = {
            "format": schema.FORMAT, "kind": "changes", "device": me,
            "first": changes[0].seq, "last": changes[-1].seq, "prev": prev,
            "created_at": utcnow().isoformat(), "digest": _changes_digest(changes),
            "media": sorted(needed), "rows": list(rows.values()),
        }
        return doc, needed

    def _resolve_existing(self, key: str, me: str, first: int) -> int | None:
        """The key exists: if it holds our changes (a retry, or another process of this data
        directory won the race), return its last seq; None if it is someone else's."""
        got = self.remote.get(key, schema.MAX_BATCH_GZ)
        if got is None:
            raise RemoteError(f"writing {key}: the remote said it exists but it cannot be read", "offline")
        try:
            batch = schema.parse_batch(got[0], me, first, None)
        except SchemaError:
            return None
        with self.db.read() as s:
            if int(stamping.get_meta(s, M_PUSHED) or 0) >= batch.last:
                return batch.last  # another process of this data directory pushed it already
            changes = s.scalars(select(Change).where(Change.seq.between(batch.first, batch.last))
                                .order_by(Change.seq)).all()
        return batch.last if _changes_digest(changes) == batch.digest else None

    def _mark_pushed(self, me: str, first: int, last: int) -> int:
        with self.db.write(remote=True) as s:
            changes = s.scalars(select(Change).where(Change.seq.between(first, last),
                                                     Change.pushed.is_(False))).all()
            pushed: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
            for ch in changes:
                for f in ch.fields:
                    pushed[(ch.table, ch.row_id)][f] = max(pushed[(ch.table, ch.row_id)].get(f, ""), ch.hlc)
            bases = self._load_bases(s, pushed.keys())
            rows = []
            for key, stamps in pushed.items():
                base = dict(bases.get(key, {}))
                for f, st in stamps.items():
                    if st > base.get(f, ""):
                        base[f] = st
                rows.append({"tbl": key[0], "row_id": key[1], "stamps": base})
            self._upsert_bases(s, rows, keep_tomb=True)
            s.execute(update(Change).where(Change.seq.between(first, last)).values(pushed=True))
            old = int(stamping.get_meta(s, M_PUSHED) or 0)
            stamping.set_meta(s, M_PUSHED, str(max(old, last)))
            top = s.scalar(select(func.max(Change.seq)))
            s.execute(delete(Change).where(Change.pushed.is_(True), Change.seq < top))
            _bump_since_snapshot(s, 1)
            return len(changes)

    def _restored(self, me: str, pushed: int, covered: dict[str, int], rejected: set[str],
                  result: CycleResult) -> bool:
        """Whether the remote holds batches of our device id that this data directory did not
        push: it is a backup put back, or a copy, of one that went on syncing. Then it continues
        under a new id, and the old id's batches (its own later edits) are pulled like another
        device's. Without this it would never read them and would say "synced". A batch a
        concurrent process of this data directory is pushing is recognised by its digest.

        The listing of our own batches is done once per process and data directory: a directory
        is put back while the app is closed, so the first sync after it starts sees it (and a
        copy that syncs beside its original is caught at its next push, whose key is taken).
        The manifest's cursors, read anyway, are looked at every time."""
        if covered.get(me, 0) > pushed:
            log.warning("the remote's snapshot covers changes of this device it does not have")
            self._rotate_device(me)
            return True
        checked = (str(self.db.path), me, self.prefix)
        if checked in _OWN_STREAM_CHECKED:
            return False
        own = self._list_new(me, pushed, rejected, result)
        if not own or self._resolve_existing(own[0][0], me, own[0][1]) is not None:
            _OWN_STREAM_CHECKED.add(checked)
            return False
        log.warning("the remote holds changes of this device it does not have (a restored or copied data directory)")
        self._rotate_device(me)
        return True

    def _rotate_device(self, old: str) -> None:
        """Our device id's stream on the remote is not ours (a copied or restored data directory):
        continue under a new id, and pull the old id's batches like any other device's."""
        new = str(uuid.uuid4())
        log.warning("device id %s is used by another data directory; this one becomes %s", old, new)
        with self.db.write(remote=True) as s:
            pushed = int(stamping.get_meta(s, M_PUSHED) or 0)
            stamping.set_meta(s, "device_id", new)
            stamping.set_meta(s, M_PUSHED, "0")
            if pushed:
                s.merge(SyncCursor(device_id=old, seq=pushed, updated_at=utcnow()))
        self.db.device_id = new

    # ------------------------------------------------------------------ media
    def _ensure_media(self, needed: dict[str, str], result: CycleResult,
                      progress: Callable[[str, int, int], None] | None) -> None:
        """Upload (and verify) every media object the batch points at, before the batch."""
        if not needed:
            return
        fresh = datetime.fromtimestamp(time.time() - TOUCH_AFTER_S, UTC)
        with self.db.read() as s:
            known = set(s.scalars(select(SyncMedia.sha256).where(SyncMedia.sha256.in_(needed),
                                                                 SyncMedia.at > fresh)))
        for sha, ext in sorted(needed.items()):
            if sha in known:
                continue
            key = schema.media_key(self.prefix, sha)
            head = self.remote.head(key)
            modified = head.get("LastModified") if head else None
            if modified is not None and modified.timestamp() < fresh.timestamp():
                # old: tell the media garbage collector it is in use again (see _collect_media)
                self.remote.put(schema.media_touch_key(self.prefix, sha), b"", content_type="text/plain")
            path = self.media.path_for(sha, ext)
            local_size = path.stat().st_size if path.is_file() else None
            if head is None:
                if local_size is None:
                    raise RemoteError(f"the media {sha[:12]}… is neither on this device nor on the remote: "
                                      f"the changes that use it cannot be published", "error")
                total = local_size
                done = [0]

                def cb(n: int, sha=sha, total=total, done=done) -> None:
                    done[0] += n
                    if progress:
                        progress(f"upload {sha[:12]}", done[0], total)

                self.remote.upload_file(key, path, cb, metadata={"sha256": sha})
                head = self.remote.head(key)
                if head is None or head.get("ContentLength") != local_size:
                    raise RemoteError(f"the upload of media {sha[:12]}… did not verify (size differs)", "offline")
                result.media_uploaded += 1
            elif local_size is not None and head.get("ContentLength") != local_size:
                raise RemoteError(f"the remote copy of media {sha[:12]}… has the wrong size", "error")
            with self.db.write(remote=True) as s:
                s.merge(SyncMedia(sha256=sha, size=int(head.get("ContentLength") or 0), at=utcnow()))

    def fetch_media(self, sha256: str, ext: str = "",
                    progress: Callable[[str, int, int], None] | None = None) -> Path:
        """Download one media object into the media store, verified by its sha256."""
        path = self.media.path_for(sha256, ext)
        if path.is_file():
            return path
        key = schema.media_key(self.prefix, sha256)
        head = self.remote.head(key)
        if head is None:
            raise MediaUnavailable(f"the media {sha256[:12]}… is not on the remote (yet)")
        total = int(head.get("ContentLength") or 0)
        tmp = self.media.temp_path(ext or ".part")
        done = [0]

        def cb(n: int) -> None:
            done[0] += n
            if progress:
                progress(f"download {sha256[:12]}", done[0], total)

        try:
            self.remote.download_file(key, tmp, cb)
            with open(tmp, "rb") as fh:
                got = hashlib.file_digest(fh, "sha256").hexdigest()
            if got != sha256:
                raise MediaUnavailable(f"the remote copy of media {sha256[:12]}… is corrupt (its sha256 is "
                                       f"{got[:12]}…); it was not used")
            return self.media.ingest(tmp, sha256, ext, move=True)
        finally:
            tmp.unlink(missing_ok=True)

    def fetch_missing_media(self, result: CycleResult,
                            progress: Callable[[str, int, int], None] | None = None) -> None:
        """Source media of the clips of live projects that are not on this device yet. Outputs
        (working and final videos) are fetched when needed (:func:`ensure_local`)."""
        with self.db.read() as s:
            rows = s.execute(select(Media.sha256, Media.ext).join(Clip, Clip.media_sha256 == Media.sha256)
                             .join(Project, Project.id == Clip.project_id)
                             .where(Clip.deleted.is_(False), Project.deleted.is_(False))
                             .distinct().execution_options(include_deleted=True)).all()
        for sha, ext in rows:
            if self.media.has(sha, ext):
                continue
            try:
                self.fetch_media(sha, ext, progress)
                result.media_downloaded += 1
            except MediaUnavailable as exc:
                result.problem(str(exc))

    # ------------------------------------------------------------------ pull
    def pull(self, result: CycleResult | None = None) -> CycleResult:
        result = result or CycleResult()
        manifest = self._read_manifest(result)
        with self.db.read() as s:
            me = self.device(s)
            cursors = _cursors(s)
            rejected = set(s.scalars(select(SyncObject.key).where(
                SyncObject.status == "rejected",
                # rejected for a stamp ahead of the clock before that was a wait: read them again
                or_(SyncObject.error.is_(None), ~SyncObject.error.contains(schema.AHEAD_WORDS)))))
            applied_snapshot = stamping.get_meta(s, M_SNAPSHOT)
            pushed = int(stamping.get_meta(s, M_PUSHED) or 0)
        covered = manifest[0].cursors if manifest is not None else {}
        if self._restored(me, pushed, covered, rejected, result):
            with self.db.read() as s:
                me, cursors = self.device(s), _cursors(s)
        snapshot_usable = manifest is not None and applied_snapshot != manifest[0].snapshot

        def use_snapshot() -> None:
            nonlocal cursors, snapshot_usable
            cursors = self._apply_snapshot(manifest[0], rejected, result) or cursors
            snapshot_usable = False

        if snapshot_usable and not cursors:  # a new device starts from the snapshot
            use_snapshot()
        devices = self._list_devices(me, rejected, result)
        devices += [d for d in covered if d != me and d not in devices]  # all its batches may be pruned
        listed = {d: self._list_new(d, cursors.get(d, 0), rejected, result) for d in devices}
        behind = any(covered.get(d, 0) > cursors.get(d, 0) for d in devices)
        hint = any((keys and keys[0][1] != cursors.get(d, 0) + 1) or (not keys and covered.get(d, 0) > cursors.get(d, 0))
                   for d, keys in listed.items())
        if snapshot_usable and behind and (hint or sum(map(len, listed.values())) > SNAPSHOT_IF_BEHIND):
            use_snapshot()  # missing or many batches: the snapshot is the shorter way
            listed = {d: [k for k in keys if k[1] > cursors.get(d, 0)] for d, keys in listed.items()}
        blobs = self._download([k for keys in listed.values() for k in keys], result)
        queues: dict[str, list[_Pending]] = {}
        gaps: dict[str, tuple[int, int]] = {}
        for dev in devices:
            queues[dev], gap, waits = self._validate_device(dev, cursors.get(dev, 0), listed[dev], blobs, rejected,
                                                            result)
            if gap is None and not waits and not queues[dev] and covered.get(dev, 0) > cursors.get(dev, 0):
                gap = (cursors.get(dev, 0), covered[dev])
            if gap:
                gaps[dev] = gap
        if gaps and snapshot_usable and any(covered.get(d, 0) >= g[1] for d, g in gaps.items()):
            use_snapshot()
            for dev in list(queues):
                c = cursors.get(dev, 0)
                queues[dev] = [p for p in queues[dev] if p.batch.last > c]
                if dev in gaps and (not queues[dev] or queues[dev][0].batch.prev <= c):
                    gaps.pop(dev)
        for dev, (a, b) in gaps.items():
            result.problem(f"the changes {a + 1}–{b} of device {dev[:8]} are missing on the remote; "
                           f"later ones were applied")
        self._apply_queues(queues, result)
        return result

    def _get_manifest(self) -> tuple[bytes, str] | None:
        return self.remote.get(schema.manifest_key(self.prefix), schema.MAX_MANIFEST)

    def _read_manifest(self, result: CycleResult):
        got = self._manifest_raw = self._get_manifest()
        if got is None:
            return None
        try:
            return schema.parse_manifest(got[0]), got[1]
        except SchemaError as exc:
            result.problem(f"manifest.json rejected: {exc}")
            return None

    def _list_devices(self, me: str, rejected: set[str], result: CycleResult) -> list[str]:
        out = []
        for kind, obj in self.remote.list(schema.changes_dir(self.prefix), delimiter="/"):
            if kind == "prefix":
                dev = schema.parse_device_dir(self.prefix, obj["Prefix"])
                if dev is None:
                    self._reject(obj["Prefix"], "", "not a device folder (the name is not a device id)",
                                 rejected, result)
                elif dev != me:
                    out.append(dev)
            else:
                self._reject(obj["Key"], "", "not a change object (unexpected name)", rejected, result)
        return out

    def _reject(self, key: str, device: str, why: str, rejected: set[str], result: CycleResult) -> None:
        key = key[:600]
        if key in rejected:
            return
        rejected.add(key)
        shown = ascii(key)[1:-1][:120]
        result.rejected.append({"key": shown, "error": why})
        result.problem(f"rejected remote object {shown}: {why}")
        log.warning("rejected remote object %s: %s", shown, why)
        with self.db.write(remote=True) as s:
            s.merge(SyncObject(key=key, device_id=device[:64], status="rejected", error=why[:2000], at=utcnow()))

    def _list_new(self, dev: str, cursor: int, rejected: set[str],
                  result: CycleResult) -> list[tuple[str, int, int]]:
        """(key, seq, size) of ``dev``'s well-formed change objects after ``cursor``, in order;
        badly named ones are rejected, known rejected ones skipped."""
        start = schema.change_key(self.prefix, dev, cursor) if cursor else None
        out = []
        for kind, obj in self.remote.list(schema.changes_dir(self.prefix, dev), start_after=start):
            if kind != "key" or obj["Key"] in rejected:
                continue
            key = obj["Key"]
            parsed = schema.parse_change_key(self.prefix, key)
            if parsed is None or parsed[0] != dev:
                self._reject(key, dev, "not a change object (unexpected name)", rejected, result)
            elif parsed[1] > cursor:
                out.append((key, parsed[1], int(obj.get("Size", 0))))
        return out

    def _download(self, keys: list[tuple[str, int, int]], result: CycleResult) -> dict[str, object]:
        """key -> bytes (None: gone meanwhile; a RemoteError: refused), fetched 8 at a time."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item):
            key, _, size = item
            if size > schema.MAX_BATCH_GZ:
                return key, RemoteError(f"too large ({size} bytes)")
            try:
                got = self.remote.get(key, schema.MAX_BATCH_GZ)
            except RemoteError as exc:
                return key, exc
            return key, None if got is None else got[0]

        if len(keys) <= 1:
            out = dict(map(one, keys))
        else:
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="sync-get") as pool:
                out = dict(pool.map(one, keys))
        for v in out.values():
            if isinstance(v, RemoteError) and v.kind == "offline":
                raise v
        return out

    def _validate_device(self, dev: str, cursor: int, keys: list[tuple[str, int, int]], blobs: dict,
                         rejected: set[str], result: CycleResult
                         ) -> tuple[list[_Pending], tuple[int, int] | None, bool]:
        """The valid batches of ``dev`` in order, the first gap in their chain (a batch that does
        not follow the one before it, and no rejected object explains why), and whether the chain
        stops at a batch stamped ahead of this device's clock (the rest waits)."""
        out: list[_Pending] = []
        expect, skipped, gap = cursor, False, None
        for key, seq, _ in keys:
            if seq <= expect:
                continue
            data = blobs.get(key)
            if data is None:
                continue  # listed, then gone (pruned meanwhile)
            if isinstance(data, RemoteError):
                self._reject(key, dev, str(data), rejected, result)
                skipped = True
                continue
            try:
                batch = schema.parse_batch(data, dev, seq, self._max_ms())
            except schema.AheadError:
                # a clock is wrong, the batch is not: it stays on the remote, and it and the
                # device's later ones wait until it is no longer ahead of ours
                result.problem(f"the changes of device {dev[:8]} from {expect + 1} on are stamped more than a "
                               f"day {schema.AHEAD_WORDS} (one of the two clocks is wrong); they will be applied "
                               f"once the clocks agree")
                log.warning("remote object %s is stamped more than a day ahead; it waits", ascii(key)[1:-1][:120])
                return out, gap, True
            except SchemaError as exc:
                self._reject(key, dev, str(exc), rejected, result)
                skipped = True
                continue
            if batch.prev != expect and not skipped and gap is None \
                    and not _rejected_between(self.prefix, dev, expect, batch.prev, rejected):
                gap = (expect, batch.prev)
            stamps = [st for e in batch.entries for _, st in e.fields.values()]
            out.append(_Pending(key, batch, min(stamps, default="")))
            expect, skipped = batch.last, False
        return out, gap, False

    def _apply_queues(self, queues: dict[str, list[_Pending]], result: CycleResult) -> None:
        """Apply the batches in rounds, oldest stamps first, each device's in order; a batch whose
        rows need rows this device does not have yet waits for a later round. When no batch can
        be applied, the first waiting one parks the entries that need what this device lacks (see
        :meth:`_park_head`) and the rounds go on: a missing row never holds a device back."""
        queues = {d: list(q) for d, q in queues.items() if q}
        applied_rounds = 0
        while queues:
            round_: list[_Pending] = []
            rows = 0
            heads = dict(queues)
            taken: dict[str, int] = defaultdict(int)
            while heads and rows < self.round_rows:
                dev = min(heads, key=lambda d: heads[d][taken[d]].min_stamp)
                p = heads[dev][taken[dev]]
                round_.append(p)
                rows += len(p.batch.entries)
                taken[dev] += 1
                if taken[dev] >= len(heads[dev]):
                    del heads[dev]
            round_, waiting = self._settle(round_, queues)
            if not round_:
                if self._park_head(queues, waiting[0].batch.device):
                    continue
                # not reached: the head, once parked, only writes to and points at rows that exist
                # (or that it creates), which _check_dependencies accepts; kept so that a
                # disagreement between the two checks ends the cycle instead of looping forever
                for p in waiting:
                    result.held.append(p.key)
                result.problem(f"{len(waiting)} remote batch(es) refer to rows this device does not have "
                               f"(first: {waiting[0].key}); they will be tried again")
                return
            self._hook("before_apply", [p.key for p in round_])
            if applied_rounds:
                time.sleep(YIELD_S)  # let a waiting local write in between two apply transactions
            self._apply_round(round_, result)
            applied_rounds += 1
            done = {id(p) for p in round_}
            for dev in list(queues):
                queues[dev] = [p for p in queues[dev] if id(p) not in done]
                if not queues[dev]:
                    del queues[dev]

    def _park_head(self, queues: dict[str, list[_Pending]], dev: str) -> bool:
        """Replace the first batch of ``dev`` (a waiting batch is always its device's first: a
        device's batches wait from the first one that cannot be applied on) by the same batch
        without the entries that need rows this device does not have; those are parked when the
        batch is applied. False when it has none (nothing could be done).

        Only rows that exist count, not those other waiting batches would bring: when nothing can
        be applied, no order of the waiting batches helps, and rows that come later unpark it."""
        p = queues[dev][0]
        ok, parked = _split_entries(p.batch.entries, self._existing(_keys(p.batch.entries)))
        if not parked:
            return False
        log.info("parking %d of the %d row(s) of %s: they need rows this device does not have yet",
                 len(parked), len(p.batch.entries), p.key)
        queues[dev][0] = dataclasses.replace(p, batch=dataclasses.replace(p.batch, entries=ok),
                                             parked=[*p.parked, *parked])
        return True

    def _settle(self, round_: list[_Pending], queues: dict[str, list[_Pending]]):
        """The round's batches that can be applied now; a batch that needs a row from a later
        batch of its own device takes that batch into the same transaction (up to a limit)."""
        for _ in range(64):
            keep, waiting = self._check_dependencies(round_)
            if not waiting:
                return keep, waiting
            grew = False
            taken = {id(p) for p in round_}
            for dev in {p.batch.device for p in waiting}:
                nxt = next((p for p in queues.get(dev, []) if id(p) not in taken), None)
                if nxt is not None:
                    round_ = [*round_, nxt]
                    grew = True
            if not grew:
                return keep, waiting
        return self._check_dependencies(round_)

    def _check_dependencies(self, round_: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """Split off the batches (and, after them, their device's later ones) that would create a
        row without its required fields or point at a project or media this device lacks."""
        while True:
            entries = [e for p in round_ for e in p.batch.entries]
            _, parked = _split_entries(entries, self._existing(_keys(entries)))
            held = {id(e) for e in parked}
            bad = {id(p) for p in round_ if any(id(e) in held for e in p.batch.entries)}
            if not bad:
                return round_, []
            stopped: set[str] = set()
            keep, waiting = [], []
            for p in round_:
                if id(p) in bad or p.batch.device in stopped:
                    stopped.add(p.batch.device)
                    waiting.append(p)
                else:
                    keep.append(p)
            if not keep:
                return [], waiting
            round_ = keep

    def _existing(self, keys: Iterable[tuple[str, str]], s: Session | None = None) -> set[tuple[str, str]]:
        """Which of ``keys`` are rows here (tombstones included); inside ``s`` when given (a write
        transaction sees its own uncommitted rows, another connection does not)."""
        if s is None:
            with self.db.read() as s2:
                return self._existing(keys, s2)
        out = set()
        for t, ids in _by_table(keys).items():
            pk = _pk(MODELS[t])
            for chunk in _chunks(sorted(ids), 500):
                for (i,) in s.execute(select(pk).where(pk.in_(chunk)).execution_options(include_deleted=True)):
                    out.add((t, i))
        return out

    def _apply_round(self, round_: list[_Pending], result: CycleResult) -> None:
        with self.db.write(remote=True) as s:
            s.connection().exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            done = _cursors(s)
            round_ = [p for p in round_ if p.batch.last > done.get(p.batch.device, 0)]  # another process did it
            me = self.device(s)
            rows, conflicts = self._merge(s, [e for p in round_ for e in p.batch.entries], me)
            parked = self._park(s, [(p.key, p.batch.device, e) for p in round_ for e in p.parked])
            unparked, rows2, conflicts2 = self._unpark(s, me)
            cursors: dict[str, int] = {}
            for p in round_:
                cursors[p.batch.device] = max(cursors.get(p.batch.device, 0), p.batch.last)
                s.merge(SyncObject(key=p.key, device_id=p.batch.device, first_seq=p.batch.first,
                                   last_seq=p.batch.last, status="applied", error=None, at=utcnow()))
            for dev, seq in cursors.items():
                _advance_cursor(s, dev, seq)
            _bump_since_snapshot(s, len(round_))
            self._hook("in_apply", [p.key for p in round_])
        result.applied_objects += len(round_)
        result.applied_rows += rows + rows2
        result.conflicts += conflicts + conflicts2
        result.parked += parked
        result.unparked += unparked

    def _park(self, s: Session, items: list[tuple[str, str, Entry]]) -> int:
        """Store the (key, device, entry) ``items`` in ``sync_parked``, in the caller's write
        transaction. Writes parked already are not parked twice: a snapshot carries the parked
        rows of its writer, which this device may have parked from the batch itself. Returns how
        many were stored."""
        if not items:
            return 0
        seen = set()
        for t, ids in _by_table({(e.table, e.row_id) for _, _, e in items}).items():
            for chunk in _chunks(sorted(ids), 500):
                for r in s.execute(select(SyncParked.row_id, SyncParked.fields)
                                   .where(SyncParked.tbl == t, SyncParked.row_id.in_(chunk))):
                    seen.add((t, r.row_id, json.dumps(r.fields, sort_keys=True)))
        rows = []
        for key, device, e in items:
            fields = _parked_fields(e)
            sig = (e.table, e.row_id, json.dumps(fields, sort_keys=True))
            if sig in seen:
                continue
            seen.add(sig)
            rows.append({"tbl": e.table, "row_id": e.row_id, "fields": fields, "base": e.base,
                         "device_id": device[:64], "key": key[:600], "at": utcnow()})
        if rows:
            s.execute(insert(SyncParked.__table__), rows)
        return len(rows)

    def _unpark(self, s: Session, me: str) -> tuple[int, int, int]:
        """Merge the parked rows that can be applied now (asked inside ``s``: the rows this
        transaction just wrote count), and forget them; returns how many, and the rows written
        and conflicts recorded. Each keeps its ``base``, so conflicts are found as if its batch
        had been applied late; for the ones from a snapshot (no base) the local changes not
        pushed yet are passed, as when a snapshot is applied."""
        entries: dict[int, tuple[int, Entry]] = {}
        for r in s.execute(select(SyncParked.id, SyncParked.tbl, SyncParked.row_id, SyncParked.fields,
                                  SyncParked.base)):
            e = Entry(r.tbl, r.row_id, {f: (v, st) for f, (v, st) in r.fields.items()}, r.base)
            entries[id(e)] = (r.id, e)
        if not entries:
            return 0, 0, 0
        waiting = [e for _, e in entries.values()]
        ok, _ = _split_entries(waiting, self._existing(_keys(waiting), s))
        if not ok:
            return 0, 0, 0
        unpushed: dict[tuple[str, str], set[str]] = defaultdict(set)
        rows_of = _by_table({(e.table, e.row_id) for e in ok})
        for t, ids in rows_of.items():
            for chunk in _chunks(sorted(ids), 500):
                for ch in s.scalars(select(Change).where(Change.pushed.is_(False), Change.table == t,
                                                         Change.row_id.in_(chunk))):
                    unpushed[(ch.table, ch.row_id)] |= set(ch.fields)
        rows, conflicts = self._merge(s, ok, me, unpushed)
        gone = [entries[id(e)][0] for e in ok]
        for chunk in _chunks(gone, 500):
            s.execute(delete(SyncParked).where(SyncParked.id.in_(chunk)))
        log.info("merged %d parked row(s): the rows they need are here now", len(ok))
        return len(ok), rows, conflicts

    # ------------------------------------------------------------------ merging
    def _merge(self, s: Session, entries: list[Entry], me: str,
               unpushed: dict[tuple[str, str], set[str]] | None = None) -> tuple[int, int]:
        """Merge ``entries`` into the rows, inside the caller's write transaction. Returns the
        number of rows written and of new conflicts recorded; the HLC moves past every stamp seen."""
        writes: dict[tuple[str, str], list[Write]] = defaultdict(list)
        top = ""
        for e in entries:
            for f, (v, st) in e.fields.items():
                writes[(e.table, e.row_id)].append(Write(f, v, st, e.base))
                top = max(top, st)
        states = self._load_states(s, writes.keys())
        conflicts: list[Conflict] = []
        for key, ws in writes.items():
            st = states.get(key)
            if st is None:
                st = states[key] = RowState.new(*key)
            if unpushed is not None:
                st.unpushed = frozenset(unpushed.get(key, ()))
            apply_writes(st, ws, me, conflicts)
        pids = {pid for st in states.values() if st.dirty and (pid := _project_of(st))}
        pids |= {pid for c in conflicts if (c.table, c.field) == ("clip", "position")  # order_conflicts
                 and (pid := _project_of(states[(c.table, c.row_id)]))}
        self._load_groups(s, pids, states)
        grouped: set[tuple[str, str]] = set()
        children_of: dict[str, list[RowState]] = defaultdict(list)
        for st in states.values():
            pid = _project_of(st)
            if st.table in CHILD_TABLES and pid in pids:
                children_of[pid].append(st)
        for pid in pids:
            head = states.get(("project", pid))
            kids = children_of.get(pid, [])
            if head is None:
                for c in kids:
                    normalize(c, [], me, conflicts)
            else:
                normalize(head, kids, me, conflicts)
                grouped.add(("project", pid))
            grouped |= {(c.table, c.row_id) for c in kids}
        for key, st in states.items():
            if key not in grouped and (st.dirty or not st.exists):
                normalize(st, [], me, conflicts)
        written = self._write_states(s, states.values())
        recorded = self._record_conflicts(s, order_conflicts(states, conflicts))
        if top:
            stamping.set_meta(s, "hlc", hlc.receive(stamping.get_meta(s, "hlc"), top, me))
        return written, recorded

    def _load_bases(self, s: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        out = {}
        for t, ids in _by_table(keys).items():
            for chunk in _chunks(ids, 500):
                for row in s.execute(select(SyncBase.row_id, SyncBase.stamps)
                                     .where(SyncBase.tbl == t, SyncBase.row_id.in_(chunk))):
                    out[(t, row.row_id)] = row.stamps or {}
        return out

    def _load_states(self, s: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], RowState]:
        return self._load_where(s, {t: (_pk(MODELS[t]), ids) for t, ids in _by_table(keys).items()}, None)

    def _load_where(self, s: Session, spec: dict, into: dict | None) -> dict[tuple[str, str], RowState]:
        states = into if into is not None else {}
        for t, (col, values) in spec.items():
            model = MODELS[t]
            tbl = model.__table__
            pk = _pk(model)
            fields = list(FIELDS[t])
            for chunk in _chunks(sorted(set(values)), 500):
                rows = s.execute(select(tbl).where(col.in_(chunk)).execution_options(include_deleted=True)).all()
                if not rows:
                    continue
                ids = [getattr(r, pk.key) for r in rows]
                bases = {}
                for chunk2 in _chunks(ids, 500):
                    for b in s.execute(select(SyncBase).where(SyncBase.tbl == t, SyncBase.row_id.in_(chunk2))
                                       .execution_options(include_deleted=True)).scalars():
                        bases[b.row_id] = b
                for r in rows:
                    rid = getattr(r, pk.key)
                    if (t, rid) in states:
                        continue
                    b = bases.get(rid)
                    values = {f: stamping.json_value(getattr(r, f)) for f in fields if f != "deleted"}
                    states[(t, rid)] = RowState.load(t, rid, values, r.stamps or {}, r.deleted,
                                                     b.tomb if b else None, (b.stamps if b else None) or {})
        return states

    def _load_groups(self, s: Session, pids: set[str], states: dict) -> None:
        if not pids:
            return
        spec = {"project": (Project.__table__.c.id, pids)}
        for t in CHILD_TABLES:
            spec[t] = (MODELS[t].__table__.c.project_id, pids)
        self._load_where(s, spec, states)

    def _write_states(self, s: Session, states: Iterable[RowState]) -> int:
        inserts: dict[tuple[str, tuple], list[dict]] = defaultdict(list)
        updates: dict[str, list[dict]] = defaultdict(list)
        bases: list[dict] = []
        touched_projects: dict[str, str] = {}
        n = 0
        for st in states:
            if st.dirty or not st.exists:
                params = {f: _to_db(st.table, f, v) for f, v in st.values.items() if f != "deleted"}
                top = st.hlc
                params.update(deleted=st.deleted_col, stamps=dict(st.stamps), hlc=top,
                              device_id=device_of(top)[:36])
                if st.exists:
                    params["b_pk"] = st.row_id
                    updates[st.table].append(params)
                else:
                    params[_pk(MODELS[st.table]).key] = st.row_id
                    if st.table == "project" and top:  # not the column's default, the pull's time:
                        params["updated_at"] = _stamp_time(top)  # "Recent" is the edits' order
                    inserts[(st.table, tuple(sorted(params)))].append(params)
                pid = _project_of(st)
                if pid and top:
                    touched_projects[pid] = max(touched_projects.get(pid, ""), top)
                n += 1
            if st.base_dirty:
                bases.append({"tbl": st.table, "row_id": st.row_id, "stamps": st.base, "tomb": st.tomb})
        for t in TABLE_ORDER:  # parents first (foreign keys)
            for (tt, _), rows in inserts.items():
                if tt == t:
                    s.execute(insert(MODELS[t].__table__), rows)
        for t, rows in updates.items():
            tbl = MODELS[t].__table__
            s.execute(update(tbl).where(_pk(MODELS[t]) == bindparam("b_pk")), rows)
        if bases:
            self._upsert_bases(s, bases)
        if touched_projects:
            tbl = Project.__table__
            s.execute(update(tbl).where(tbl.c.id == bindparam("b_pk"), tbl.c.updated_at < bindparam("b_at")),
                      [{"b_pk": pid, "b_at": _stamp_time(st), "updated_at": _stamp_time(st)}
                       for pid, st in touched_projects.items()])
        return n

    def _upsert_bases(self, s: Session, rows: list[dict], keep_tomb: bool = False) -> None:
        if not rows:
            return
        stmt = sqlite_insert(SyncBase.__table__)
        set_ = {"stamps": stmt.excluded.stamps}
        if not keep_tomb:
            set_["tomb"] = stmt.excluded.tomb
        for r in rows:
            r.setdefault("tomb", None)
        s.execute(stmt.on_conflict_do_update(index_elements=["tbl", "row_id"], set_=set_), rows)

    def _record_conflicts(self, s: Session, conflicts: list[Conflict]) -> int:
        seen, recorded = set(), 0
        for c in conflicts:
            key = (c.table, c.row_id, c.field, c.local_stamp, c.remote_stamp)
            if key in seen:
                continue
            seen.add(key)
            exists = s.scalar(select(SyncConflict.id).where(
                SyncConflict.tbl == c.table, SyncConflict.row_id == c.row_id, SyncConflict.field == c.field,
                SyncConflict.local_stamp == c.local_stamp, SyncConflict.remote_stamp == c.remote_stamp))
            if exists:
                continue
            log.info("conflict on %s %s.%s: %s wins", c.table, c.row_id, c.field, c.winner)
            recorded += 1
            s.add(SyncConflict(tbl=c.table, row_id=c.row_id, field=c.field, local_value=c.local_value,
                               remote_value=c.remote_value, local_stamp=c.local_stamp,
                               remote_stamp=c.remote_stamp, winner=c.winner, detected_at=utcnow()))
        return recorded

    # ------------------------------------------------------------------ snapshots
    def _apply_snapshot(self, manifest: schema.Manifest, rejected: set[str],
                        result: CycleResult) -> dict[str, int] | None:
        key = schema.join(self.prefix, manifest.snapshot)
        got = self.remote.get(key, schema.MAX_SNAPSHOT_GZ)
        if got is None:
            result.problem(f"the snapshot {manifest.snapshot} named by manifest.json is missing")
            return None
        try:
            snap = schema.parse_snapshot(got[0], self._max_ms())
        except schema.AheadError:
            result.problem(f"the snapshot {manifest.snapshot} is stamped more than a day {schema.AHEAD_WORDS} (one "
                           f"of the two clocks is wrong); it will be used once the clocks agree")
            return None
        except SchemaError as exc:
            self._reject(key, manifest.device, str(exc), rejected, result)
            return None
        with self.db.read() as s:
            unpushed: dict[tuple[str, str], set[str]] = defaultdict(set)
            for ch in s.scalars(select(Change).where(Change.pushed.is_(False))):
                unpushed[(ch.table, ch.row_id)] |= set(ch.fields)
        entries = sorted(snap.entries, key=_snapshot_order)
        chunks = list(_chunks(entries, self.round_rows)) or [[]]
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(YIELD_S)
            with self.db.write(remote=True) as s:
                s.connection().exec_driver_sql("PRAGMA defer_foreign_keys = ON")
                me = self.device(s)
                ok, parked = _split_entries(chunk, self._existing(_keys(chunk), s))
                rows, conflicts = self._merge(s, ok, me, unpushed)
                result.applied_rows += rows
                result.conflicts += conflicts
                result.parked += self._park(s, [(key, manifest.device, e) for e in parked])
                if i == len(chunks) - 1:  # a later chunk may have brought what a parked row needs
                    unparked, rows, conflicts = self._unpark(s, me)
                    result.unparked += unparked
                    result.applied_rows += rows
                    result.conflicts += conflicts
                    for dev, seq in snap.cursors.items():
                        if dev != me:
                            _advance_cursor(s, dev, seq)
                    stamping.set_meta(s, M_SNAPSHOT, manifest.snapshot)
                    stamping.set_meta(s, M_SINCE_SNAPSHOT, "0")
                self._hook("in_apply", [key])
        result.snapshot_applied = manifest.snapshot
        with self.db.read() as s:
            return _cursors(s)

    def maybe_compact(self, result: CycleResult | None = None, force: bool = False) -> str | None:
        """Write a snapshot + manifest when enough batches went by (or none exists yet)."""
        result = result or CycleResult()
        if not result.ok:
            return None
        got = self._manifest_raw
        if got is False:
            got = self._get_manifest()
        self._manifest_raw = False
        manifest, etag = None, None
        if got is not None:
            try:
                manifest, etag = schema.parse_manifest(got[0]), got[1]
            except SchemaError:
                manifest, etag = None, got[1]
        with self.db.read() as s:
            since = int(stamping.get_meta(s, M_SINCE_SNAPSHOT) or 0)
            pushed = int(stamping.get_meta(s, M_PUSHED) or 0)
        if manifest is not None and manifest.snapshot != self._seen_snapshot():
            self._note_snapshot(manifest.snapshot)  # someone else compacted: count from there
            since = 0
        if not force and manifest is not None and since < self.compact_after:
            return None
        if not force and got is None and pushed == 0:
            return None  # nothing of ours on the remote yet: nothing to compact
        doc = self._snapshot_doc(manifest)
        if doc is None:
            return None
        me = doc["device"]
        name = schema.snapshot_name(hlc.now_ms(), me)
        snap_key = schema.join(self.prefix, name)
        self.remote.put(snap_key, schema.gzip_json(doc), if_none_match=True, content_type="application/gzip")
        body = json.dumps({"format": schema.FORMAT, "snapshot": name, "cursors": doc["cursors"], "device": me,
                           "created_at": doc["created_at"],
                           "previous": manifest.snapshot if manifest else None}, indent=1).encode()
        try:
            if got is None:
                self.remote.put(schema.manifest_key(self.prefix), body, if_none_match=True,
                                content_type="application/json")
            else:
                self.remote.put(schema.manifest_key(self.prefix), body, if_match=etag,
                                content_type="application/json")
        except RemoteError as exc:  # 412: changed meanwhile; 404: deleted meanwhile (If-Match on no key)
            if exc.status not in (404, 412):
                raise
            again = self._get_manifest()
            if again is None or json.loads(again[0]).get("snapshot") != name:
                self.remote.delete([snap_key])  # another device compacted first: theirs stands
                return None
        self._note_snapshot(name)
        result.snapshot_written = name
        missing = self._prune(name, manifest.snapshot if manifest else None, doc)
        self._republish(missing, result)
        return name

    def _seen_snapshot(self) -> str | None:
        with self.db.read() as s:
            return stamping.get_meta(s, M_SNAPSHOT)

    def _note_snapshot(self, name: str) -> None:
        with self.db.write(remote=True) as s:
            stamping.set_meta(s, M_SNAPSHOT, name)
            stamping.set_meta(s, M_SINCE_SNAPSHOT, "0")

    def _snapshot_doc(self, manifest: schema.Manifest | None) -> dict | None:
        """Every synced row with its stamps, and the parked rows, read in one transaction; None if
        this device has unpushed changes (their media may not be up yet) or has not applied all
        the manifest has.

        The cursors cover the batches parked rows came in, so a device that starts from the
        snapshot gets them from it. They are rows of their own, after the real ones: a row parked
        because it is not here never shares its id with a real row, but one parked because it
        points at a project or media that is not here does (its row exists). Both are applied by
        the receiver entry by entry (:func:`_split_entries`; :meth:`_merge` takes several writes
        to one row), so the real row is applied and the parked one parked again. Parked rows of
        one row are combined (newest stamp per field) only when they point at the same rows: they
        can then only ever be applied together, so combining them changes nothing on arrival."""
        with self.db.read() as s:
            if _pending_count(s):
                return None
            me = self.device(s)
            cursors = _cursors(s)
            cursors[me] = int(stamping.get_meta(s, M_PUSHED) or 0)
            if manifest is not None and any(cursors.get(d, 0) < q for d, q in manifest.cursors.items()):
                return None
            rows = []
            for t in TABLE_ORDER:
                model = MODELS[t]
                tbl = model.__table__
                pk = _pk(model)
                tombs = dict(s.execute(select(SyncBase.row_id, SyncBase.tomb)
                                       .where(SyncBase.tbl == t, SyncBase.tomb.is_not(None))).all())
                for r in s.execute(select(tbl).execution_options(include_deleted=True)):
                    stamps = r.stamps or {}
                    rid = getattr(r, pk.key)
                    f = {}
                    for name in FIELDS[t]:
                        st = stamps.get(name)
                        if not st:
                            continue
                        if name == "deleted":
                            v = bool(r.deleted) or tombs.get(rid) == st
                        else:
                            v = stamping.json_value(getattr(r, name))
                        f[name] = [v, st]
                    if f:
                        rows.append({"t": t, "id": rid, "f": f})
            parked: dict[tuple, dict[str, list]] = {}
            for r in s.execute(select(SyncParked.tbl, SyncParked.row_id, SyncParked.fields)
                               .order_by(SyncParked.id)):
                e = Entry(r.tbl, r.row_id, {f: tuple(pair) for f, pair in r.fields.items()}, None)
                f = parked.setdefault((r.tbl, r.row_id, frozenset(_refs(e))), {})
                for name, (v, st) in r.fields.items():
                    if name not in f or st > f[name][1]:
                        f[name] = [v, st]
            rows += [{"t": t, "id": rid, "f": f} for (t, rid, _), f in parked.items()]
        return {"format": schema.FORMAT, "kind": "snapshot", "device": me, "created_at": utcnow().isoformat(),
                "cursors": {d: q for d, q in cursors.items() if q > 0}, "rows": rows}

    def _prune(self, current: str, previous: str | None, doc: dict) -> dict[str, str]:
        """Delete snapshots other than the current and previous one, and batches the current
        snapshot covers that are older than ``prune_after_s``; abort multipart uploads started
        before then; collect the media nobody uses (:meth:`_collect_media`). Returns the media
        that live rows use and the remote lacks."""
        cursors: dict[str, int] = doc["cursors"]
        cutoff = time.time() - self.prune_after_s
        old = []
        keep = {schema.join(self.prefix, current)} | ({schema.join(self.prefix, previous)} if previous else set())
        for kind, obj in self.remote.list(schema.join(self.prefix, "snapshots/")):
            if kind == "key" and obj["Key"] not in keep and obj["LastModified"].timestamp() < cutoff:
                old.append(obj["Key"])
        for dev, seq in cursors.items():
            for kind, obj in self.remote.list(schema.changes_dir(self.prefix, dev)):
                parsed = schema.parse_change_key(self.prefix, obj["Key"]) if kind == "key" else None
                if parsed is None or parsed[1] > seq:
                    continue
                if obj["LastModified"].timestamp() < cutoff:
                    old.append(obj["Key"])
        if old:
            self.remote.delete(old)
        for key, upload_id, started in self.remote.unfinished_uploads(schema.join(self.prefix, "media/")):
            if started.timestamp() < cutoff:  # abandoned (a resumed upload finishes within days)
                self.remote.abort_upload(key, upload_id)
        return self._collect_media(doc)

    def _republish(self, missing: dict[str, str], result: CycleResult) -> None:
        """Upload again the media that live rows use and the remote lost (a bucket emptied or
        restored from an old copy): what this device has, it publishes; what it lacks is told.
        Without this a device trusts its record of what it uploaded, and says "synced" while no
        other device can fetch the videos."""
        if not missing:
            return
        with self.db.write(remote=True) as s:
            s.execute(delete(SyncMedia).where(SyncMedia.sha256.in_(list(missing))))
        here = {sha: ext for sha, ext in missing.items() if self.media.path_for(sha, ext).is_file()}
        log.warning("%d media object(s) in use are missing on the remote; uploading the %d this device has",
                    len(missing), len(here))
        self._ensure_media(here, result, None)
        if len(here) < len(missing):
            result.problem(f"{len(missing) - len(here)} video file(s) the projects use are missing on the remote "
                           f"and not on this device; the device that has them publishes them at its next sync")

    def _collect_media(self, doc: dict) -> dict[str, str]:
        """Delete media objects that no live row of the snapshot ``doc`` points at, when neither
        the object nor its touch marker changed for ``media_grace_s``.

        Safe against a device that publishes a row pointing at such an object meanwhile: it
        verified the object within a day before publishing, and touched it if it was older
        (``_ensure_media``), so the object looks young for the whole grace period, and any
        snapshot made after that includes the row."""
        used: dict[str, str] = {}  # sha -> its file's extension in the store
        ext_of = {r["id"]: (r["f"].get("ext") or ["", ""])[0] or "" for r in doc["rows"] if r["t"] == "media"}
        for r in doc["rows"]:
            fld = MEDIA_FIELD.get(r["t"])
            f = r["f"]
            if fld and fld in f and not f.get("deleted", [False])[0]:
                sha = f[fld][0]
                used[sha] = ext_of.get(sha, "") if r["t"] == "clip" else ".mp4"
        cutoff = time.time() - self.media_grace_s
        touched: dict[str, float] = {}
        for kind, obj in self.remote.list(schema.join(self.prefix, "media-touched/")):
            sha = schema.parse_media_key(self.prefix, obj["Key"], "media-touched") if kind == "key" else None
            if sha:
                touched[sha] = obj["LastModified"].timestamp()
        gone, seen = [], set()
        for kind, obj in self.remote.list(schema.join(self.prefix, "media/")):
            sha = schema.parse_media_key(self.prefix, obj["Key"]) if kind == "key" else None
            if sha is None:
                continue
            seen.add(sha)
            if sha not in used and max(obj["LastModified"].timestamp(), touched.get(sha, 0.0)) < cutoff:
                gone.append(sha)
        stale_marks = [sha for sha, at in touched.items() if at < cutoff and (sha in gone or sha not in seen)]
        missing = {sha: ext for sha, ext in used.items() if sha not in seen}
        if not gone and not stale_marks:
            return missing
        log.info("removing %d unused media object(s) from the remote", len(gone))
        self.remote.delete([schema.media_key(self.prefix, sha) for sha in gone] +
                           [schema.media_touch_key(self.prefix, sha) for sha in stale_marks])
        with self.db.write(remote=True) as s:
            s.execute(delete(SyncMedia).where(SyncMedia.sha256.in_(gone)))
        return missing


# --------------------------------------------------------------------------- module API


def _chunks(seq, n: int):
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def set_remote(db, cfg: RemoteConfig) -> bool:
    """Store the remote. Returns True when it is another remote than the one this device synced
    with before: cursors and pushed marks then start afresh, and the whole local state is queued
    for the new remote (never the other way round: nothing local is ever replaced by it)."""
    with db.write(remote=True) as s:
        sync_config.save(s, cfg)
        before = stamping.get_meta(s, M_IDENTITY)
        stamping.set_meta(s, M_IDENTITY, cfg.identity)
        if before == cfg.identity:
            return False
        _requeue_everything(s)  # the first remote too: the outbox kept only its newest row till now
        return before is not None


def _requeue_everything(s: Session) -> None:
    for model in (SyncCursor, SyncBase, SyncObject, SyncMedia, SyncParked):  # parked: the old remote's
        s.execute(delete(model))
    s.execute(delete(Change))
    stamping.delete_meta(s, M_PUSHED, M_SINCE_SNAPSHOT, M_SNAPSHOT, M_LAST_OK, M_ERROR, M_ERROR_KIND)
    out = []
    for t in TABLE_ORDER:
        model = MODELS[t]
        pk = _pk(model)
        for r in s.execute(select(model.__table__).execution_options(include_deleted=True)):
            by_stamp: dict[str, dict] = defaultdict(dict)
            for f in FIELDS[t]:
                st = (r.stamps or {}).get(f)
                if st:
                    by_stamp[st][f] = stamping.json_value(getattr(r, f))
            for st, fields in by_stamp.items():
                out.append((st, t, getattr(r, pk.key), fields))
    out.sort(key=lambda x: x[0])
    if out:
        s.execute(insert(Change.__table__), [{"table": t, "row_id": rid, "hlc": st, "fields": f, "pushed": False}
                                             for st, t, rid, f in out])


def get_remote(db) -> RemoteConfig | None:
    """The remote this data directory syncs with, or None."""
    with db.read() as s:
        return sync_config.load(s)


def clear_remote(db) -> bool:
    with db.write(remote=True) as s:
        return sync_config.clear(s)


def status(db) -> dict:
    """The sync status of a data directory, without touching the network."""
    with db.read() as s:
        cfg = sync_config.load(s)
        pending = _pending_count(s)
        last = stamping.get_meta(s, M_LAST_OK)
        error = stamping.get_meta(s, M_ERROR)
        kind = stamping.get_meta(s, M_ERROR_KIND)
        running = stamping.get_meta(s, M_RUNNING)
        rows = s.scalars(select(SyncConflict).where(SyncConflict.status == "open")
                         .order_by(SyncConflict.detected_at, SyncConflict.id)).all()
        conflicts = [conflict_dict(c) for c in rows]
        rejected = s.scalar(select(func.count()).select_from(SyncObject).where(SyncObject.status == "rejected"))
        waiting = s.scalar(select(func.count()).select_from(SyncParked))
    syncing = False
    if running:
        try:
            r = json.loads(running)
            syncing = (r.get("host") != HOST or pid_alive(int(r.get("pid", 0)))) and \
                time.time() - float(r.get("since", 0)) < RUNNING_STALE_S
        except (ValueError, TypeError):
            syncing = False
    if cfg is None:
        state = "disabled"
    elif syncing:
        state = "syncing"
    elif error:
        state = kind if kind in ("offline", "error") else "error"
    elif pending or last is None:
        state = "pending"
    else:
        state = "synced"
    return {
        "state": state,
        "pending_changes": pending,
        "last_synced_at": last,
        "error": error if cfg is not None else None,
        "conflicts": conflicts,
        "remote": cfg.as_dict() if cfg else None,
        "rejected_objects": int(rejected or 0),
        "waiting_rows": int(waiting or 0),  # from the remote, parked until the rows they need arrive
    }


def conflict_dict(c: SyncConflict) -> dict:
    table, fld = doc_names(c.tbl, c.field)
    return {
        "id": c.id, "table": table, "row_id": c.row_id, "field": fld,
        "local_value": c.local_value, "remote_value": c.remote_value, "winner": c.winner,
        "detected_at": iso(c.detected_at),
    }


def _conflict_in(s: Session, conflict_id: str, statuses: tuple[str, ...], words: str) -> SyncConflict:
    """The conflict ``conflict_id`` if its status is one of ``statuses``, else SyncUserError."""
    c = s.get(SyncConflict, conflict_id) if isinstance(conflict_id, str) else None
    if c is None or c.status not in statuses:
        raise SyncUserError(f"no {words} conflict with id {conflict_id!r}")
    return c


def _open_conflict(s: Session, conflict_id: str) -> SyncConflict:
    return _conflict_in(s, conflict_id, ("open",), "open")


def dismiss_conflict(db, conflict_id: str) -> dict:
    with db.write(remote=True) as s:
        c = _open_conflict(s, conflict_id)
        c.status = "dismissed"
        return conflict_dict(c)


def undo_dismiss(db, conflict_id: str) -> dict:
    """Undo of :func:`dismiss_conflict`: the conflict is open again."""
    with db.write(remote=True) as s:
        c = _conflict_in(s, conflict_id, ("dismissed",), "dismissed")
        c.status = "open"
        return conflict_dict(c)


def restore_conflict(db, conflict_id: str) -> dict:
    """Make the losing value of a conflict the newest local edit: a normal stamped write (it
    syncs like any edit). Restoring a field of a deleted row brings the row back."""
    with db.write() as s:
        c = _open_conflict(s, conflict_id)
        row = _conflict_row(s, c)
        value = c.local_value if c.winner == "remote" else c.remote_value
        revived = False
        if c.field == ORDER_FIELD:
            _write_order(s, row, value)
        elif c.field == "deleted":
            set_deleted(s, row, bool(value))
        else:
            _write_value(row, c, value)
            if row.deleted:
                set_deleted(s, row, False)
                revived = True
        c.status = "revived" if revived else "restored"
        return conflict_dict(c)


def undo_restore(db, conflict_id: str) -> dict:
    """Undo of :func:`restore_conflict`: the winning value becomes the newest edit again (it
    syncs), a row the restore brought back is deleted again, and the conflict is open again."""
    with db.write() as s:
        c = _conflict_in(s, conflict_id, ("restored", "revived"), "restored")
        row = _conflict_row(s, c)
        value = c.remote_value if c.winner == "remote" else c.local_value
        if c.field == ORDER_FIELD:
            _write_order(s, row, value)
        elif c.field == "deleted":
            set_deleted(s, row, bool(value))
        else:
            _write_value(row, c, value)
            if c.status == "revived":
                set_deleted(s, row, True)
        c.status = "open"
        return conflict_dict(c)


def clip_labels(db, clip_ids: Iterable[str]) -> dict[str, str]:
    """Clip id -> how the user knows the clip ("game.mp4, 12.0–20.0 s"), for conflicts on an order."""
    ids = list(clip_ids)
    out: dict[str, str] = {}
    with db.read() as s:
        for chunk in _chunks(sorted(ids), 500):
            for cid, name, a, b in s.execute(
                    select(Clip.id, Media.filename, Clip.source_start, Clip.source_end)
                    .join(Media, Media.sha256 == Clip.media_sha256).where(Clip.id.in_(chunk))):
                out[cid] = f"{name}, {a:.1f}–{b:.1f} s"
    return out


def conflict_project(db, conflict_id: str) -> str | None:
    """The id of the project a conflict's row belongs to (None for media)."""
    with db.read() as s:
        c = s.get(SyncConflict, conflict_id)
        if c is None:
            raise SyncUserError(f"no conflict with id {conflict_id!r}")
        if c.tbl == "project":
            return c.row_id
        row = _conflict_row(s, c)
        return getattr(row, "project_id", None)


def _conflict_row(s: Session, c: SyncConflict):
    model = MODELS.get(c.tbl)
    row = s.get(model, c.row_id, execution_options={"include_deleted": True}) if model else None
    if row is None:
        raise SyncUserError(f"the {c.tbl} of conflict {c.id} no longer exists")
    return row


def _write_order(s: Session, project: Project, order) -> None:
    """Put the project's clips in ``order`` (clip ids): clips it does not name (added or brought
    back since) keep their place after them, and clips it names that are gone are skipped."""
    clips = list(s.scalars(select(Clip).where(Clip.project_id == project.id).order_by(Clip.position, Clip.id)))
    named = {cid: i for i, cid in enumerate(order)} if isinstance(order, list) else {}
    first = [c for c in clips if c.id in named]
    first.sort(key=lambda c: named[c.id])
    renumber(first + [c for c in clips if c.id not in named])


def _write_value(row, c: SyncConflict, value) -> None:
    try:
        value = schema.check_value(c.tbl, c.field, value)
    except SchemaError as exc:
        raise SyncUserError(f"that value cannot be restored: {exc}") from None
    setattr(row, c.field, _to_db(c.tbl, c.field, value))
    # stamped even when the stored register already holds it: an end lost to a crossed pair
    # (merge.ORDERED_PAIRS) is still stored, only read otherwise; the newer stamp brings it back
    flag_modified(row, c.field)


def ensure_local(lib, sha256: str, ext: str = "", progress=None) -> Path:
    """The local path of a media object (source, working or final video), downloading and
    verifying it from the remote first when this device does not have it yet.

    ``lib`` is anything with ``.db`` (Database) and ``.media`` (MediaStore), e.g. the Library.
    Raises :class:`MediaUnavailable` (in words) when it cannot be had.
    """
    path = lib.media.path_for(sha256, ext)
    if path.is_file():
        return path
    engine = SyncEngine.for_db(lib.db, lib.media)
    if engine is None:
        raise MediaUnavailable(f"the media {sha256[:12]}… is not on this device and no sync remote is set")
    try:
        return engine.fetch_media(sha256, ext, progress)
    except RemoteError as exc:
        raise MediaUnavailable(f"the media {sha256[:12]}… could not be downloaded: {exc}") from None
