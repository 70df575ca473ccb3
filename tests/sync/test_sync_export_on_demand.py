"""A project made and framed on one device is exported on another: the files it needs are
fetched on demand (and verified) by the export itself."""

from __future__ import annotations

from app.jobs.service import ExportService, Settings
from tests.media import make_video


def test_second_device_exports_a_project_from_the_first(make_device, tmp_path):
    a, b = make_device("a"), make_device("b")
    src = make_video(tmp_path / "game.mp4", width=320, height=180, duration=1.0, audio=True)
    pid = a.lib.create_project("Made on A")
    a.lib.add_clip(pid, src)
    assert ExportService(a.lib, Settings(device="cpu")).export(pid, "framing")["status"] == "complete"
    a.sync_ok()
    b.sync_ok()  # rows only: B has not downloaded the working video
    doc = b.lib.document(pid)
    assert doc["status"] == "in_overlay"
    assert doc["working_video"]["local"] is False
    job = ExportService(b.lib, Settings(device="cpu")).export(pid, "overlay")
    assert job["status"] == "complete", job
    doc = b.lib.document(pid)
    assert doc["status"] == "complete" and doc["working_video"]["local"] is True
    # and the source itself, when B has not fetched it, comes on demand for a re-frame
    for f in (b.data_dir / "media").rglob("*"):
        if f.is_file() and f.name.startswith(doc["clips"][0]["media"]["sha256"]):
            f.unlink()
    assert b.lib.document(pid)["clips"][0]["media"]["local"] is False
    b.lib.apply(pid, {"clips": [{"id": doc["clips"][0]["id"], "rotation": 2.0}]})
    assert ExportService(b.lib, Settings(device="cpu")).export(pid, "framing")["status"] == "complete"
    assert b.lib.document(pid)["clips"][0]["media"]["local"] is True


def test_second_device_saves_a_video_it_has_not_downloaded(make_device, tmp_path):
    """`Save as…` of a video exported on another device fetches it from the remote first."""
    from app.services.outputs import save_project_output

    a, b = make_device("a"), make_device("b")
    src = make_video(tmp_path / "game.mp4", width=320, height=180, duration=1.0)
    pid = a.lib.create_project("Saved on B")
    a.lib.add_clip(pid, src)
    job = ExportService(a.lib, Settings(device="cpu")).export(pid, "framing")
    a.sync_ok()
    b.sync_ok()
    assert b.lib.document(pid)["working_video"]["local"] is False
    out = tmp_path / "on B"
    out.mkdir()
    saved = save_project_output(b.lib, pid, "framing", out)
    assert saved == out / "Saved on B (working).mp4"
    assert saved.read_bytes() == open(job["output"], "rb").read()
    assert b.lib.document(pid)["working_video"]["local"] is True
