"""Media import: check, probe, hash, store once, record. Bad input changes nothing."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import types
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from app.services.errors import UserError
from app.storage.models import Media
from app.storage.stamping import get_meta, set_meta

if TYPE_CHECKING:
    from app.services.library import Library

log = logging.getLogger(__name__)


def check_readable_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"'{path}' does not exist") from None
    except OSError as exc:  # a folder on the way that cannot be entered, a name too long, ...
        raise UserError(f"'{path}' cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"'{path}' is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"'{path}' is not a regular file")
    if st.st_size == 0:
        raise UserError(f"'{path}' is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UserError(f"'{path}' cannot be read (permission denied)")


def display_name(path: Path) -> str:
    """The file's name as text: a name that is not valid UTF-8 (legal on Linux) is shown with
    replacement characters instead of failing where it is stored or printed."""
    return os.fsencode(path.name).decode("utf-8", "replace")


def _vanished(src: Path) -> UserError:
    return UserError(f"'{display_name(src)}' was moved or deleted while it was being imported; nothing was added")


def import_media(lib: Library, path: str | os.PathLike, progress=None, check=None) -> dict:
    """Probe and store a media file; returns the media row as a dict. Idempotent by content.

    ``check(info)`` runs after the probe and before anything is stored: it may raise UserError.
    ``progress(done_bytes, total_bytes)`` follows the copy into the store and the hashing of
    that copy; raise from it to cancel.

    A file already imported and unchanged since (same path, inode, size and times) is not read
    again: cutting a tenth clip from a two-hour game costs a probe, not a hash of gigabytes.
    """
    from app.pipeline.probe import ProbeError, probe

    src = Path(path).expanduser()
    check_readable_file(src)
    before = _stat(src)
    with lib.db.read() as s:
        known = get_meta(s, _seen_key(src, before)) if before else None
        row = s.get(Media, known) if known else None
        stored = _as_dict(row) if _stored(lib, row) else None
        stored_size = row.size if stored is not None else 0
    if stored is not None:
        # imported before and unchanged since: the stored copy was probed then (a probe reads every
        # packet: gigabytes for a two-hour game, for each clip cut from it)
        if check is not None:
            check(types.SimpleNamespace(duration=stored["duration"], fps=stored["fps"]))
        if progress is not None:
            progress(stored_size, stored_size)
        return stored
    try:
        info = probe(src)
    except ProbeError as exc:
        raise UserError(str(exc)) from None
    if check is not None:
        check(info)
    ext = src.suffix.lower() if src.suffix[1:].isalnum() and len(src.suffix) <= 10 else ""
    try:
        size = before.st_size if before else src.stat().st_size
    except OSError:
        raise _vanished(src) from None
    with lib.db.read() as s:
        twins = {m.sha256 for m in s.scalars(select(Media).where(Media.size == size)) if _stored(lib, m)}
    sha, fresh = None, False
    if twins:
        # Stored media of exactly its size: most likely a copy of a video imported before, under
        # another name or folder. One read tells; then nothing is copied (nor refused for want
        # of room). The hash takes the first third of the progress, the copy the rest.
        sha = _same_as_stored(src, twins, _span(progress, 0, size // 3, size))
        if sha is not None and progress is not None:
            progress(size, size)
        else:
            progress = _span(progress, size // 3, size, size)
    if sha is None:
        sha, fresh = _hash_into_store(lib, src, ext, progress)
    try:
        return _record(lib, src, ext, sha, info, before)
    except BaseException:
        if fresh:  # stored by this import and not recorded: take it back out (no orphan file)
            _unstore(lib, sha, ext)
        raise


def _record(lib: Library, src: Path, ext: str, sha: str, info, before) -> dict:
    """The media row of the file now stored under ``sha``."""
    after = _stat(src)  # remembered only if nothing wrote to it while it was read
    unchanged = before and after and _content_sig(before) == _content_sig(after)
    with lib.db.write() as s:
        if unchanged:
            set_meta(s, _seen_key(src, after), sha)
        row = s.get(Media, sha, execution_options={"include_deleted": True})
        if _stored(lib, row):
            return _as_dict(row)
        if row is None:
            row = Media(sha256=sha)
            s.add(row)
        row.deleted = False
        row.filename = display_name(src)[:400]
        row.ext = ext
        row.size = lib.media.path_for(sha, ext).stat().st_size  # the stored copy: the original may be gone
        row.width, row.height, row.rotation = info.width, info.height, info.rotation
        row.fps, row.vfr, row.duration = float(info.fps), bool(info.vfr), float(info.duration)
        row.frame_count = int(info.frame_count)
        row.codec, row.pix_fmt, row.bit_depth = info.codec, info.pix_fmt, int(info.bit_depth)
        row.has_audio = bool(info.has_audio)
        s.flush()
        return _as_dict(row)


def hash_flushed(path: Path, progress=None) -> str:
    """The sha256 of a file about to be stored, read while its bytes go to the disk (the store
    needs them there before its rename): the flush costs no time of its own (``Flush``)."""
    from app.pipeline.hashing import sha256_file
    from app.storage.media_store import Flush

    flush = Flush(path)
    try:
        return sha256_file(path, progress=progress)
    finally:
        flush.wait()


def _hash_into_store(lib: Library, src: Path, ext: str, progress) -> tuple[str, bool]:
    """Clone ``src`` into the store where the file system can, else copy it (in the kernel),
    then hash what was stored: the address is the hash of the stored bytes by construction,
    whatever happens to the original meanwhile. Returns its sha256, with the file under that
    address, and whether this import put it there. ``progress(done, total)`` counts the copy as
    the first half of the file's bytes and the hashing as the second."""
    from app.storage.media_store import StoreWriteFailed, copy_file

    try:
        size = src.stat().st_size
    except OSError:
        raise _vanished(src) from None
    tmp, cloned = lib.media.stage(src, ext)
    try:
        if cloned:
            half = 0
        else:
            _check_room(lib, src, size)
            half = size // 2
            try:
                copy_file(src, tmp, _span(progress, 0, half, size))
            except StoreWriteFailed as exc:
                raise UserError(f"could not store '{display_name(src)}' in the data directory: {exc.strerror}") from None
            except OSError as exc:
                if exc.filename is not None and Path(exc.filename) != src:
                    raise UserError(f"could not store '{display_name(src)}' in the data directory: {exc.strerror or exc}") from None
                raise UserError(f"'{src}' could not be read: {exc.strerror or exc}") from None
        try:
            sha = hash_flushed(tmp, progress=_span(progress, half, size, size))
            fresh = not lib.media.has(sha, ext)
            lib.media.ingest(tmp, sha, ext, move=True)  # the same content stored before: tmp is dropped
        except OSError as exc:
            raise UserError(f"could not store '{display_name(src)}' in the data directory: {exc.strerror or exc}") from None
        return sha, fresh
    finally:
        tmp.unlink(missing_ok=True)


def _unstore(lib: Library, sha: str, ext: str) -> None:
    """Remove a stored file that no media row records (another import of the same content may
    have recorded it meanwhile: then it stays)."""
    try:
        with lib.db.read() as s:
            if s.get(Media, sha, execution_options={"include_deleted": True}) is not None:
                return
        lib.media.path_for(sha, ext).unlink(missing_ok=True)
    except Exception:  # the import's own error is the one to report
        log.warning("could not remove the unrecorded media file %s", sha, exc_info=True)


def _span(progress, lo: int, hi: int, total: int):
    """``progress(done, of)`` of one step, reported as bytes ``lo``..``hi`` of the whole ``total``."""
    if progress is None:
        return None
    return lambda d, t: progress(lo + d * (hi - lo) // max(1, t), total)


def _same_as_stored(src: Path, stored: set[str], progress) -> str | None:
    """The sha256 of ``src`` when it is one of ``stored``, else None (read in place, nothing
    written: the stored file is what was verified at its own import)."""
    from app.pipeline.hashing import sha256_file

    try:
        sha = sha256_file(src, progress=progress)
    except OSError as exc:
        raise UserError(f"'{src}' could not be read: {exc.strerror or exc}") from None
    return sha if sha in stored else None


def _check_room(lib: Library, src: Path, need: int) -> None:
    """Refuse before copying a file (``need`` bytes) the data directory's disk cannot hold."""
    import shutil

    try:
        free = shutil.disk_usage(lib.media.tmp).free
    except OSError:
        return
    if need > free:
        raise UserError(f"not enough free space in the data directory for '{display_name(src)}': "
                        f"{size_words(need)} needed, {size_words(free)} free")


def size_words(n: int) -> str:
    """A byte count as people read it: '512 KB', '40 MB', '3.4 GB' (decimal units, as disks
    are sold and as file managers show them), never rounded down to a misleading '0.0 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{n} bytes"


def _stat(src: Path) -> os.stat_result | None:
    try:
        st = src.stat()
    except OSError:
        return None
    return st if st.st_ino else None  # no inode numbers on this file system: nothing to remember


def _content_sig(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _seen_key(src: Path, st: os.stat_result) -> str:
    """The local key under which an imported file's sha256 is remembered: its resolved path,
    device, inode, size and modification and change times. Any write to the file, or another
    file put in its place, changes it."""
    sig = f"{src.resolve()}\0{_content_sig(st)}:{st.st_ctime_ns}"
    return "imported:" + hashlib.sha256(sig.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _stored(lib: Library, row: Media | None) -> bool:
    """``row`` is a live media row whose file is in the store."""
    return row is not None and not row.deleted and lib.media.has(row.sha256, row.ext or "")


def _as_dict(m: Media) -> dict:
    return {f: getattr(m, f) for f in ("sha256", "filename", "ext", "width", "height", "fps", "duration",
                                       "has_audio", "rotation", "vfr", "bit_depth", "codec")}
