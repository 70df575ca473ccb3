"""A remote row that needs a row this device does not have is parked, not held: the rest of its
batch and its device's later batches are applied, and the parked row is merged once the row it
needs arrives, by a batch or through a snapshot (which carries the parked rows of its writer)."""

from __future__ import annotations

import json
import uuid

import boto3
from sqlalchemy import func, select

from app.storage import hlc
from app.storage.models import SyncParked
from app.storage.sync import engine
from app.storage.sync.schema import Entry
from tests.sync.conftest import BUCKET
from tests.sync.devices import clock
from tests.sync.test_sync_hostile import batch, project_rows, stamp


def parked_count(dev) -> int:
    with dev.db.read() as s:
        return s.scalar(select(func.count()).select_from(SyncParked))


def putter(s3, prefix):
    raw = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")

    def put(device: str, seq: int, body: bytes) -> None:
        raw.put_object(Bucket=BUCKET, Key=f"{prefix}/changes/{device}/{seq:012d}.json.gz", Body=body)

    return put


def test_a_row_whose_creating_batch_was_rejected_does_not_hold_its_device_back(make_device, s3, prefix,
                                                                               run_sync_cli):
    a, b = make_device("a"), make_device("b")
    legit = a.lib.create_project("Legit")
    a.sync_ok()
    put = putter(s3, prefix)
    d = str(uuid.uuid4())
    new_pid = str(uuid.uuid4())
    put(d, 1, b"\x00garbage\xff" * 20)  # it created the clip: rejected
    put(d, 2, batch(d, [{"t": "clip", "id": str(uuid.uuid4()), "b": {}, "f": {"deleted": [True, stamp(d)]}}],
                    first=2, prev=1))
    put(d, 3, batch(d, project_rows(d, new_pid, "After the gap"), first=3, prev=2))

    r = b.sync()
    assert not r.ok and len(r.rejected) == 1 and "not gzip" in r.rejected[0]["error"]
    assert r.held == [] and not any("refer to rows" in p for p in r.problems), r.problems
    assert r.parked == 1 and r.applied_objects == 2  # d's valid ones (a's came in a's snapshot)
    assert b.visible() == {legit: "Legit", new_pid: "After the gap"}
    assert parked_count(b) == 1

    b.close()
    cli = run_sync_cli(b, "sync", "run", "--json")  # the rejection was reported once: clean now
    assert cli.returncode == 0, cli.stderr
    out = json.loads(cli.stdout)
    assert out["ok"] and out["state"] == "synced" and out["held"] == [] and out["problems"] == []


def test_a_parked_edit_is_applied_when_its_project_arrives_from_a_batch_or_a_snapshot(make_device, s3, prefix):
    """Not a rename: ``name`` is the one field a project needs, so a rename alone creates it."""
    b = make_device("b")
    put = putter(s3, prefix)
    g, h = str(uuid.uuid4()), str(uuid.uuid4())
    q, other = str(uuid.uuid4()), str(uuid.uuid4())
    now = hlc.now_ms()
    t1, t2 = hlc.format_stamp(now, 0, h), hlc.format_stamp(now + 1000, 0, g)
    create_q = {"t": "project", "id": q, "b": {}, "f": {
        "name": ["Q by h", t1], "aspect_ratio": ["9:16", t1], "created_at": ["2026-01-02T03:04:05+00:00", t1],
        "working_video_id": [None, t1], "final_video_id": [None, t1], "deleted": [False, t1]}}
    # g saw Q (h's batch is late to reach the remote) and changed its aspect; it made a project too
    put(g, 1, batch(g, [*project_rows(g, other, "Other by g"),
                        {"t": "project", "id": q, "b": {"aspect_ratio": t1}, "f": {"aspect_ratio": ["16:9", t2]}}]))

    r = b.sync_ok()
    assert r.held == [] and r.parked == 1 and r.applied_objects == 1
    assert b.visible() == {other: "Other by g"}
    assert b.status()["waiting_rows"] == 1  # honest status: something from the remote is not shown

    # b compacts; a new device starts from that snapshot, which carries the parked rename
    assert b.engine().maybe_compact(force=True) is not None
    c = make_device("c")
    rc = c.sync_ok()
    assert rc.snapshot_applied is not None and rc.parked == 1 and rc.held == []
    assert c.visible() == {other: "Other by g"}

    put(h, 1, batch(h, [create_q, *({"t": t, "id": q, "b": {}, "f": {"deleted": [False, t1]}}
                                    for t in engine.PK_IS_PROJECT)]))
    for dev in (b, c):
        r = dev.sync_ok()
        assert r.unparked == 1 and r.applied_objects == 1, dev.name
        assert dev.visible() == {other: "Other by g", q: "Q by h"}, dev.name
        assert dev.lib.document(q)["aspect_ratio"] == "16:9", dev.name  # g's newer edit
        assert parked_count(dev) == 0 and dev.status()["waiting_rows"] == 0
    assert b.dump() == c.dump()


def test_split_parks_until_nothing_more_needs_what_was_parked():
    """Parking an entry can take away the fields that created the row another entry writes to."""
    pid, cid, sha, other = str(uuid.uuid4()), str(uuid.uuid4()), "a" * 64, str(uuid.uuid4())
    st = hlc.format_stamp(hlc.now_ms(), 0, str(uuid.uuid4()))
    create = Entry("clip", cid, {f: ({"project_id": pid, "media_sha256": sha}.get(f, 0), st)
                                 for f in engine.REQUIRED["clip"]}, {})
    move = Entry("clip", cid, {"position": (3, st)}, {})
    rename = Entry("project", other, {"name": ("x", st)}, {})
    projects = {(t, i) for i in (pid, other) for t in ("project", *engine.PK_IS_PROJECT)}
    ok, parked = engine._split_entries([create, move, rename], projects)
    assert ok == [rename] and parked == [create, move]  # no media sha: the clip is not created
    ok, parked = engine._split_entries([create, move, rename], projects | {("media", sha)})
    assert ok == [create, move, rename] and parked == []


def test_a_row_parked_for_its_reference_travels_in_a_snapshot_beside_the_real_row(make_device, s3, prefix):
    """A row parked because it points at a project that is not here exists here itself: the
    snapshot holds both, and a device that starts from it applies the one and parks the other."""
    b = make_device("b")
    put = putter(s3, prefix)
    g, h = str(uuid.uuid4()), str(uuid.uuid4())
    p, p2, region = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    now = hlc.now_ms()
    t1, t2 = hlc.format_stamp(now, 0, h), hlc.format_stamp(now + 1000, 0, g)
    put(h, 1, batch(h, [*project_rows(h, p, "P"), {"t": "region", "id": region, "b": {}, "f": {
        "project_id": [p, t1], "start": [0.0, t1], "end": [1.0, t1], "keyframes": [[], t1], "deleted": [False, t1]}}]))
    put(g, 1, batch(g, [{"t": "region", "id": region, "b": {"project_id": t1}, "f": {"project_id": [p2, t2]}}]))

    r = b.sync_ok()
    assert r.parked == 1 and r.held == []
    assert b.engine().maybe_compact(force=True) is not None
    c = make_device("c")
    rc = c.sync_ok()
    assert rc.snapshot_applied is not None and rc.parked == 1
    assert c.dump() == b.dump() and c.dump()["region"][region]["project_id"] == p

    put(h, 2, batch(h, project_rows(h, p2, "P2"), first=2, prev=1))
    for dev in (b, c):
        assert dev.sync_ok().unparked == 1, dev.name
        assert parked_count(dev) == 0
    assert c.dump() == b.dump() and c.dump()["region"][region]["project_id"] == p2


def test_a_project_without_its_settings_rows_waits_for_them(make_device, s3, prefix):
    """A project row alone (a hostile or cut-short writer) would be a project that cannot be
    edited or exported: it waits, parked, until its settings rows come."""
    b = make_device("b")
    put = putter(s3, prefix)
    d, pid = str(uuid.uuid4()), str(uuid.uuid4())
    rows = project_rows(d, pid, "Ghost")
    put(d, 1, batch(d, rows[:1]))
    r = b.sync()
    assert r.parked == 1 and pid not in b.visible()
    put(d, 2, batch(d, rows[1:], first=2, prev=1))
    b.sync_ok()
    assert b.visible() == {pid: "Ghost"} and parked_count(b) == 0
    b.lib.apply(pid, {"export_settings": {"crf": 22}})  # a whole project: it can be edited
    assert b.lib.document(pid)["export_settings"]["crf"] == 22


def test_changes_from_a_clock_a_day_fast_wait_for_the_clocks_to_agree(make_device, s3, prefix, monkeypatch):
    """Stamps more than a day ahead of this device's clock are not applied (they would win every
    later edit) but not thrown away either: the writer's data is good, its clock is not. They and
    the writer's later changes wait, and the wait is told, until this clock has caught up."""
    a, b = make_device("a"), make_device("b")
    with clock(monkeypatch, 25 * 3600_000):  # a's clock 25 h fast
        fast = a.lib.create_project("Made with a fast clock")
        a.sync_ok()
    later = a.lib.create_project("Made after the clock was fixed")  # HLC: stamped after the fast one
    a.sync_ok()
    for _ in range(2):
        r = b.sync()
        assert not r.ok and r.rejected == []
        assert any("ahead of this device's clock" in p for p in r.problems), r.problems
        assert not any("missing on the remote" in p for p in r.problems), r.problems
        assert b.visible() == {}
    with clock(monkeypatch, 2 * 3600_000):  # b's clock now agrees within a day
        b.sync_ok()
        assert b.visible() == {fast: "Made with a fast clock", later: "Made after the clock was fixed"}
        assert b.status()["state"] == "synced"
