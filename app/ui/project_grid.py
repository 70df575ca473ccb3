"""The project grid: a QListView in icon mode over a list model, cards painted by a delegate."""

from __future__ import annotations

import threading
from collections import OrderedDict

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QRectF,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate

from app.services import editing
from app.services.library import Library
from app.ui.video import poster_image
from app.ui.workers import Pools

ROW_ROLE = Qt.ItemDataRole.UserRole
POSTER_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

STATUS_LABELS = {
    "not_started": "Not started",
    "in_framing": "In framing",
    "exporting_framing": "Exporting framing",
    "in_overlay": "In overlay",
    "exporting_overlay": "Exporting overlay",
    "complete": "Complete",
}
STATUS_COLORS = {
    "not_started": "#78909C",
    "in_framing": "#1E88E5",
    "exporting_framing": "#FB8C00",
    "in_overlay": "#8E24AA",
    "exporting_overlay": "#FB8C00",
    "complete": "#43A047",
}
STATUS_ORDER = list(STATUS_LABELS)
CARD = QSize(236, 204)
EXPORTING = ("exporting_framing", "exporting_overlay")
POSTER_BOX = (320, 180)  # a poster is fitted in this (the card's 16:9 area, with room for HiDPI)
POSTERS_KEPT = 600  # decoded posters kept, least recently shown dropped first (about 100 MB)
POSTERS_QUEUED = 120  # poster requests kept, newest first: cards scrolled past drop out
POSTERS_PER_TURN = 4  # posters loaded before the io thread takes the next of its other jobs


def fmt_duration(seconds: float) -> str:
    s = int(round(seconds or 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def load_poster(lib: Library, project_id: str) -> QImage | None:
    """A project card's poster (a DB read and a decode: on a pool thread)."""
    src = editing.poster_source(lib, project_id)
    return poster_image(src[0], src[1], POSTER_BOX) if src else None


class ProjectListModel(QAbstractListModel):
    def __init__(self, lib: Library, pools: Pools, parent=None):
        super().__init__(parent)
        self.lib, self.pools = lib, pools
        self.rows: list[dict] = []
        self.posters: OrderedDict[str, QImage | None] = OrderedDict()  # least recently shown first
        self._poster_keys: dict[str, tuple] = {}
        # posters to load, newest request last (loaded first: the cards on screen now), shared
        # with the loader on the io thread
        self._wanted: OrderedDict[str, None] = OrderedDict()
        self._wanted_lock = threading.Lock()
        self._loader_running = False
        self.live_progress: dict[str, tuple[str, float]] = {}  # project id -> (export kind, percent)
        self.importing: dict[str, tuple[str, float]] = {}  # project id -> (what, fraction)
        self._fresh: set[str] = set()
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(50)
        self._flush.timeout.connect(self._flush_posters)

    # ------------------------------------------------------------------ data
    def set_rows(self, rows: list[dict]) -> None:
        old = {r["id"]: r for r in self.rows}
        same_ids = [r["id"] for r in rows] == [r["id"] for r in self.rows]
        if same_ids:
            self.rows = rows
            if rows:
                self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
        else:
            self.beginResetModel()
            self.rows = rows
            self.endResetModel()
        for r in rows:  # a poster is reloaded when the project's outputs or clips changed
            key = (r["clip_count"], r["has_working_video"], r["has_final_video"], r.get("duration"))
            o = old.get(r["id"])
            if o is not None and self._poster_keys.get(r["id"]) not in (None, key):
                self.posters.pop(r["id"], None)
            self._poster_keys[r["id"]] = key
        if not same_ids:  # the posters and keys of projects gone (deleted) go with them
            ids = {r["id"] for r in rows}
            for gone in [pid for pid in self._poster_keys if pid not in ids]:
                self._poster_keys.pop(gone, None)
                self.posters.pop(gone, None)

    def set_live_progress(self, progress: dict[str, tuple[str, float]]) -> None:
        """The exports running in this window, by project: (kind, percent). A card shows them at
        once, before the next poll of the database has seen the job start."""
        if progress == self.live_progress:
            return
        changed = set(progress) | set(self.live_progress)
        self.live_progress = dict(progress)
        for i, r in enumerate(self.rows):
            if r["id"] in changed:
                self.dataChanged.emit(self.index(i), self.index(i))

    def set_export_progress(self, progress: dict[str, float]) -> None:
        """The polled progress of exports (also those of other processes), by project: the cards
        that show an export take it, without a re-read of the library."""
        for i, r in enumerate(self.rows):
            p = progress.get(r["id"])
            if p is not None and r["status"] in EXPORTING and r.get("progress") != p:
                self.rows[i] = {**r, "progress": p}
                self.dataChanged.emit(self.index(i), self.index(i))

    def set_importing(self, project_id: str, what: str | None, fraction: float = 0.0) -> None:
        """Show (``what``: e.g. "“game.mp4”") or clear (None) a file import on the project's card."""
        if what is None:
            if self.importing.pop(project_id, None) is None:
                return
        else:
            self.importing[project_id] = (what, fraction)
        i = self.row_of(project_id)
        if i >= 0:
            self.dataChanged.emit(self.index(i), self.index(i))

    def row_of(self, project_id: str) -> int:
        return next((i for i, r in enumerate(self.rows) if r["id"] == project_id), -1)

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row["name"]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{row['name']}\n{STATUS_LABELS.get(row['status'], row['status'])}"
        if role == ROW_ROLE:
            live = self.live_progress.get(row["id"])
            if live is not None:
                kind, percent = live
                exporting = row["status"] if row["status"] in EXPORTING \
                    else f"exporting_{kind}"
                row = {**row, "status": exporting, "progress": percent}
            importing = self.importing.get(row["id"])
            return {**row, "importing": importing} if importing else row
        if role == POSTER_ROLE:
            return self.poster(row["id"])
        if role == SORT_ROLE:
            return row
        return None

    # ------------------------------------------------------------------ posters
    def poster(self, project_id: str) -> QImage | None:
        """The card's poster when loaded (it is then the most recently shown); else None, and the
        card asks for it: newest request first, so the cards on screen come before those scrolled
        past (after a fling to the end of 3,000 cards, the last ones waited 30-140 s)."""
        if project_id in self.posters:
            self.posters.move_to_end(project_id)
            return self.posters[project_id]
        self.request_posters([project_id])
        return None

    def request_posters(self, project_ids: list[str]) -> None:
        """Ask for these posters (loaded on the io thread, the last of ``project_ids`` first)."""
        with self._wanted_lock:
            for pid in project_ids:
                if pid not in self.posters:
                    self._wanted[pid] = None
                    self._wanted.move_to_end(pid)
            while len(self._wanted) > POSTERS_QUEUED:
                self._wanted.popitem(last=False)  # asked for long ago: scrolled past
            start = bool(self._wanted) and not self._loader_running
            self._loader_running = self._loader_running or start
        if start:
            self.pools.io.start(self._load_posters)

    def _load_posters(self) -> None:
        """On the io thread: a few of the newest requests, then the io thread's other jobs get
        their turn (imports, document loads) before the next few."""
        lib, deliver = self.lib, self.pools.dispatcher.deliver
        for _ in range(POSTERS_PER_TURN):
            with self._wanted_lock:
                if not self._wanted:
                    self._loader_running = False
                    return
                pid, _ = self._wanted.popitem(last=True)
            try:
                img = load_poster(lib, pid)
            except Exception:  # noqa: BLE001 - a card without a poster
                img = None
            try:
                deliver.emit(self._poster_done, (pid, img))
            except RuntimeError:  # the window (and its dispatcher) is gone
                return
        try:
            self.pools.io.start(self._load_posters)
        except RuntimeError:  # the pool is shut down: the window is closing
            pass

    def _poster_done(self, result) -> None:
        project_id, img = result
        if project_id not in self._poster_keys:  # deleted meanwhile
            return
        self.posters[project_id] = img
        self.posters.move_to_end(project_id)
        while len(self.posters) > POSTERS_KEPT:
            self.posters.popitem(last=False)  # shown least recently: loaded again if shown again
        self._fresh.add(project_id)
        if not self._flush.isActive():
            self._flush.start()

    def _flush_posters(self) -> None:
        """Posters arrive in bursts: one repaint per 50 ms, not one per poster."""
        fresh, self._fresh = self._fresh, set()
        rows = [i for i, r in enumerate(self.rows) if r["id"] in fresh]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)), [POSTER_ROLE])


class ProjectFilter(QSortFilterProxyModel):
    SORTS = ("Recent", "Name", "Status")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.sort_key = "Recent"
        self.setDynamicSortFilter(False)  # re-sorted when the rows change, not on every poster
        self.setSortRole(SORT_ROLE)

    def set_text(self, text: str) -> None:
        self.text = text.strip().lower()
        self.invalidate()

    def set_sort(self, key: str) -> None:
        self.sort_key = key
        self.invalidate()
        self.sort(0, Qt.SortOrder.AscendingOrder)

    def filterAcceptsRow(self, source_row, source_parent):  # noqa: N802
        if not self.text:
            return True
        row = self.sourceModel().rows[source_row]
        hay = f"{row['name']} {STATUS_LABELS.get(row['status'], '')} {row['aspect_ratio']}".lower()
        return all(w in hay for w in self.text.split())

    def lessThan(self, left, right):  # noqa: N802
        rows = self.sourceModel().rows
        a, b = rows[left.row()], rows[right.row()]
        if self.sort_key == "Name":
            return (a["name"].lower(), a["id"]) < (b["name"].lower(), b["id"])
        if self.sort_key == "Status":
            return (STATUS_ORDER.index(a["status"]), a["name"].lower()) < (
                STATUS_ORDER.index(b["status"]), b["name"].lower())
        return (a["updated_at"] or "") > (b["updated_at"] or "")  # most recent first


class CardDelegate(QStyledItemDelegate):
    """Paints a card once into a pixmap and then blits it: a repaint of the grid (a scroll, a
    progress tick on one card, a poster arriving) is one drawPixmap per card, which stays fast
    while export and poster threads compete for the interpreter."""

    CACHE_BYTES = 48 * 1024 * 1024

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cards: OrderedDict[tuple, QPixmap] = OrderedDict()

    def sizeHint(self, option, index):  # noqa: N802
        return CARD

    def paint(self, p: QPainter, option, index) -> None:
        row = index.data(ROW_ROLE)
        if row is None:
            return
        poster = index.data(POSTER_ROLE)
        poster = poster if isinstance(poster, QImage) and not poster.isNull() else None
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        w, h = option.rect.width(), option.rect.height()
        dpr = p.device().devicePixelRatioF() if p.device() is not None else 1.0
        progress = row.get("progress")
        key = (row["id"], row["name"], row["status"], None if progress is None else round(progress, 1),
               row["clip_count"], row.get("duration"), row["aspect_ratio"],
               row.get("importing") and (row["importing"][0], round(row["importing"][1], 2)),
               poster.cacheKey() if poster is not None else None, selected, hover, w, h, dpr,
               option.palette.cacheKey(), option.font.key())
        card = self._cards.get(key)
        if card is None:
            card = QPixmap(max(1, round(w * dpr)), max(1, round(h * dpr)))
            card.setDevicePixelRatio(dpr)
            card.fill(Qt.GlobalColor.transparent)
            painter = QPainter(card)
            try:
                self._draw(painter, QRectF(0, 0, w, h), option, row, poster, selected, hover)
            finally:
                painter.end()
            self._cards[key] = card
            limit = max(32, self.CACHE_BYTES // max(1, card.width() * card.height() * 4))
            while len(self._cards) > limit:
                self._cards.popitem(last=False)
        else:
            self._cards.move_to_end(key)
        p.drawPixmap(option.rect.topLeft(), card)

    def _draw(self, p: QPainter, rect: QRectF, option, row: dict, poster: QImage | None,
              selected: bool, hover: bool) -> None:
        pal = option.palette
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = rect.adjusted(6, 6, -6, -6)
        base = pal.base().color()
        path = QPainterPath()
        path.addRoundedRect(r, 10, 10)
        p.fillPath(path, base.lighter(108) if base.lightness() < 128 else base)
        pen = QPen(pal.highlight().color(), 2.5) if selected else QPen(
            pal.mid().color() if not hover else pal.highlight().color().lighter(130), 1)
        p.setPen(pen)
        p.drawPath(path)

        # poster, 16:9 area, image fitted (letterboxed for portrait)
        pr = QRectF(r.x() + 8, r.y() + 8, r.width() - 16, (r.width() - 16) * 9 / 16)
        clip = QPainterPath()
        clip.addRoundedRect(pr, 6, 6)
        p.fillPath(clip, QColor("#111418"))
        if poster is not None:
            s = min(pr.width() / poster.width(), pr.height() / poster.height())
            w, h = poster.width() * s, poster.height() * s
            target = QRectF(pr.center().x() - w / 2, pr.center().y() - h / 2, w, h)
            p.save()
            p.setClipPath(clip)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(target, poster)
            p.restore()
        else:
            p.setPen(QColor("#5f6b76"))
            f = QFont(option.font)
            f.setPointSizeF(f.pointSizeF() * 0.9)
            p.setFont(f)
            importing = row.get("importing")
            empty = "Importing…" if importing else "No clips yet"
            p.drawText(pr, Qt.AlignmentFlag.AlignCenter, empty if not row["clip_count"] else "…")

        # status badge over the poster
        status = row["status"]
        label = STATUS_LABELS.get(status, status)
        if row.get("progress") is not None:
            label = f"{label} {row['progress']:.0f}%"
        f = QFont(option.font)
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.85))
        f.setBold(True)
        p.setFont(f)
        fm = p.fontMetrics()
        bw = fm.horizontalAdvance(label) + 14
        badge = QRectF(pr.left() + 6, pr.top() + 6, bw, fm.height() + 6)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(STATUS_COLORS.get(status, "#777")))
        p.drawRoundedRect(badge, badge.height() / 2, badge.height() / 2)
        p.setPen(QColor("white"))
        p.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)

        # aspect chip (bottom right of the poster)
        chip_text = row["aspect_ratio"]
        cw = fm.horizontalAdvance(chip_text) + 12
        chip = QRectF(pr.right() - cw - 6, pr.bottom() - fm.height() - 10, cw, fm.height() + 4)
        p.setBrush(QColor(0, 0, 0, 160))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawRoundedRect(chip, 4, 4)
        p.setPen(QColor("white"))
        p.drawText(chip, Qt.AlignmentFlag.AlignCenter, chip_text)

        # name and details
        y = pr.bottom() + 8
        f = QFont(option.font)
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.05)
        p.setFont(f)
        p.setPen(pal.text().color())
        name_rect = QRectF(r.x() + 10, y, r.width() - 20, p.fontMetrics().height())
        p.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(row["name"], Qt.TextElideMode.ElideRight, int(name_rect.width())))
        y = name_rect.bottom() + 4
        p.setFont(option.font)
        p.setPen(pal.placeholderText().color())
        n = row["clip_count"]
        details = f"{n} clip{'s' if n != 1 else ''} · {fmt_duration(row.get('duration') or 0)}"
        if row.get("importing"):
            what, fraction = row["importing"]
            details = f"Importing {what} · {fraction * 100:.0f}%"
        p.drawText(QRectF(r.x() + 10, y, r.width() - 20, p.fontMetrics().height()),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(details, Qt.TextElideMode.ElideMiddle, int(r.width() - 20)))

        # live export (or import) progress bar along the bottom of the card
        fraction = row["progress"] / 100 if row.get("progress") is not None else None
        if row.get("importing"):
            fraction = row["importing"][1]
        if fraction is not None:
            bar = QRectF(r.x() + 10, r.bottom() - 12, r.width() - 20, 5)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(pal.mid().color())
            p.drawRoundedRect(bar, 2.5, 2.5)
            done = QRectF(bar.x(), bar.y(), bar.width() * max(0.0, min(1.0, fraction)), bar.height())
            p.setBrush(QBrush(QColor(STATUS_COLORS["exporting_framing"])))
            p.drawRoundedRect(done, 2.5, 2.5)
        p.restore()


class ProjectGridView(QListView):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)  # thousands of cards: lay out in slices
        self.setBatchSize(60)
        self.setGridSize(CARD)
        self.setSpacing(0)
        self.setMouseTracking(True)
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setItemDelegate(CardDelegate(self))
        self.setAcceptDrops(True)
        self.setFrameShape(QListView.Shape.NoFrame)
