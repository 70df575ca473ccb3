"""Off-GUI-thread work: thread pools, a task runnable with Qt signals, the serial DB writer."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, QTimer, Signal

log = logging.getLogger(__name__)


BACKGROUND_NICE = 10


def lower_this_thread() -> None:
    """Let the calling background thread yield the CPU to the GUI thread (and to Qt's own
    drawing threads, which the GUI thread waits for while it holds the interpreter).

    Linux: nice +10 for this OS thread; the threads it starts later (FFmpeg's decoders, x264's)
    inherit it. Windows: below-normal thread priority. Elsewhere Qt's low priority when the
    thread is a QThread. Best effort: an export runs as fast as before when the GUI is idle."""
    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            if os.getpriority(os.PRIO_PROCESS, tid) < BACKGROUND_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
        elif sys.platform == "win32":
            import ctypes

            k32 = ctypes.windll.kernel32
            k32.SetThreadPriority(k32.GetCurrentThread(), -1)  # THREAD_PRIORITY_BELOW_NORMAL
        else:
            from PySide6.QtCore import QThread

            QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    except (OSError, AttributeError, RuntimeError) as exc:
        log.debug("could not lower a background thread's priority: %s", exc)


class GuiThreadCollector(QObject):
    """Cyclic garbage collection on the GUI thread only.

    With automatic collection, whichever thread allocates past the threshold runs the collector,
    and it frees every unreachable cycle it finds there. A cycle holding a Qt wrapper (a widget of
    a closed editor, a timer, a signal connection's closure) then destroys its C++ object on a
    worker thread in the middle of a database query, and Qt crashes the process (a segfault,
    under "Garbage-collecting" in a pool thread). So automatic collection is switched off and this
    timer runs the same generational schedule on the GUI thread, with the interpreter's own
    thresholds. Objects without cycles are still freed at once by reference counting.
    """

    def __init__(self, app: QCoreApplication, interval_ms: int = 100):
        super().__init__(app)
        self.thresholds = gc.get_threshold()
        self.slowest_ms = 0.0
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        app.aboutToQuit.connect(self.stop)

    def tick(self) -> None:
        counts, limits = gc.get_count(), self.thresholds
        if counts[0] <= limits[0]:
            return
        generation = 0
        while generation < 2 and counts[generation + 1] > limits[generation + 1]:
            generation += 1
        start = time.perf_counter()
        gc.collect(generation)
        ms = (time.perf_counter() - start) * 1000
        self.slowest_ms = max(self.slowest_ms, ms)
        if ms > 30:
            log.debug("gc generation %d on the GUI thread: %.0f ms", generation, ms)

    def stop(self) -> None:
        self.timer.stop()
        gc.enable()


def collect_on_gui_thread() -> GuiThreadCollector:
    """Install the collector once per application (idempotent); returns it."""
    app = QCoreApplication.instance()
    found = app.findChild(GuiThreadCollector)
    return found if found is not None else GuiThreadCollector(app)


def settle_heap(collect: bool = True) -> None:
    """Put every object alive now (modules, Qt wrappers, caches) out of the cyclic GC's reach.

    A full collection walks the whole heap holding the GIL: with Qt, PyAV, SQLAlchemy and boto3
    loaded that takes over 100 ms, and when a worker thread (a sync cycle building a thousand
    rows, say) triggers one, the GUI thread stalls just as long. Frozen objects are still freed
    by reference counting; only their cycles are left alone. ``collect``: clear the garbage
    first (start-up, before the window shows; not later on the GUI thread: it is that same
    100 ms).
    """
    if collect:
        gc.collect()
    gc.freeze()


class Dispatcher(QObject):
    """Lives on the GUI thread for the life of the pools: pool threads emit (callback, value) and
    the callback runs on the GUI thread. (A per-task signal object would be deleted with its
    task, and Qt drops queued calls whose sender is gone.)"""

    deliver = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.closed = False  # the window is closed: late results are dropped, not shown on dead widgets
        self.deliver.connect(self._call)

    def _call(self, cb, value) -> None:
        if cb is not None and not self.closed:
            cb(value)


class Task:
    """Run ``fn()`` on a pool thread; ``done(result)`` or ``failed(exc)`` then runs on the GUI thread."""

    def __init__(self, fn: Callable[[], Any], dispatcher: Dispatcher, done=None, failed=None):
        self.fn, self.dispatcher, self.done, self.failed = fn, dispatcher, done, failed

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - delivered to the GUI as a message
            from app.services.errors import OperationFailed, UserError

            if isinstance(exc, UserError | OperationFailed):  # said to the user, in words
                log.info("task refused: %s", exc)
            else:  # a bug, or the storage's failure: the traceback is what a report needs
                log.log(logging.WARNING if self.failed else logging.ERROR, "background task failed%s: %s",
                        "" if self.failed else " (nobody was told)", "".join(traceback.format_exception(exc)))
            self._emit(self.failed, exc)
            return
        self._emit(self.done, result)

    def _emit(self, cb, value) -> None:
        try:
            self.dispatcher.deliver.emit(cb, value)
        except RuntimeError:  # the window (and its dispatcher) is gone
            pass


class PyPool:
    """A Python thread pool with QThreadPool's start()/waitForDone() shape.

    Used for the many small jobs (posters, imports, the status poll): QThreadPool.start() called
    from Python holds the GIL while it takes the pool's mutex, and a pool thread deleting a
    finished Python callable takes them in the other order, which can deadlock under load.
    """

    def __init__(self, workers: int, name: str):
        self._ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"reelforge-{name}",
                                      initializer=lower_this_thread)
        self._futures: set = set()

    def start(self, fn: Callable[[], Any]) -> None:
        f = self._ex.submit(fn)
        self._futures.add(f)
        f.add_done_callback(self._futures.discard)

    def waitForDone(self, ms: int = -1) -> bool:  # noqa: N802 - QThreadPool's name
        pending = list(self._futures)
        _done, not_done = wait(pending, timeout=None if ms < 0 else ms / 1000)
        return not not_done


class _Runnable(QRunnable):
    def __init__(self, fn: Callable[[], Any], finished: Callable[[_Runnable], None]):
        super().__init__()
        self.setAutoDelete(False)  # Python owns it (see QtPool)
        self._fn, self._finished = fn, finished

    def run(self) -> None:
        lower_this_thread()
        try:
            self._fn()
        finally:
            self._finished(self)


class QtPool:
    """QThreadPool + QRunnable, for the exports.

    The pool never deletes a runnable (autoDelete off) and no Python object is freed on a pool
    thread: finished runnables are parked and dropped later from the starting thread, once the
    pool has long returned from their run(). That keeps the GIL / pool-mutex order one-way.
    """

    def __init__(self, workers: int, name: str):
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(workers)
        self._pool.setObjectName(f"reelforge-{name}")
        self._lock = threading.Lock()
        self._running: set[_Runnable] = set()
        self._finished: list[tuple[float, _Runnable]] = []

    def _on_finished(self, r: _Runnable) -> None:
        with self._lock:
            self._running.discard(r)
            self._finished.append((time.monotonic(), r))

    def _purge(self) -> None:
        cutoff = time.monotonic() - 2.0
        with self._lock:
            self._finished = [(t, r) for t, r in self._finished if t > cutoff]

    def start(self, fn: Callable[[], Any]) -> None:
        self._purge()
        r = _Runnable(fn, self._on_finished)
        with self._lock:
            self._running.add(r)
        self._pool.start(r)

    def waitForDone(self, ms: int = -1) -> bool:  # noqa: N802 - Qt's name
        return self._pool.waitForDone(ms)


class Pools:
    """Separate pools so that posters never starve an export or the status poll."""

    def __init__(self) -> None:
        self.dispatcher = Dispatcher()
        self.io = PyPool(1, "io")  # imports, posters, document loads (one: leaves the GIL to the GUI)
        self.poll = PyPool(1, "poll")  # the 1 s status poll
        # exports: ExportService.run in a QThreadPool (the service's queue decides how many
        # run on the GPU at once)
        self.exports = QtPool(2, "export")

    def submit(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None,
               failed: Callable[[Exception], None] | None = None, pool=None) -> Task:
        task = Task(fn, self.dispatcher, done, failed)
        (pool or self.io).start(task.run)
        return task

    def wait(self, ms: int = 5000) -> None:
        for p in (self.io, self.exports, self.poll):
            p.waitForDone(ms)

    def close(self, ms: int = 5000) -> None:
        """The window is closing: wait for the running work, then drop any result still to come."""
        self.wait(ms)
        self.dispatcher.closed = True


class SerialWriter(QObject):
    """Database writes of one project, in order, on one background thread.

    The editor updates its in-memory state at once (the GUI never waits for SQLite); the write
    follows within milliseconds. ``flush()`` blocks until every submitted write is committed
    (tests, closing a project).

    A write that fails because of the storage (``retry_reason`` gives a reason: a full disk, a
    lock held too long) is not dropped: it stays first in line and is tried again, every
    ``RETRY_FIRST_S`` doubling up to ``RETRY_MAX_S``, with the writes after it waiting behind it
    in order. ``stalled(reason)`` says so once; ``resumed(saved)`` when it is done. Any other
    failure is ``failed(tag, exception)``.
    """

    written = Signal(object, object)  # (tag, result)
    failed = Signal(object, object)  # (tag, exception)
    stalled = Signal(str)  # why the writes wait (they are retried and kept in order)
    resumed = Signal(bool)  # the waiting write is done: True saved, False failed for its own reason

    RETRY_FIRST_S = 0.25
    RETRY_MAX_S = 5.0

    def __init__(self, parent=None, retry_reason: Callable[[BaseException], str | None] | None = None):
        super().__init__(parent)
        self._lock = threading.Condition()
        self._queue: list[tuple[Any, Callable[[], Any]]] = []
        self._busy = False
        self._retry_reason = retry_reason or (lambda _exc: None)
        self.stalled_reason: str | None = None  # set while a write waits to be retried
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reelforge-writer")
        self._stop = False
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + (1 if self._busy else 0)

    def submit(self, tag: Any, fn: Callable[[], Any]) -> None:
        with self._lock:
            self._queue.append((tag, fn))
            self._lock.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` for the pending writes, then end the thread; returns how many
        writes were given up (those still failing for the storage's reasons)."""
        self.flush(timeout)
        with self._lock:
            self._stop = True
            lost = len(self._queue)
            self._lock.notify_all()
        if lost:
            log.warning("%d write(s) not saved at close: %s", lost, self.stalled_reason)
        return lost

    def _loop(self) -> None:
        delay = self.RETRY_FIRST_S
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._stop)
                if self._stop and (not self._queue or self.stalled_reason is not None):
                    self._queue.clear()  # what stop() waited for in vain: the storage still fails
                    self._lock.notify_all()
                    return
                tag, fn = self._queue[0]  # it stays first in line until it is done
                self._busy = True
            try:
                result = fn()
                ok, payload = True, result
            except Exception as exc:  # noqa: BLE001 - shown to the user
                ok, payload = False, exc
            why = None if ok else self._retry_reason(payload)
            if why is not None:
                log.warning("write %s not saved yet (%s), retrying in %.2g s: %s", tag, why, delay, payload)
                with self._lock:
                    first = self.stalled_reason is None
                    self.stalled_reason = why
                if first:
                    self._emit(self.stalled, why)
                with self._lock:
                    self._busy = False
                    self._lock.wait_for(lambda: self._stop, delay)
                delay = min(delay * 2, self.RETRY_MAX_S)
                continue
            delay = self.RETRY_FIRST_S
            with self._lock:  # not busy (nor stalled) before the GUI hears of it: it checks both
                self._queue.pop(0)
                self._busy = False
                was_stalled, self.stalled_reason = self.stalled_reason is not None, None
                self._lock.notify_all()
            self._emit(self.written if ok else self.failed, tag, payload)
            if was_stalled:
                self._emit(self.resumed, ok)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the QObject is gone (the app is closing)
            pass
