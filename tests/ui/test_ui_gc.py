"""Garbage cycles are freed on the GUI thread, never on a worker (Qt objects in a cycle freed on a
worker thread crashed the process)."""

from __future__ import annotations

import gc
import threading


class Cycle:
    def __init__(self, seen: list):
        self.me, self.seen = self, seen

    def __del__(self):
        self.seen.append(threading.current_thread())


def test_cycles_are_collected_on_the_gui_thread_while_a_worker_allocates(qtbot, window):
    collector = window.collector
    qtbot.waitUntil(lambda: window.device != "…", timeout=30000)  # its heap freeze is done
    assert not gc.isenabled()
    seen: list = []
    Cycle(seen)  # unreachable at once: only the cyclic collector can free it

    kept: list = []

    def churn():  # a worker building many containers, as a sync round or a query does
        kept.extend([i] for i in range(50_000))

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    assert seen == []  # the worker went far past every threshold and collected nothing
    qtbot.waitUntil(lambda: bool(seen), timeout=3000)
    assert seen == [threading.main_thread()]
    assert collector.slowest_ms < 100
