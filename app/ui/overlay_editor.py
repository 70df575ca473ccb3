"""The overlay editor: the working video with the spotlight drawn live by the pipeline's own
function (app.pipeline.spotlight.spotlight_rgb, on the decoder thread), regions on a timeline,
the ellipse edited with handles, keyframes, and the settings panel."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.limits import MIN_REGION
from app.pipeline.keyframes import Ellipse, EllipseKey, ellipse_at
from app.pipeline.plan import RegionPlan
from app.pipeline.spotlight import spotlight_rgb  # numpy only: no torch in the preview
from app.services.editing import region_keys_within
from app.ui.fields import field_keys
from app.ui.framing_editor import PlayerMixin, hint_label
from app.ui.icons import icon
from app.ui.preview import EllipseView
from app.ui.session import ProjectSession
from app.ui.timeline import RegionTimeline
from app.ui.video import FrameServer


def _spotlight_post(settings: dict, regions: list[dict], size: tuple[int, int]):
    plans = tuple(RegionPlan(r["start"], r["end"], tuple(EllipseKey(**k) for k in r["keyframes"]))
                  for r in regions if r.get("keyframes"))

    def post(rgb, t):
        return spotlight_rgb(rgb, t, settings, plans, source_size=size)

    return post


def _percent_label(slider: QSlider) -> QLabel:
    """A label that shows the slider's value as a percentage, kept up to date."""
    label = QLabel()
    label.setMinimumWidth(label.fontMetrics().horizontalAdvance("100 %") + 4)
    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def show(v: int) -> None:
        label.setText(f"{v} %")

    slider.valueChanged.connect(show)
    show(slider.value())
    return label


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w)
    return box


class OverlayEditor(QWidget, PlayerMixin):
    exportRequested = Signal(str, str)  # noqa: N815
    exportSettingsRequested = Signal(str)  # noqa: N815 - project id
    message = Signal(str)

    def __init__(self, frames: FrameServer, parent=None):
        super().__init__(parent)
        self.frames = frames
        self.session: ProjectSession | None = None
        self.selected = -1
        self._syncing = False
        self._init_player()
        self._build()
        self._settings_timer = QTimer(self)  # sliders commit once they rest (one undo step)
        self._settings_timer.setSingleShot(True)
        self._settings_timer.setInterval(400)
        self._settings_timer.timeout.connect(self.commit_settings)

    def _build(self) -> None:
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._make_preview_column(EllipseView(), RegionTimeline()))
        self.view.ellipseEdited.connect(self.commit_ellipse)
        self.timeline.regionSelected.connect(self.select_region)
        self.timeline.regionEdited.connect(self.resize_region)

        right = QWidget()
        rl = QVBoxLayout(right)
        reg = QGroupBox("Regions")
        rg = QVBoxLayout(reg)
        row = QHBoxLayout()
        self.add_region_btn = QPushButton(icon("add"), "Add region")
        self.add_region_btn.clicked.connect(self.add_region)
        self.del_region_btn = QPushButton(icon("remove"), "Delete")
        self.del_region_btn.clicked.connect(self.delete_region)
        row.addWidget(self.add_region_btn)
        row.addWidget(self.del_region_btn)
        rg.addLayout(row)
        rg.addLayout(self._make_key_row("Delete keyframe"))
        self.region_info = hint_label()
        rg.addWidget(self.region_info)
        rl.addWidget(reg)

        st = QGroupBox("Spotlight")
        f = QFormLayout(st)
        self.color_btn = QPushButton()
        self.color_btn.clicked.connect(self.pick_color)
        f.addRow("Colour", self.color_btn)
        self.shape = QComboBox()
        self.shape.addItem("Body ellipse", "body")
        self.shape.addItem("Ground ring", "ground")
        self.shape.activated.connect(lambda _i: self.commit_settings())
        f.addRow("Shape", self.shape)
        self.stroke = QDoubleSpinBox()
        self.stroke.setRange(0, 50)
        self.stroke.setSingleStep(0.5)
        self.stroke.editingFinished.connect(self.commit_settings)
        f.addRow("Stroke", self.stroke)
        field_keys(self.stroke)
        self.fill = QSlider(Qt.Orientation.Horizontal)
        self.fill.setRange(0, 100)
        self.dim = QSlider(Qt.Orientation.Horizontal)
        self.dim.setRange(0, 100)
        self.fill.setToolTip("Opacity of the colour inside the ellipse")
        self.dim.setToolTip("How much darker everything outside the ellipse is")
        for s in (self.fill, self.dim):
            s.valueChanged.connect(self._on_slider)
        self.fill_value, self.dim_value = _percent_label(self.fill), _percent_label(self.dim)
        f.addRow("Fill", _row(self.fill, self.fill_value))
        f.addRow("Dim outside", _row(self.dim, self.dim_value))
        rl.addWidget(st)
        rl.addStretch(1)
        rl.addLayout(self._make_export_row("Export final video", "overlay"))
        right.setMinimumWidth(250)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setSizes([900, 270])
        self.splitter = split  # its sizes are kept across restarts (MainWindow)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)
        self._add_shortcuts()

    # ------------------------------------------------------------------ session
    def _forget_selection(self) -> None:
        self.selected = -1

    def working(self) -> dict | None:
        doc = self.session.doc if self.session else None
        return doc.get("working_video") if doc else None

    def regions(self) -> list[dict]:
        doc = self.session.doc if self.session else None
        return doc["overlay"]["regions"] if doc else []

    def settings(self) -> dict:
        return dict(self.session.doc["overlay"]["settings"])

    def duration(self) -> float:
        wv = self.working()
        return float(wv["duration"]) if wv else 1.0

    def fps(self) -> float:
        doc = self.session.doc if self.session else None
        return float(doc["export_settings"]["fps"]) if doc and doc.get("export_settings") else 30.0

    def refresh(self) -> None:
        if self.session is None or self.session.doc is None:
            return
        self._syncing = True
        try:
            wv = self.working()
            regions = self.regions()
            if self.selected >= len(regions):
                self.selected = len(regions) - 1
            s = self.settings()
            self.color_btn.setText(s["color"])
            c = QColor(s["color"])
            fg = "black" if c.lightness() > 140 else "white"
            self.color_btn.setStyleSheet(f"background:{s['color']}; color:{fg}; border-radius:4px; padding:4px")
            self.shape.setCurrentIndex(0 if s["shape"] == "body" else 1)
            self.stroke.setValue(s["stroke_width"])
            if not self._settings_timer.isActive():
                self.fill.setValue(round(s["fill_opacity"] * 100))
                self.dim.setValue(round(s["dim"] * 100))
            ok = wv is not None and wv.get("local")
            for w in (self.add_region_btn, self.add_key_btn, self.export_btn):
                w.setEnabled(bool(ok))
            if not ok:
                self._show_selection()
                self.view.set_image(None)
                self.view.set_ellipse(None)
                self.view.set_message("No working video yet.\nExport the framing first (Framing → Export working "
                                      "video)." if wv is None else "The working video is not on this device yet.")
                self.timeline.set_regions(1.0, [], -1)
                self.timeline.strip.set_source(None)
                return
            self.view.set_frame_size(wv["width"], wv["height"])
            self._show_selection()
            self.timeline.strip.set_source(wv["path"], 0.0, wv["width"] / max(wv["height"], 1))
        finally:
            self._syncing = False
        self.update_ellipse()
        self.request_frame()

    def _show_selection(self) -> None:
        """What follows the selected region: its highlight on the timeline, the delete buttons and
        the line about it."""
        wv, regions = self.working(), self.regions()
        ok = bool(wv is not None and wv.get("local"))
        self.del_region_btn.setEnabled(ok and self.selected >= 0)
        if not ok:
            return
        self.timeline.set_regions(self.duration(), regions, self.selected)
        stale = "" if wv.get("current") else " · the framing changed since (re-export to update)"
        if self.selected >= 0:
            r = regions[self.selected]
            self.region_info.setText(f"{r['start']:.2f}–{r['end']:.2f} s · {len(r['keyframes'])} keyframe(s)" + stale)
        else:
            self.region_info.setText(("Add a region, then drag the ellipse onto the player." if not regions
                                      else "Click a region on the timeline to edit it.") + stale)

    # ------------------------------------------------------------------ frames
    def show_time(self, t: float) -> None:
        """The playhead at ``t``: timeline, readout, the region under it and its ellipse."""
        self._move_playhead(t)
        regions = self.regions()
        inside = next((i for i, r in enumerate(regions) if r["start"] <= self.t <= r["end"]), None)
        if inside is not None and inside != self.selected and not self.rate:
            self.selected = inside
            self._show_selection()
        self.update_ellipse()

    def media(self) -> tuple[str, float] | None:
        wv = self.working()
        return (wv["path"], 0.0) if wv and wv.get("local") and self.session is not None else None

    def _on_slider(self, _v: int) -> None:
        """Fill or dim moved: the picture follows at once, the edit is committed once it rests."""
        if self._syncing:
            return
        self._settings_timer.start()
        self.redraw()

    def shown_settings(self) -> dict:
        """The spotlight settings as drawn: the project's, with a fill or dim still being dragged."""
        s = self.settings()
        if self._settings_timer.isActive():
            s.update(fill_opacity=self.fill.value() / 100, dim=self.dim.value() / 100)
        return s

    def frame_post(self):
        """The spotlight, drawn by the export's own function on the decoding thread."""
        wv, s, regions = self.working(), self.shown_settings(), self.regions()
        key = repr((sorted(s.items()), [(r["start"], r["end"], r["keyframes"]) for r in regions]))
        return _spotlight_post(s, regions, (wv["width"], wv["height"])), key

    def update_ellipse(self) -> None:
        """The selected region's ellipse at the playhead, and "Delete keyframe" offered only on one."""
        regions, wv, on_key = self.regions(), self.working(), self.key_index_at(self.t) >= 0
        self.del_key_btn.setEnabled(bool(wv is not None and wv.get("local")) and on_key)
        if not (0 <= self.selected < len(regions)) or not regions[self.selected]["keyframes"]:
            self.view.set_ellipse(None)
            return
        r = regions[self.selected]
        keys = [EllipseKey(**k) for k in r["keyframes"]]
        e = ellipse_at(keys, min(max(self.t, r["start"]), r["end"]))
        self.view.set_ellipse(e, on_key)

    def _keys(self) -> list[dict]:
        """The selected region's keyframes."""
        regions = self.regions()
        return regions[self.selected]["keyframes"] if 0 <= self.selected < len(regions) else []

    # ------------------------------------------------------------------ edits
    def _regions_edit(self, text: str, fn) -> None:
        if self.session is None:
            return

        def mutate(d):
            regs = d["overlay"]["regions"]
            fn(regs)
            regs.sort(key=lambda r: r["start"])

        self.session.edit(text, mutate)

    def select_region(self, i: int) -> None:
        self.selected = i
        self.refresh()

    def add_region(self) -> None:
        wv = self.working()
        if not wv:
            return
        t = self.snapped()
        regions = self.regions()
        nxt = min((r["start"] for r in regions if r["start"] >= t), default=self.duration())
        if any(r["start"] <= t < r["end"] for r in regions) or nxt - t < MIN_REGION:
            self.message.emit("No room for a region here (at least 0.5 s, no overlaps)")
            return
        end = min(t + 2.0, nxt)
        key = {"time": t, "x": wv["width"] / 2, "y": wv["height"] / 2, "rx": wv["width"] * 0.08,
               "ry": wv["height"] * 0.18}
        new = {"id": None, "start": t, "end": round(end, 6), "keyframes": [key]}
        self._regions_edit("Add region", lambda regs: regs.append(new))
        self.selected = sorted([*regions, new], key=lambda r: r["start"]).index(new)
        self.refresh()

    def delete_region(self) -> None:
        i = self.selected
        if i < 0:
            return
        self._regions_edit("Delete region", lambda regs: regs.pop(i))
        self.selected = -1

    def resize_region(self, i: int, start: float, end: float) -> None:
        start, end = round(start, 6), round(end, 6)

        def fn(regs):
            r = regs[i]
            r["keyframes"] = region_keys_within(r["keyframes"], start, end)
            r["start"], r["end"] = start, end

        self._regions_edit("Resize region", fn)

    def commit_ellipse(self, e: Ellipse) -> None:
        i = self.selected
        regions = self.regions()
        if not (0 <= i < len(regions)):
            return
        r = regions[i]
        t = min(max(self.snapped(), r["start"]), r["end"])
        key = {"time": t, "x": round(e.x, 2), "y": round(e.y, 2), "rx": round(e.rx, 2), "ry": round(e.ry, 2)}

        def fn(regs):
            regs[i]["keyframes"] = self._set_key(regs[i]["keyframes"], key)

        self._regions_edit("Move spotlight", fn)

    def add_key(self) -> None:
        if self.view.ellipse is not None:
            self.commit_ellipse(self.view.ellipse)

    def delete_key(self) -> None:
        i, k = self.selected, self.key_index_at(self.t)
        if i < 0 or k < 0:
            self.message.emit("No spotlight keyframe on this frame to delete")
            return
        if len(self.regions()[i]["keyframes"]) == 1:
            self.message.emit("A region keeps at least one keyframe (delete the region instead)")
            return
        self._regions_edit("Delete spotlight keyframe", lambda regs: regs[i]["keyframes"].pop(k))

    def pick_color(self) -> None:
        c = QColorDialog.getColor(QColor(self.settings()["color"]), self, "Spotlight colour")
        if c.isValid():
            self.commit_settings(color=c.name().upper())

    def commit_settings(self, color: str | None = None) -> None:
        if self.session is None or self.session.doc is None or self._syncing:
            return
        s = {"color": color or self.settings()["color"], "shape": self.shape.currentData(),
             "stroke_width": round(self.stroke.value(), 3), "fill_opacity": self.fill.value() / 100,
             "dim": self.dim.value() / 100}
        self.session.edit("Spotlight settings", lambda d: d["overlay"].__setitem__("settings", s))

    def _flush_pending(self) -> None:
        """A fill or dim still settling is committed to the project it was set in, at once."""
        if self._settings_timer.isActive():
            self._settings_timer.stop()
            self.commit_settings()

    def hideEvent(self, ev) -> None:  # noqa: N802
        self.set_rate(0.0)
        super().hideEvent(ev)
