"""Hybrid logical clock stamps: ``MMMMMMMMMMMMM.CCCCCC.DEVICE``.

Text that sorts like (physical ms, counter, device id), so comparing two stamps as strings
orders them by time first and breaks ties by device. A clock never goes backwards, whatever
the wall clock does, and it moves past every stamp it has seen (``receive``).
"""

from __future__ import annotations

import time


def format_stamp(ms: int, counter: int, device: str) -> str:
    return f"{ms:013d}.{counter:06d}.{device}"


def parse_stamp(stamp: str) -> tuple[int, int, str]:
    ms, counter, device = stamp.split(".", 2)
    return int(ms), int(counter), device


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def tick(last: str | None, device: str, wall_ms: int | None = None) -> str:
    """The next local stamp after ``last``."""
    wall = now_ms() if wall_ms is None else wall_ms
    if not last:
        return format_stamp(wall, 0, device)
    l_ms, l_c, _ = parse_stamp(last)
    if wall > l_ms:
        return format_stamp(wall, 0, device)
    return format_stamp(l_ms, l_c + 1, device)


def receive(last: str | None, remote: str, device: str, wall_ms: int | None = None) -> str:
    """The clock after seeing ``remote``: greater than both it and ``last``."""
    wall = now_ms() if wall_ms is None else wall_ms
    r_ms, r_c, _ = parse_stamp(remote)
    l_ms, l_c = (parse_stamp(last)[:2]) if last else (0, 0)
    top = max(wall, l_ms, r_ms)
    if top == l_ms == r_ms:
        counter = max(l_c, r_c) + 1
    elif top == l_ms:
        counter = l_c + 1
    elif top == r_ms:
        counter = r_c + 1
    else:
        counter = 0
    return format_stamp(top, counter, device)
