"""T248: an export commits its working video while a pull applies an older remote version of the
project. The predecessor downloaded the whole database over the local one and lost the result;
here rows are merged field by field inside one transaction, so the newer local commit stays."""

from __future__ import annotations

import threading

from app.jobs.service import ExportService, Settings


def project_with_clip(dev, sample_video):
    pid = dev.lib.create_project("T248")
    dev.lib.add_clip(pid, sample_video, 0.0, 1.5)
    dev.lib.apply(pid, {"export_settings": {"width": 144, "height": 256, "preset": "ultrafast"}})
    return pid


def export(dev, pid):
    job = ExportService(dev.lib, Settings(device="cpu")).export(pid, "framing")
    assert job["status"] == "complete", job
    return job


def working_video_id(dev, pid):
    return dev.lib.document(pid)["working_video"]["id"]


def test_an_export_committed_during_a_pull_of_an_older_version_stays(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid = project_with_clip(a, sample_video)
    a.sync_ok()
    b.sync_ok(fetch_media=True)
    export(b, pid)  # B's older export (and an older rename) reach the remote first
    b.lib.rename_project(pid, "renamed on B")
    b.sync_ok()
    jobs = []

    def export_now(keys):  # the pull has downloaded B's batch; the export commits before it applies
        jobs.append(export(a, pid))

    r = a.engine(hooks={"before_apply": export_now}).run_cycle(fetch_media=False)
    assert r.ok, r.error  # no "sync failed"
    assert jobs and jobs[0]["status"] == "complete"
    doc = a.lib.document(pid)
    assert doc["working_video"] is not None and doc["working_video"]["local"] is True
    assert doc["working_video"]["path"] == jobs[0]["output"]
    assert doc["name"] == "renamed on B"  # B's other edits arrived all the same
    row = next(p for p in a.lib.list_projects() if p["id"] == pid)
    assert row["has_working_video"] and row["status"] == "in_overlay"
    # the two exports were concurrent: recorded, newest kept, and B ends up with A's too
    assert [c["field"] for c in a.conflicts()] == ["working_video_id"]
    a.sync_ok()
    b.sync_ok()
    assert working_video_id(b, pid) == working_video_id(a, pid) == doc["working_video"]["id"]
    assert a.dump() == b.dump()


def test_exports_and_pulls_racing_in_threads_never_lose_a_commit(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid = project_with_clip(a, sample_video)
    a.sync_ok()
    b.sync_ok(fetch_media=True)
    for i in range(3):
        b.lib.rename_project(pid, f"B{i}")
        b.sync_ok()
    stop = threading.Event()
    errors = []

    def pull_loop():
        eng = a.engine()
        while not stop.is_set():
            try:
                eng.pull()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    t = threading.Thread(target=pull_loop)
    t.start()
    try:
        outputs = [export(a, pid)["output"] for _ in range(2)]
    finally:
        stop.set()
        t.join(30)
    assert not errors
    assert a.lib.document(pid)["working_video"]["path"] == outputs[-1]
    a.sync_ok()
    b.sync_ok()
    assert b.lib.document(pid)["working_video"]["id"] == a.lib.document(pid)["working_video"]["id"]
