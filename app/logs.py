"""Logging to the platform's log directory, rotated. FFmpeg's own log is routed here too.

Nothing secret is logged: credentials never pass through here (see the sync module's
redaction filter), and paths are the user's own.
"""

from __future__ import annotations

import logging
import os
import re
from logging.handlers import RotatingFileHandler
from pathlib import Path

_configured = False
SECRET = re.compile(r"(?i)(aws_secret_access_key|secret|password|token|authorization)([\"'=: ]+)([^\s\"',]+)")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if SECRET.search(msg):
            record.msg, record.args = SECRET.sub(r"\1\2***", msg), ()
        return True


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
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
