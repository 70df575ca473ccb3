"""Export job lifecycle details: the GPU slot queue, progress cadence, crash-safe commit order."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import select

from app.jobs.service import ExportService, Settings
from app.storage.models import ExportJob, Project, WorkingVideo
from tests.media import make_video
from tests.test_status import Gate, in_thread, wait_for


class GpuService(ExportService):
    """As on a machine with one GPU: every job asks for the GPU slot."""

    def _wants_gpu(self) -> bool:
        return True


def test_one_gpu_export_at_a_time_the_rest_queue(lib, tmp_path):
    src = make_video(tmp_path / "a.mp4", duration=1.0)
    p1, p2 = lib.create_project("One"), lib.create_project("Two")
    lib.add_clip(p1, src)
    lib.add_clip(p2, src)
    gate = Gate("framing")
    svc = GpuService(lib, Settings(device="cpu", max_gpu_jobs=1), renderers={"framing": gate})
    t1, o1 = in_thread(svc.export, p1, "framing")
    assert gate.started.wait(10)
    t2, o2 = in_thread(svc.export, p2, "framing")
    time.sleep(1.5)
    jobs = {j["project_id"]: j["status"] for j in svc.list_jobs()}
    assert jobs == {p1: "running", p2: "queued"}
    assert lib.status(p2).status == "exporting_framing"  # a queued export shows on its card too
    gate.go.set()
    t1.join(60)
    t2.join(60)
    assert o1["result"]["status"] == "complete" and o2["result"]["status"] == "complete"


def test_progress_arrives_at_least_once_a_second(lib, tmp_path):
    src = make_video(tmp_path / "b.mp4", width=1280, height=720, duration=6.0)
    pid = lib.create_project("Cadence")
    lib.add_clip(pid, src)
    stamps: list[tuple[float, float]] = []
    job = ExportService(lib, Settings(device="cpu")).export(
        pid, "framing", progress=lambda pct: stamps.append((time.monotonic(), pct)))
    assert job["status"] == "complete"
    times = [t for t, _ in stamps]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert stamps[-1][1] == 100.0
    assert max(gaps) <= 1.0, gaps
    assert [p for _, p in stamps] == sorted(p for _, p in stamps)  # never goes backwards


def test_output_committed_after_the_file_is_in_place(lib, tmp_path):
    """The pointer is committed only once the file sits at its final, content-addressed path,
    and the job says complete in the same transaction."""
    src = make_video(tmp_path / "c.mp4", duration=1.0)
    pid = lib.create_project("Order")
    lib.add_clip(pid, src)
    seen: list[bool] = []
    svc = ExportService(lib, Settings(device="cpu"))
    original = svc._commit

    def watching_commit(job_id, kind, tmp, result, inputs_hash, extra):
        seen.append(tmp.is_file())
        with lib.db.read() as s:  # nothing published yet
            assert s.get(Project, pid).working_video_id is None
            assert s.get(ExportJob, job_id).status == "running"
        return original(job_id, kind, tmp, result, inputs_hash, extra)

    svc._commit = watching_commit
    job = svc.export(pid, "framing")
    assert seen == [True] and job["status"] == "complete"
    with lib.db.read() as s:
        wv = s.get(WorkingVideo, s.get(Project, pid).working_video_id)
        assert lib.output_path(wv.sha256).is_file()
        from app.pipeline.hashing import sha256_file

        assert sha256_file(lib.output_path(wv.sha256)) == wv.sha256


@pytest.mark.parametrize("when", ["while hashing", "at the commit"])
def test_a_cancel_that_lands_while_the_output_is_committed_leaves_no_file(lib, tmp_path, monkeypatch, when):
    """`export cancel` from another process arriving after the render, while the output is hashed
    or while it is being committed: the export ends cancelled and nothing of it stays in the
    store (no orphan video that nothing points at). The cancel's moment is injected: it cannot be
    timed for real."""
    import app.pipeline.hashing as hashing

    src = make_video(tmp_path / "h.mp4", duration=1.0)
    pid = lib.create_project("Race")
    lib.add_clip(pid, src)
    svc = ExportService(lib, Settings(device="cpu"))
    before = set(lib.media.root.rglob("*.mp4"))
    if when == "while hashing":
        real = hashing.sha256_file

        def hashing_then_cancel(path, *a, **kw):
            out = real(path, *a, **kw)
            job = next(j for j in svc.list_jobs() if j["status"] == "running")
            ExportService(lib).cancel(job["id"])  # the other process's command
            return out

        monkeypatch.setattr(hashing, "sha256_file", hashing_then_cancel)
    else:
        def register_fails(*_a, **_kw):
            raise OSError(5, "Input/output error")  # the commit fails once the file is placed

        monkeypatch.setattr(svc, "_register", register_fails)
    job = svc.export(pid, "framing")
    assert job["status"] == ("cancelled" if when == "while hashing" else "failed"), job
    assert set(lib.media.root.rglob("*.mp4")) == before
    assert lib.document(pid)["working_video"] is None
    assert lib.status(pid).status != "exporting_framing"


def test_cancel_of_a_queued_job(lib, tmp_path):
    src = make_video(tmp_path / "d.mp4", duration=1.0)
    pid = lib.create_project("Queued")
    lib.add_clip(pid, src)
    svc = ExportService(lib, Settings(device="cpu"))
    job_id = svc.enqueue(pid, "framing")
    svc.cancel(job_id)
    stop = threading.Event()
    assert svc.run(job_id, cancel_event=stop)["status"] == "cancelled"
    assert wait_for(lambda: lib.status(pid).status == "not_started")


def gated_project(lib, tmp_path, name: str, kind: str = "framing"):
    """A one-clip project, and a service whose ``kind`` renders hold at a Gate: (pid, gate, svc)."""
    src = make_video(tmp_path / "source.mp4", duration=1.0)
    pid = lib.create_project(name)
    lib.add_clip(pid, src)
    gate = Gate(kind)
    return pid, gate, ExportService(lib, Settings(device="cpu"), renderers={kind: gate})


def test_export_asked_again_joins_the_live_one_unless_the_edits_changed(lib, tmp_path):
    """The editor's Export pressed twice makes one render; after an edit it makes a new one."""
    pid, gate, svc = gated_project(lib, tmp_path, "Twice")
    first, new = svc.enqueue_unless_in_flight(pid, "framing")
    assert new
    assert svc.enqueue_unless_in_flight(pid, "framing") == (first, False)  # queued: it takes the edits at start
    t, out = in_thread(svc.run, first)
    assert gate.started.wait(10)
    assert svc.enqueue_unless_in_flight(pid, "framing") == (first, False)  # running from these very edits
    doc = lib.document(pid)
    doc["clips"][0]["trim"] = {"start": 0.2, "end": 1.0}
    lib.apply(pid, doc)  # an edit after the render began: a new export is wanted
    second, new = svc.enqueue_unless_in_flight(pid, "framing")
    assert new and second != first
    svc.cancel(second)
    third, new = svc.enqueue_unless_in_flight(pid, "framing")  # a cancelled request is not joined
    assert new and third not in (first, second)
    svc.cancel(third)
    gate.go.set()
    t.join(60)
    assert out["result"]["status"] == "complete"
    assert len([j for j in svc.list_jobs() if j["project_id"] == pid]) == 3


@pytest.mark.parametrize("kind", ["framing", "overlay"])
def test_an_older_export_ending_last_does_not_replace_a_newer_one(lib, tmp_path, kind):
    """Export, edit, export again: if the first render ends after the second, the project keeps
    the video of the newer edits (and the first job's file is still there to open)."""
    pid, gate, slow = gated_project(lib, tmp_path, "Race", kind)
    if kind == "overlay":
        assert ExportService(lib, Settings(device="cpu")).export(pid, "framing")["status"] == "complete"
        doc = lib.document(pid)
        doc["overlay"]["regions"] = [{"start": 0.0, "end": 1.0, "keyframes": [
            {"time": 0.0, "x": 540, "y": 960, "rx": 100, "ry": 200}]}]
        lib.apply(pid, doc)
    t, out = in_thread(slow.export, pid, kind)
    assert gate.started.wait(10)  # the first export has taken the edits as they were
    doc = lib.document(pid)
    if kind == "framing":
        doc["clips"][0]["trim"] = {"start": 0.2, "end": 1.0}
    else:
        doc["overlay"]["settings"]["dim"] = 0.5
    lib.apply(pid, doc)
    newer = ExportService(lib, Settings(device="cpu")).export(pid, kind)
    field = "working_video" if kind == "framing" else "final_video"
    held = lib.document(pid)[field]
    assert newer["status"] == "complete" and held["current"]
    gate.go.set()
    t.join(60)
    older = out["result"]
    assert older["status"] == "complete" and older["output"] != newer["output"]
    assert lib.document(pid)[field] == held  # still the newer edits' video
    current = {j["id"]: j["current"] for j in slow.list_jobs() if j["type"] == kind}
    assert current == {older["id"]: False, newer["id"]: True}  # the queue can say which one the project holds
    assert (older["current"], newer["current"]) == (False, True)  # and so does each export as it ends
    assert lib.status(pid).status == ("in_overlay" if kind == "framing" else "complete")
    assert os.path.isfile(older["output"])


def test_deleting_a_project_stops_its_export(lib, tmp_path):
    pid, gate, svc = gated_project(lib, tmp_path, "Deleted mid-export")
    t, out = in_thread(svc.export, pid, "framing")
    assert gate.started.wait(10)
    t0 = time.monotonic()
    lib.delete_project(pid)
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 2.0  # stopped, not rendered to the end
    job = out["result"]
    assert (job["status"], job["error"]) == ("cancelled", "the project was deleted")
    assert list(lib.media.tmp.glob("*")) == []
    lib.restore_project(pid)  # Edit → Undo: the project is back as it was, without an output
    assert lib.document(pid)["working_video"] is None


def test_a_delete_that_lands_while_the_output_is_committed_cancels_the_export(lib, tmp_path, monkeypatch):
    """The delete arrives after the render, as the output is committed (its moment is injected:
    it cannot be timed for real). It was recorded as a failure; it is the same cancel as when the
    heartbeat sees the delete first, and nothing of the export stays."""
    import app.pipeline.hashing as hashing

    src = make_video(tmp_path / "d.mp4", duration=1.0)
    pid = lib.create_project("Deleted at the commit")
    lib.add_clip(pid, src)
    before = set(lib.media.root.rglob("*.mp4"))
    real = hashing.sha256_file

    def hashing_then_delete(path, *a, **kw):
        out = real(path, *a, **kw)
        lib.delete_project(pid)
        return out

    monkeypatch.setattr(hashing, "sha256_file", hashing_then_delete)
    job = ExportService(lib, Settings(device="cpu")).export(pid, "framing")
    assert (job["status"], job["error"]) == ("cancelled", "the project was deleted"), job
    assert set(lib.media.root.rglob("*.mp4")) == before


def test_a_delete_that_sync_brings_in_stops_the_export_too(lib, tmp_path):
    """The delete arrives as a tombstone written by the sync merge, not through the library."""
    from app.storage.tombstones import set_deleted

    pid, gate, svc = gated_project(lib, tmp_path, "Deleted on another device")
    t, out = in_thread(svc.export, pid, "framing")
    assert gate.started.wait(10)
    t0 = time.monotonic()
    with lib.db.write() as s:
        set_deleted(s, s.get(Project, pid), True)
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 2.0
    assert (out["result"]["status"], out["result"]["error"]) == ("cancelled", "the project was deleted")


def test_a_queued_export_of_a_deleted_project_is_cancelled_when_its_turn_comes(lib, tmp_path):
    """The export pool was busy; the project was deleted before its export began."""
    pid, gate, svc = gated_project(lib, tmp_path, "Deleted while queued")
    job_id = svc.enqueue(pid, "framing")
    lib.delete_project(pid)
    job = svc.run(job_id)
    assert not gate.started.is_set()  # nothing rendered
    assert (job["status"], job["error"]) == ("cancelled", "the project was deleted")
    assert list(lib.media.tmp.glob("*")) == []


def test_a_live_export_kept_from_its_heartbeat_is_not_called_gone_and_a_reaped_one_stops(lib, tmp_path):
    """On this host, an export whose process is still there may miss heartbeats for a while (paused,
    or the database held by a long lock) before it counts as interrupted; one on another host
    counts as gone after 10 s of silence. An export that was marked interrupted all the same
    stops working at its next heartbeat instead of rendering on for nothing."""
    from datetime import UTC, datetime, timedelta

    from app.storage.procs import HOST
    from app.storage.status import job_alive

    t = datetime.now(UTC)
    here = ExportJob(project_id="p", type="framing", status="running", pid=os.getpid(), host=HOST)
    there = ExportJob(project_id="p", type="framing", status="running", pid=os.getpid(), host=HOST + "-other")
    for job, silent, alive in ((here, 30, True), (here, 70, False), (there, 5, True), (there, 30, False)):
        job.heartbeat_at = t - timedelta(seconds=silent)
        assert job_alive(job, t) is alive, (job.host, silent)

    pid, gate, svc = gated_project(lib, tmp_path, "Reaped")
    th, out = in_thread(svc.export, pid, "framing")
    assert gate.started.wait(10)
    with lib.db.write() as s:  # what a reaper does to a job it takes for gone
        job = s.scalars(select(ExportJob)).one()
        job.status, job.error = "interrupted", "the export's process ended before it finished"
    th.join(10)  # the gate is never opened: only the stop ends it
    assert not th.is_alive()
    assert out["result"]["status"] == "interrupted"
    assert lib.document(pid)["working_video"] is None
