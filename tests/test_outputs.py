"""Saving a copy of an exported video under a human name (app.services.outputs)."""

from __future__ import annotations

import os

import pytest

from app.services.errors import OperationFailed, UserError
from app.services.outputs import save_copy, suggested_name


def test_suggested_names_are_the_project_name():
    assert suggested_name("Saturday final", "overlay") == "Saturday final.mp4"
    assert suggested_name("Saturday final", "framing") == "Saturday final (working).mp4"
    assert suggested_name('U12: "Mia" #7 / 2nd half?', "overlay") == "U12_ _Mia_ #7 _ 2nd half_.mp4"
    assert suggested_name(" .. ", "overlay") == "Reelforge export.mp4"


@pytest.fixture
def video(tmp_path):
    src = tmp_path / "lib" / "ab" / ("ab" * 32 + ".mp4")
    src.parent.mkdir(parents=True)
    src.write_bytes(os.urandom(9 << 20))  # a few chunks
    return src


def test_copy_is_whole_with_progress(video, tmp_path):
    seen: list[float] = []
    dest = save_copy(video, tmp_path / "Saturday final.mp4", seen.append)
    assert dest.read_bytes() == video.read_bytes()
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_a_full_disk_leaves_the_old_file_as_it_was(video, tmp_path):
    dest = tmp_path / "Saturday final.mp4"
    dest.write_bytes(b"the video saved yesterday")
    (tmp_path / ".Saturday final.mp4.part").symlink_to("/dev/full")  # where the copy is written first
    with pytest.raises(OperationFailed, match=f"The disk is full: no space left to save the video in {tmp_path}"):
        save_copy(video, dest)
    assert dest.read_bytes() == b"the video saved yesterday"
    assert not (tmp_path / ".Saturday final.mp4.part").exists()


def test_cancel_leaves_nothing(video, tmp_path):
    dest = tmp_path / "out.mp4"
    with pytest.raises(OperationFailed, match="cancelled"):
        save_copy(video, dest, should_cancel=lambda: True)
    assert list(tmp_path.glob("*out.mp4*")) == []


def test_bad_places_are_refused_in_words(video, tmp_path):
    with pytest.raises(UserError, match="no longer on this device"):
        save_copy(tmp_path / "gone.mp4", tmp_path / "x.mp4")
    with pytest.raises(UserError, match="is a folder"):
        save_copy(video, tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        save_copy(video, tmp_path / "no such folder" / "x.mp4")
    assert save_copy(video, video) == video  # saving it onto itself changes nothing
    assert video.stat().st_size == 9 << 20
