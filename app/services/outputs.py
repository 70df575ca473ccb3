"""Exported videos out of the library: a copy with a human name where the user wants it.

The library keeps every output content-addressed (``media/ab/<sha256>.mp4``), which is right for
sync and crash safety but not a name anyone uploads. :func:`save_copy` writes a copy under a
temporary name beside the destination, flushes it and renames it into place, so the destination
is either the whole video or untouched (an existing file of that name included).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.services.errors import OperationFailed, UserError
from app.storage.media_store import durable_replace

if TYPE_CHECKING:
    from app.services.library import Library

CHUNK = 4 << 20  # bytes per read/write: progress about every few ms on a disk, cancel just as fast
VIDEO_WORDS = {"framing": "working video", "overlay": "final video"}  # what each export kind makes


def suggested_name(project_name: str, kind: str) -> str:
    """A file name for a project's output: "Saturday final.mp4" for the final video,
    "Saturday final (working).mp4" for the working video; characters no file system takes
    are replaced."""
    base = re.sub(r'[<>:"/\\|?*\x00-\x1f]+', "_", project_name).strip(" .") or "Reelforge export"
    base = base[:120]
    return f"{base}.mp4" if kind == "overlay" else f"{base} (working).mp4"


def save_copy(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """Copy the exported video ``src`` to ``dest`` (whole or not at all); returns ``dest``.

    Raises UserError when the output is gone or the destination is not a place for a file,
    OperationFailed (with words: a full disk, no permission) when the copy could not be written;
    a cancel (``should_cancel`` answering True) raises OperationFailed too and leaves nothing.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise UserError(f"the exported video is no longer on this device: {src}")
    if dest.is_dir():
        raise UserError(f"'{dest}' is a folder: choose a file name")
    if not dest.parent.is_dir():
        raise UserError(f"the folder '{dest.parent}' does not exist")
    with contextlib.suppress(OSError):
        if dest.exists() and os.path.samefile(src, dest):
            return dest
    part = dest.with_name(f".{dest.name}.part")
    total = max(1, src.stat().st_size)
    done = 0
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            while chunk := fin.read(CHUNK):
                if should_cancel and should_cancel():
                    raise OperationFailed("saving the video was cancelled; nothing was written")
                fout.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done / total)
        durable_replace(part, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OperationFailed(f"The disk is full: no space left to save the video in {dest.parent}. "
                                  "Free some space, then save again.") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OperationFailed(f"cannot write in {dest.parent}: permission denied") from None
        raise OperationFailed(f"saving the video to {dest} failed: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return dest


def project_output(lib: Library, project_id: str, kind: str) -> Path:
    """The file of a project's current working (``framing``) or final (``overlay``) video,
    downloaded from the sync remote first when this device does not have it yet."""
    from app.storage.models import FinalVideo, WorkingVideo

    with lib.db.read() as s:
        p = lib.get_project(s, project_id)
        if kind == "framing":
            row = s.get(WorkingVideo, p.working_video_id) if p.working_video_id else None
        else:
            row = s.get(FinalVideo, p.final_video_id) if p.final_video_id else None
        if row is None:
            raise UserError(f"the project has no {VIDEO_WORDS[kind]} yet: run `export {kind}` first")
        sha = row.sha256
    from app.storage.sync.engine import MediaUnavailable, ensure_local

    try:
        return ensure_local(lib, sha, ".mp4")
    except MediaUnavailable as exc:
        raise OperationFailed(f"the exported video is not on this device and could not be fetched: {exc}") from None


def save_project_output(
    lib: Library,
    project_id: str,
    kind: str,
    dest: str | os.PathLike,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """Save a copy of a project's current video as ``dest`` (a folder: the project's name in it)."""
    src = project_output(lib, project_id, kind)
    dest = Path(dest)
    if dest.is_dir():
        with lib.db.read() as s:
            dest = dest / suggested_name(lib.get_project(s, project_id).name, kind)
    return save_copy(src, dest, progress)
