"""The one place that stamps every synced write.

A ``before_flush`` listener on every session the store hands out: each new or changed field
of a synced row gets a fresh HLC stamp (one per flush), the row records its writer, and the change
goes into the durable outbox (``sync_changes``) in the same transaction, so "pending" can
never be lost between a commit and an upload. Sessions that apply remote changes set
``session.info["remote"] = True`` and stamp with the incoming stamps themselves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, event, inspect, select
from sqlalchemy.orm import Session

from app.storage import hlc
from app.storage.models import Change, Meta, Synced


def json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def row_key(obj: Synced) -> str:
    ident = inspect(obj).identity or ()
    if ident:
        return str(ident[0])
    mapper = inspect(type(obj))
    return str(getattr(obj, mapper.primary_key[0].key))


def get_meta(session: Session, key: str) -> str | None:
    return session.execute(select(Meta.value).where(Meta.key == key)).scalar_one_or_none()


def set_meta(session: Session, key: str, value: str) -> None:
    row = session.get(Meta, key)
    if row is None:
        session.add(Meta(key=key, value=value))
    else:
        row.value = value


def delete_meta(session: Session, *keys: str) -> None:
    session.execute(delete(Meta).where(Meta.key.in_(keys)))


def next_stamp(session: Session) -> tuple[str, str]:
    """(stamp, device id): tick the persisted clock inside the caller's write transaction."""
    with session.no_autoflush:
        device = get_meta(session, "device_id") or ""
        stamp = hlc.tick(get_meta(session, "hlc"), device)
        set_meta(session, "hlc", stamp)
    return stamp, device


def _apply_defaults(obj: Synced) -> None:
    """Fill Python-side column defaults now, so a new row's id and values exist before the
    INSERT (the stamp and the outbox entry need them)."""
    for column in inspect(type(obj)).columns:
        default = column.default
        if default is None or getattr(obj, column.key, None) is not None:
            continue
        if default.is_callable:
            setattr(obj, column.key, default.arg(None))
        elif default.is_scalar:
            setattr(obj, column.key, default.arg)


def _before_flush(session: Session, flush_context, instances) -> None:
    if session.info.get("remote"):
        return
    for obj in session.deleted:
        if isinstance(obj, Synced):
            raise RuntimeError(f"{type(obj).__name__} rows are tombstoned (deleted=True), never deleted")
    pending = [o for o in session.new if isinstance(o, Synced)]
    pending += [o for o in session.dirty if isinstance(o, Synced) and session.is_modified(o)]
    if not pending:
        return
    stamp, device = next_stamp(session)
    _forget_outbox_without_remote(session)
    for obj in pending:
        state = inspect(obj)
        is_new = state.transient or state.pending
        if is_new:
            _apply_defaults(obj)
        changed = {}
        for field in obj.__synced_fields__:
            if is_new or state.attrs[field].history.has_changes():
                changed[field] = json_value(getattr(obj, field))
        if not changed:
            continue
        stamps = dict(obj.stamps or {})
        stamps.update(dict.fromkeys(changed, stamp))
        obj.stamps = stamps
        obj.hlc = stamp
        obj.device_id = device
        session.add(Change(table=obj.__sync_table__, row_id=row_key(obj), hlc=stamp, fields=changed))


SYNC_IDENTITY = "sync.identity"  # meta: the remote this library last synced with (set with it)


def _forget_outbox_without_remote(session: Session) -> None:
    """In a library that never had a remote, the outbox only grew (18,000 rows, a quarter of a
    season's file; every keyframe nudge a row): setting its first remote queues every row again
    from its stamps (``sync.engine.set_remote``). So the rows written before this flush go, but
    the newest: its number still tells the grid's poll that something was written
    (``change_signature``). Once a remote was set, even if removed since, the outbox is kept."""
    # one statement, not compiled per flush: it runs before every local write
    session.connection().exec_driver_sql(
        f"DELETE FROM {Change.__tablename__} WHERE seq < (SELECT max(seq) FROM {Change.__tablename__}) "
        f"AND NOT EXISTS (SELECT 1 FROM {Meta.__tablename__} WHERE key = ?)", (SYNC_IDENTITY,))


def install(session_class) -> None:
    event.listen(session_class, "before_flush", _before_flush)
