"""Sync with Cloudflare R2 (or any S3-compatible store): Qt-free, local-first (SYNC.md).

API for the GUI and the services
================================

Configuration (stored in the database; credentials never are)::

    from app.storage.sync import config, engine
    cfg = config.validate(endpoint, bucket, prefix, region)   # ConfigError in words
    engine.set_remote(lib.db, cfg)        # True: another remote than before, state re-queued
    engine.clear_remote(lib.db)
    config.store_credentials(key_id, secret)   # OS keyring, service "reelforge" (GUI settings)
    config.clear_credentials()

Status, conflicts (no network; cheap enough for a status-bar refresh)::

    engine.status(lib.db) -> {"state": disabled|synced|pending|syncing|offline|error,
                              "pending_changes", "last_synced_at", "error",
                              "conflicts": [{id, table, row_id, field, local_value,
                                             remote_value, winner, detected_at}], ...}
    engine.restore_conflict(lib.db, conflict_id)   # the losing value becomes the newest edit
    engine.dismiss_conflict(lib.db, conflict_id)   # SyncUserError for an unknown id

Running a cycle (blocking: call it from a worker thread or an executor)::

    eng = engine.SyncEngine.for_db(lib.db, lib.media)       # None when no remote is set
    result = eng.run_cycle(fetch_media=True, progress=lambda label, done, total: ...)
    result.ok, result.state, result.error, result.as_dict()

In the GUI, let :class:`~app.storage.sync.scheduler.SyncScheduler` drive it from the qasync
loop (debounced push after commits, periodic pull, backoff, status callback)::

    sched = SyncScheduler(lib.db, lib.media, on_status=window.show_sync_status)
    sched.start()                 # inside the running loop
    sched.notify_commit()         # optional: the outbox is also polled every second
    sched.sync_now()              # the "retry" button; also after changing settings
    await sched.stop()

Media that are not on this device yet (outputs are fetched on demand, verified by sha256)::

    path = engine.ensure_local(lib, sha256, ext, progress=None)   # MediaUnavailable in words

Modules: :mod:`.engine` (push, pull, snapshots, status), :mod:`.merge` (per-field LWW,
conflicts, tombstones), :mod:`.schema` (validation of everything read from the remote, object
keys), :mod:`.remote` (boto3 + our retry policy), :mod:`.config` (remote settings,
credentials, redaction), :mod:`.scheduler` (asyncio driver).
"""
