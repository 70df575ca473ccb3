"""Two and three devices converge (SYNC.md 4, 6, 7, 8): projects, edits, clip order, deletes,
media, working and final videos (real exports), snapshots for a new device, compaction."""

from __future__ import annotations

import hashlib
import json

import pytest

from app.jobs.service import ExportService, Settings
from app.storage.models import Change
from app.storage.sync import engine, schema


def sha_of(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def export(dev, pid: str, kind: str) -> dict:
    job = ExportService(dev.lib, Settings(device="cpu")).export(pid, kind)
    assert job["status"] == "complete", job
    return job


def small_project(dev, sample_video, name="Saturday final"):
    pid = dev.lib.create_project(name)
    c1 = dev.lib.add_clip(pid, sample_video, 0.0, 2.0)
    c2 = dev.lib.add_clip(pid, sample_video, 2.0, 4.0)
    dev.lib.apply(pid, {"export_settings": {"width": 144, "height": 256, "preset": "ultrafast"}})
    return pid, c1, c2


def editable(doc: dict) -> dict:
    """The synced content of a project document (paths and local flags are per device)."""
    doc = json.loads(json.dumps(doc))
    for key in ("working_video", "final_video"):
        if doc.get(key):
            doc[key].pop("path")
            doc[key].pop("local")
    for c in doc["clips"]:
        c["media"].pop("local")
    doc.pop("updated_at")
    return doc


def test_two_devices_converge_on_edits_order_media_outputs_and_deletes(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid, c1, c2 = small_project(a, sample_video)
    ra = a.sync_ok()
    assert ra.media_uploaded == 1  # the source, once for two clips
    rb = b.sync_ok(fetch_media=True)
    assert rb.media_downloaded == 1
    doc_b = b.lib.document(pid)
    assert [c["id"] for c in doc_b["clips"]] == [c1, c2]
    assert all(c["media"]["local"] for c in doc_b["clips"])
    assert sha_of(b.lib.media.path_for(doc_b["clips"][0]["media"]["sha256"], ".mp4")) == \
        doc_b["clips"][0]["media"]["sha256"]

    # edits on both sides, different fields: both survive; reorder on B
    b.lib.apply(pid, {"clips": [{"id": c2}, {"id": c1, "crop_keyframes": [
        {"time": 0.0, "x": 10, "y": 0, "width": 101, "height": 180}]}], "transition": {"type": "fade"}})
    a.lib.rename_project(pid, "Sunday final")
    b.sync_ok()
    a.sync_ok()
    b.sync_ok()
    assert editable(a.lib.document(pid)) == editable(b.lib.document(pid))
    doc = a.lib.document(pid)
    assert doc["name"] == "Sunday final" and doc["transition"]["type"] == "fade"
    assert [c["id"] for c in doc["clips"]] == [c2, c1]
    assert doc["clips"][1]["crop_keyframes"][0]["x"] == 10
    assert a.conflicts() == [] and b.conflicts() == []

    # a framing export on B: the row arrives on A with the video uploaded first (media first)
    job = export(b, pid, "framing")
    rb = b.sync_ok()
    assert rb.media_uploaded == 1
    a.sync_ok(fetch_media=True)  # sources only: outputs are fetched when needed
    wv = a.lib.document(pid)["working_video"]
    assert wv is not None and wv["current"] and wv["local"] is False
    assert a.lib.list_projects()[0]["has_working_video"] is True
    sha = sha_of(job["output"])
    path = engine.ensure_local(a.lib, sha, ".mp4")
    assert sha_of(path) == sha and a.lib.document(pid)["working_video"]["local"] is True

    # an overlay export on A, from the fetched working video
    export(a, pid, "overlay")
    a.sync_ok()
    b.sync_ok()
    assert b.lib.list_projects()[0]["has_final_video"] is True
    assert b.lib.list_projects()[0]["status"] == a.lib.list_projects()[0]["status"] == "complete"

    # a clip removed on A, then the whole project deleted on B
    a.lib.remove_clip(c1)
    a.sync_ok()
    b.sync_ok()
    assert [c["id"] for c in b.lib.document(pid)["clips"]] == [c2]
    b.lib.delete_project(pid)
    b.sync_ok()
    a.sync_ok()
    assert a.visible() == {} and b.visible() == {}
    assert a.dump() == b.dump()
    assert a.conflicts() == [] and b.conflicts() == []


def test_a_push_of_one_edit_is_small_and_leaves_nothing_pending(make_device):
    a = make_device("a")
    pids = [a.lib.create_project(f"P{i}") for i in range(30)]
    a.sync_ok()
    a.lib.rename_project(pids[7], "renamed")
    with a.db.read() as s:
        assert s.query(Change).filter(Change.pushed.is_(False)).count() == 1
    eng = a.engine()
    r = eng.run_cycle(fetch_media=False)
    assert r.ok and r.pushed_changes == 1 and r.pushed_objects == 1
    assert r.bytes_up < 2_000
    assert a.status()["state"] == "synced" and a.status()["pending_changes"] == 0


def test_three_devices_and_a_new_one_from_the_snapshot(make_device, sample_video):
    a, b, c = make_device("a"), make_device("b"), make_device("c", compact_after=3)
    pid, *_ = small_project(a, sample_video)
    a.sync_ok()
    b.sync_ok()
    p2 = b.lib.create_project("Cup")
    b.sync_ok()
    c.sync_ok()
    c.lib.rename_project(pid, "from C")
    c.lib.rename_project(p2, "Cup (C)")
    for _ in range(2):
        for d in (a, b, c):
            d.sync_ok()
    assert a.dump() == b.dump() == c.dump()
    assert c.sync_ok().snapshot_written or True  # C compacts after 3 batches

    # a brand-new device starts from the snapshot, then the batches after it
    n = make_device("new")
    r = n.sync_ok(fetch_media=True)
    assert r.snapshot_applied is not None
    assert r.media_downloaded == 1
    assert n.dump() == a.dump()
    assert n.visible() == {pid: "from C", p2: "Cup (C)"}
    # and it syncs on like any other
    n.lib.rename_project(p2, "Cup (new)")
    n.sync_ok()
    a.sync_ok()
    assert a.visible()[p2] == "Cup (new)"


def test_compaction_prunes_covered_batches_and_a_late_device_catches_up_from_the_snapshot(make_device):
    a = make_device("a", compact_after=2, prune_after_s=0)
    b = make_device("b")
    late = make_device("late")
    pid = a.lib.create_project("Base")
    a.sync_ok()
    late.sync_ok()  # has the first batch of A, then stays away
    for i in range(4):
        a.lib.rename_project(pid, f"v{i}")
        a.sync_ok()
    keys = [k for k, o in a.engine().remote.list(schema.changes_dir(a.cfg.prefix)) if k == "key"]
    assert keys == [] or len(keys) < 5  # covered batches were pruned
    b.sync_ok()
    assert b.visible() == {pid: "v3"}
    r = late.sync_ok()
    assert r.snapshot_applied is not None  # its next batch was gone: the snapshot covers it
    assert late.visible() == {pid: "v3"}
    assert late.dump() == a.dump()


def test_deletes_stick_against_older_copies(make_device):
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Doomed")
    a.lib.rename_project(pid, "Doomed v2")
    a.sync_ok()
    b.sync_ok()
    a.lib.delete_project(pid)
    a.sync_ok()
    # B had an older copy and made no edit: the delete wins, nothing comes back
    b.sync_ok()
    a.sync_ok()
    assert a.visible() == {} and b.visible() == {}
    assert a.conflicts() == [] and b.conflicts() == []
    # a new device never sees it either
    n = make_device("n")
    n.sync_ok()
    assert n.visible() == {}
    assert n.dump()["project"][pid]["deleted"] is True


@pytest.mark.parametrize("n_projects", [5])
def test_switching_to_another_remote_uploads_everything_and_loses_nothing(make_device, s3, n_projects):
    a = make_device("a")
    pids = [a.lib.create_project(f"P{i}") for i in range(n_projects)]
    a.sync_ok()
    a.lib.delete_project(pids[0])
    a.sync_ok()
    from app.storage.sync import config

    other = config.validate(s3.url, "reelforge-sync", a.cfg.prefix + "-other")
    assert engine.set_remote(a.db, other) is True
    assert a.status()["pending_changes"] > 0
    a.cfg = other
    a.sync_ok()
    b = make_device("b", configure=False)
    engine.set_remote(b.db, other)
    b.cfg = other
    b.sync_ok()
    assert b.dump() == a.dump()
    assert set(b.visible()) == set(pids[1:])


def test_a_batch_whose_rows_need_the_next_batch_waits_for_it(make_device, monkeypatch):
    """If a device's batches ever split a project from its settings in the wrong order, the
    receiver applies the two together instead of getting stuck."""
    from app.storage.models import Change

    a, b = make_device("a"), make_device("b", round_rows=1)  # one batch per transaction, if it can
    pid = a.lib.create_project("Split")
    with a.db.write() as s:  # renumber the outbox: the project's own change goes last
        changes = s.query(Change).order_by(Change.seq).all()
        proj = next(c for c in changes if c.table == "project")
        rows = [(c.table, c.row_id, c.hlc, c.fields) for c in changes if c is not proj]
        rows.append((proj.table, proj.row_id, proj.hlc, proj.fields))
        for c in changes:
            s.delete(c)
        s.flush()
        for t, rid, h, f in rows:
            s.add(Change(table=t, row_id=rid, hlc=h, fields=f, pushed=False))
    monkeypatch.setattr(engine, "BATCH_MAX_CHANGES", 1)
    r = a.sync_ok()
    assert r.pushed_objects == 4
    a.engine().remote.delete([schema.manifest_key(a.cfg.prefix)])  # batches, not the snapshot
    r = b.sync_ok()
    assert r.applied_objects == 4
    assert b.visible() == {pid: "Split"} and b.dump() == a.dump()


def test_a_copied_data_directory_takes_a_new_device_id_and_nothing_is_lost(make_device, tmp_path):
    import shutil

    from tests.sync.devices import Device

    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Shared")
    a.sync_ok()
    a.lib.close()
    shutil.copytree(a.data_dir, tmp_path / "clone")  # same device id, same outbox position
    a.lib = type(a.lib)(a.data_dir)
    clone = Device(tmp_path / "clone", "clone", a.cfg.endpoint, a.cfg.bucket, a.cfg.prefix, False, a.engine_kw)
    try:
        a.lib.rename_project(pid, "renamed on A")
        other = clone.lib.create_project("made on the copy")
        a.sync_ok()
        clone.sync_ok()  # its first batch key is taken by A's: it continues under a new id
        assert clone.device_id != a.device_id
        for d in (b, a, clone, b):
            d.sync_ok()
        assert b.visible() == a.visible() == clone.visible() == {pid: "renamed on A", other: "made on the copy"}
        assert a.dump() == b.dump() == clone.dump()
    finally:
        clone.close()


def test_large_media_go_up_in_parts_with_progress_and_come_down_verified(make_device, monkeypatch, tmp_path):
    import os

    from app.storage.sync.remote import Remote

    monkeypatch.setattr(Remote, "multipart_bytes", 5 * 1024 * 1024)  # S3's smallest part
    a, b = make_device("a"), make_device("b")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(11 * 1024 * 1024))
    sha = sha_of(src)
    a.lib.media.ingest(src, sha, ".bin")
    seen = []
    eng = a.engine()
    result = engine.CycleResult()
    eng._ensure_media({sha: ".bin"}, result, lambda label, done, total: seen.append((done, total)))
    assert result.media_uploaded == 1
    assert seen[-1] == (11 * 1024 * 1024, 11 * 1024 * 1024) and len(seen) >= 3
    got = []
    path = b.engine().fetch_media(sha, ".bin", lambda label, done, total: got.append(done))
    assert sha_of(path) == sha and got[-1] == 11 * 1024 * 1024
    eng._ensure_media({sha: ".bin"}, result, None)  # known to be there: not uploaded again
    assert result.media_uploaded == 1


def test_two_devices_compacting_at_once_one_manifest_wins(make_device):
    a, b = make_device("a"), make_device("b")
    a.lib.create_project("x")
    a.sync_ok()  # the first manifest
    b.sync_ok()
    ea = a.engine()
    stale = ea.remote.get(schema.manifest_key(a.cfg.prefix), schema.MAX_MANIFEST)
    name_b = b.engine().maybe_compact(force=True)
    assert name_b
    ea._manifest_raw = stale  # A read the manifest before B replaced it
    assert ea.maybe_compact(force=True) is None  # If-Match fails: B's stands
    manifest = schema.parse_manifest(ea.remote.get(schema.manifest_key(a.cfg.prefix), schema.MAX_MANIFEST)[0])
    assert manifest.snapshot == name_b
    snaps = [o["Key"] for k, o in ea.remote.list(schema.join(a.cfg.prefix, "snapshots/")) if k == "key"]
    assert schema.join(a.cfg.prefix, name_b) in snaps and len(snaps) == 2  # A's loser was deleted
    n = make_device("n")
    assert n.sync_ok().snapshot_applied == name_b


def test_a_new_device_keeps_the_projects_recent_order_and_times(make_device):
    """Pulled project rows took the time of the pull as their last change: a new device's
    "Recent" order was the order rows happened to arrive in, not the order of the edits."""
    import time

    a = make_device("a")
    ids = []
    for name in ("first", "second", "third"):
        ids.append(a.lib.create_project(name))
        time.sleep(0.05)
    a.lib.rename_project(ids[0], "first, edited last")
    a.sync_ok()
    b = make_device("b")
    b.sync_ok()
    a.engine().maybe_compact(force=True)
    c = make_device("c")  # from the snapshot
    c.sync_ok()
    mine = [(p["id"], p["updated_at"]) for p in a.lib.list_projects()]
    assert [p["id"] for p in a.lib.list_projects()] == [ids[0], ids[2], ids[1]]
    for dev in (b, c):
        theirs = [(p["id"], p["updated_at"]) for p in dev.lib.list_projects()]
        assert [i for i, _ in theirs] == [i for i, _ in mine]
        for (_, t_mine), (_, t_theirs) in zip(mine, theirs, strict=True):  # the edit's time, to the ms
            assert abs(_secs(t_mine) - _secs(t_theirs)) < 0.05, (t_mine, t_theirs)


def _secs(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_without_a_remote_the_outbox_stays_small_and_nothing_is_lost_when_one_is_set(make_device, sample_video):
    """Every edit of a library that never synced stayed in the outbox (18,000 rows, a quarter of
    a season's file). Without a remote only the newest row is kept; setting one queues every
    row from its stamps, so the other device still gets everything."""
    from sqlalchemy import func, select

    b = make_device("b")  # the remote is in use already: b reads batches, not a first snapshot
    b.lib.create_project("On the remote before")
    b.sync_ok()
    a = make_device("a", configure=False)
    pid, c1, c2 = small_project(a, sample_video)
    for i in range(60):  # a keyframe nudged sixty times
        a.lib.apply(pid, {"clips": [{"id": c1, "crop_keyframes": [
            {"time": 0.0, "x": i, "y": 0, "width": 101, "height": 180}]}, {"id": c2}]})
    a.lib.rename_project(pid, "Never synced")
    with a.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Change)) <= 2
    engine.set_remote(a.db, a.cfg)
    a.sync_ok()
    b.sync_ok()
    assert editable(b.lib.document(pid)) == editable(a.lib.document(pid))
    doc = b.lib.document(pid)
    assert doc["name"] == "Never synced" and doc["clips"][0]["crop_keyframes"][0]["x"] == 59
