"""Exports through the UI: progress signals, the card's progress, cancel, the status badge walking
the seed table (shared/seeds/project-status-regression.md), interrupted jobs, no GUI stalls."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from tests.ui.conftest import FakeRenderer, row, wait_rows
from tests.ui.stall import StallProbe


def make_project(qtbot, window, lib, video):
    pid = lib.create_project("Export test")
    cid = lib.add_clip(pid, video)
    wait_rows(qtbot, window, 1)
    return pid, cid


def export_overlay_with_a_region(qtbot, win, lib, s, t: float) -> None:
    """Once the working video is in: open the overlay editor, add a region at ``t``, export."""
    pid = s.project_id
    qtbot.waitUntil(lambda: s.doc.get("working_video") is not None, timeout=3000)
    win.open_project(pid, "overlay")
    win.overlay.seek(t)
    win.overlay.add_region()
    s.flush()
    qtbot.waitUntil(lambda: len(lib.document(pid)["overlay"]["regions"]) == 1, timeout=3000)
    win.overlay.export_btn.click()


def finished_jobs(window):
    out = []
    window.exports.signals.finished.connect(out.append)
    return out


def test_export_progress_card_and_notification(qtbot, window, lib, tiny_video, renderer):
    renderer.steps, renderer.delay = 12, 0.1
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    progress, done = [], finished_jobs(window)
    window.exports.signals.progress.connect(lambda jid, p: progress.append(p))
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=3000)
    window.framing.export_btn.click()
    qtbot.waitUntil(lambda: row(window, pid)["progress"] is not None and row(window, pid)["progress"] > 0,
                    timeout=5000)
    assert row(window, pid)["status"] == "exporting_framing"
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert done[0]["status"] == "complete"
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 100.0
    qtbot.waitUntil(lambda: row(window, pid)["status"] == "in_overlay", timeout=3000)
    assert row(window, pid)["progress"] is None
    assert any("ready" in n for n in window.notifications)
    if renderer.nice is not None:  # the export yields the CPU to the window (Linux: nice 10)
        assert renderer.nice >= 10
    qrow = window.queue.rows[done[0]["id"]]
    assert qrow.open_btn.isVisibleTo(qrow) and not qrow.cancel_btn.isVisibleTo(qrow)


def test_editor_badge_and_queue_say_the_same_percentage(qtbot, window, lib, tiny_video, renderer):
    renderer.steps, renderer.delay = 100, 0.04
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=3000)
    window.framing.export_btn.click()
    qtbot.waitUntil(lambda: bool(window.exports.live), timeout=5000)
    job_id = next(iter(window.exports.live))
    qtbot.waitUntil(lambda: job_id in window.queue.rows, timeout=3000)
    seen = set()
    for _ in range(8):  # at several moments of the export, between two polls of the database
        qtbot.wait(110)
        if job_id not in window.exports.live:
            break
        queue_says = window.queue.rows[job_id].bar.format()
        seen.add(queue_says)
        assert f" {queue_says}" in window.editor_page.status.text()
    assert len(seen) >= 3  # the percentage moved while we looked


def test_export_pressed_twice_renders_once(qtbot, window, lib, tiny_video, renderer):
    renderer.steps, renderer.delay = 40, 0.05
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=3000)
    done = finished_jobs(window)
    window.framing.export_btn.click()
    window.framing.export_btn.click()  # impatient: nothing changed in between
    qtbot.waitUntil(lambda: "already being exported" in window.statusBar().currentMessage(), timeout=5000)
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert [j["project_id"] for j in window.svc.list_jobs()] == [pid]  # one render, not two


def test_save_the_exported_video_under_the_project_name(qtbot, window, lib, tiny_video, tmp_path):
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    done = finished_jobs(window)
    window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    qtbot.waitUntil(lambda: done[0]["id"] in window.queue.rows, timeout=3000)
    qrow = window.queue.rows[done[0]["id"]]
    assert qrow.save_btn.isVisibleTo(qrow)
    qrow.save_btn.click()  # the queue's "Save as…" asks where, offering the project's name
    qtbot.waitUntil(lambda: getattr(window, "save_dialog", None) is not None and window.save_dialog.isVisible(),
                    timeout=3000)
    d = window.save_dialog
    assert d.selectedFiles()[0].endswith("/Export test (working).mp4")
    dest = tmp_path / "Export test (working).mp4"
    d.selectFile(str(dest))
    d.accept()
    qtbot.waitUntil(lambda: any("is saved as" in n for n in window.notifications), timeout=5000)
    assert dest.read_bytes() == open(done[0]["output"], "rb").read()
    # from the menu in the overlay editor: there is no final video yet, and it says so
    window.open_project(pid, "overlay")
    window.act_save_video.trigger()
    qtbot.waitUntil(lambda: "has no final video yet" in window.statusBar().currentMessage(), timeout=3000)


def test_quitting_during_an_export_asks_first(qtbot, window, lib, tiny_video, renderer):
    from PySide6.QtWidgets import QMessageBox

    renderer.steps, renderer.delay = 400, 0.05
    window._cancel_exports_on_quit = False  # as in the app (the fixture's windows close without asking)
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    done = finished_jobs(window)
    window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: bool(window.exports.live) and renderer.started.is_set(), timeout=5000)
    window.close()  # a stray close while it renders
    qtbot.waitUntil(lambda: getattr(window, "exports_box", None) is not None and window.exports_box.isVisible(),
                    timeout=3000)
    assert window.isVisible() and not done  # still open, still exporting
    assert "“Export test”, working video" in window.exports_box.text()
    window.exports_box.button(QMessageBox.StandardButton.Cancel).click()  # "Keep exporting"
    qtbot.wait(300)
    assert window.isVisible() and not done
    window.close()
    qtbot.waitUntil(lambda: window.exports_box.isVisible(), timeout=3000)
    window.exports_box.button(QMessageBox.StandardButton.Discard).click()  # "Quit and cancel"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert lib.status(pid).status == "not_started"  # cancelled, the project as it was
    assert [j["status"] for j in window.svc.list_jobs()] == ["cancelled"]


def test_cancel_from_the_queue_panel(qtbot, window, lib, tiny_video, renderer):
    renderer.steps, renderer.delay = 200, 0.05
    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    done = finished_jobs(window)
    window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: bool(window.exports.live), timeout=5000)
    job_id = next(iter(window.exports.live))
    qtbot.waitUntil(lambda: job_id in window.queue.rows, timeout=3000)
    t0 = time.monotonic()
    window.queue.rows[job_id].cancel_btn.click()
    qtbot.waitUntil(lambda: bool(done), timeout=3000)
    assert time.monotonic() - t0 < 2.0
    assert done[0]["status"] == "cancelled"
    qtbot.waitUntil(lambda: row(window, pid)["status"] == "not_started", timeout=3000)
    assert not list(lib.media.tmp.glob("*"))  # nothing left behind


def small_output(lib, pid: str, width: int = 180, height: int = 320) -> None:
    doc = lib.document(pid)
    doc["export_settings"].update(width=width, height=height, preset="ultrafast")
    lib.apply(pid, doc)


def test_real_exports_through_the_ui_progress_complete_and_cancel(qtbot, real_window, lib, media_dir):
    """The real pipeline behind the buttons: progress arrives, the card shows it, the working
    and final videos are real H.264 of the chosen size, and a cancel stops a long export."""
    import av

    from tests.media import make_video

    win = real_window
    src = make_video(media_dir / "ui-real.mp4", width=320, height=180, fps=30, duration=2.0)
    pid = lib.create_project("Real export")
    lib.add_clip(pid, src)
    small_output(lib, pid)
    wait_rows(qtbot, win, 1)
    progress, done = [], finished_jobs(win)
    win.exports.signals.progress.connect(lambda jid, p: progress.append(p))
    s = win.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None, timeout=3000)
    win.framing.export_btn.click()
    qtbot.waitUntil(lambda: bool(done), timeout=60000)
    assert done[0]["status"] == "complete", done[0]
    assert progress and progress[-1] == 100.0
    qtbot.waitUntil(lambda: row(win, pid)["status"] == "in_overlay", timeout=3000)
    working = lib.document(pid)["working_video"]
    with av.open(working["path"]) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.width, v.height) == ("h264", 180, 320)
        assert abs(float(c.duration / 1_000_000) - 2.0) < 0.1
    export_overlay_with_a_region(qtbot, win, lib, s, 0.5)
    qtbot.waitUntil(lambda: len(done) == 2, timeout=60000)
    assert done[1]["status"] == "complete", done[1]
    qtbot.waitUntil(lambda: row(win, pid)["status"] == "complete", timeout=3000)
    # a long export (a minute of 720p out), cancelled from the queue: stops, nothing registered
    long_src = make_video(media_dir / "ui-real-long.mp4", width=640, height=360, fps=30, duration=60.0)
    p2 = lib.create_project("Long export")
    lib.add_clip(p2, long_src)
    small_output(lib, p2, 720, 1280)
    wait_rows(qtbot, win, 2)
    win.start_export(p2, "framing")
    qtbot.waitUntil(lambda: row(win, p2)["progress"] is not None and row(win, p2)["progress"] > 0, timeout=20000)
    job_id = next(j for j, info in win.exports.live.items())
    t0 = time.monotonic()
    win.queue.rows[job_id].cancel_btn.click()
    qtbot.waitUntil(lambda: len(done) == 3, timeout=5000)
    assert time.monotonic() - t0 < 2.0 and done[2]["status"] == "cancelled"
    qtbot.waitUntil(lambda: row(win, p2)["status"] == "not_started", timeout=3000)
    assert lib.document(p2)["working_video"] is None


def test_status_badge_walks_the_seed_table(qtbot, window, lib, tiny_video):
    from app.ui.framing_editor import FramingEditor  # noqa: F401 - the editor drives the edits

    def status():
        return row(window, pid)["status"]

    pid = lib.create_project("Seed walk")
    wait_rows(qtbot, window, 1)
    assert status() == "not_started"  # start new project
    window.add_clips(pid, [str(tiny_video)])
    qtbot.waitUntil(lambda: row(window, pid)["clip_count"] == 1, timeout=5000)
    assert status() == "not_started"  # clips, no framing
    s = window.open_project(pid)
    qtbot.waitUntil(lambda: s.doc is not None and window.framing.clip_id is not None, timeout=3000)
    window.framing.add_key()
    s.flush()
    qtbot.waitUntil(lambda: status() == "in_framing", timeout=3000)
    done = finished_jobs(window)
    window.framing.export_btn.click()
    qtbot.waitUntil(lambda: len(done) == 1, timeout=10000)
    qtbot.waitUntil(lambda: status() == "in_overlay", timeout=3000)  # framing export complete
    export_overlay_with_a_region(qtbot, window, lib, s, 0.0)
    qtbot.waitUntil(lambda: len(done) == 2, timeout=10000)
    qtbot.waitUntil(lambda: status() == "complete", timeout=3000)  # overlay export complete
    # re-overlay a complete project -> in overlay
    assert window.overlay.dim_value.text() == "20 %"  # the slider says its value
    window.overlay.dim.setValue(60)
    assert window.overlay.dim_value.text() == "60 %"
    qtbot.waitUntil(lambda: status() == "in_overlay", timeout=3000)
    window.act_undo.trigger()
    qtbot.waitUntil(lambda: status() == "complete", timeout=3000)
    qtbot.waitUntil(lambda: window.overlay.dim_value.text() == "20 %", timeout=3000)  # undo moves it back
    # re-frame a complete project -> in framing; a running re-export shows as exporting
    window.open_project(pid, "framing")
    window.framing.seek(1.0)
    window.framing.add_key()
    qtbot.waitUntil(lambda: status() == "in_framing", timeout=3000)
    window.framing.export_btn.click()
    qtbot.waitUntil(lambda: status() == "exporting_framing", timeout=3000)
    qtbot.waitUntil(lambda: len(done) == 3, timeout=10000)
    qtbot.waitUntil(lambda: status() == "in_overlay", timeout=3000)


def test_interrupted_job_shows_restart(qtbot, window, lib, tiny_video):
    from app.storage.models import ExportJob

    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    with lib.db.write() as s:  # a job whose process died mid-export (a crash, a reboot)
        j = ExportJob(project_id=pid, type="framing", status="running", pid=2 ** 22 + 12345,
                      host=__import__("app.storage.procs", fromlist=["HOST"]).HOST,
                      heartbeat_at=datetime.now(UTC), progress=40.0)
        s.add(j)
        s.flush()
        jid = j.id
    qtbot.waitUntil(lambda: jid in window.queue.rows, timeout=3000)
    qrow = window.queue.rows[jid]
    qtbot.waitUntil(lambda: "interrupted" in qrow.label.text(), timeout=3000)
    assert qrow.restart_btn.isVisibleTo(qrow)
    # the reason is on the row itself, in place of the bar
    assert qrow.reason.isVisibleTo(qrow) and not qrow.bar.isVisibleTo(qrow)
    assert qrow.reason.full_text() == "Interrupted at 40%: the export's process ended before it finished"
    assert not window.queue.clear_btn.isHidden()
    done = finished_jobs(window)
    qrow.restart_btn.click()
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert done[0]["status"] == "complete"
    output = done[0]["output"]
    qtbot.waitUntil(lambda: len(window.queue.rows) == 2, timeout=3000)
    window.queue.clear_btn.click()  # the list forgets ended exports; their videos stay
    qtbot.waitUntil(lambda: not window.queue.rows, timeout=3000)
    assert window.svc.list_jobs() == [] and os.path.isfile(output)
    assert window.queue.clear_btn.isHidden()


def test_gui_never_stalls_during_export_and_poster_load(qtbot, lib, tiny_video, monkeypatch):
    from PySide6.QtCore import QCoreApplication

    from app.jobs.service import ExportService, Settings
    from app.ui import project_grid
    from app.ui.main_window import MainWindow

    monkeypatch.setattr(project_grid, "POSTERS_QUEUED", 1000)  # all 200 asked for at once, none dropped

    QCoreApplication.setOrganizationName("ReelforgeTests")
    ids = [lib.create_project(f"P{i:03d}") for i in range(200)]
    for pid in ids:  # the media is stored once; each clip is a row
        lib.add_clip(pid, tiny_video)
    busy = FakeRenderer(steps=8, work=True)
    svc = ExportService(lib, Settings(device="cpu"), renderers={"framing": busy, "overlay": busy})
    win = MainWindow(lib, svc, poll_ms=1000)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)  # the window's first layout and paint are not what is probed
    qtbot.wait(200)
    probe = StallProbe().start()
    done = []
    win.exports.signals.finished.connect(done.append)
    win.start_export(ids[0], "framing")
    qtbot.waitUntil(lambda: len(win.model.rows) == 200, timeout=10000)
    # every poster of the 200 (not only the visible ones) loads while the export runs
    win.model.request_posters(ids)
    qtbot.waitUntil(lambda: len(win.model.posters) == 200 and bool(done), timeout=60000)
    probe.stop()
    win.close()
    assert done[0]["status"] == "complete"
    probe.check(work_s=0.080)


def test_a_replaced_export_says_so(qtbot, window):
    from app.ui.exports import JobRow

    job = {"id": "j1", "project_id": "p1", "type": "framing", "status": "complete", "progress": 100.0,
           "error": None, "output": "/videos/a.mp4", "device": "CPU", "current": False}
    replaced = JobRow(window.exports, job, "Saturday final")
    qtbot.addWidget(replaced)
    assert "complete · replaced by a later export" in replaced.label.text()
    held = JobRow(window.exports, dict(job, current=True), "Saturday final")
    qtbot.addWidget(held)
    assert held.label.text().endswith("framing · complete")


def _three_projects(qtbot, window, lib, tiny_video) -> list[str]:
    ids = []
    for n in range(3):
        pid = lib.create_project(f"Queue {n}")
        lib.add_clip(pid, tiny_video)
        ids.append(pid)
    wait_rows(qtbot, window, 3)
    return ids


def test_an_export_waiting_for_a_thread_is_queued_visibly_and_can_be_cancelled(qtbot, window, lib, tiny_video,
                                                                                renderer):
    """Two export threads: the third export pressed used to exist nowhere (no job, no queue row,
    no status) until a thread was free. It is queued at once, seen, and cancellable."""
    renderer.steps, renderer.delay = 200, 0.05
    ids = _three_projects(qtbot, window, lib, tiny_video)
    done = finished_jobs(window)
    for pid in ids:
        window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: len(window.svc.list_jobs()) == 3, timeout=2000)
    qtbot.waitUntil(lambda: len(window.exports.live) == 2 and len(window.exports.waiting) == 1, timeout=5000)
    [third] = window.exports.waiting
    qtbot.waitUntil(lambda: third in window.queue.rows, timeout=3000)
    waiting_pid = window.exports.waiting[third]["project_id"]
    qtbot.waitUntil(lambda: row(window, waiting_pid)["status"] == "exporting_framing", timeout=3000)
    window.queue.rows[third].cancel_btn.click()
    for job_id in list(window.exports.live):
        window.exports.cancel(job_id)
    qtbot.waitUntil(lambda: len(done) == 3, timeout=5000)
    assert sorted(j["status"] for j in done) == ["cancelled"] * 3
    assert next(j for j in done if j["id"] == third)["error"] == "cancelled before it started"
    qtbot.waitUntil(lambda: all(row(window, p)["status"] == "not_started" for p in ids), timeout=3000)


def test_a_long_wait_for_a_thread_does_not_read_as_interrupted(qtbot, window, lib, tiny_video, renderer,
                                                             monkeypatch):
    import app.storage.status as status

    monkeypatch.setattr(status, "STALL_TIMEOUT_S", 1.5)  # "gone" after 1.5 s of silence on this host
    renderer.steps, renderer.delay = 100, 0.05  # 5 s each
    ids = _three_projects(qtbot, window, lib, tiny_video)
    window.beat_timer.setInterval(300)
    done = finished_jobs(window)
    for pid in ids:
        window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: len(window.exports.live) == 2 and len(window.exports.waiting) == 1, timeout=5000)
    [third] = window.exports.waiting
    qtbot.wait(2500)  # waiting, with the window's heartbeat
    assert window.svc.get(third)["status"] == "queued"
    qtbot.waitUntil(lambda: len(done) == 3, timeout=20000)
    assert [j["status"] for j in done] == ["complete"] * 3


def test_quitting_cancels_the_exports_waiting_for_a_thread_too(qtbot, window, lib, tiny_video, renderer):
    renderer.steps, renderer.delay = 400, 0.05
    ids = _three_projects(qtbot, window, lib, tiny_video)
    for pid in ids:
        window.start_export(pid, "framing")
    qtbot.waitUntil(lambda: len(window.exports.live) == 2 and len(window.exports.waiting) == 1, timeout=5000)
    assert "waiting" in "; ".join(window._running_exports())  # named in the quit question
    t0 = time.monotonic()
    window.close()  # the fixture's window quits and cancels without asking
    assert time.monotonic() - t0 < 4.0
    assert sorted(j["status"] for j in window.svc.list_jobs()) == ["cancelled"] * 3


def test_the_progress_of_another_process_export_does_not_reread_the_library(qtbot, window, lib, tiny_video,
                                                                            monkeypatch):
    """An export's progress changed the poll's signature every second, and each change re-read
    every project (0.5-0.8 s of CPU at 3,000 projects, most of a core beside the export). Now
    progress alone re-reads the running jobs, and the card and the queue still follow it."""
    import os

    from app.services import editing
    from app.storage.models import ExportJob
    from app.storage.procs import HOST

    pid, _cid = make_project(qtbot, window, lib, tiny_video)
    with lib.db.write() as s:  # a CLI export of this project, alive (this process stands in for it)
        j = ExportJob(project_id=pid, type="framing", status="running", pid=os.getpid(), host=HOST,
                      heartbeat_at=datetime.now(UTC), progress=10.0)
        s.add(j)
        s.flush()
        jid = j.id
    qtbot.waitUntil(lambda: row(window, pid)["status"] == "exporting_framing", timeout=5000)
    reads = []
    list_projects = lib.list_projects
    monkeypatch.setattr(lib, "list_projects", lambda: (reads.append(1), list_projects())[1])
    before = editing.change_signature(lib)
    with lib.db.write(passing=True) as s:
        job = s.get(ExportJob, jid)
        job.progress, job.heartbeat_at = 55.0, datetime.now(UTC)
    assert editing.only_progress_changed(before, editing.change_signature(lib))
    qtbot.waitUntil(lambda: row(window, pid).get("progress") == 55.0, timeout=5000)
    qtbot.waitUntil(lambda: next(j for j in window.exports.jobs if j["id"] == jid)["progress"] == 55.0,
                    timeout=3000)
    assert reads == []
    with lib.db.write() as s:  # it ends: a change of status is read in full
        s.get(ExportJob, jid).status = "failed"
    qtbot.waitUntil(lambda: row(window, pid)["status"] != "exporting_framing", timeout=5000)
    assert reads
