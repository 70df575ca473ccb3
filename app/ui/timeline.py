"""Timelines: the framing clip timeline (segments, trim handles, keyframes) and the overlay
region timeline (regions with draggable edges and their ellipse keyframes), both over a
filmstrip of the video they show."""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable
from functools import cache

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.limits import MIN_REGION
from app.ui.video import VideoReader
from app.ui.workers import PyPool

log = logging.getLogger(__name__)

GRAB = 7.0


def _fmt(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


@cache
def _thumb_pool() -> PyPool:
    return PyPool(1, "filmstrip")  # one thread: the preview's decoder keeps the other core


class Filmstrip(QObject):
    """Thumbnails along a timeline: decoded on a pool thread, in time order from one open file
    (the all-intra proxy once there is one), painted as they arrive over placeholder tiles.

    Each tile shows a frame from its own span of the timeline: the decoded one nearest its
    centre if there is one, else it asks for its centre's time rounded to a power-of-two grid
    no coarser than a tile. The cache is keyed by (media, decode width, media time in ms), so a
    resize or a zoom mostly finds frames decoded already. A new source, or hiding the timeline,
    drops the queue: only the decode in flight finishes.
    """

    arrived = Signal(object, object)  # key, QImage | None
    CACHE = 800

    def __init__(self, timeline: TimelineBase):
        super().__init__(timeline)
        self.timeline = timeline
        self.path: str | None = None
        self.offset = 0.0  # media time at timeline time 0
        self.aspect = 16 / 9
        self.source_for: Callable[[str], str] = lambda path: path  # media -> the file to decode (its proxy)
        self.cache: OrderedDict[tuple, QImage | None] = OrderedDict()
        self._times: dict[tuple, list[int]] = {}  # (media, width) -> sorted ms of decoded frames
        self._lock = threading.Lock()
        self._queue: list[tuple] = []
        self._busy: tuple | None = None
        self._running = False
        self._reader: VideoReader | None = None  # the worker's open file
        self.arrived.connect(self._on_arrived)

    def set_source(self, path: str | None, offset: float = 0.0, aspect: float = 16 / 9) -> None:
        if (path, offset, aspect) != (self.path, self.offset, self.aspect):
            self.path, self.offset, self.aspect = path, offset, aspect
            self.cancel()
            self.timeline.update()

    def cancel(self) -> None:
        with self._lock:
            self._queue.clear()

    def tiles(self, band: QRectF, dpr: float = 1.0) -> list[tuple[QRectF, tuple]]:
        """(rect, cache key) of each tile across ``band``, by the timeline's x of time."""
        tl = self.timeline
        if not self.path or tl.length <= 0 or band.width() < 1 or band.height() < 4:
            return []
        tw = max(band.height() * self.aspect, 8.0)
        width = min(max(2 ** math.ceil(math.log2(tw * dpr)), 32), 512)  # decode width, bucketed
        q = 2.0 ** math.floor(math.log2(tl.length * tw / band.width()))
        times = self._times.get((self.path, width), [])

        def ms(t: float) -> int:
            return round((self.offset + t) * 1000)

        out = []
        x = band.left()
        while x < band.right():
            lo, hi = ms(tl.t_of(x)), ms(tl.t_of(x + tw))
            mid = (lo + hi) // 2
            i = bisect_left(times, mid)
            near = [t for t in times[max(i - 1, 0):i + 1] if lo <= t <= hi]
            grid = ms(min(round(tl.t_of(x + tw / 2) / q) * q, tl.length))
            at = min(near, key=lambda t: abs(t - mid), default=grid)
            out.append((QRectF(x, band.top(), tw, band.height()), (self.path, width, at)))
            x += tw
        return out

    def complete(self) -> bool:
        """Every tile the timeline shows now is decoded (or failed to)."""
        tl = self.timeline
        return all(key in self.cache for _r, key in self.tiles(tl.strip_band(), tl.devicePixelRatioF()))

    def paint(self, p: QPainter, band: QRectF) -> None:
        """Draw the tiles (placeholders where not decoded yet) and queue the missing ones."""
        tiles = self.tiles(band, self.timeline.devicePixelRatioF())
        if not tiles:
            return
        p.save()
        p.setClipRect(band)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        placeholder = self.timeline.palette().mid().color()
        missing = []
        for rect, key in tiles:
            img = self.cache.get(key)
            if img is not None:
                self.cache.move_to_end(key)
                p.drawImage(rect, img)
                continue
            if key not in self.cache:  # None: that decode failed, keep the placeholder
                missing.append(key)
            p.fillRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), placeholder)
        p.restore()
        self.want(missing)

    def want(self, keys: list[tuple]) -> None:
        """Decode these, in this order, instead of whatever was queued."""
        with self._lock:
            self._queue = [k for k in keys if k != self._busy]
            if not self._queue or self._running:
                return
            self._running = True
        _thumb_pool().start(self._work)

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._running, self._busy = False, None
                        return
                    key = self._busy = self._queue.pop(0)
                try:
                    img = self._decode(key)
                except Exception:  # noqa: BLE001 - the placeholder stays
                    log.debug("thumbnail failed: %s", key, exc_info=True)
                    self._close()
                    img = None
                try:
                    self.arrived.emit(key, img)
                except RuntimeError:  # the timeline is gone
                    with self._lock:
                        self._running = False
                    return
        finally:
            self._close()

    def _decode(self, key: tuple) -> QImage | None:
        path, width, ms = key
        self._reader = VideoReader.reuse(self._reader, path, self.source_for(path))
        got = self._reader.frame_at(ms / 1000)
        return None if got is None else self._reader.image(got[1], width)

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _on_arrived(self, key: tuple, img: QImage | None) -> None:
        if key in self.cache:
            return
        self.cache[key] = img
        if img is not None:
            insort(self._times.setdefault(key[:2], []), key[2])
        while len(self.cache) > self.CACHE:
            old, old_img = self.cache.popitem(last=False)
            if old_img is not None:
                self._times[old[:2]].remove(old[2])
        if key[0] == self.path:
            self.timeline.update()


class TimelineBase(QWidget):
    seekRequested = Signal(float)  # noqa: N815
    STRIP_TOP = 24.0  # the filmstrip band: from this far under the track's top to its bottom

    def __init__(self, parent=None):
        super().__init__(parent)
        self.length = 1.0
        self.playhead = 0.0
        self.setMinimumHeight(112)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        self._drag: tuple | None = None
        self.strip = Filmstrip(self)

    def hideEvent(self, ev) -> None:  # noqa: N802
        self.strip.cancel()
        super().hideEvent(ev)

    def strip_band(self) -> QRectF:
        r = self.track()
        return QRectF(r.left(), r.top() + self.STRIP_TOP, r.width(), r.height() - self.STRIP_TOP)

    def track(self) -> QRectF:
        return QRectF(14, 26, max(self.width() - 28, 10), self.height() - 40)

    def x_of(self, t: float) -> float:
        r = self.track()
        return r.x() + r.width() * (t / self.length if self.length > 0 else 0)

    def t_of(self, x: float) -> float:
        r = self.track()
        return min(max((x - r.x()) / r.width() * self.length, 0.0), self.length)

    def set_playhead(self, t: float) -> None:
        self.playhead = t
        self.update()

    def paint_ruler(self, p: QPainter) -> None:
        pal = self.palette()
        r = self.track()
        p.setPen(pal.placeholderText().color())
        step = next(s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1e9)
                    if r.width() / max(self.length / s, 1e-9) >= 70)
        n = int(self.length / step) + 1
        for i in range(n):
            t = i * step
            x = self.x_of(t)
            p.drawLine(QPointF(x, 16), QPointF(x, 22))
            p.drawText(QPointF(x + 3, 14), _fmt(t))

    def paint_playhead(self, p: QPainter) -> None:
        x = self.x_of(self.playhead)
        p.setPen(QPen(QColor("#E53935"), 2))
        p.drawLine(QPointF(x, 4), QPointF(x, self.height() - 4))
        p.setBrush(QColor("#E53935"))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawPolygon(QPolygonF([QPointF(x - 6, 2), QPointF(x + 6, 2), QPointF(x, 10)]))

    def paintEvent(self, _ev) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().window().color().darker(108))
        self.paint_ruler(p)
        self.paint_track(p, self.track())
        self.paint_playhead(p)
        p.end()

    def paint_track(self, p: QPainter, r: QRectF) -> None:
        """What the timeline shows on its track ``r``, between the ruler and the playhead."""

    @staticmethod
    def diamond(p: QPainter, x: float, y: float, color: QColor, size: float = 6.0) -> None:
        p.setBrush(color)
        p.setPen(QPen(QColor("#101418"), 1))
        p.drawPolygon(QPolygonF([QPointF(x, y - size), QPointF(x + size, y), QPointF(x, y + size),
                                 QPointF(x - size, y)]))


class ClipTimeline(TimelineBase):
    """Clip-local time 0..length: speed segments, the trim (outside dimmed, two handles),
    crop keyframes (diamonds: drag to move, click to jump, right-click to delete)."""

    trimEdited = Signal(float, float)  # noqa: N815
    keyMoved = Signal(int, float)  # noqa: N815
    keyDeleted = Signal(int)  # noqa: N815
    keyJump = Signal(int)  # noqa: N815

    def __init__(self, parent=None):
        super().__init__(parent)
        self.trim = (0.0, 1.0)
        self.segments: list[dict] = []
        self.keys: list[float] = []
        self.fps = 30.0

    def set_clip(self, length: float, trim: tuple[float, float], segments: list[dict], keys: list[float],
                 fps: float) -> None:
        if self._drag is not None:
            return
        self.length, self.trim, self.segments, self.keys, self.fps = length, trim, segments, keys, fps
        self.update()

    def key_y(self) -> float:
        return self.track().top() + 12

    def hit(self, pos: QPointF):
        for i, k in enumerate(self.keys):
            if abs(self.x_of(k) - pos.x()) <= GRAB and abs(self.key_y() - pos.y()) <= GRAB + 2:
                return ("key", i)
        for which, t in (("trim0", self.trim[0]), ("trim1", self.trim[1])):
            if abs(self.x_of(t) - pos.x()) <= GRAB and pos.y() >= self.track().top():
                return (which, None)
        return None

    def mousePressEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        pos = ev.position()
        h = self.hit(pos)
        if ev.button() == Qt.MouseButton.RightButton:
            if h and h[0] == "key":
                self.keyDeleted.emit(h[1])
            return
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if h is None:
            self._drag = ("seek", None, pos.x())
            self.seekRequested.emit(self.t_of(pos.x()))
        else:
            self._drag = (h[0], h[1], pos.x())

    def mouseDoubleClickEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        h = self.hit(ev.position())
        if h and h[0] == "key":
            self.keyJump.emit(h[1])

    def _snap(self, t: float) -> float:
        return round(t * self.fps) / self.fps if self.fps > 0 else t

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        pos = ev.position()
        if self._drag is None:
            h = self.hit(pos)
            self.setCursor(Qt.CursorShape.SizeHorCursor if h else Qt.CursorShape.ArrowCursor)
            return
        kind, idx, _x0 = self._drag
        t = self._snap(self.t_of(pos.x()))
        min_len = 2.0 / max(self.fps, 1.0)
        if kind == "seek":
            self.seekRequested.emit(self.t_of(pos.x()))
        elif kind == "trim0":
            self.trim = (min(max(t, 0.0), self.trim[1] - min_len), self.trim[1])
        elif kind == "trim1":
            self.trim = (self.trim[0], max(min(t, self.length), self.trim[0] + min_len))
        elif kind == "key":
            self.keys = list(self.keys)
            self.keys[idx] = min(max(t, 0.0), self.length)
            self._drag = (kind, idx, -1.0)  # moved
        self.update()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        kind, idx, x0 = self._drag
        self._drag = None
        if kind in ("trim0", "trim1"):
            self.trimEdited.emit(*self.trim)
        elif kind == "key":
            if x0 == -1.0:
                self.keyMoved.emit(idx, self.keys[idx])
            else:
                self.keyJump.emit(idx)

    def paint_track(self, p: QPainter, r: QRectF) -> None:
        band = self.strip_band()
        self.strip.paint(p, band)
        colors = [QColor(46, 109, 164, 90), QColor(59, 130, 196, 60)]  # tints: the filmstrip shows through
        for i, s in enumerate(self.segments):
            x0, x1 = self.x_of(s["start"]), self.x_of(s["end"])
            seg = QRectF(x0, band.top(), x1 - x0, band.height())
            p.fillRect(seg.adjusted(0.5, 0, -0.5, 0), colors[i % 2])
            if abs(s["speed"] - 1.0) > 1e-6 or len(self.segments) > 1:
                label = f"{s['speed']:g}×"
                tag = QRectF(0, 0, p.fontMetrics().horizontalAdvance(label) + 10, 18)
                tag.moveCenter(seg.center())
                p.fillRect(tag, QColor(0, 0, 0, 160))
                p.setPen(QColor("white"))
                p.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)
        for s in self.segments[1:]:  # split points
            x = self.x_of(s["start"])
            p.setPen(QPen(QColor("#FFEB3B"), 2))
            p.drawLine(QPointF(x, r.top() + 20), QPointF(x, r.bottom()))
        shade = QColor(0, 0, 0, 150)
        t0, t1 = self.trim
        p.fillRect(QRectF(r.left(), r.top() + 22, self.x_of(t0) - r.left(), r.height() - 22), shade)
        p.fillRect(QRectF(self.x_of(t1), r.top() + 22, r.right() - self.x_of(t1), r.height() - 22), shade)
        for t in (t0, t1):
            x = self.x_of(t)
            path = QPainterPath()
            path.addRoundedRect(QRectF(x - 3, r.top() + 20, 6, r.height() - 20), 2, 2)
            p.fillPath(path, QColor("#FFC107"))
        for k in self.keys:
            inside = t0 - 1e-6 <= k <= t1 + 1e-6
            self.diamond(p, self.x_of(k), self.key_y(), QColor("#FFEB3B") if inside else QColor("#9E9E9E"))


class RegionTimeline(TimelineBase):
    """Working-video time: spotlight regions (click to select, drag an edge to resize, drag the
    body to move) and the selected region's keyframes."""

    regionSelected = Signal(int)  # noqa: N815
    regionEdited = Signal(int, float, float)  # noqa: N815

    STRIP_TOP = 20.0

    def __init__(self, parent=None):
        super().__init__(parent)
        self.regions: list[dict] = []
        self.selected = -1

    def set_regions(self, length: float, regions: list[dict], selected: int) -> None:
        if self._drag is not None:
            return
        self.length, self.regions, self.selected = max(length, 0.01), regions, selected
        self.update()

    def _limits(self, i: int) -> tuple[float, float]:
        lo = self.regions[i - 1]["end"] if i > 0 else 0.0
        hi = self.regions[i + 1]["start"] if i + 1 < len(self.regions) else self.length
        return lo, hi

    def hit(self, pos: QPointF):
        r = self.track()
        if pos.y() < r.top():
            return None
        for i, reg in enumerate(self.regions):
            x0, x1 = self.x_of(reg["start"]), self.x_of(reg["end"])
            if abs(pos.x() - x0) <= GRAB:
                return ("start", i)
            if abs(pos.x() - x1) <= GRAB:
                return ("end", i)
            if x0 < pos.x() < x1:
                return ("body", i)
        return None

    def mousePressEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        pos = ev.position()
        h = self.hit(pos)
        if h is not None:
            self.selected = h[1]
            self.regionSelected.emit(h[1])
            reg = self.regions[h[1]]
            self._drag = (h[0], h[1], self.t_of(pos.x()), reg["start"], reg["end"])
            if h[0] == "body":
                self.seekRequested.emit(self.t_of(pos.x()))
        else:
            self._drag = ("seek", -1, 0, 0, 0)
            self.seekRequested.emit(self.t_of(pos.x()))
        self.update()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        pos = ev.position()
        if self._drag is None:
            h = self.hit(pos)
            self.setCursor(Qt.CursorShape.SizeHorCursor if h and h[0] != "body" else Qt.CursorShape.ArrowCursor)
            return
        kind, i, t0, s0, e0 = self._drag
        t = self.t_of(pos.x())
        if kind == "seek" or kind == "body":
            self.seekRequested.emit(t)
            return
        lo, hi = self._limits(i)
        reg = dict(self.regions[i])
        # keyframes do not stop a handle: the editor holds the spotlight at the new bound
        # (editing.region_keys_within)
        if kind == "start":
            reg["start"] = min(max(t, lo), e0 - MIN_REGION)
        else:
            reg["end"] = max(min(t, hi), s0 + MIN_REGION)
        self.regions = [*self.regions[:i], reg, *self.regions[i + 1:]]
        self.update()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        kind, i, _t0, s0, e0 = self._drag
        self._drag = None
        if kind in ("start", "end"):
            reg = self.regions[i]
            if (reg["start"], reg["end"]) != (s0, e0):
                self.regionEdited.emit(i, reg["start"], reg["end"])

    def paint_track(self, p: QPainter, r: QRectF) -> None:
        band = self.strip_band()
        p.fillRect(band, QColor(128, 128, 128, 40))
        self.strip.paint(p, band)
        for i, reg in enumerate(self.regions):
            x0, x1 = self.x_of(reg["start"]), self.x_of(reg["end"])
            box = QRectF(x0, band.top(), x1 - x0, band.height())
            path = QPainterPath()
            path.addRoundedRect(box, 4, 4)
            sel = i == self.selected
            fill = QColor("#8E24AA") if sel else QColor("#6A1B9A").lighter(110)
            fill.setAlpha(130)  # the filmstrip shows through
            p.fillPath(path, fill)
            p.setPen(QPen(QColor("#FFEB3B") if sel else QColor("#E1BEE7"), 2))
            p.drawPath(path)
            for edge in (x0, x1):
                p.fillRect(QRectF(edge - 2, box.top(), 4, box.height()), QColor("#E1BEE7"))
            p.setPen(QColor("white"))
            p.drawText(box.adjusted(6, 0, -6, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                       f"{reg['end'] - reg['start']:.1f}s")
            for k in reg.get("keyframes", []):
                self.diamond(p, self.x_of(k["time"]), r.top() + 10,
                             QColor("#FFEB3B") if sel else QColor("#BDBDBD"), 5)
