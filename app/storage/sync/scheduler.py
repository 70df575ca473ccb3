"""Background sync on an asyncio loop (the qasync loop in the GUI; plain asyncio in tests).

The blocking engine runs in a one-thread executor (``loop.run_in_executor``), so the loop and
the GUI never wait on the network or on a sync transaction. When it runs:

- about ``debounce_s`` (1 s) after a commit, at most ``max_delay_s`` after the first of a burst;
  commits are noticed through :meth:`SyncScheduler.notify_commit` and also by polling the
  outbox head every ``poll_s`` (cheap, indexed), so writes of other processes and of export
  workers on this data directory are never missed;
- every ``pull_interval_s`` (45 s) to pull, and at once on :meth:`sync_now` (the retry button);
- after a transient failure (offline, 5xx, 429): again after a backoff with jitter, doubling up
  to ``backoff_cap_s``; after a refusal (bad credentials, no such bucket): not again until
  :meth:`sync_now` or :meth:`notify_config_changed`.

``on_status(status: dict)`` is called on the loop's thread when a cycle starts and ends, with
the same dict as ``reelforge sync status --json`` plus ``last_result`` (a CycleResult dict).
``on_progress(label, done, total)`` is called on the sync thread while a video is uploaded or
downloaded ("upload …" / "download …", bytes), at most ``PROGRESS_EVERY_S`` apart and once at
its end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from app.storage.models import Change
from app.storage.sync import engine as sync_engine
from app.throttle import every

log = logging.getLogger(__name__)


PROGRESS_EVERY_S = 0.25


class SyncScheduler:
    def __init__(self, db, media, *, on_status: Callable[[dict], None] | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None,
                 debounce_s: float = 1.0, max_delay_s: float = 5.0, pull_interval_s: float = 45.0,
                 poll_s: float = 1.0, backoff_base_s: float = 2.0, backoff_cap_s: float = 300.0,
                 fetch_media: bool = True, engine_kw: dict | None = None):
        self.db = db
        self.media = media
        self.on_status = on_status
        self.on_progress = on_progress
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.pull_interval_s = pull_interval_s
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.fetch_media = fetch_media
        self.engine_kw = engine_kw or {}
        self.last_result: dict | None = None
        self.cycles = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reelforge-sync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._push_due: float | None = None
        self._burst_start: float | None = None
        self._burst_told = False  # the status of a new burst of commits was sent (state pending)
        self._now = False
        self._paused = False
        self._failures = 0
        self._retry_at = 0.0
        self._head: int | None = None

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> None:
        """Start on the running loop (call from a coroutine or a qasync slot)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._main(), name="reelforge-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def notify_commit(self) -> None:
        """A local commit happened: push soon (debounced). Thread-safe."""
        self._call(self._on_commit)

    def sync_now(self) -> None:
        """Run a cycle now (retry button), also after a refusal. Thread-safe."""
        self._call(self._on_now)

    def notify_config_changed(self) -> None:
        self.sync_now()

    def _call(self, fn) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed
            pass

    def _on_commit(self) -> None:
        now = self._loop.time()
        if self._burst_start is None:
            self._burst_start = now
        self._push_due = min(now + self.debounce_s, self._burst_start + self.max_delay_s)
        self._wake.set()

    def _on_now(self) -> None:
        self._now, self._paused, self._retry_at = True, False, 0.0
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    async def _main(self) -> None:
        loop = self._loop
        next_pull = loop.time()  # pull once at start
        next_poll = loop.time()
        while True:
            now = loop.time()
            if now >= next_poll:
                next_poll = now + self.poll_s
                try:
                    head = await loop.run_in_executor(self._executor, self._outbox_head)
                except Exception:  # a busy or closing database: try at the next poll
                    head = self._head
                if self._head is not None and head != self._head and head:
                    self._on_commit()
                self._head = head
            if self._burst_start is not None and not self._burst_told:
                # "pending" is said as soon as a commit is seen, not left to the next status read
                self._burst_told = True
                try:
                    self._emit(await loop.run_in_executor(self._executor, self._status, None))
                except Exception:  # a busy database: the cycle's own status follows
                    log.debug("pending status not read", exc_info=True)
            due = [next_poll]
            ready = False
            if not self._paused:
                wanted = self._now or now >= next_pull or (self._push_due is not None and now >= self._push_due)
                if wanted and now >= self._retry_at:
                    ready = True
                else:
                    due += [t for t in (next_pull, self._push_due) if t is not None]
                    if wanted:
                        due.append(self._retry_at)
            if ready:
                self._now, self._push_due, self._burst_start, self._burst_told = False, None, None, False
                await self._cycle()
                next_pull = loop.time() + self.pull_interval_s
                continue
            timeout = max(0.0, min(due) - loop.time())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _outbox_head(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.max(Change.seq)).where(Change.pushed.is_(False))) or 0)

    async def _cycle(self) -> None:
        loop = self._loop
        try:
            self._emit(await loop.run_in_executor(self._executor, self._status, "syncing"))
            result = await loop.run_in_executor(self._executor, self._run_once)
        except Exception as exc:  # a bug must not end the background task: back off, try again
            log.exception("sync cycle failed")
            result = {"ok": False, "fatal": False, "error": f"{type(exc).__name__}: {exc}"}
        self.cycles += 1
        self.last_result = result
        if result is None:
            pass
        elif result.get("ok"):
            self._failures, self._retry_at = 0, 0.0
        elif result.get("fatal"):
            self._paused = True  # refused: wait for the user (retry) or new settings
        else:
            delay = min(self.backoff_cap_s, self.backoff_base_s * (2 ** self._failures))
            self._failures += 1
            self._retry_at = loop.time() + delay * (0.5 + random.random() / 2)
            self._push_due = self._retry_at  # the retry is due then, not only at the next pull
        try:
            status = await loop.run_in_executor(self._executor, self._status, None)
        except Exception:  # the database went away meanwhile: the next cycle says more
            log.exception("sync status failed")
            return
        self._emit(status)

    def _run_once(self) -> dict | None:
        engine = sync_engine.SyncEngine.for_db(self.db, self.media, **self.engine_kw)
        if engine is None:
            return None
        r = engine.run_cycle(fetch_media=self.fetch_media, progress=self._progress())
        out = r.as_dict()
        # a refusal waits for the user; a local storage failure is retried with backoff, like offline
        out["fatal"] = bool(r.error_kind == "error" and not r.problems and r.error and not r.retry_later)
        return out

    def _progress(self) -> Callable[[str, int, int], None] | None:
        """``on_progress``, told at most every PROGRESS_EVERY_S and at each transfer's end."""
        on_progress = self.on_progress
        if on_progress is None:
            return None

        def progress(label: str, done: int, total: int) -> None:
            try:
                on_progress(label, done, total)
            except Exception:
                log.exception("sync progress callback failed")

        return every(PROGRESS_EVERY_S, progress, always=lambda _label, done, total: done >= total)

    def _status(self, override: str | None) -> dict:
        st = sync_engine.status(self.db)
        if override and st["state"] != "disabled":
            st["state"] = override
        st["last_result"] = self.last_result
        return st

    def _emit(self, status: dict) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(status)
        except Exception:
            log.exception("sync status callback failed")

    @property
    def next_retry_in(self) -> float:
        if self._paused:
            return math.inf
        return max(0.0, self._retry_at - self._loop.time()) if self._loop else 0.0
