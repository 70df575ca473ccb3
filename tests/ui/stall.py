"""What the GUI thread does between two ticks of a 10 ms timer, while a test's background work
runs: the wall-clock gap, and the GUI thread's own CPU time in it.

Wall-clock gaps alone are the machine's noise on a loaded 2-core box (another process, the
export's own threads, the GIL handed round): 100-400 ms there, with the GUI thread idle. The
thread's CPU time is what the product controls: work done on the GUI thread (a decode, a query,
a parse) shows in it whatever the load. So a test bounds the work tightly and the wall-clock
gap loosely, at what a user would call a frozen window."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

FROZEN_S = 0.75  # a gap this long is a frozen window, whatever its cause


class StallProbe:
    def __init__(self):
        self.gaps: list[float] = []  # wall-clock seconds between two ticks
        self.work: list[float] = []  # the GUI thread's CPU seconds in the same gap
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self._last: tuple[float, float] | None = None

    def start(self) -> StallProbe:
        self._last = None
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = (time.perf_counter(), time.thread_time())
        if self._last is not None:
            self.gaps.append(now[0] - self._last[0])
            self.work.append(now[1] - self._last[1])
        self._last = now

    def check(self, work_s: float) -> None:
        """No gap in which the GUI thread worked ``work_s`` or more, and none a frozen window."""
        self.stop()
        assert len(self.gaps) >= 5, "the probe ran too briefly to say anything"
        worst = max(range(len(self.gaps)), key=lambda i: self.work[i])
        assert self.work[worst] < work_s, (
            f"the GUI thread worked {self.work[worst] * 1000:.0f} ms without returning to its event "
            f"loop (a {self.gaps[worst] * 1000:.0f} ms gap)")
        assert max(self.gaps) < FROZEN_S, f"the window froze for {max(self.gaps) * 1000:.0f} ms"
