"""FFmpeg filter graphs through PyAV: the two steps every graph here repeats."""

from __future__ import annotations

from typing import Any

import av


def chain(graph: av.filter.Graph, *nodes: Any) -> tuple[Any, Any]:
    """Link ``nodes`` in order (source first, sink last) and configure ``graph``; returns
    (source, sink)."""
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    graph.configure()
    return nodes[0], nodes[-1]


def pull_all(sink: Any) -> list:
    """Every frame the graph has ready at ``sink`` now (none more without more input)."""
    out = []
    while True:
        try:
            out.append(sink.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
