"""Content-addressed files in the data directory: ``media/ab/<sha256><ext>``.

Sources are hard-linked when the file system allows (no second copy of a 90-minute game),
else copied under a temporary name and renamed, so a crash never leaves a half file under a
final name. Outputs (working and final videos) live here too, addressed the same way.
"""

from __future__ import annotations

import os
import shutil
import uuid
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
        """A temporary name in the store for ``src``: (path, True) when it is hard-linked to
        ``src`` (nothing to copy), else (path, False), a name the caller writes the copy to.
        Either way the caller commits it with ``ingest(path, sha, ext, move=True)`` or removes it."""
        tmp = self.temp_path(ext or ".tmp")
        try:
            os.link(src, tmp)
        except OSError:
            return tmp, False
        return tmp, True

    def ingest(self, src: Path | str, sha256: str, ext: str = "", *, move: bool = False) -> Path:
        """Put ``src`` under its content address (hardlink, else copy; ``move`` renames)."""
        dest = self.path_for(sha256, ext)
        if dest.is_file():
            if move:
                Path(src).unlink(missing_ok=True)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(src, dest)
            return dest
        tmp = self.temp_path(ext or ".tmp")
        try:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
