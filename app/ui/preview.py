"""Preview canvases: a decoded frame fitted into the widget, with the crop box or the spotlight
ellipse drawn over it and edited with handles. Geometry comes from app.pipeline.keyframes."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.pipeline.keyframes import MIN_CROP, Box, Ellipse, rotation_safe_area

HANDLE = 9.0


class FrameView(QWidget):
    """Shows a frame of ``frame_w`` x ``frame_h`` source pixels, rotated by ``rotation`` degrees."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.frame_w, self.frame_h = 1920.0, 1080.0
        self.rotation = 0.0
        self.message = ""
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def set_frame_size(self, w: float, h: float) -> None:
        self.frame_w, self.frame_h = float(w), float(h)
        self.update()

    def set_image(self, img: QImage | None) -> None:
        self.image = img
        self.message = ""
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    # -- mapping frame px <-> widget px
    def frame_rect(self) -> QRectF:
        m = 12.0
        aw, ah = max(self.width() - 2 * m, 10), max(self.height() - 2 * m, 10)
        s = min(aw / self.frame_w, ah / self.frame_h)
        w, h = self.frame_w * s, self.frame_h * s
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def scale(self) -> float:
        return self.frame_rect().width() / self.frame_w

    def to_widget(self, x: float, y: float) -> QPointF:
        r = self.frame_rect()
        s = r.width() / self.frame_w
        return QPointF(r.x() + x * s, r.y() + y * s)

    def to_frame(self, p: QPointF) -> tuple[float, float]:
        r = self.frame_rect()
        s = r.width() / self.frame_w
        return (p.x() - r.x()) / s, (p.y() - r.y()) / s

    def paintEvent(self, _ev) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d0f12"))
        r = self.frame_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.image is not None and not self.image.isNull():
            p.save()
            p.setClipRect(r)
            p.fillRect(r, QColor("black"))
            if abs(self.rotation) > 1e-6:
                p.translate(r.center())
                p.rotate(self.rotation)
                p.translate(-r.center())
            p.drawImage(r, self.image)
            p.restore()
        else:
            p.fillRect(r, QColor("#1b1f24"))
        if self.message:
            p.setPen(QColor("#e0e0e0"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
        self.paint_overlay(p)
        p.end()

    def paint_overlay(self, p: QPainter) -> None:
        pass

    @staticmethod
    def handle_at(handles: dict[str, QPointF], pos: QPointF) -> str | None:
        """The name of the handle under ``pos``, if any."""
        return next((name for name, c in handles.items()
                     if abs(c.x() - pos.x()) <= HANDLE and abs(c.y() - pos.y()) <= HANDLE), None)

    @staticmethod
    def draw_handle(p: QPainter, c: QPointF, active: bool = False) -> None:
        p.setPen(QPen(QColor("#101418"), 1.5))
        p.setBrush(QColor("#FFEB3B") if active else QColor("white"))
        p.drawRect(QRectF(c.x() - HANDLE / 2, c.y() - HANDLE / 2, HANDLE, HANDLE))


# handle names: corners and edges; the opposite side stays fixed while dragging
HANDLES = ("tl", "t", "tr", "r", "br", "b", "bl", "l")


class CropView(FrameView):
    """The crop rectangle: 8 handles + drag to move, aspect-locked, the outside dimmed."""

    boxEdited = Signal(object)  # noqa: N815 - Box on release (commit a keyframe)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.box: Box | None = None
        self.ratio = 9 / 16
        self.on_keyframe = False
        self._drag: tuple[str, tuple[float, float], Box] | None = None
        self._hover: str | None = None

    def set_box(self, box: Box | None, on_keyframe: bool = False) -> None:
        if self._drag is None:
            self.box = box
            self.on_keyframe = on_keyframe
            self.update()

    def handle_points(self, box: Box) -> dict[str, QPointF]:
        x0, y0 = box.x, box.y
        x1, y1 = box.x + box.width, box.y + box.height
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        pts = {"tl": (x0, y0), "t": (xm, y0), "tr": (x1, y0), "r": (x1, ym), "br": (x1, y1), "b": (xm, y1),
               "bl": (x0, y1), "l": (x0, ym)}
        return {k: self.to_widget(*v) for k, v in pts.items()}

    def hit(self, pos: QPointF) -> str | None:
        if self.box is None:
            return None
        handle = self.handle_at(self.handle_points(self.box), pos)
        if handle is not None:
            return handle
        fx, fy = self.to_frame(pos)
        b = self.box
        if b.x <= fx <= b.x + b.width and b.y <= fy <= b.y + b.height:
            return "move"
        return None

    def bounds(self) -> Box:
        return rotation_safe_area(self.frame_w, self.frame_h, self.rotation)

    def resized_box(self, handle: str, start: Box, fx: float, fy: float, dx: float, dy: float) -> Box:
        """New box for a drag of ``handle``: the opposite edge or corner stays fixed."""
        bd = self.bounds()
        r = self.ratio
        if handle == "move":
            x = min(max(start.x + dx, bd.x), bd.x + bd.width - start.width)
            y = min(max(start.y + dy, bd.y), bd.y + bd.height - start.height)
            return Box(x, y, start.width, start.height)
        left, top = start.x, start.y
        right, bottom = start.x + start.width, start.y + start.height
        cx, cy = start.cx, start.cy
        # anchor (fixed point) and the size the pointer asks for
        if handle in ("tl", "tr", "bl", "br"):
            ax = right if "l" in handle else left
            ay = bottom if "t" in handle else top
            w_req = abs(fx - ax)
            h_req = abs(fy - ay)
            w = max(w_req, h_req * r)
            sx = -1 if "l" in handle else 1
            sy = -1 if "t" in handle else 1
            max_w = (ax - bd.x) if sx < 0 else (bd.x + bd.width - ax)
            max_h = (ay - bd.y) if sy < 0 else (bd.y + bd.height - ay)
            w = max(min(w, max_w, max_h * r), MIN_CROP * max(1.0, r))
            h = w / r
            x = ax - w if sx < 0 else ax
            y = ay - h if sy < 0 else ay
            return Box(x, y, w, h)
        if handle in ("l", "r"):
            ax = right if handle == "l" else left
            w = abs(fx - ax)
            max_w = (ax - bd.x) if handle == "l" else (bd.x + bd.width - ax)
            max_h = 2 * min(cy - bd.y, bd.y + bd.height - cy)
            w = max(min(w, max_w, max_h * r), MIN_CROP * max(1.0, r))
            h = w / r
            x = ax - w if handle == "l" else ax
            return Box(x, cy - h / 2, w, h)
        # t / b
        ay = bottom if handle == "t" else top
        h = abs(fy - ay)
        max_h = (ay - bd.y) if handle == "t" else (bd.y + bd.height - ay)
        max_w = 2 * min(cx - bd.x, bd.x + bd.width - cx)
        h = max(min(h, max_h, max_w / r), MIN_CROP * max(1.0, 1 / r))
        w = h * r
        y = ay - h if handle == "t" else ay
        return Box(cx - w / 2, y, w, h)

    def mousePressEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or self.box is None:
            return super().mousePressEvent(ev)
        h = self.hit(ev.position())
        if h is not None:
            self._drag = (h, self.to_frame(ev.position()), self.box)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            h = self.hit(ev.position())
            if h != self._hover:
                self._hover = h
                cursors = {"move": Qt.CursorShape.SizeAllCursor, "tl": Qt.CursorShape.SizeFDiagCursor,
                           "br": Qt.CursorShape.SizeFDiagCursor, "tr": Qt.CursorShape.SizeBDiagCursor,
                           "bl": Qt.CursorShape.SizeBDiagCursor, "l": Qt.CursorShape.SizeHorCursor,
                           "r": Qt.CursorShape.SizeHorCursor, "t": Qt.CursorShape.SizeVerCursor,
                           "b": Qt.CursorShape.SizeVerCursor}
                self.setCursor(cursors.get(h, Qt.CursorShape.ArrowCursor))
            return
        handle, (sx, sy), start = self._drag
        fx, fy = self.to_frame(ev.position())
        self.box = self.resized_box(handle, start, fx, fy, fx - sx, fy - sy)
        self.update()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return super().mouseReleaseEvent(ev)
        _h, _p, start = self._drag
        self._drag = None
        if self.box is not None and self.box != start:
            self.boxEdited.emit(self.box)

    def paint_overlay(self, p: QPainter) -> None:
        if self.box is None:
            return
        b = self.box
        tl, br = self.to_widget(b.x, b.y), self.to_widget(b.x + b.width, b.y + b.height)
        inner = QRectF(tl, br)
        outside = QPainterPath()
        outside.addRect(self.frame_rect())
        hole = QPainterPath()
        hole.addRect(inner)
        p.fillPath(outside.subtracted(hole), QColor(0, 0, 0, 150))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("#FFEB3B") if self.on_keyframe else QColor("white"), 2))
        p.drawRect(inner)
        p.setPen(QPen(QColor(255, 255, 255, 70), 1))
        for i in (1, 2):  # rule of thirds
            x = inner.left() + inner.width() * i / 3
            y = inner.top() + inner.height() * i / 3
            p.drawLine(QPointF(x, inner.top()), QPointF(x, inner.bottom()))
            p.drawLine(QPointF(inner.left(), y), QPointF(inner.right(), y))
        active = self._drag[0] if self._drag else self._hover
        for name, c in self.handle_points(b).items():
            self.draw_handle(p, c, name == active)


class EllipseView(FrameView):
    """The spotlight ellipse of the selected region at the playhead: drag the centre or a radius."""

    ellipseEdited = Signal(object)  # noqa: N815 - Ellipse on release

    def __init__(self, parent=None):
        super().__init__(parent)
        self.ellipse: Ellipse | None = None
        self.is_key = False
        self._drag: tuple[str, tuple[float, float], Ellipse] | None = None

    def set_ellipse(self, e: Ellipse | None, is_key: bool = False) -> None:
        if self._drag is None:
            self.ellipse, self.is_key = e, is_key
            self.update()

    def _handles(self, e: Ellipse) -> dict[str, QPointF]:
        return {"c": self.to_widget(e.x, e.y), "rx": self.to_widget(e.x + e.rx, e.y),
                "lx": self.to_widget(e.x - e.rx, e.y), "ry": self.to_widget(e.x, e.y + e.ry),
                "ty": self.to_widget(e.x, e.y - e.ry)}

    def hit(self, pos: QPointF) -> str | None:
        if self.ellipse is None:
            return None
        handle = self.handle_at(self._handles(self.ellipse), pos)
        if handle is not None:
            return handle
        fx, fy = self.to_frame(pos)
        e = self.ellipse
        if ((fx - e.x) / e.rx) ** 2 + ((fy - e.y) / e.ry) ** 2 <= 1:
            return "c"
        return None

    def mousePressEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton and self.ellipse is not None:
            h = self.hit(ev.position())
            if h:
                self._drag = (h, self.to_frame(ev.position()), self.ellipse)
                return
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            h = self.hit(ev.position())
            self.setCursor(Qt.CursorShape.SizeAllCursor if h == "c" else Qt.CursorShape.SizeHorCursor
                           if h in ("rx", "lx") else Qt.CursorShape.SizeVerCursor if h else
                           Qt.CursorShape.ArrowCursor)
            return
        h, (sx, sy), e0 = self._drag
        fx, fy = self.to_frame(ev.position())
        if h == "c":
            x = min(max(e0.x + fx - sx, 0.0), self.frame_w)
            y = min(max(e0.y + fy - sy, 0.0), self.frame_h)
            self.ellipse = Ellipse(x, y, e0.rx, e0.ry)
        elif h in ("rx", "lx"):
            self.ellipse = Ellipse(e0.x, e0.y, max(abs(fx - e0.x), 4.0), e0.ry)
        else:
            self.ellipse = Ellipse(e0.x, e0.y, e0.rx, max(abs(fy - e0.y), 4.0))
        self.update()

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return super().mouseReleaseEvent(ev)
        start = self._drag[2]
        self._drag = None
        if self.ellipse is not None and self.ellipse != start:
            self.ellipseEdited.emit(self.ellipse)

    def paint_overlay(self, p: QPainter) -> None:
        e = self.ellipse
        if e is None:
            return
        c = self.to_widget(e.x, e.y)
        s = self.scale()
        p.setBrush(Qt.BrushStyle.NoBrush)
        pen = QPen(QColor("#FFEB3B") if self.is_key else QColor("white"), 1.2, Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawEllipse(c, e.rx * s, e.ry * s)
        for name, pt in self._handles(e).items():
            self.draw_handle(p, pt, self._drag is not None and self._drag[0] == name)
