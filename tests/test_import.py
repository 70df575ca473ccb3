"""Importing media into the store: a copy the store owns, progress, and no second read of a
file already imported and unchanged. Real files; bytes read are the kernel's count for this
process."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path

import pytest

from tests.media import make_video

needs_proc_io = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts reads with /proc/self/io")
PAD = 16 << 20  # a 16 MiB "free" box: the file is big enough for its reads to be counted


def bytes_read() -> int:
    """Bytes this process has read through the kernel (read, pread, sendfile...) so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def padded_video(path: Path, seed: int = 0) -> Path:
    """A real H.264 MP4 followed by a top-level ``free`` box that players skip."""
    make_video(path, width=160, height=90, fps=30, duration=1.0)
    filler = hashlib.sha256(str(seed).encode()).digest() * (PAD // 32)
    with open(path, "ab") as f:
        f.write(struct.pack(">I4s", 8 + len(filler), b"free") + filler)
    return path


def other_file_system(data_dir: Path) -> Path:
    """A folder on another file system than the data directory (no hard link possible)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(data_dir).st_dev:
        pytest.skip("needs a second file system (/dev/shm)")
    d = shm / f"reelforge-test-{os.getpid()}-{data_dir.parent.name}"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def elsewhere(data_dir: Path):
    d = other_file_system(data_dir)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def stored_file(lib, clip_id: str) -> Path:
    doc = lib.document(lib_project_of(lib, clip_id))
    media = next(c["media"] for c in doc["clips"] if c["id"] == clip_id)
    return next(lib.media.root.glob(f"*/{media['sha256']}*"))


def lib_project_of(lib, clip_id: str) -> str:
    from app.storage.models import Clip

    with lib.db.read() as s:
        return s.get(Clip, clip_id).project_id


def test_a_file_on_another_file_system_is_copied_with_progress(lib, data_dir, elsewhere):
    src = padded_video(elsewhere / "game.mp4")
    size = src.stat().st_size
    pid = lib.create_project("Final")
    seen: list[tuple[int, int]] = []
    cid = lib.add_clip(pid, src, progress=lambda done, total: seen.append((done, total)))
    stored = stored_file(lib, cid)
    assert stored.read_bytes() == src.read_bytes()
    assert stored.stat().st_ino != src.stat().st_ino
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 4
    assert not any((data_dir / "tmp").iterdir())  # no temporary copy left behind
    src.unlink()  # the project survives the original going away
    assert stored.is_file() and lib.document(pid)["clips"][0]["media"]["filename"] == "game.mp4"


@needs_proc_io
def test_a_second_clip_from_an_unchanged_file_does_not_read_it_again(lib, tmp_path):
    src = padded_video(tmp_path / "game.mp4")
    size = src.stat().st_size
    pid = lib.create_project("Final")
    first = lib.add_clip(pid, src, start=0.0, end=0.5)
    seen: list[tuple[int, int]] = []
    before = bytes_read()
    second = lib.add_clip(pid, src, start=0.5, end=1.0, progress=lambda done, total: seen.append((done, total)))
    assert bytes_read() - before < 0.2 * size
    assert seen == [(size, size)]
    assert stored_file(lib, first) == stored_file(lib, second)
    assert len(list(lib.media.root.glob("*/*"))) == 1


def test_a_file_rewritten_in_place_with_its_size_and_time_kept_is_imported_anew(lib, data_dir, elsewhere):
    src = padded_video(elsewhere / "game.mp4", seed=1)
    pid = lib.create_project("Final")
    first = lib.add_clip(pid, src)
    st = src.stat()
    again = padded_video(elsewhere / "other.mp4", seed=2).read_bytes()
    assert len(again) == st.st_size and again != src.read_bytes()
    with open(src, "r+b") as f:  # the same file, new content, then its old modification time
        f.write(again)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_mtime_ns == st.st_mtime_ns
    second = lib.add_clip(pid, src)
    assert stored_file(lib, second) != stored_file(lib, first)
    assert stored_file(lib, second).read_bytes() == again


def test_a_file_on_the_same_file_system_is_copied_not_linked(lib, data_dir, tmp_path):
    """The store owns its copy: a tool that later rewrites the original in place (a re-encode
    saved over it) does not change the project's footage."""
    src = padded_video(tmp_path / "game.mp4", seed=3)
    original = src.read_bytes()
    pid = lib.create_project("Final")
    cid = lib.add_clip(pid, src)
    stored = stored_file(lib, cid)
    assert os.stat(stored).st_ino != src.stat().st_ino or os.stat(stored).st_dev != src.stat().st_dev
    with open(src, "r+b") as f:  # another program overwrites the original in place
        f.write(padded_video(tmp_path / "other.mp4", seed=4).read_bytes())
    assert src.read_bytes() != original
    assert stored.read_bytes() == original
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name.split(".")[0]


def test_a_media_file_deleted_from_the_store_is_stored_again(lib, tmp_path):
    src = padded_video(tmp_path / "game.mp4")
    pid = lib.create_project("Final")
    stored = stored_file(lib, lib.add_clip(pid, src))
    stored.unlink()
    assert stored_file(lib, lib.add_clip(pid, src)).read_bytes() == src.read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_copy_that_cannot_be_written_is_told_and_changes_nothing(lib, data_dir, elsewhere):
    """A real write failure while copying into the store (the file-size limit, as a full disk
    would fail it): the error names the data directory, and nothing is left or recorded."""
    import resource
    import signal

    from app.services.errors import UserError

    src = padded_video(elsewhere / "game.mp4")
    pid = lib.create_project("Final")
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, old_limit[1]))
    try:
        with pytest.raises(UserError, match="could not store 'game.mp4' in the data directory: File too large"):
            lib.add_clip(pid, src)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert lib.document(pid)["clips"] == []
    assert not any((data_dir / "tmp").iterdir())
    assert not list(lib.media.root.glob("*/*"))


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_copy_of_a_stored_video_under_another_name_is_not_stored_again(lib, data_dir, elsewhere):
    """The same game saved under another name: it is recognised by a read, nothing is copied, so
    it imports even where the data directory could not take a second copy (the file-size limit
    stands for a nearly full disk). A file of the same size but other bytes is still stored."""
    import resource
    import shutil
    import signal

    src = padded_video(elsewhere / "game.mp4")
    pid = lib.create_project("Final")
    first = lib.add_clip(pid, src)
    copy = shutil.copy(src, elsewhere / "game (copy).mp4")
    seen = []
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, old_limit[1]))
    try:
        second = lib.add_clip(pid, copy, progress=lambda d, t: seen.append((d, t)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert stored_file(lib, second) == stored_file(lib, first)
    size = Path(copy).stat().st_size
    assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not any((data_dir / "tmp").iterdir())

    other = bytearray(Path(src).read_bytes())
    other[-1] ^= 0xFF  # same size, one byte different (inside the free box: still a video)
    (elsewhere / "other.mp4").write_bytes(other)
    seen.clear()
    third = lib.add_clip(pid, elsewhere / "other.mp4", progress=lambda d, t: seen.append((d, t)))
    assert stored_file(lib, third) != stored_file(lib, first)
    assert stored_file(lib, third).read_bytes() == bytes(other)
    assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_clip_cut_from_a_file_imported_before_does_not_read_the_file_again(lib, tmp_path, monkeypatch):
    """The probe reads every video packet (a two-hour game: gigabytes, seconds). A file imported
    before and unchanged since is described by its stored row; a file described a moment ago (a
    drop checks it, then the import) is not read twice; a changed file is read again."""
    import app.pipeline.probe as probe_mod
    from app.services.errors import UserError

    src = make_video(tmp_path / "game.mp4", width=160, height=90, duration=2.0)
    reads: list[str] = []
    real = probe_mod._probe
    monkeypatch.setattr(probe_mod, "_probe", lambda p: (reads.append(str(p)), real(p))[1])  # a spy: counts

    probe_mod._SEEN.clear()
    pid = lib.create_project("Game")
    probe_mod.probe(src)  # the drop's check
    lib.add_clip(pid, src, 0.0, 1.0)
    assert len(reads) == 1
    probe_mod._SEEN.clear()  # another process: only the database remembers
    lib.add_clip(pid, src, 1.0, 2.0)
    assert len(reads) == 1
    with pytest.raises(UserError, match="outside the media"):  # its range is still checked
        lib.add_clip(pid, src, 5.0, 6.0)
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: read again
    lib.add_clip(pid, src, 0.5, 1.5)
    assert len(reads) == 2
    assert len(lib.document(pid)["clips"]) == 3
