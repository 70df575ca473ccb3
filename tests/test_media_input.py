"""Unusual media that a user's cameras and disks produce: a damaged stretch of packets, a file
with two video streams, a source that disappears while it is imported, a file name that is not
valid UTF-8. Real files made with PyAV; exports checked by decoding what was written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from app.jobs.service import ExportService, Settings
from tests.media import damage_packets, frame_index, make_faststart, make_two_streams, make_video, truncate


def export(lib, pid: str) -> dict:
    job = ExportService(lib, Settings(device="cpu")).export(pid, "framing")
    assert job["status"] == "complete", job
    return job


def decoded(path: str) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def small_output(lib, pid: str, aspect_w: int = 160, aspect_h: int = 90) -> None:
    lib.apply(pid, {"aspect_ratio": "16:9", "export_settings": {"width": aspect_w, "height": aspect_h,
                                                                "preset": "ultrafast"}})


def test_a_damaged_stretch_of_packets_is_skipped_not_fatal(lib, tmp_path):
    """As FFmpeg does: the packets that do not decode are left out and the nearest good picture
    stands in; the export completes with the clip's full duration."""
    good = make_video(tmp_path / "good.mp4", duration=2.0, fps=30, pattern="binary", gop=30)
    bad = damage_packets(good, tmp_path / "damaged.mp4", range(35, 38))
    pid = lib.create_project("Damaged")
    lib.add_clip(pid, bad)
    small_output(lib, pid, 320, 180)
    job = export(lib, pid)
    frames = decoded(lib.document(pid)["working_video"]["path"])
    assert len(frames) == 60
    shown = [frame_index(f) for f in frames]
    assert shown[:30] == list(range(30)) and shown[-1] == 59  # the good parts are the source's
    assert job["error"] is None
    # but not in silence: the user is told where the picture holds (a frozen stretch otherwise
    # looks like a bug of the editor)
    assert job["warnings"] == ["damaged.mp4 is damaged from 1.2 to 1.3 s (3 video packets could not be decoded): "
                               "the nearest good picture stands in there"]


def test_the_cli_says_which_source_is_damaged_and_where(cli, tmp_path):
    good = make_video(tmp_path / "good.mp4", duration=2.0, fps=30, gop=30)
    bad = damage_packets(good, tmp_path / "Final whistle.mp4", range(35, 38))
    pid = cli("project", "create", "Warn", "--aspect", "16:9").stdout.strip()
    assert cli("clip", "add", pid, str(bad)).returncode == 0
    cli("project", "apply", pid, "-", stdin=json.dumps({"export_settings": {"width": 160, "height": 90}}))
    r = cli("export", "framing", pid, "--json")
    assert r.returncode == 0, r.stderr
    assert "warning: Final whistle.mp4 is damaged" in r.stderr
    assert "warnings" not in json.loads(r.stdout)  # the job document is CLI.md's


def test_a_file_that_does_not_decode_names_the_users_file(lib, tmp_path):
    good = make_video(tmp_path / "good.mp4", duration=1.0, fps=30, gop=10)
    bad = damage_packets(good, tmp_path / "Saturday game.mp4", range(12, 30))
    pid = lib.create_project("Unreadable")
    lib.add_clip(pid, bad)  # the first pictures decode: the probe cannot tell
    small_output(lib, pid)
    import app.pipeline.decode as decode

    old, decode.MAX_BAD_PACKETS = decode.MAX_BAD_PACKETS, 5
    try:
        job = ExportService(lib, Settings(device="cpu")).export(pid, "framing")
    finally:
        decode.MAX_BAD_PACKETS = old
    assert job["status"] == "failed"
    assert "Saturday game.mp4" in job["error"] and "damaged" in job["error"]
    assert lib.document(pid)["working_video"] is None


def test_a_source_cut_short_after_it_was_added_fails_the_export_instead_of_freezing(lib, tmp_path):
    """The stored copy loses its last two thirds (a disk error, a sync tool, another program)
    while its index still says 4 s: the export used to hold the last good picture, with silence,
    to the end and call that complete."""
    src = make_faststart(make_video(tmp_path / "long.mp4", duration=4.0, fps=30, audio=True),
                         tmp_path / "Sunday game.mp4")
    pid = lib.create_project("Cut short")
    cid = lib.add_clip(pid, src)
    small_output(lib, pid)
    media = lib.document(pid)["clips"][0]["media"]
    stored = lib.media.path_for(media["sha256"], ".mp4")
    os.chmod(stored, 0o644)
    truncate(src, stored, 0.35)
    job = ExportService(lib, Settings(device="cpu")).export(pid, "framing")
    assert job["status"] == "failed", job
    assert "Sunday game.mp4" in job["error"] and "shorter than when it was added" in job["error"]
    assert lib.document(pid)["working_video"] is None and cid


def test_the_export_renders_the_stream_the_clip_was_probed_with(lib, tmp_path):
    src = make_two_streams(tmp_path / "two.mp4")
    pid = lib.create_project("Two streams")
    lib.add_clip(pid, src)
    media = lib.document(pid)["clips"][0]["media"]
    assert (media["width"], media["height"]) == (320, 180)  # the larger one
    small_output(lib, pid, 320, 180)
    export(lib, pid)
    frames = decoded(lib.document(pid)["working_video"]["path"])
    assert [frame_index(f) for f in frames[:10]] == list(range(10))  # not the flat grey stream
    assert frames[5].std() > 50


def test_a_source_deleted_while_it_is_copied_is_imported_from_the_copy(lib, data_dir, tmp_path):
    """The store owns a complete copy: a source removed mid-copy (its open file still reads to
    the end) gives a complete clip, recorded with the stored copy's size; nothing is left over."""
    src = make_video(tmp_path / "card.mp4", duration=2.0)
    size = src.stat().st_size
    pid = lib.create_project("Vanishing")

    def progress(done, total):
        if src.exists():
            src.unlink()

    cid = lib.add_clip(pid, src, progress=progress)
    doc = lib.document(pid)
    assert [c["id"] for c in doc["clips"]] == [cid] and doc["clips"][0]["media"]["local"]
    assert [p.stat().st_size for p in (data_dir / "media").rglob("*.mp4")] == [size]


def test_a_source_gone_after_the_probe_changes_nothing(lib, data_dir, tmp_path):
    from app.services.errors import UserError

    src = make_video(tmp_path / "card.mp4", duration=1.0)
    pid = lib.create_project("Gone")

    def check(info):  # runs between the probe and the copy, as a user's delete could
        src.unlink()

    from app.services.media import import_media

    with pytest.raises(UserError, match="moved or deleted while it was being imported"):
        import_media(lib, src, check=check)
    assert lib.document(pid)["clips"] == []
    assert not list((data_dir / "media").rglob("*.mp4"))


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux only")
def test_a_file_name_that_is_not_utf8_is_imported(cli, data_dir, tmp_path):
    src = make_video(tmp_path / "plain.mp4", duration=1.0)
    odd = os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfename.mp4")
    os.rename(src, odd)
    pid = json.loads(cli("project", "create", "Odd names", "--json").stdout)["id"]
    r = cli("clip", "add", pid, odd)
    assert r.returncode == 0, r.stderr
    doc = json.loads(cli("project", "show", pid, "--json").stdout)
    assert doc["clips"][0]["media"]["filename"] == "bad\ufffd\ufffdname.mp4"
    assert len(list((data_dir / "media").rglob("*.mp4"))) == 1
    assert Path(odd).exists()


def test_a_file_damaged_all_along_logs_a_few_lines_not_one_per_stretch(tmp_path, caplog):
    """A 90-minute file damaged all along logged a line per damaged stretch: 80,000 lines, more
    than the log keeps. The first few are logged, then one line counts them all."""
    import logging

    import av

    from app.pipeline.decode import LOGGED_BAD_STRETCHES, decode_frames

    good = make_video(tmp_path / "good.mp4", duration=2.0, fps=30, gop=30)
    stretches = range(5, 59, 4)  # 14 damaged packets, each on its own
    bad = damage_packets(good, tmp_path / "damaged.mp4", stretches)
    damaged: list[float] = []
    with caplog.at_level(logging.WARNING, logger="app.pipeline.decode"), av.open(str(bad)) as c:
        frames = list(decode_frames(c, c.streams.video[0], "damaged.mp4", damaged))
    lines = [r.getMessage() for r in caplog.records if r.name == "app.pipeline.decode"]
    assert len(damaged) == len(stretches) and len(frames) == 60 - len(stretches)
    assert len(lines) == LOGGED_BAD_STRETCHES + 1, lines
    assert lines[-1] == (f"damaged.mp4: {len(stretches)} undecodable video packet(s) skipped in {len(stretches)} "
                         f"damaged stretches (the first {LOGGED_BAD_STRETCHES} logged)")
