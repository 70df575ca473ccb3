"""Progress told at most every so often. A worker (an import, a save, an export, a transfer, a
proxy) reports far more often than a bar can show; every report it passes on is a signal queued
on the GUI thread, so it passes on one every few tenths of a second, and the ones that matter
(the start, the end) always."""

from __future__ import annotations

import time
from collections.abc import Callable


def every(seconds: float, fn: Callable[..., None],
          always: Callable[..., bool] | None = None) -> Callable[..., None]:
    """``fn``, called at most once every ``seconds``: a call sooner than that after the last one
    passed on is dropped, unless ``always(*args)`` says it must pass (an end). The first call
    always passes."""
    last: float | None = None

    def call(*args) -> None:
        nonlocal last
        now = time.monotonic()
        if last is not None and now - last < seconds and not (always is not None and always(*args)):
            return
        last = now
        fn(*args)

    return call
