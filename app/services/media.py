"""Media import: check, probe, hash, store once, record. Bad input changes nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from app.services.errors import UserError
from app.storage.models import Media

if TYPE_CHECKING:
    from app.services.library import Library


def check_readable_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"'{path}' does not exist")
    if path.is_dir():
        raise UserError(f"'{path}' is a directory, not a video file")
    if not path.is_file():
        raise UserError(f"'{path}' is not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"'{path}' is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UserError(f"'{path}' cannot be read (permission denied)")


def import_media(lib: Library, path: str | os.PathLike, progress=None, check=None) -> dict:
    """Probe and store a media file; returns the media row as a dict. Idempotent by content.

    ``check(info)`` runs after the probe and before anything is stored: it may raise UserError.
    """
    from app.pipeline.probe import ProbeError, probe, sha256_file

    src = Path(path).expanduser()
    check_readable_file(src)
    try:
        info = probe(src)
    except ProbeError as exc:
        raise UserError(str(exc)) from None
    if check is not None:
        check(info)
    try:
        sha = sha256_file(src, progress=progress)
    except OSError as exc:
        raise UserError(f"'{src}' could not be read: {exc.strerror or exc}") from None
    ext = src.suffix.lower() if src.suffix[1:].isalnum() and len(src.suffix) <= 10 else ""
    with lib.db.read() as s:
        existing = s.get(Media, sha, execution_options={"include_deleted": True})
        if existing is not None and not existing.deleted and lib.media.has(sha, existing.ext):
            return _as_dict(existing)
    try:
        lib.media.ingest(src, sha, ext)
    except OSError as exc:
        raise UserError(f"could not store '{src.name}' in the data directory: {exc.strerror or exc}") from None
    with lib.db.write() as s:
        row = s.get(Media, sha, execution_options={"include_deleted": True})
        if row is None:
            row = Media(sha256=sha)
            s.add(row)
        row.deleted = False
        row.filename = src.name[:400]
        row.ext = ext
        row.size = src.stat().st_size
        row.width, row.height, row.rotation = info.width, info.height, info.rotation
        row.fps, row.vfr, row.duration = float(info.fps), bool(info.vfr), float(info.duration)
        row.frame_count = int(info.frame_count)
        row.codec, row.pix_fmt, row.bit_depth = info.codec, info.pix_fmt, int(info.bit_depth)
        row.has_audio = bool(info.has_audio)
        s.flush()
        return _as_dict(row)


def _as_dict(m: Media) -> dict:
    return {f: getattr(m, f) for f in ("sha256", "filename", "ext", "width", "height", "fps", "duration",
                                       "has_audio", "rotation", "vfr", "bit_depth", "codec")}
