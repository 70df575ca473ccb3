"""Content-addressed files in the data directory: ``media/ab/<sha256><ext>``.

A source is cloned when the file system can (copy-on-write: btrfs, XFS, APFS; instant and no
extra space), else copied, always under a temporary name and then renamed, so a crash never
leaves a half file under a final name. Never hard-linked: a hard link is the user's file itself,
and a tool that rewrites the original in place (a re-encode saved over it) would change the
project's footage under its address. Outputs (working and final videos) live here too,
addressed the same way.
"""

from __future__ import annotations

import errno
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path


class MediaStore:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "media"
        self.tmp = Path(data_dir) / "tmp"

    def path_for(self, sha256: str, ext: str = "") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        if ext and (not ext.startswith(".") or not ext[1:].isalnum() or len(ext) > 10):
            raise ValueError(f"bad extension {ext!r}")
        return self.root / sha256[:2] / f"{sha256}{ext}"

    def has(self, sha256: str, ext: str = "") -> bool:
        return self.path_for(sha256, ext).is_file()

    def temp_path(self, suffix: str = ".tmp") -> Path:
        """A temporary name inside the data directory (same file system: rename is atomic)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def stage(self, src: Path | str, ext: str = "") -> tuple[Path, bool]:
        """A temporary name in the store for ``src``: (path, True) when it holds a clone of
        ``src`` already (nothing to copy), else (path, False), a name the caller writes the
        copy to. Either way the caller commits it with ``ingest(path, sha, ext, move=True)`` or
        removes it."""
        tmp = self.temp_path(ext or ".tmp")
        return tmp, clone_file(src, tmp)

    def ingest(self, src: Path | str, sha256: str, ext: str = "", *, move: bool = False) -> Path:
        """Put ``src`` under its content address (a clone, else a copy; ``move`` renames), durably:
        its bytes and its name are on the disk when this returns, so a row committed after it
        never points at a file a power cut took back (see :func:`durable_replace`)."""
        dest = self.path_for(sha256, ext)
        if dest.is_file():
            if move:
                Path(src).unlink(missing_ok=True)
            return dest
        made = not dest.parent.is_dir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if made:
            sync_dir(self.root)
        if move:
            durable_replace(src, dest)
            return dest
        tmp = self.temp_path(ext or ".tmp")
        try:
            if not clone_file(src, tmp):
                copy_file(src, tmp)
            durable_replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


class Flush:
    """``fsync`` of a file in a thread (the call lets go of the GIL), so that its bytes go to the
    disk while the caller does other work on them, such as hashing from the page cache; the
    fsync before its rename (:func:`durable_replace`) then finds little left to write.
    :meth:`wait` raises what the flush met (a full disk shows up here on some file systems)."""

    def __init__(self, path: Path | str):
        import threading

        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="store-flush", daemon=True)
        self._thread.start()

    def _run(self, path: Path | str) -> None:
        try:
            sync_file(path)
        except OSError as exc:
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            exc = self._error
            if exc.errno in STORE_ERRNOS:
                raise StoreWriteFailed(exc.errno, exc.strerror) from exc
            raise exc


def sync_file(path: Path | str) -> None:
    """Put a file's bytes on the disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def sync_dir(folder: Path | str) -> None:
    """Make the names in ``folder`` durable (POSIX; Windows has no such call and its file system
    journals renames itself)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(src: Path | str, dest: Path | str) -> None:
    """Rename ``src`` to ``dest`` with both on the disk first and after: the file's bytes (else
    a power cut could leave the new name on a file of zeros) and then the folder's entry."""
    try:
        sync_file(src)
        os.replace(src, dest)
        sync_dir(Path(dest).parent)
    except OSError as exc:
        if exc.errno in STORE_ERRNOS:
            raise StoreWriteFailed(exc.errno, exc.strerror) from exc
        raise


STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # the writing side's faults


class StoreWriteFailed(OSError):
    """The copy could not be written into the data directory (full disk, quota, read-only)."""


def copy_file(src: Path | str, dst: Path | str, progress: Callable[[int, int], object] | None = None,
              step: int = 32 << 20) -> None:
    """Copy ``src`` to ``dst`` (created), ``step`` bytes at a time, in the kernel where it can
    (copy_file_range: no round trip of the bytes through this process). ``progress(done, total)``
    after each step; raise from it to stop. A failure of the writing side raises
    StoreWriteFailed; one of the reading side, the plain OSError."""
    with open(src, "rb", buffering=0) as a, open(dst, "xb", buffering=0) as b:
        total = os.fstat(a.fileno()).st_size
        done, kernel = 0, hasattr(os, "copy_file_range")
        buf = None
        while True:
            if progress is not None:
                progress(done, total)
            try:
                if kernel:
                    try:
                        n = os.copy_file_range(a.fileno(), b.fileno(), step)
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or done:
                            raise
                        kernel = False  # this pair of file systems cannot: copy through a buffer
                        continue
                else:
                    buf = buf or bytearray(min(step, 4 << 20))
                    n = a.readinto(buf)
                    if n:
                        b.write(memoryview(buf)[:n])
            except OSError as exc:
                if exc.errno in STORE_ERRNOS:
                    raise StoreWriteFailed(exc.errno, exc.strerror) from exc
                raise
            if not n:
                return
            done += n


FICLONE = 0x40049409  # Linux ioctl: make dst share src's extents, copy-on-write


def clone_file(src: Path | str, dst: Path | str) -> bool:
    """Clone ``src`` as ``dst`` on a copy-on-write file system: instant, no extra space, and a
    later write to either file leaves the other unchanged. False (and no ``dst``) where the
    file system or the platform cannot."""
    if sys.platform.startswith("linux"):
        import fcntl

        try:
            with open(src, "rb") as a, open(dst, "xb") as b:
                try:
                    fcntl.ioctl(b.fileno(), FICLONE, a.fileno())
                    return True
                except OSError:
                    pass
        except OSError:
            return False
        Path(dst).unlink(missing_ok=True)
        return False
    if sys.platform == "darwin":
        import ctypes

        clonefile = getattr(ctypes.CDLL(None, use_errno=True), "clonefile", None)
        return clonefile is not None and clonefile(os.fsencode(src), os.fsencode(dst), 0) == 0
    return False
