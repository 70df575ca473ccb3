"""Remote housekeeping: media no live row uses are collected after a grace period (never one a
device is about to publish), abandoned multipart uploads are aborted, the local log of applied
objects is trimmed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.storage.models import SyncObject
from app.storage.sync import engine, schema
from tests.media import make_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("gc-media")
    return [make_video(d / f"v{i}.mp4", width=96, height=64, duration=0.5, pattern=p)
            for i, p in enumerate(("bars", "gray", "binary"))]


def remote_media(dev) -> set[str]:
    eng = dev.engine()
    return {schema.parse_media_key(dev.cfg.prefix, o["Key"])
            for k, o in eng.remote.list(schema.join(dev.cfg.prefix, "media/")) if k == "key"}


def sha_of(dev, project_id: str) -> str:
    return dev.lib.document(project_id)["clips"][0]["media"]["sha256"]


def pushed_then_deleted(dev, name: str, video) -> tuple[str, str]:
    """A project with one clip, pushed (its media uploaded), then deleted and pushed again."""
    pid = dev.lib.create_project(name)
    dev.lib.add_clip(pid, video)
    dev.sync_ok()
    sha = sha_of(dev, pid)
    dev.lib.delete_project(pid)
    dev.sync_ok()
    return pid, sha


def test_unused_media_are_collected_and_an_undone_delete_uploads_them_again(make_device, videos):
    a = make_device("a", media_grace_s=0)
    keep = a.lib.create_project("Kept")
    a.lib.add_clip(keep, videos[0])
    doomed = a.lib.create_project("Doomed")
    a.lib.add_clip(doomed, videos[1])
    a.sync_ok()
    kept_sha, doomed_sha = sha_of(a, keep), sha_of(a, doomed)
    assert remote_media(a) == {kept_sha, doomed_sha}
    a.lib.delete_project(doomed)
    a.sync_ok()
    assert a.engine().maybe_compact(force=True) is not None
    assert remote_media(a) == {kept_sha}  # nothing live points at it any more: collected
    b = make_device("b")
    r = b.sync_ok(fetch_media=True)
    assert r.media_downloaded == 1 and b.visible() == {keep: "Kept"}
    # undo of the delete: the project comes back on every device, with its media
    a.lib.restore_project(doomed)
    r = a.sync_ok()
    assert r.media_uploaded == 1 and remote_media(a) == {kept_sha, doomed_sha}
    r = b.sync_ok(fetch_media=True)
    assert r.media_downloaded == 1 and b.visible() == {keep: "Kept", doomed: "Doomed"}
    assert b.lib.media.has(doomed_sha, ".mp4")


def test_media_used_by_a_live_row_or_younger_than_the_grace_period_stay(make_device, videos):
    a = make_device("a")  # the default grace: two weeks
    pid, sha = pushed_then_deleted(a, "Young", videos[0])
    a.engine().maybe_compact(force=True)
    assert remote_media(a) == {sha}  # unused, but only for seconds
    a.lib.restore_project(pid)
    a.sync_ok()
    a.engine(media_grace_s=0).maybe_compact(force=True)
    assert remote_media(a) == {sha}  # used again


def test_a_device_publishing_an_old_unused_object_touches_it_so_it_is_not_collected(make_device, videos,
                                                                                      monkeypatch):
    a, c = make_device("a", media_grace_s=2.0), make_device("c")
    _old, sha = pushed_then_deleted(a, "Old", videos[2])
    time.sleep(2.5)  # the object is now older than A's grace period, and unused
    # C, which has the same file, publishes a clip that uses it, without uploading it (it is
    # there); "old" for C means older than a day, here: older than now
    monkeypatch.setattr(engine, "TOUCH_AFTER_S", 0.0)
    pc = c.lib.create_project("Reuse")
    c.lib.add_clip(pc, videos[2])
    r = c.sync_ok()
    assert r.media_uploaded == 0
    # A compacts before it has pulled C's batch: its snapshot has no live row using the object
    a.engine().push()
    assert a.engine().maybe_compact(force=True) is not None
    assert sha in remote_media(a)  # the touch kept it
    a.sync_ok()
    b = make_device("b")
    r = b.sync_ok(fetch_media=True)
    assert r.media_downloaded == 1 and b.visible() == {pc: "Reuse"}


def test_abandoned_multipart_uploads_are_aborted(make_device, videos):
    a = make_device("a", prune_after_s=0)
    pid = a.lib.create_project("P")
    a.lib.add_clip(pid, videos[0])
    a.sync_ok()
    eng = a.engine()
    bucket = eng.remote.bucket
    key = schema.media_key(a.cfg.prefix, "ab" * 32)
    eng.remote.client.create_multipart_upload(Bucket=bucket, Key=key)
    listed = eng.remote.client.list_multipart_uploads(Bucket=bucket, Prefix=schema.join(a.cfg.prefix, "media/"))
    assert [u["Key"] for u in listed.get("Uploads", [])] == [key]
    time.sleep(1.1)
    assert eng.maybe_compact(force=True) is not None
    listed = eng.remote.client.list_multipart_uploads(Bucket=bucket, Prefix=schema.join(a.cfg.prefix, "media/"))
    assert listed.get("Uploads", []) == []


def test_the_log_of_applied_objects_is_trimmed(make_device):
    a, b = make_device("a"), make_device("b")
    for i in range(3):
        a.lib.create_project(f"P{i}")
        a.sync_ok()
    b.sync_ok()

    def applied():
        with b.db.read() as s:
            return s.scalar(select(func.count()).select_from(SyncObject).where(SyncObject.status == "applied"))

    n = applied()
    assert n >= 1
    b.sync_ok()  # a week has not gone by
    assert applied() == n
    b.sync_ok(prune_after_s=0)
    assert applied() == 0
    a.lib.create_project("P3")
    a.sync_ok()
    b.sync_ok()
    assert len(b.visible()) == 4  # the cursors, not the log, say what was applied


def test_media_lost_from_the_remote_is_published_again(make_device, videos, s3):
    """A bucket emptied (or put back from an old copy) loses the videos. The devices' record of
    what they uploaded must not make them say "synced" while nobody else can fetch a video: the
    next snapshot's writer, which lists the remote's media, uploads what it has again."""
    import boto3

    from tests.sync.conftest import BUCKET

    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Kept")
    a.lib.add_clip(pid, videos[0])
    a.sync_ok()
    b.sync_ok(fetch_media=True)
    sha = sha_of(a, pid)
    raw = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=a.cfg.prefix + "/"):
        for o in page.get("Contents", []):
            raw.delete_object(Bucket=BUCKET, Key=o["Key"])
    assert remote_media(a) == set()

    a.lib.apply(pid, {"name": "Kept, renamed"})
    r = a.sync_ok()
    assert r.snapshot_written is not None and r.media_uploaded == 1
    assert remote_media(a) == {sha}
    c = make_device("c")
    c.sync_ok(fetch_media=True)
    assert c.lib.document(pid)["clips"][0]["media"]["local"]
