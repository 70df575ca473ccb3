"""Project status (PRODUCT.md rules), every row of the status-regression seed and its edge cases,
with real exports of generated media. The only stand-ins are gates that hold an export at a
known point (to observe 'exporting') and a killed process (a crash cannot be asked for politely).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.jobs.service import ExportService, Settings, default_renderer
from app.pipeline.plan import Cancelled
from app.storage.models import ExportJob
from tests.media import make_video

ROOT = Path(__file__).resolve().parent.parent


class Gate:
    """Wraps the real renderer: reports some progress, then holds until released."""

    def __init__(self, kind: str):
        self.kind = kind
        self.started = threading.Event()
        self.go = threading.Event()

    def __call__(self, plan, out, progress, should_cancel):
        self.started.set()
        progress(0.3)
        while not self.go.wait(0.05):
            if should_cancel():
                raise Cancelled()
        return default_renderer(self.kind)(plan, out, progress, should_cancel)


def status(lib, pid) -> str:
    return lib.status(pid).status


def row(lib, pid) -> dict:
    return next(r for r in lib.list_projects() if r["id"] == pid)


@pytest.fixture(scope="module")
def clip_src(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("src") / "game.mp4", width=320, height=180, duration=1.0,
                      audio=True)


@pytest.fixture
def svc(lib):
    return ExportService(lib, Settings(device="cpu"))


def new_project(lib, clip_src, edits: bool = False) -> tuple[str, str]:
    pid = lib.create_project("Seed")
    cid = lib.add_clip(pid, clip_src)
    if edits:
        lib.apply(pid, {"clips": [{"id": cid, "crop_keyframes": [
            {"time": 0.0, "x": 100, "y": 0, "width": 101, "height": 180}]}]})
    return pid, cid


def in_thread(fn, *args):
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("result", fn(*args)), daemon=True)
    t.start()
    return t, out


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_seed_table_walk(lib, svc, clip_src):
    pid = lib.create_project("Walk")
    assert status(lib, pid) == "not_started"  # start new project
    cid = lib.add_clip(pid, clip_src)
    assert status(lib, pid) == "not_started"  # add clips, no framing
    job = svc.export(pid, "framing")
    assert job["status"] == "complete", job
    assert status(lib, pid) == "in_overlay"  # framing export complete -> ready for overlay
    assert row(lib, pid)["has_working_video"] is True
    job = svc.export(pid, "overlay")
    assert job["status"] == "complete", job
    assert status(lib, pid) == "complete"  # overlay export complete
    r = row(lib, pid)
    assert r["has_final_video"] and r["progress"] is None

    # re-frame a completed project: regress at once, show the re-export, then forward again
    lib.apply(pid, {"clips": [{"id": cid, "rotation": 3.0}]})
    assert status(lib, pid) == "in_framing"
    doc = lib.document(pid)
    assert doc["working_video"]["current"] is False and doc["final_video"]["current"] is False
    gate = Gate("framing")
    svc_g = ExportService(lib, Settings(device="cpu"), renderers={"framing": gate})
    t, out = in_thread(svc_g.export, pid, "framing")
    assert gate.started.wait(10)
    assert status(lib, pid) == "exporting_framing"
    assert wait_for(lambda: row(lib, pid)["progress"] == 30.0), "card progress comes from the running job"
    gate.go.set()
    t.join(60)
    assert out["result"]["status"] == "complete"
    assert status(lib, pid) == "in_overlay"  # new working video, the final video is now stale
    svc.export(pid, "overlay")
    assert status(lib, pid) == "complete"

    # re-overlay a framed project: an overlay edit regresses complete -> in_overlay
    lib.apply(pid, {"overlay": {"settings": {"dim": 0.6}}})
    assert status(lib, pid) == "in_overlay"


@pytest.mark.parametrize("edit", [
    {"crop_keyframes": [{"time": 0.0, "x": 10, "y": 0, "width": 101, "height": 180}]},
    {"trim": {"start": 0.2, "end": 1.0}},
    {"segments": [{"start": 0.0, "end": 0.5, "speed": 1.0}, {"start": 0.5, "end": 1.0, "speed": 0.5}]},
    {"segments": [{"start": 0.0, "end": 1.0, "speed": 2.0}]},
    {"rotation": -4.0},
])
def test_any_framing_edit_is_in_framing(lib, clip_src, edit):
    pid, cid = new_project(lib, clip_src)
    assert status(lib, pid) == "not_started"
    lib.apply(pid, {"clips": [dict({"id": cid}, **edit)]})
    assert status(lib, pid) == "in_framing"


@pytest.mark.parametrize("change", [
    {"aspect_ratio": "1:1"},
    {"transition": {"type": "fade"}},
    {"export_settings": {"crf": 28}},
    {"clips": "audio"},
])
def test_non_clip_framing_inputs_make_the_working_video_stale(lib, svc, clip_src, change):
    pid, cid = new_project(lib, clip_src)
    assert svc.export(pid, "framing")["status"] == "complete"
    assert status(lib, pid) == "in_overlay"
    if change.get("clips") == "audio":
        change = {"clips": [{"id": cid, "audio": False}]}
    lib.apply(pid, change)
    assert status(lib, pid) == "in_framing"
    assert row(lib, pid)["has_working_video"] is True


def test_concurrent_framing_and_overlay_exports_framing_wins(lib, clip_src):
    pid, _ = new_project(lib, clip_src, edits=True)
    ExportService(lib, Settings(device="cpu")).export(pid, "framing")
    gf, go = Gate("framing"), Gate("overlay")
    svc = ExportService(lib, Settings(device="cpu"), renderers={"framing": gf, "overlay": go})
    to, _ = in_thread(svc.export, pid, "overlay")
    assert go.started.wait(10)
    assert status(lib, pid) == "exporting_overlay"
    tf, _ = in_thread(svc.export, pid, "framing")
    assert gf.started.wait(10)
    assert status(lib, pid) == "exporting_framing"  # framing wins when both run
    gf.go.set()
    tf.join(60)
    assert status(lib, pid) == "exporting_overlay"
    go.go.set()
    to.join(60)
    # the overlay was rendered from the working video it started with, which the framing
    # export has since replaced: the final video is not current
    assert status(lib, pid) == "in_overlay"


def complete_project(lib, svc, clip_src) -> tuple[str, dict]:
    pid, cid = new_project(lib, clip_src, edits=True)
    assert svc.export(pid, "framing")["status"] == "complete"
    assert svc.export(pid, "overlay")["status"] == "complete"
    assert status(lib, pid) == "complete"
    return pid, lib.document(pid)


def test_failed_reexport_leaves_the_project_as_it_was(lib, svc, clip_src):
    pid, before = complete_project(lib, svc, clip_src)
    media = lib.media.path_for(before["clips"][0]["media"]["sha256"], ".mp4")
    media.rename(media.with_suffix(".away"))  # the source vanished from the store
    job = svc.export(pid, "framing")
    assert job["status"] == "failed" and "missing" in job["error"]
    after = lib.document(pid)
    assert status(lib, pid) == "complete"
    assert after["working_video"] == before["working_video"] and after["final_video"] == before["final_video"]
    assert Path(after["working_video"]["path"]).is_file() and Path(after["final_video"]["path"]).is_file()


def test_cancelled_export_leaves_the_project_as_it_was(lib, clip_src):
    svc = ExportService(lib, Settings(device="cpu"))
    pid, before = complete_project(lib, svc, clip_src)
    gate = Gate("framing")
    svc_g = ExportService(lib, Settings(device="cpu"), renderers={"framing": gate})
    t, out = in_thread(svc_g.export, pid, "framing")
    assert gate.started.wait(10)
    assert status(lib, pid) == "exporting_framing"
    job_id = next(j["id"] for j in svc.list_jobs() if j["status"] == "running")
    t0 = time.monotonic()
    svc.cancel(job_id)
    t.join(10)
    assert time.monotonic() - t0 < 2.0
    assert out["result"]["status"] == "cancelled"
    assert status(lib, pid) == "complete"
    assert lib.document(pid)["working_video"] == before["working_video"]
    assert not list(lib.media.tmp.glob("*")), "no temporary file left behind"


def test_restart_during_an_export_shows_it_interrupted(lib, clip_src, data_dir):
    svc = ExportService(lib, Settings(device="cpu"))
    pid, before = complete_project(lib, svc, clip_src)
    # a second process starts a re-export and is killed (-9) in the middle of it
    code = (
        "import sys, time\n"
        "from app.services.library import Library\n"
        "from app.jobs.service import ExportService, Settings\n"
        "def hang(plan, out, progress, should_cancel):\n"
        "    open(out, 'wb').write(b'half a video')\n"
        "    progress(0.4)\n"
        "    print('rendering', flush=True)\n"
        "    time.sleep(600)\n"
        f"lib = Library({str(data_dir)!r})\n"
        "ExportService(lib, Settings(device='cpu'), renderers={'framing': hang}).export(sys.argv[1], 'framing')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, pid], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "rendering"
        assert wait_for(lambda: status(lib, pid) == "exporting_framing")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    # the next read shows the truth: not exporting, the job interrupted, outputs untouched
    assert status(lib, pid) == "complete"
    (job,) = [j for j in svc.list_jobs() if j["status"] not in ("complete",)]
    assert job["status"] == "interrupted"
    with lib.db.read() as s:
        assert s.get(ExportJob, job["id"]).status == "interrupted"  # persisted by the reaper
    assert lib.document(pid)["working_video"] == before["working_video"]
    assert not list(lib.media.tmp.glob("*")), "the dead export's partial file is cleaned up"
    # one click restarts it
    new_id = svc.restart(job["id"])
    assert svc.run(new_id)["status"] == "complete"
    assert status(lib, pid) == "in_overlay"


def test_edit_during_export_makes_the_new_output_stale(lib, clip_src):
    pid, cid = new_project(lib, clip_src, edits=True)
    gate = Gate("framing")
    svc = ExportService(lib, Settings(device="cpu"), renderers={"framing": gate})
    t, out = in_thread(svc.export, pid, "framing")
    assert gate.started.wait(10)
    lib.apply(pid, {"clips": [{"id": cid, "rotation": 2.0}]})  # the user keeps editing
    gate.go.set()
    t.join(60)
    assert out["result"]["status"] == "complete"
    assert status(lib, pid) == "in_framing"  # rendered from older edits than the project holds
    assert lib.document(pid)["working_video"]["current"] is False


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device whose every write fails: disk full)")
@pytest.mark.parametrize("kind", ["framing", "overlay"])
def test_a_full_disk_fails_the_reexport_with_the_reason_and_keeps_the_old_videos(lib, svc, clip_src, kind):
    pid, before = complete_project(lib, svc, clip_src)
    if kind == "overlay":  # with a region, so that the overlay export really encodes
        regions = [{"start": 0.0, "end": 1.0, "keyframes": [{"time": 0.0, "x": 540, "y": 900, "rx": 80, "ry": 160}]}]
        lib.apply(pid, {"overlay": {"regions": regions}})
        assert svc.export(pid, "overlay")["status"] == "complete"
        before = lib.document(pid)
    job_id = svc.enqueue(pid, kind)
    lib.media.tmp.mkdir(parents=True, exist_ok=True)
    # the export's temporary file is where the kernel answers every write with ENOSPC
    (lib.media.tmp / f"{job_id}.{os.getpid()}.part.mp4").symlink_to("/dev/full")
    job = svc.run(job_id)
    assert job["status"] == "failed" and job["error"].startswith("The disk is full"), job
    assert f"in {lib.media.tmp}." in job["error"] and "file:" not in job["error"]  # which disk, as a folder
    after = lib.document(pid)
    assert status(lib, pid) == "complete"
    assert after["working_video"] == before["working_video"] and after["final_video"] == before["final_video"]
    assert Path(after["working_video"]["path"]).is_file() and Path(after["final_video"]["path"]).is_file()
    assert not list(lib.media.tmp.glob("*")), "no temporary file left behind"
