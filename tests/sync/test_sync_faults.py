"""Transient faults are retried (backoff + jitter) until the cycle succeeds; refusals are not
retried and are shown in words; an unreachable endpoint is "offline"; kill -9 in the middle of a
pull leaves a sound database and the next sync completes (SYNC.md 5, 9, 10)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from app.services.library import Library
from app.storage.sync import config, engine, schema
from app.storage.sync.remote import RetryPolicy, Timeouts
from tests.conftest import ROOT
from tests.sync.servers import MotoServer, free_port


def test_dropped_reset_stalled_and_failed_requests_are_retried_until_the_sync_succeeds(make_device, proxy):
    a = make_device("a")
    b = make_device("b", endpoint=proxy.url)
    pid = a.lib.create_project("Faults")
    a.sync_ok()
    proxy.stall_s = 2.0
    proxy.inject("drop", "reset", 503, 429, "half", "stall", 500)
    r = b.sync(timeouts=Timeouts(connect_s=1, read_s=0.5), retry=RetryPolicy(attempts=10, base_s=0.01, cap_s=0.05))
    assert r.ok, (r.error, r.problems)
    assert len(proxy.injected) == 7 and not proxy.faults
    assert r.requests > 7
    assert b.visible() == {pid: "Faults"}
    assert b.status()["state"] == "synced"


def test_a_stalled_endpoint_is_reported_offline_after_the_retry_budget_not_after_every_try(make_device, proxy):
    """Each try at a stalled endpoint ends at the read timeout: five of them kept the status at
    "syncing" for minutes (5 × 30 s by default). Past the budget, no new try starts."""
    a = make_device("a", endpoint=proxy.url)
    a.lib.create_project("Stalled")
    proxy.stall_s = 5.0
    proxy.inject(*["stall"] * 5)
    t0 = time.monotonic()
    r = a.sync(timeouts=Timeouts(connect_s=1, read_s=0.5), retry=RetryPolicy(attempts=5, base_s=0.01, budget_s=0.8))
    took = time.monotonic() - t0
    assert not r.ok and r.error_kind == "offline" and "after 2 tries" in r.error, r.error
    assert proxy.injected == ["stall", "stall"]
    assert took < 2.5
    assert a.status()["state"] == "offline"


def test_a_push_whose_reply_is_lost_is_not_published_twice(make_device, proxy):
    a = make_device("a", endpoint=proxy.url)
    b = make_device("b")
    pid = a.lib.create_project("Once")
    a.lib.rename_project(pid, "Once, renamed")
    # the PUT of the batch reaches the store, its reply is cut: the retry finds the key taken
    proxy.inject("half", only="PUT /reelforge-sync/" + a.cfg.prefix + "/changes/")
    r = a.sync()
    assert r.ok, r.error
    assert proxy.injected == ["half"]
    assert r.pushed_changes == 5 and r.pushed_objects == 1
    keys = [o["Key"] for k, o in a.engine().remote.list(schema.changes_dir(a.cfg.prefix)) if k == "key"]
    assert len(keys) == 1
    assert a.status()["pending_changes"] == 0
    b.sync_ok()
    assert b.visible() == {pid: "Once, renamed"}


def test_an_http_refusal_is_not_retried_and_is_shown_in_words(make_device, proxy):
    a = make_device("a", endpoint=proxy.url)
    a.lib.create_project("Refused")
    proxy.inject(403)
    r = a.sync(retry=RetryPolicy(attempts=5, base_s=0.01))
    assert not r.ok and r.error_kind == "error"
    assert proxy.injected == [403] and r.requests == 1  # one request, no retry
    assert "access key" in r.error and "credentials" in r.error
    st = a.status()
    assert st["state"] == "error" and "credentials" in st["error"]
    assert st["pending_changes"] == 4  # nothing was lost or marked pushed


@pytest.fixture(scope="module")
def strict_s3():
    """A moto server that checks credentials (after the bucket is made)."""
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"})
    server.make_bucket("strict-bucket")
    yield server
    server.stop()


def test_bad_credentials_against_a_server_that_checks_them(make_device, strict_s3, run_sync_cli):
    dev = make_device("a", configure=False)
    engine.set_remote(dev.db, config.validate(strict_s3.url, "strict-bucket", "p"))
    dev.lib.create_project("Never leaves")
    secret = "wrong-secret-" + "x" * 20
    r = run_sync_cli(dev, "sync", "run", "--json",
                     env={"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG", "AWS_SECRET_ACCESS_KEY": secret})
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "credentials" in last
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["requests"] == 1
    assert secret not in r.stdout + r.stderr and "AKIAWRONGWRONGWRONG" not in r.stdout + r.stderr
    st = json.loads(run_sync_cli(dev, "sync", "status", "--json").stdout)
    assert st["state"] == "error" and "credentials" in st["error"] and st["pending_changes"] == 4
    raw = open(dev.data_dir / "reelforge.db", "rb").read() + b"".join(
        p.read_bytes() for p in dev.data_dir.glob("reelforge.db-*"))
    assert secret.encode() not in raw  # never in SQLite


def test_an_unreachable_endpoint_is_offline_and_nothing_is_lost(make_device, run_sync_cli):
    dead = f"http://127.0.0.1:{free_port()}"
    dev = make_device("a", endpoint=dead)
    pid = dev.lib.create_project("Offline")
    r = dev.sync(retry=RetryPolicy(attempts=3, base_s=0.01))
    assert not r.ok and r.error_kind == "offline"
    assert "cannot reach" in r.error and "after 3 tries" in r.error
    st = dev.status()
    assert st["state"] == "offline" and st["pending_changes"] == 4
    dev.close()
    cli = run_sync_cli(dev, "sync", "status", "--json")
    assert json.loads(cli.stdout)["state"] == "offline"
    # the same data directory, pointed at a live remote later, pushes it all
    live = make_device("b")
    lib = Library(dev.data_dir)
    try:
        engine.set_remote(lib.db, config.validate(live.cfg.endpoint, live.cfg.bucket, live.cfg.prefix))
        assert engine.SyncEngine.for_db(lib.db, lib.media).run_cycle(fetch_media=False).ok
    finally:
        lib.close()
    live.sync_ok()
    assert live.visible() == {pid: "Offline"}


def test_a_local_database_that_refuses_writes_is_retried_later_and_loses_nothing(make_device, monkeypatch):
    """Another program holds the data directory's write lock past the busy timeout (shortened to
    0.1 s here): the cycle fails in words, without an exception, and is not taken for a refusal
    that waits for the user; the local changes are pushed by the next cycle."""
    from app.storage import db as dbmod
    from app.storage.sync.scheduler import SyncScheduler

    a = make_device("a")
    pid = a.lib.create_project("Kept")
    pending = a.status()["pending_changes"]
    assert pending > 0
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.1)
    a.lib.db.engine.dispose()
    locker = sqlite3.connect(a.data_dir / "reelforge.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        r = a.sync()
        out = SyncScheduler(a.db, a.lib.media, engine_kw=a.engine_kw)._run_once()
    finally:
        locker.rollback()
        locker.close()
    assert not r.ok and r.state == "error" and r.retry_later
    assert r.error.startswith("the project file is locked by another program; local changes are kept")
    assert out["fatal"] is False  # the scheduler backs off and tries again by itself
    assert a.status()["pending_changes"] == pending
    a.sync_ok()
    assert a.status()["pending_changes"] == 0
    b = make_device("b")
    b.sync_ok()
    assert b.visible() == {pid: "Kept"}


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from app.services.library import Library
    from app.storage.sync import engine

    lib = Library(sys.argv[2])

    def hold(keys):
        print("APPLYING", flush=True)
        time.sleep(120)

    eng = engine.SyncEngine.for_db(lib.db, lib.media, hooks={"in_apply": hold}, round_rows=int(sys.argv[3]))
    eng.run_cycle(fetch_media=False)
    print("DONE", flush=True)
""")


@pytest.mark.parametrize("bootstrap", [False, True], ids=["batches", "snapshot"])
def test_kill_9_in_the_middle_of_a_pull_leaves_a_sound_database(make_device, bootstrap):
    a = make_device("a", compact_after=1 if bootstrap else 10_000)
    pids = [a.lib.create_project(f"P{i}") for i in range(40)]
    if bootstrap:
        a.sync_ok()  # writes the snapshot a new device starts from
    else:
        a.sync_ok()
        a.engine().remote.delete([schema.manifest_key(a.cfg.prefix)])  # batches only
    b = make_device("b")
    b.close()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(b.data_dir), "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ), start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "APPLYING", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    con = sqlite3.connect(b.data_dir / "reelforge.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("SELECT count(*) FROM sync_cursors").fetchone()[0] == 0
    finally:
        con.close()
    lib = Library(b.data_dir)
    try:
        r = engine.SyncEngine.for_db(lib.db, lib.media).run_cycle(fetch_media=False)
        assert r.ok, r.error
        assert {p["id"] for p in lib.list_projects()} == set(pids)
    finally:
        lib.close()


def test_a_bare_refusal_and_a_reply_that_is_not_s3_are_said_in_words(make_device, proxy):
    """A 403 with no error document read "the remote answered HTTP 403 403"; a 200 whose body
    is not S3's (a wrong endpoint) read "HTTP 500 500", a status the server never sent."""
    a = make_device("a", endpoint=proxy.url)
    a.lib.create_project("Words")
    proxy.inject("bare:403")
    r = a.sync(retry=RetryPolicy(attempts=2, base_s=0.01))
    assert not r.ok and "403 403" not in r.error
    assert "HTTP 403 (access refused): check the credentials, and that they may use this bucket" in r.error
    proxy.inject(*(["garbage"] * 10))
    r = a.sync(retry=RetryPolicy(attempts=2, base_s=0.01))
    assert not r.ok and "500 500" not in r.error
    assert "a reply that is not S3's: check the endpoint" in r.error  # botocore calls it a 500
    assert a.status()["pending_changes"] == 4  # nothing was lost or marked pushed
