"""Logging to the platform's log directory, rotated, shared by every process of the program (the
window and any CLI commands run beside it). FFmpeg's own log is switched off (``quiet_ffmpeg``):
what it would say about a damaged file is said once, in the app's words.

Nothing secret is logged: every line, tracebacks included, goes through :func:`redact_text`,
the one redaction that the sync module's error messages use too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path

_configured = False
_path: Path | None = None  # the log file, once set up; None when it cannot be written
LOG_MAX_BYTES = 2_000_000  # per file
LOG_BACKUPS = 5  # files kept beside the current one
# a secret-looking name, then '=' or ':' (quotes and spaces around them), then the value (up to
# a space, quote, comma or '&'); a name followed by a space alone is a word in a sentence ("the
# secret key"), which was garbled into "the secret ***" in the app's own messages
_SECRET = re.compile(
    r"(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|signature|credential"
    r"|aws_secret_access_key|secret_access_key|secret|password|token|authorization)"
    r"([\"']?\s*[=:]\s*[\"']?\s*(?:bearer\s+)?)([^\s\"'&,]+)")
# user-info: scheme://user:password@host, any scheme; or user:password@host with no scheme
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]+@|(?<![^\s\"'(=])[^\s\"'/@:]+:[^\s\"'@]+@")


_known: set[str] = set()


def remember_secrets(values) -> None:
    """Values (the remote's key and secret, once resolved) that :func:`redact_text` hides
    wherever they appear, whatever surrounds them."""
    _known.update(v for v in values if v and len(v) >= 4)


def redact_text(text: str) -> str:
    """``text`` with known secret values, secret-looking fields, signature fragments of URLs and
    URL user-info replaced by ***."""
    text = str(text)
    for value in tuple(_known):  # a copy: another thread may remember a secret meanwhile
        text = text.replace(value, "***")
    return _SECRET.sub(r"\1\2***", _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", text))


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: message, arguments and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


@contextmanager
def _interprocess_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (waits for it); without it when the lock
    file cannot be made (the log is best effort)."""
    try:
        f = open(path, "a+b")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    try:
        try:
            if os.name == "nt":
                import msvcrt

                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # tries for about 10 s
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        f.close()  # closing the file releases the lock


class SharedRotatingFileHandler(RotatingFileHandler):
    """A rotating log that several processes write at once, and that never writes on stderr.

    - A rotation holds a lock beside the log (``reelforge.log.lock``), so two processes never
      rename the files at once (each moved and deleted the other's backups: a fifth of the lines
      were lost), and another process that rotated the file first is noticed: this one goes on in
      the new file instead of rotating again.
    - A rotation that fails (Windows: another process has the file open) is tried again later;
      the file grows meanwhile, and no record is lost.
    - A record that cannot be written (a full disk, a removed directory) is dropped and counted
      in ``failed``: logging's default printed a traceback on stderr for each, which a command's
      stderr must not hold (CLI.md)."""

    failed = 0

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        self._follow()
        return super().shouldRollover(record)

    def _follow(self) -> bool:
        """Go on in the log file now at the path when another process rotated the one this one
        has open; True when it did."""
        if self.stream is None:
            return False
        try:
            mine, there = os.fstat(self.stream.fileno()), os.stat(self.baseFilename)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                return False
        except OSError:
            pass
        self.stream.close()
        self.stream = self._open()
        return True

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        with _interprocess_lock(self.baseFilename + ".lock"):
            if self._follow():  # another process rotated it meanwhile
                self.stream.seek(0, 2)
                if self.stream.tell() < self.maxBytes:
                    return
            try:
                super().doRollover()
            except OSError:
                if self.stream is None:
                    self.stream = self._open()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.failed += 1


def log_dir() -> Path:
    env = os.environ.get("REELFORGE_LOG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_log_dir

    return Path(user_log_dir("Reelforge", appauthor=False))


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: int | None = None) -> Path | None:
    """File log with rotation (5 x 2 MB), at ``level`` or ``REELFORGE_LOG_LEVEL`` (debug, info,
    warning, error; info by default). The CLI's stderr stays clean: only progress and errors.
    Returns the log file, or None when it cannot be written (the program runs on without)."""
    global _configured, _path
    if _configured:
        return _path
    _configured = True
    root = logging.getLogger()
    if level is None:
        level = LEVELS.get(os.environ.get("REELFORGE_LOG_LEVEL", "").strip().lower(), logging.INFO)
    root.setLevel(level)
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / ("reelforge.log")
        handler: logging.Handler = SharedRotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                                             encoding="utf-8")
    except OSError:
        path, handler = None, logging.NullHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _path = path
    return path


def where_words() -> str:
    """Where the details are, for a message: the log's folder, or that there is no log."""
    if _path is None:
        return f"the log could not be written in {log_dir()}"
    return f"details in the log in {_path.parent}"
