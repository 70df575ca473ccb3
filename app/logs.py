"""Logging to the platform's log directory, rotated. FFmpeg's own log is routed here too.

Nothing secret is logged: every line, tracebacks included, goes through :func:`redact_text`,
the one redaction that the sync module's error messages use too.
"""

from __future__ import annotations

import logging
import os
import re
from logging.handlers import RotatingFileHandler
from pathlib import Path

_configured = False
# a secret-looking name, a separator, then the value (up to a space, quote, comma or '&')
_SECRET = re.compile(
    r"(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|signature|credential"
    r"|aws_secret_access_key|secret_access_key|secret|password|token|authorization)"
    r"([\"'=: ]+)([^\s\"'&,]+)")
_USERINFO = re.compile(r"(?i)(https?://)[^/@\s]+@")  # https://user:password@host


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
    return _SECRET.sub(r"\1\2***", _USERINFO.sub(r"\1***@", text))


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: message, arguments and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def log_dir() -> Path:
    env = os.environ.get("REELFORGE_LOG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_log_dir

    return Path(user_log_dir("Reelforge", appauthor=False))


def setup_logging(gui: bool = False, level: int = logging.INFO) -> Path | None:
    """File log with rotation (5 x 2 MB). The CLI's stderr stays clean: only progress and errors."""
    global _configured
    if _configured:
        return None
    _configured = True
    root = logging.getLogger()
    root.setLevel(level)
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / ("reelforge.log")
        handler: logging.Handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=5, encoding="utf-8")
    except OSError:
        path, handler = None, logging.NullHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
