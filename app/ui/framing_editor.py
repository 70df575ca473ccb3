"""The framing editor: clip list, preview with the crop box, timeline, inspector."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.limits import ASPECTS
from app.pipeline.keyframes import Box, CropKey, crop_at, parse_ratio
from app.pipeline.timeline import MAX_SPEED, MIN_SPEED, Segment
from app.services.document import with_aspect
from app.services.editing import split_segments
from app.services.errors import UserError
from app.ui.export_settings import settings_button
from app.ui.fields import field_keys
from app.ui.icons import icon
from app.ui.playback import Playback, PlaybackStats
from app.ui.preview import CropView, FrameView
from app.ui.session import ProjectSession
from app.ui.timeline import ClipTimeline, TimelineBase
from app.ui.video import PROXY_MAX_MEDIA_S, FrameServer, PostFn, ProxyBuilder


def fmt_time(t: float, fps: float) -> str:
    frame = int(round(t * fps)) if fps else 0
    return f"{int(t // 60)}:{t % 60:06.3f}  (frame {frame})"


class Transport(QWidget):
    """Play/pause, frame step, mute and the time readout (shared by both editors)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.back = QToolButton()
        self.back.setIcon(icon("step-back"))
        self.back.setToolTip("Previous frame (←)")
        self.play = QToolButton()
        self.play.setIcon(icon("play"))
        self.play.setToolTip("Play / pause (Space, J/K/L)")
        self.fwd = QToolButton()
        self.fwd.setIcon(icon("step-forward"))
        self.fwd.setToolTip("Next frame (→)")
        self.mute = QToolButton()
        self.mute.setCheckable(True)
        self.mute.setIcon(icon("volume"))
        self.mute.toggled.connect(lambda on: self.mute.setIcon(icon("mute" if on else "volume")))
        self.mute.setToolTip("Mute the preview (M). Sound plays at normal speed (1×, speed segments "
                             "time-stretched like the export); 2×, 4× and reverse (J/L) are silent.")
        self.time = QLabel("0:00.000")
        self.time.setMinimumWidth(170)
        for w in (self.back, self.play, self.fwd, self.mute, self.time):
            lay.addWidget(w)
        lay.addStretch(1)

    def set_playing(self, on: bool) -> None:
        self.play.setIcon(icon("pause" if on else "play"))


def hint_label() -> QLabel:
    """Grey, wrapped words under a panel (what is selected, what to do next)."""
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet("color: gray")
    return label


class PlayerMixin:
    """Playhead, playback and J/K/L for an editor with ``frames``, ``view``, ``transport``,
    ``duration``/``fps``, ``media()`` and ``show_time(t)``.

    Play (1×) is real playback (:class:`app.ui.playback.Playback`: frames decoded ahead, audio,
    a clock, dropped frames counted; ``last_playback`` holds the stats of the last run). 2×, 4×
    and reverse step the playhead on a timer through the seek path, silently.
    """

    def _init_player(self) -> None:
        self.t = 0.0
        self.rate = 0.0  # 0 paused, 1 play, -1 reverse, 2/4 fast
        self.playback: Playback | None = None
        self.last_playback: PlaybackStats | None = None
        self._serial = 0  # last frame asked of the frame server
        self._asked: set[int] = set()  # the serials this editor asked for and has not had yet
        self._shown = 0  # last one shown
        self.timer = QTimer(self)  # the seek path (rates other than 1)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._tick)
        self._last_tick = None
        self._play_sig: tuple = ()  # what the running playback was made from (_play_signature)
        self._post_key: object = None  # and what it draws on its frames (frame_post's key)
        self.frames.frameReady.connect(self._on_frame)

    def _add_shortcuts(self, *extra: tuple[str, Callable[[], object]]) -> None:
        """The player's keys (space, arrows, J/K/L, M, Delete) and ``extra``, inside this editor."""
        for keys, fn in ((" ", self.toggle_play), ("Left", lambda: self.step(-1)), ("Right", lambda: self.step(1)),
                         ("J", self.key_j), ("K", self.key_k), ("L", self.key_l), ("Delete", self.delete_key),
                         ("M", lambda: self.transport.mute.toggle()), ("Home", lambda: self.go_to_end(False)),
                         ("End", lambda: self.go_to_end(True)), *extra):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)

    def _make_key_row(self, delete_text: str) -> QHBoxLayout:
        """"Keyframe (K)" and the delete button (``add_key_btn``, ``del_key_btn``)."""
        self.add_key_btn = QPushButton(icon("keyframe"), "Keyframe (K)")
        self.add_key_btn.clicked.connect(self.add_key)
        self.del_key_btn = QPushButton(delete_text)
        self.del_key_btn.setToolTip("Deletes the keyframe under the playhead (◆ on the timeline)")
        self.del_key_btn.clicked.connect(self.delete_key)
        row = QHBoxLayout()
        row.addWidget(self.add_key_btn)
        row.addWidget(self.del_key_btn)
        return row

    def _make_export_row(self, text: str, kind: str) -> QHBoxLayout:
        """The editor's Export button (``export_btn``) and its export-settings button beside it."""
        self.export_btn = QPushButton(icon("export"), text)
        self.export_btn.setMinimumHeight(36)
        self.export_btn.clicked.connect(
            lambda: self.session and self.exportRequested.emit(self.session.project_id, kind))
        self.settings_btn = settings_button(
            lambda: self.session and self.exportSettingsRequested.emit(self.session.project_id))
        row = QHBoxLayout()
        row.addWidget(self.export_btn, 1)
        row.addWidget(self.settings_btn)
        return row

    def _make_transport(self) -> Transport:
        """The play / frame-step bar under the preview, wired to this player."""
        transport = Transport()
        transport.play.clicked.connect(self.toggle_play)
        transport.back.clicked.connect(lambda: self.step(-1))
        transport.fwd.clicked.connect(lambda: self.step(1))
        transport.mute.toggled.connect(lambda on: self.playback and self.playback.set_muted(on))
        return transport

    def _make_preview_column(self, view: FrameView, timeline: TimelineBase) -> QWidget:
        """``view`` over the transport over ``timeline`` (``view``, ``transport``, ``timeline``):
        the filmstrip decodes from the frame server's proxies, a click on the timeline seeks."""
        self.view, self.transport, self.timeline = view, self._make_transport(), timeline
        timeline.strip.source_for = self.frames.source_for  # filmstrip from the proxy once built
        timeline.seekRequested.connect(lambda t: (self.set_rate(0.0), self.seek(t)))
        col = QWidget()
        lay = QVBoxLayout(col)
        lay.addWidget(view, 1)
        lay.addWidget(self.transport)
        lay.addWidget(timeline)
        return col

    # -- session
    def set_session(self, session: ProjectSession) -> None:
        if self.session is session:
            return
        if self.session is not None:
            self._flush_pending()  # into the project it was made in, before the editor changes project
            self.session.changed.disconnect(self.refresh)
            self.session.changed.disconnect(self._follow_edit)
        self.set_rate(0.0)
        self.session, self.t = session, 0.0
        self._forget_selection()
        session.changed.connect(self.refresh)
        session.changed.connect(self._follow_edit)  # after refresh: the editor shows the new state
        self.refresh()

    def _forget_selection(self) -> None:
        """What was selected in the last project (its clip, its region)."""

    def _flush_pending(self) -> None:
        """Commit an edit still waiting in a widget (a slider at rest soon, a value being typed)."""

    # -- what an editor says about its media
    def media(self) -> tuple[str, float] | None:
        """(path, media time of playhead 0), or None when there is nothing to show."""
        return None

    def frame_post(self) -> tuple[PostFn | None, object]:
        """What is drawn on each decoded frame (and its cache key)."""
        return None, None

    def plays_audio(self) -> bool:
        """Whether the preview plays the media's sound."""
        return True

    def play_range(self) -> tuple[float, float]:
        return 0.0, self.duration()

    def play_segments(self) -> list[Segment]:
        return [Segment(0.0, self.duration(), 1.0)]

    def speed_at(self, _t: float) -> float:
        return 1.0

    def _keys(self) -> list[dict]:
        """The keyframes being edited (each with a ``time``)."""
        return []

    # -- time
    def _move_playhead(self, t: float) -> None:
        """``t`` (clamped to the media) on the timeline and the time readout."""
        self.t = min(max(t, 0.0), self.duration())
        self.timeline.set_playhead(self.t)
        self.transport.time.setText(fmt_time(self.t, self.fps()))

    def snapped(self, t: float | None = None) -> float:
        """``t`` (else the playhead) on the nearest frame."""
        fps = self.fps()
        t = self.t if t is None else t
        return min(max(round(t * fps) / fps, 0.0), self.duration())

    def key_index_at(self, t: float) -> int:
        """The keyframe on the frame at ``t``, or -1."""
        half = 0.5 / self.fps()
        return next((i for i, k in enumerate(self._keys()) if abs(k["time"] - t) < half), -1)

    def _set_key(self, keys: list[dict], key: dict) -> list[dict]:
        """``keys`` with ``key`` in time order, replacing one on the same frame."""
        half = 0.5 / self.fps()
        out = [k for k in keys if abs(k["time"] - key["time"]) >= half] + [key]
        return sorted(out, key=lambda k: k["time"])

    # -- frames
    def seek(self, t: float) -> None:
        self.show_time(t)
        self.request_frame()

    def request_frame(self) -> None:
        src = self.media()
        if src is not None and self.playback is None:
            post, key = self.frame_post()
            self._serial = self.frames.request(src[0], src[1] + self.t, post, key, owner=self)
            self._asked.add(self._serial)

    def _on_frame(self, serial: int, _t: float, img) -> None:
        # the newest frame that this editor asked for (while stepping, older ones still show)
        if serial not in self._asked:  # the other editor's frame
            return
        self._asked = {s for s in self._asked if s > serial}
        if self.playback is None and self._shown < serial <= self._serial:
            self._shown = serial
            self.view.set_image(img)

    # -- transport
    def toggle_play(self) -> None:
        self.set_rate(0.0 if self.rate else 1.0)

    def set_rate(self, rate: float) -> None:
        if self.playback is not None:
            self.last_playback = self.playback.stop()
            self.playback.deleteLater()
            self.playback = None
        self.timer.stop()
        self.rate = rate
        if rate:
            a, b = self.play_range()
            if rate > 0 and not (a - 1e-3 <= self.t < b - 1e-3):
                self.seek(a)
            if not (rate == 1.0 and self._play()):
                self._last_tick = monotonic()
                self.timer.start()
        self.transport.set_playing(bool(rate))

    def _play_signature(self) -> tuple:
        """What a playback is made from, apart from what is drawn on its frames."""
        return self.media(), self.play_range(), tuple(self.play_segments()), self.plays_audio(), self.fps()

    def _follow_edit(self) -> None:
        """An edit made during play (or its undo, or a change that sync brought) applies at once.

        A change of what plays (trim, speed, split, media, sound on or off) restarts play at the
        playhead, or stops it there when the new range ends before it; a change of what is drawn
        (the spotlight) goes to every frame decoded from now on, without a restart.
        """
        pb = self.playback
        if pb is None:
            return
        if self._play_signature() != self._play_sig:
            end = self.play_range()[1]
            if self.media() is None or self.t >= end - 1e-3:
                self.set_rate(0.0)
                self.seek(min(self.t, end))
            else:
                self.set_rate(1.0)  # from the playhead (from the range's start when it is before it)
            return
        self.redraw()

    def redraw(self) -> None:
        """What is drawn on the frames changed: the frame on screen is drawn again when paused;
        during play, the frames decoded from now on are drawn the new way."""
        if self.playback is None:
            self.request_frame()
            return
        post, key = self.frame_post()
        if key != self._post_key:
            self._post_key = key
            self.playback.set_post(post)

    def _play(self) -> bool:
        src = self.media()
        if src is None:
            return False
        path, offset = src
        post, self._post_key = self.frame_post()
        self._play_sig = self._play_signature()
        pb = Playback(self.frames.source_for(path), path, offset, self.t, self.play_range()[1],
                      self.play_segments(), self.fps(), self._on_played, self._on_play_end, post,
                      path if self.plays_audio() else None, self.transport.mute.isChecked(), parent=self)
        self._shown = self._serial  # a frame asked for before play never replaces a played one
        self.playback = pb
        return True

    def _on_played(self, t: float, img) -> None:
        self.show_time(t)
        self.view.set_image(img)

    def _on_play_end(self) -> None:
        failed = self.playback.pump.error  # the frame server then shows why, on the frame it stopped at
        self.set_rate(0.0)
        self.seek(self.t if failed else self.play_range()[1])

    def key_j(self) -> None:
        self.set_rate(-1.0 if self.rate >= 0 else max(self.rate * 2, -4.0))

    def key_k(self) -> None:
        if self.rate:
            self.set_rate(0.0)
        else:
            self.add_key()

    def key_l(self) -> None:
        self.set_rate(1.0 if self.rate <= 0 else min(self.rate * 2, 4.0))

    def _tick(self) -> None:
        now = monotonic()
        dt = now - (self._last_tick or now)
        self._last_tick = now
        a, b = self.play_range()
        t = self.t + dt * self.rate * self.speed_at(self.t)
        if t >= b or t <= a:
            t = min(max(t, a), b)
            self.set_rate(0.0)
        self.seek(t)

    def go_to_end(self, last: bool) -> None:
        """Home / End: the playhead to the first or last frame of what plays (the trimmed clip)."""
        self.set_rate(0.0)
        a, b = self.play_range()
        fps = self.fps() or 30.0
        self.seek(max(a, b - 1.0 / fps) if last else a)

    def step(self, n: int) -> None:
        self.set_rate(0.0)
        fps = self.fps() or 30.0
        frame = round(self.t * fps) + n
        self.seek(min(max(frame / fps, 0.0), self.duration()))


class FramingEditor(QWidget, PlayerMixin):
    exportRequested = Signal(str, str)  # noqa: N815 - project id, kind
    exportSettingsRequested = Signal(str)  # noqa: N815 - project id
    addClipsRequested = Signal(str)  # noqa: N815 - project id
    message = Signal(str)

    def __init__(self, frames: FrameServer, proxies: ProxyBuilder, parent=None):
        super().__init__(parent)
        self.frames, self.proxies = frames, proxies
        self.session: ProjectSession | None = None
        self.clip_id: str | None = None
        self._proxied: dict[str, str] | None = None  # the media paths whose proxies were looked for
        self._syncing = False
        self._init_player()
        self._build()
        frames.error.connect(lambda m: self.view.set_message(m) if self.isVisible() else None)
        proxies.ready.connect(lambda media, proxy: (self.frames.set_proxy(media, proxy), self.request_frame()))

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        split = QSplitter(Qt.Orientation.Horizontal)
        # clip list
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(QLabel("<b>Clips</b> <span style='color:gray'>(drag to reorder)</span>"))
        self.clips = QListWidget()
        self.clips.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.clips.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.clips.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.clips.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.clips.currentItemChanged.connect(self._on_clip_selected)
        self.clips.model().rowsMoved.connect(self._on_rows_moved)
        ll.addWidget(self.clips, 1)
        row = QHBoxLayout()
        self.add_btn = QPushButton(icon("add"), "Add…")
        self.remove_btn = QPushButton(icon("remove"), "Remove")
        self.add_btn.clicked.connect(lambda: self.session and self.addClipsRequested.emit(self.session.project_id))
        self.remove_btn.clicked.connect(self.remove_clip)
        row.addWidget(self.add_btn)
        row.addWidget(self.remove_btn)
        ll.addLayout(row)
        left.setMinimumWidth(180)
        split.addWidget(left)

        # preview + transport + timeline
        split.addWidget(self._make_preview_column(CropView(), ClipTimeline()))
        self.view.boxEdited.connect(self.commit_box)
        self.timeline.trimEdited.connect(self.set_trim)
        self.timeline.keyMoved.connect(self.move_key)
        self.timeline.keyDeleted.connect(self.delete_key_index)
        self.timeline.keyJump.connect(lambda i: self.seek(self._keys()[i]["time"]))

        # inspector
        right = QWidget()
        rl = QVBoxLayout(right)
        proj = QGroupBox("Project")
        pf = QFormLayout(proj)
        self.aspect = QComboBox()
        self.aspect.addItems(list(ASPECTS))
        self.aspect.activated.connect(lambda _i: self.set_aspect(self.aspect.currentText()))
        pf.addRow("Aspect", self.aspect)
        self.transition = QComboBox()
        self.transition.addItems(["cut", "fade", "dissolve"])
        self.transition.activated.connect(lambda _i: self.set_transition())
        pf.addRow("Transition", self.transition)
        self.transition_dur = QDoubleSpinBox()
        self.transition_dur.setRange(0.1, 5.0)
        self.transition_dur.setSingleStep(0.1)
        self.transition_dur.setSuffix(" s")
        self.transition_dur.editingFinished.connect(self.set_transition)
        pf.addRow("Duration", self.transition_dur)
        rl.addWidget(proj)

        clip = QGroupBox("Clip")
        cf = QFormLayout(clip)
        rot_row = QHBoxLayout()
        self.rotation = QSlider(Qt.Orientation.Horizontal)
        self.rotation.setRange(-200, 200)
        self.rotation.setToolTip("Horizon fix, ±20°")
        self.rotation_label = QLabel("0.0°")
        self.rotation_label.setMinimumWidth(44)
        self.rotation.valueChanged.connect(self._on_rotation_moved)
        self.rotation.sliderReleased.connect(self.commit_rotation)
        rot_row.addWidget(self.rotation)
        rot_row.addWidget(self.rotation_label)
        cf.addRow("Rotation", rot_row)
        self.speed = QDoubleSpinBox()
        self.speed.setRange(MIN_SPEED, MAX_SPEED)
        self.speed.setSingleStep(0.25)
        self.speed.setSuffix("×")
        self._typed_speed: tuple[str, int, float] | None = None  # (clip, segment, speed) typed, not yet committed
        self.speed.valueChanged.connect(self._on_speed_typed)
        self.speed.editingFinished.connect(self._flush_pending)
        cf.addRow("Segment speed", self.speed)
        field_keys(self.transition_dur, self.speed)
        self.split_btn = QPushButton(icon("split"), "Split at playhead (S)")
        self.split_btn.clicked.connect(self.split)
        cf.addRow(self.split_btn)
        cf.addRow(self._make_key_row("Delete key"))
        self.info = hint_label()
        cf.addRow(self.info)
        rl.addWidget(clip)
        rl.addStretch(1)
        rl.addLayout(self._make_export_row("Export working video", "framing"))
        right.setMinimumWidth(240)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([200, 800, 260])
        self.splitter = split  # its sizes are kept across restarts (MainWindow)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        self._add_shortcuts(("S", self.split), ("I", self.mark_in), ("O", self.mark_out))

    # ------------------------------------------------------------------ session
    def _forget_selection(self) -> None:
        self.clip_id = None

    def _use_proxies(self, paths: dict[str, str]) -> None:
        """Media paths read since the last call: decode from their proxies, built or to be built."""
        if paths is self._proxied:
            return
        self._proxied = paths
        clips = {c["id"]: c for c in ((self.session.doc or {}).get("clips") or [])} if self.session else {}
        long_media = {p for cid, p in paths.items()
                      if ((clips.get(cid) or {}).get("media") or {}).get("duration", 0) > PROXY_MAX_MEDIA_S}
        for p in set(paths.values()) - long_media:
            existing = self.proxies.existing(p)
            if existing:
                self.frames.set_proxy(p, existing)
            else:
                self.proxies.request(p)

    def clip(self) -> dict | None:
        return self.session.clip(self.clip_id) if self.session else None

    def _keys(self) -> list[dict]:
        c = self.clip()
        return c["crop_keyframes"] if c else []

    def refresh(self) -> None:
        s = self.session
        if s is None or s.doc is None:
            return
        doc = s.doc
        self._syncing = True
        try:
            ids = [c["id"] for c in doc["clips"]]
            if [self.clips.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.clips.count())] != ids:
                self.clips.clear()
                for i, c in enumerate(doc["clips"]):
                    name = (c.get("media") or {}).get("filename") or c["id"][:8]
                    it = QListWidgetItem(icon("clip"), f"{i + 1}. {name}")
                    it.setData(Qt.ItemDataRole.UserRole, c["id"])
                    self.clips.addItem(it)
            self._use_proxies(s.media_paths)
            if self.clip_id not in ids:
                self.clip_id = ids[0] if ids else None
            for i in range(self.clips.count()):
                if self.clips.item(i).data(Qt.ItemDataRole.UserRole) == self.clip_id:
                    self.clips.setCurrentRow(i)
            self.aspect.setCurrentText(doc["aspect_ratio"])
            self.transition.setCurrentText(doc["transition"]["type"])
            self.transition_dur.setValue(doc["transition"]["duration"])
            self.transition_dur.setEnabled(doc["transition"]["type"] != "cut")
            c = self.clip()
            has = c is not None
            for w in (self.rotation, self.speed, self.split_btn, self.add_key_btn, self.del_key_btn,
                      self.remove_btn, self.export_btn):
                w.setEnabled(has)
            if not has:
                self.view.set_image(None)
                self.view.set_box(None)
                self.view.set_message("No clips yet.\nAdd a video with “Add…” or drop files on the window.")
                self.timeline.set_clip(1.0, (0, 1), [], [], 30)
                self.timeline.strip.set_source(None)
                return
            m = c.get("media") or {}
            self.view.ratio = parse_ratio(doc["aspect_ratio"])
            self.view.set_frame_size(m.get("width", 1920), m.get("height", 1080))
            if not self.rotation.isSliderDown():
                self.rotation.setValue(round(c["rotation"] * 10))
                self.view.rotation = c["rotation"]
            self.rotation_label.setText(f"{c['rotation']:.1f}°")
            self.timeline.set_clip(self.length(), (c["trim"]["start"], c["trim"]["end"]), c["segments"],
                                   [k["time"] for k in c["crop_keyframes"]], self.fps())
            self.timeline.strip.set_source(s.media_paths.get(c["id"]), c["source_start"],
                                           m.get("width", 16) / max(m.get("height", 9), 1))
            self._show_speed()
            n = len(c["crop_keyframes"])
            self.info.setText(f"{m.get('width')}×{m.get('height')} · {m.get('fps', 0):g} fps · "
                              f"{n} keyframe{'s' if n != 1 else ''} · trim {c['trim']['start']:.2f}–"
                              f"{c['trim']['end']:.2f} s")
        finally:
            self._syncing = False
        self.update_box()
        self.request_frame()

    # ------------------------------------------------------------------ time & frames
    def length(self) -> float:
        c = self.clip()
        return (c["source_end"] - c["source_start"]) if c else 1.0

    def duration(self) -> float:
        return self.length()

    def fps(self) -> float:
        c = self.clip()
        return float((c.get("media") or {}).get("fps") or 30.0) if c else 30.0

    def play_range(self) -> tuple[float, float]:
        c = self.clip()
        return (c["trim"]["start"], c["trim"]["end"]) if c else (0.0, 1.0)

    def segment_index(self, t: float) -> int:
        c = self.clip()
        if not c:
            return 0
        for i, s in enumerate(c["segments"]):
            if s["start"] - 1e-9 <= t < s["end"]:
                return i
        return max(len(c["segments"]) - 1, 0)

    def speed_at(self, t: float) -> float:
        c = self.clip()
        return c["segments"][self.segment_index(t)]["speed"] if c and c["segments"] else 1.0

    def play_segments(self) -> list[Segment]:
        c = self.clip()
        if not c or not c["segments"]:
            return super().play_segments()
        return [Segment(s["start"], s["end"], s["speed"]) for s in c["segments"]]

    def show_time(self, t: float) -> None:
        """The playhead at ``t``: timeline, readout, segment speed and the crop box (crop_at)."""
        self._move_playhead(t)
        if not self._syncing and self.clip():
            self._flush_pending()  # a speed typed for the segment the playhead leaves
            self._show_speed()
        self.update_box()

    def media(self) -> tuple[str, float] | None:
        c = self.clip()
        path = self.session.media_paths.get(c["id"]) if c is not None else None
        return None if path is None else (path, c["source_start"])

    def plays_audio(self) -> bool:
        c = self.clip()
        # the preview plays what the export renders: nothing when the clip's audio is off
        return bool(c is not None and c.get("audio", True) and (c.get("media") or {}).get("has_audio", True))

    def current_box(self) -> Box | None:
        c = self.clip()
        if c is None:
            return None
        m = c.get("media") or {}
        keys = [CropKey(**k) for k in c["crop_keyframes"]]
        return crop_at(keys, self.t, m.get("width", 1920), m.get("height", 1080), self.view.ratio, c["rotation"])

    def update_box(self) -> None:
        on_key = self.key_index_at(self.t) >= 0
        self.view.set_box(self.current_box(), on_key)
        self.del_key_btn.setEnabled(on_key)  # there is something to delete only on a keyframe

    # ------------------------------------------------------------------ edits (each one undoable)
    def _clip_edit(self, text: str, fn) -> None:
        cid = self.clip_id
        if self.session is None or cid is None:
            return

        def mutate(d: dict) -> None:
            for c in d["clips"]:
                if c["id"] == cid:
                    fn(c)

        self.session.edit(text, mutate)

    def _key_dict(self, box: Box, t: float) -> dict:
        c = self.clip()
        m = c.get("media") or {}
        fw, fh = m.get("width", 1920), m.get("height", 1080)
        ratio = self.view.ratio
        h = float(round(box.height))
        w = float(round(h * ratio))
        if w > fw:
            w = float(fw)
            h = float(min(round(w / ratio), fh))
        if h > fh:
            h = float(fh)
            w = float(round(h * ratio))
        x = float(min(max(round(box.x), 0), fw - w))
        y = float(min(max(round(box.y), 0), fh - h))
        return {"time": round(t, 6), "x": x, "y": y, "width": w, "height": h}

    def commit_box(self, box: Box) -> None:
        """A crop drag ended: a keyframe at the playhead (replacing one on this frame)."""
        t = self.snapped()
        key = self._key_dict(box, t)
        self._clip_edit("Move crop", lambda c: c.__setitem__("crop_keyframes", self._set_key(c["crop_keyframes"], key)))

    def add_key(self) -> None:
        box = self.current_box()
        if box is not None:
            self.commit_box(box)

    def delete_key(self) -> None:
        i = self.key_index_at(self.t)
        if i >= 0:
            self.delete_key_index(i)
        else:
            self.message.emit("No keyframe on this frame to delete")

    def delete_key_index(self, i: int) -> None:
        self._clip_edit("Delete keyframe", lambda c: c["crop_keyframes"].pop(i))

    def move_key(self, i: int, t: float) -> None:
        t = self.snapped(t)
        if self.key_index_at(t) not in (-1, i):
            self.message.emit(f"A keyframe is already at {t:.2f} s: move or delete that one first")
            self.refresh()  # the dragged diamond goes back
            return

        def fn(c):
            keys = c["crop_keyframes"]
            k = dict(keys[i], time=t)
            rest = [x for j, x in enumerate(keys) if j != i]
            c["crop_keyframes"] = self._set_key(rest, k)

        self._clip_edit("Move keyframe", fn)

    def set_trim(self, start: float, end: float) -> None:
        # keyframes are never touched by a trim: those outside it are kept
        self._clip_edit("Trim", lambda c: c.__setitem__("trim", {"start": round(start, 6), "end": round(end, 6)}))

    def mark_in(self) -> None:
        """I: the clip starts at the frame shown (frame-accurate, whatever the clip's length: on a
        90-minute clip a pixel of the timeline is several seconds)."""
        c = self.clip()
        if c is None:
            return
        t, frame = self.snapped(), 1.0 / self.fps()
        if t > c["trim"]["end"] - frame + 1e-9:
            self.message.emit("The in point must be before the out point (O)")
            return
        self.set_trim(t, c["trim"]["end"])

    def mark_out(self) -> None:
        """O: the clip ends with the frame shown (it is the last frame kept)."""
        c = self.clip()
        if c is None:
            return
        frame = 1.0 / self.fps()
        t = min(self.snapped() + frame, self.length())
        if t < c["trim"]["start"] + frame - 1e-9:
            self.message.emit("The out point must be after the in point (I)")
            return
        self.set_trim(c["trim"]["start"], t)

    def split(self) -> None:
        t = self.snapped()
        c = self.clip()
        if c is None:
            return
        try:
            split_segments(c["segments"], t)
        except UserError:
            self.message.emit("Move the playhead inside a segment to split it")
            return
        self._clip_edit("Split", lambda cc: cc.__setitem__("segments", split_segments(cc["segments"], t)))

    def set_speed(self, speed: float, segment: int | None = None) -> None:
        c = self.clip()
        if c is None or self._syncing:
            return
        i = self.segment_index(self.t) if segment is None else segment
        if not 0 <= i < len(c["segments"]) or abs(c["segments"][i]["speed"] - speed) < 1e-9:
            return
        self._clip_edit("Segment speed", lambda cc: cc["segments"][i].__setitem__("speed", float(speed)))

    def _show_speed(self) -> None:
        """The speed box shows the speed of the segment under the playhead."""
        c = self.clip()
        segs = c["segments"] if c else []
        self.speed.blockSignals(True)  # not a user's edit
        try:
            self.speed.setValue(segs[self.segment_index(self.t)]["speed"] if segs else 1.0)
        finally:
            self.speed.blockSignals(False)

    def _on_speed_typed(self, v: float) -> None:
        """Remember which segment a speed is being typed for: a click elsewhere on the timeline
        moves the playhead before the box loses focus, and the speed still goes to that segment."""
        c = self.clip()
        if c is not None and not self._syncing:
            self._typed_speed = (c["id"], self.segment_index(self.t), float(v))

    def _flush_pending(self) -> None:
        pending, self._typed_speed = self._typed_speed, None
        c = self.clip()
        if pending is not None and c is not None and c["id"] == pending[0]:
            self.set_speed(pending[2], pending[1])

    def _on_rotation_moved(self, v: int) -> None:
        self.rotation_label.setText(f"{v / 10:.1f}°")
        self.view.rotation = v / 10
        self.view.update()
        if not self.rotation.isSliderDown() and not self._syncing:
            self.commit_rotation()

    def commit_rotation(self) -> None:
        v = self.rotation.value() / 10
        self._clip_edit("Rotate", lambda c: c.__setitem__("rotation", v))

    def set_aspect(self, aspect: str) -> None:
        if self.session is None or self.session.doc is None or self.session.doc["aspect_ratio"] == aspect:
            return
        media = {c["id"]: c.get("media") or {} for c in self.session.doc["clips"]}
        self.session.edit(f"Aspect {aspect}", lambda d: with_aspect(d, aspect, media))

    def set_transition(self) -> None:
        if self.session is None or self._syncing:
            return
        tr = {"type": self.transition.currentText(), "duration": round(self.transition_dur.value(), 3)}
        self.session.edit("Transition", lambda d: d.__setitem__("transition", tr))

    def _on_rows_moved(self, *_a) -> None:
        if self._syncing or self.session is None:
            return
        order = [self.clips.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.clips.count())]
        self.reorder(order)

    def reorder(self, order: list[str]) -> None:
        def mutate(d):
            by = {c["id"]: c for c in d["clips"]}
            d["clips"] = [by[i] for i in order if i in by] + [c for c in d["clips"] if c["id"] not in order]

        self.session.edit("Reorder clips", mutate)

    def remove_clip(self) -> None:
        c = self.clip()
        if c is None or self.session is None:
            return
        self.session.remove_clip(c["id"], (c.get("media") or {}).get("filename", ""))

    def _on_clip_selected(self, cur, _prev) -> None:
        if cur is None or self._syncing:
            return
        cid = cur.data(Qt.ItemDataRole.UserRole)
        if cid != self.clip_id:
            self._flush_pending()  # a speed typed for the clip being left
            self.clip_id = cid
            self.set_rate(0.0)
            self.t = 0.0
            self.refresh()
            self.seek(self.play_range()[0])

    def event(self, ev) -> bool:
        if ev.type() == QEvent.Type.Hide:
            self.set_rate(0.0)
        return super().event(ev)
