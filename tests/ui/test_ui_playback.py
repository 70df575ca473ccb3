"""Real playback in the editors: frames decoded ahead and presented in order on the clock, pause,
the end of the play range, speed segments, silent playback without an audio device, and the
preview audio's PCM (app.pipeline.audio.range_audio)."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipeline.audio import SAMPLE_RATE, range_audio, to_s16
from app.pipeline.timeline import Segment
from tests.media import frame_index, make_video
from tests.ui.conftest import overlay_with_working_video, qimage_rgb
from tests.ui.test_ui_framing import db_clip, open_editor

FPS = 30


@pytest.fixture(scope="module")
def counter_video(media_dir):
    """3 s whose frames show their own index in binary stripes, with a 440 Hz tone."""
    return make_video(media_dir / "counter.mp4", width=320, height=180, fps=FPS, duration=3.0,
                      pattern="binary", audio=True)


def record_shown(ed) -> list[tuple[float, int]]:
    """(playhead, frame index in the picture) for every frame playback presents from now on."""
    shown: list[tuple[float, int]] = []
    set_image = ed.view.set_image

    def spy(img):
        if img is not None and ed.playback is not None:
            shown.append((ed.t, frame_index(qimage_rgb(img))))
        set_image(img)

    ed.view.set_image = spy
    return shown


def open_counter(qtbot, window, lib, video):
    pid, cid, s = open_editor(qtbot, window, lib, video)
    ed = window.framing
    qtbot.waitUntil(lambda: ed.view.image is not None, timeout=5000)
    return pid, cid, s, ed


def test_play_advances_and_shows_successive_frames_in_order(qtbot, window, lib, counter_video):
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, counter_video)
    ed.seek(0.5)
    shown = record_shown(ed)
    ed.toggle_play()
    assert ed.playback is not None and ed.rate == 1.0
    qtbot.waitUntil(lambda: len(shown) >= 20, timeout=10000)
    played = list(shown)
    ts = [t for t, _ in played]
    idx = [i for _, i in played]
    assert ts == sorted(ts) and ts[-1] > ts[0]  # the playhead advances
    assert idx == sorted(set(idx))  # successive frames, each once, in order
    assert idx[0] == 15  # from the playhead (0.5 s)
    for t, i in played:  # each picture is the frame of the time shown with it
        assert i == round(t * FPS)
    ed.toggle_play()


def test_pause_stops(qtbot, window, lib, counter_video):
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, counter_video)
    shown = record_shown(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: len(shown) >= 5, timeout=10000)
    ed.toggle_play()
    assert ed.rate == 0.0 and ed.playback is None
    stats = ed.last_playback
    assert stats is not None and stats.shown >= 5 and stats.due == stats.shown + stats.dropped
    t, n = ed.t, len(shown)
    qtbot.wait(400)
    assert (ed.t, len(shown)) == (t, n)
    assert frame_index(qimage_rgb(ed.view.image)) == shown[-1][1] == round(t * FPS)  # still that frame
    assert 0 < t < 3.0


def test_playback_stops_at_the_end_of_the_play_range(qtbot, window, lib, counter_video):
    pid, cid, s, ed = open_counter(qtbot, window, lib, counter_video)
    ed.set_trim(0.5, 1.2)
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["trim"]["end"] == 1.2, timeout=3000)
    ed.seek(2.0)  # outside the trim: play starts at its start
    shown = record_shown(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    assert ed.playback is None and abs(ed.t - 1.2) < 1e-9
    played = [i for t, i in shown if t < 1.2 - 1e-9]
    assert played and played[0] == 15 and played == sorted(set(played)) and played[-1] <= 35
    stats = ed.last_playback
    assert stats.due == round(0.7 * FPS) == stats.shown + stats.dropped


def test_frames_decoded_too_late_count_as_dropped(qtbot, window, lib, counter_video, monkeypatch):
    import time

    from app.ui import playback

    slow = playback.preview_image

    def preview_image(*a):  # a decoder three times too slow for 30 fps
        time.sleep(0.1)
        return slow(*a)

    monkeypatch.setattr(playback, "preview_image", preview_image)
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, counter_video)
    ed.seek(1.0)
    shown = record_shown(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=20000)
    stats = ed.last_playback
    assert stats.due == 2 * FPS == stats.shown + stats.dropped
    assert stats.dropped >= FPS and stats.shown >= 3 and stats.max_gap_ms > 60
    played = [(t, i) for t, i in shown if t < 3.0]
    assert [i for _, i in played] == sorted({i for _, i in played})  # late frames are skipped, never shown late
    assert all(i == round(t * FPS) for t, i in played)


def test_speed_segment_plays_at_its_speed(qtbot, window, lib, counter_video):
    pid, cid, s, ed = open_counter(qtbot, window, lib, counter_video)
    ed.seek(1.0)
    ed.split()
    ed.seek(1.5)
    ed.set_speed(2.0)  # [1, 3) at 2x: 2 s of clip in 1 s
    s.flush()
    qtbot.waitUntil(lambda: db_clip(lib, pid, cid)["segments"][-1]["speed"] == 2.0, timeout=3000)
    ed.seek(1.0)
    shown = record_shown(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    assert ed.last_playback.due == FPS  # one second of output at 30 fps
    played = [i for t, i in shown if t < 3.0]
    assert played[0] == 30 and played == sorted(set(played))
    assert all(i % 2 == 0 for i in played)  # every other source frame


def playing_counter(qtbot, window, lib, video, at: float, frames: int):
    """The counter clip playing from ``at`` once ``frames`` frames were shown: (editor, shown)."""
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, video)
    ed.seek(at)
    shown = record_shown(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: len(shown) >= frames, timeout=10000)
    return ed, shown


def test_a_speed_edit_during_play_applies_at_once_from_the_playhead(qtbot, window, lib, counter_video):
    ed, shown = playing_counter(qtbot, window, lib, counter_video, 0.2, 8)
    first = ed.playback
    ed.set_speed(2.0)  # the one segment, while it plays
    n, at = len(shown), shown[-1][1]
    assert ed.playback is not first and ed.rate == 1.0  # play went on, not stopped
    assert [p.speed for p in ed.playback.parts] == [2.0]
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    after = [i for _t, i in shown[n:] if i < 89]
    assert after and at <= after[0] <= at + 3  # on from where it was, not from the start
    steps = np.diff(after)  # every other source frame: 2x from the edit on (a dropped slot skips 4)
    assert len(steps) and (steps % 2 == 0).all() and np.median(steps) == 2, steps
    assert abs(ed.t - 3.0) < 1e-9


def test_a_trim_during_play_ends_play_at_the_new_end(qtbot, window, lib, counter_video):
    ed, shown = playing_counter(qtbot, window, lib, counter_video, 0.2, 3)
    ed.set_trim(0.0, 1.0)
    assert ed.rate == 1.0 and ed.playback is not None
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    assert abs(ed.t - 1.0) < 1e-9 and max(i for _t, i in shown) <= 30
    ed.seek(0.8)
    ed.toggle_play()
    qtbot.waitUntil(lambda: ed.t > 0.85, timeout=10000)
    ed.set_trim(0.0, 0.5)  # the new end is behind the playhead: play stops there
    assert ed.rate == 0.0 and ed.playback is None and abs(ed.t - 0.5) < 1e-9


def test_playback_without_an_audio_device_is_silent(qtbot, window, lib, sample_video, monkeypatch):
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.ui import playback

    monkeypatch.setattr(playback, "audio_device", lambda: None)  # as offscreen: no output device
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, sample_video)  # has an audio track
    assert ed.plays_audio()
    shown = record_shown(ed)
    ed.toggle_play()
    assert ed.playback.audio is None and ed.playback.stats.clock == "monotonic"
    qtbot.waitUntil(lambda: len(shown) >= 10, timeout=10000)
    ed.transport.mute.click()  # harmless without a device
    ed.toggle_play()
    assert ed.last_playback.shown >= 10
    assert not any(isinstance(w, QMessageBox) and w.isVisible() for w in QApplication.topLevelWidgets())


def test_playback_with_an_audio_device_follows_the_audio_clock(qtbot, window, lib, sample_video):
    from app.ui import playback

    if playback.audio_device() is None:
        pytest.skip("no audio output device (offscreen CI); the silent path is tested above")
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, sample_video)
    ed.transport.mute.setChecked(True)
    ed.toggle_play()
    assert ed.playback.audio is not None and ed.playback.audio.sink.volume() == 0.0
    ed.transport.mute.setChecked(False)
    assert ed.playback.audio.sink.volume() == 1.0
    qtbot.waitUntil(lambda: ed.playback is None or ed.playback.stats.shown >= 10, timeout=15000)
    ed.toggle_play()
    assert ed.last_playback.clock == "audio" and ed.last_playback.shown >= 10


def overlay_with_region(qtbot, window, lib, video, name: str):
    """The overlay editor on a working video with one spotlight region from 0 s: (pid, session, editor)."""
    pid, s = overlay_with_working_video(qtbot, window, lib, video, name)
    ed = window.overlay
    ed.seek(0.0)
    ed.add_region()
    s.flush()
    qtbot.waitUntil(lambda: len(lib.document(pid)["overlay"]["regions"]) == 1, timeout=3000)
    return pid, s, ed


def record_played(ed) -> list:
    """(playhead, QImage) of every frame playback presents from now on."""
    images = []
    set_image = ed.view.set_image
    ed.view.set_image = lambda img: (images.append((ed.t, img)) if ed.playback else None, set_image(img))
    return images


def test_overlay_editor_plays_with_the_spotlight(qtbot, window, lib, tiny_video):
    pid, s, ed = overlay_with_region(qtbot, window, lib, tiny_video, "Overlay playback")
    ed.seek(0.0)
    images = record_played(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    assert ed.last_playback.due == round(ed.duration() * ed.fps()) and abs(ed.t - ed.duration()) < 1e-9
    t, img = images[len(images) // 2]
    plain = qimage_rgb(window.frames.decode_now(s.doc["working_video"]["path"], t))
    drawn = ed.frame_post()[0](plain.copy(), t).astype(int)  # the export's spotlight function
    played = qimage_rgb(img).astype(int)
    assert np.abs(played - drawn).mean() < 0.5 < np.abs(played - plain.astype(int)).mean()


def test_a_spotlight_edit_during_play_shows_in_the_frames_that_follow(qtbot, window, lib, tiny_video):
    pid, s, ed = overlay_with_region(qtbot, window, lib, tiny_video, "Overlay live edit")
    ed.seek(0.0)
    images = record_played(ed)
    ed.toggle_play()
    qtbot.waitUntil(lambda: len(images) >= 1, timeout=10000)  # playing (12 frames are decoded ahead)
    pb, old = ed.playback, ed.frame_post()[0]
    ed.dim.setValue(90)
    ed.commit_settings()
    edited = ed.t
    assert ed.playback is pb  # nothing that plays changed: no restart
    qtbot.waitUntil(lambda: ed.rate == 0.0, timeout=10000)
    new = ed.frame_post()[0]
    # past the 12 frames decoded ahead (0.4 s) and before the region's fade-out (its last 0.25 s)
    later = [(t, img) for t, img in images if edited + 0.45 < t < ed.duration() - 0.25]
    assert len(later) >= 4
    for t, img in later:
        plain = qimage_rgb(window.frames.decode_now(s.doc["working_video"]["path"], t))
        played = qimage_rgb(img).astype(int)
        assert np.abs(played - new(plain.copy(), t).astype(int)).mean() < 0.5
        assert np.abs(played - old(plain.copy(), t).astype(int)).mean() > 2


def test_dragging_dim_redraws_the_paused_preview_before_the_edit_is_committed(qtbot, window, lib, tiny_video):
    pid, s, ed = overlay_with_region(qtbot, window, lib, tiny_video, "Overlay slider")
    ed.seek(0.5)
    plain = qimage_rgb(window.frames.decode_now(s.doc["working_video"]["path"], 0.5))
    committed = ed.frame_post()[0](plain.copy(), 0.5).astype(int)
    def shows(expected) -> bool:
        img = ed.view.image
        return img is not None and np.abs(qimage_rgb(img).astype(int) - expected).mean() < 0.5

    qtbot.waitUntil(lambda: shows(committed), timeout=5000)
    ed._settings_timer.setInterval(10_000)  # a slider held still for long: nothing is committed meanwhile
    ed.dim.setValue(90)  # as a drag does: the slider moves, the edit waits for it to rest
    assert s.doc["overlay"]["settings"]["dim"] != 0.9 and s.undo_stack.count() == 1
    dragged = ed.frame_post()[0](plain.copy(), 0.5).astype(int)
    assert np.abs(dragged - committed).mean() > 2
    qtbot.waitUntil(lambda: shows(dragged), timeout=3000)
    assert s.undo_stack.count() == 1 and s.doc["overlay"]["settings"]["dim"] != 0.9  # drawn, not committed
    ed._settings_timer.start(10)  # the slider rests
    qtbot.waitUntil(lambda: s.doc["overlay"]["settings"]["dim"] == 0.9, timeout=3000)  # then one edit
    assert s.undo_stack.count() == 2


def test_fast_and_reverse_rates_step_through_the_seek_path(qtbot, window, lib, counter_video):
    _pid, _cid, _s, ed = open_counter(qtbot, window, lib, counter_video)
    ed.seek(1.0)
    ed.key_l()
    ed.key_l()
    assert ed.rate == 2.0 and ed.playback is None
    qtbot.waitUntil(lambda: ed.t > 1.3, timeout=5000)
    ed.key_j()
    assert ed.rate == -1.0
    t = ed.t
    qtbot.waitUntil(lambda: ed.t < t - 0.1, timeout=5000)
    ed.key_k()
    assert ed.rate == 0.0


def test_range_audio_sample_counts(counter_video):
    def pcm(start, end, segments):
        chunks = list(range_audio(str(counter_video), 0.0, start, end, segments))
        return np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)

    def pitch(x):  # Hz, from zero crossings away from the ends
        sig = x[0, 4800:-4800]
        return np.count_nonzero(np.diff(np.signbit(sig))) * SAMPLE_RATE / 2 / sig.size

    whole = [Segment(0.0, 3.0, 1.0)]
    x = pcm(0.5, 2.0, whole)
    assert x.shape == (2, round(1.5 * SAMPLE_RATE)) and x.dtype == np.float32
    assert np.abs(x).max() > 0.1 and abs(pitch(x) - 440) < 5
    # 0.5 s at 1x then 1.5 s at 2x: 1.25 s of sound, the tone's pitch kept (atempo)
    y = pcm(0.5, 2.5, [Segment(0.0, 1.0, 1.0), Segment(1.0, 3.0, 2.0)])
    assert y.shape == (2, round(1.25 * SAMPLE_RATE)) and abs(pitch(y[:, SAMPLE_RATE // 2:]) - 440) < 10
    # slow motion doubles the length
    assert pcm(1.0, 2.0, [Segment(0.0, 3.0, 0.5)]).shape[1] == 2 * SAMPLE_RATE
    # no audio: silence of the same length; s16 stereo interleaved
    z = np.concatenate(list(range_audio(None, 0.0, 0.0, 1.0, whole)), axis=1)
    assert z.shape == (2, SAMPLE_RATE) and not z.any()
    assert len(to_s16(x)) == x.shape[1] * 2 * 2


def test_each_editor_gets_its_own_frames_when_both_ask_at_once(qtbot, window, lib, tiny_video):
    """The framing editor (hidden) and the overlay editor share the frame server: neither shows
    the other's frame (the source vs the working video), and neither request replaces the other."""
    pid, s = overlay_with_working_video(qtbot, window, lib, tiny_video, "Two editors")
    ov, fr = window.overlay, window.framing
    assert s.flush()
    qtbot.waitUntil(lambda: ov.view.image is not None and ov._shown == ov._serial, timeout=5000)
    sizes = []
    set_image = ov.view.set_image
    ov.view.set_image = lambda img: (sizes.append((img.width(), img.height())), set_image(img))
    server = window.frames
    with server._decoding:  # the decoder is busy: the next requests wait side by side
        server.request(str(tiny_video), 0.0, owner="someone else")
        qtbot.wait(100)
        ov.seek(0.5)
        fr.seek(0.5)  # asks right after the overlay editor
    qtbot.waitUntil(lambda: ov._shown == ov._serial and fr._shown == fr._serial, timeout=5000)
    wv = s.doc["working_video"]
    assert sizes and all(sz == (ov.view.image.width(), ov.view.image.height()) for sz in sizes)
    assert ov.view.image.width() / ov.view.image.height() == pytest.approx(wv["width"] / wv["height"], rel=0.05)
