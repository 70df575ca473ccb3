"""Streamed SHA-256 of a file (the key of the content-addressed media store). Pure: no Qt, no storage."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

__all__ = ["sha256_file"]


def sha256_file(
    path: str | os.PathLike,
    chunk: int = 1 << 20,
    progress: Callable[[int, int], object] | None = None,
) -> str:
    """Return the lowercase hex SHA-256 of the file at ``path``, reading ``chunk`` bytes at a time.

    ``progress(done_bytes, total_bytes)`` is called once before reading and after every chunk;
    to cancel, raise from it (the exception propagates, the file is closed). Memory use is one
    chunk whatever the file size, and hashlib releases the GIL while hashing, so this is safe to
    run in a worker thread.
    """
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    digest = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size
        done = 0
        if progress is not None:
            progress(0, total)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            done += n
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()
