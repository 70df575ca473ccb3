"""Sync in the GUI (SYNC.md 9, honest status): the badge, the conflicts dialog, the remote settings
dialog, offline editing and a GUI thread that never waits on sync. The scheduler runs on a real
qasync loop against a real moto S3 server on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.sync.servers import free_port, serve_bucket, use_test_credentials

use_test_credentials()

BUCKET = "reelforge-ui-sync"


@pytest.fixture(scope="module")
def s3():
    yield from serve_bucket(BUCKET)


@pytest.fixture
def fast(window):
    """The window's sync with short intervals and fast retries (the real scheduler otherwise)."""
    from app.storage.sync.remote import RetryPolicy, Timeouts

    window.sync_ui.scheduler_kw = dict(
        debounce_s=0.3, poll_s=0.2, pull_interval_s=0.5, backoff_base_s=0.5,
        engine_kw={"retry": RetryPolicy(attempts=2, base_s=0.01, cap_s=0.05),
                   "timeouts": Timeouts(connect_s=1, read_s=5)})
    return window


_LOOP = None


@pytest.fixture(scope="module", autouse=True)
def _close_the_loop_once():
    """Close the module's one loop after its last test (stops the executor's QThreads)."""
    yield
    global _LOOP
    if _LOOP is not None:
        _LOOP.close()
        _LOOP = None


def run_loop(coro):
    """Run ``coro`` on a qasync loop over the test's QApplication (as app.ui.main.run does).

    One loop for the whole module, as in the app (one loop per process): creating a second
    qasync loop after closing the first on the same QApplication was seen to crash Qt.
    """
    global _LOOP
    import qasync
    from PySide6.QtWidgets import QApplication

    if _LOOP is None:
        _LOOP = qasync.QEventLoop(QApplication.instance())
    asyncio.set_event_loop(_LOOP)
    try:
        return _LOOP.run_until_complete(asyncio.wait_for(coro, 60))
    finally:
        asyncio.set_event_loop(None)


async def until(pred, timeout: float = 10.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


async def off_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def card_name(win, pid: str) -> str | None:
    return next((r["name"] for r in win.model.rows if r["id"] == pid), None)


def other_device(tmp_path, endpoint: str, prefix: str):
    from app.services.library import Library
    from app.storage.sync import config, engine

    lib = Library(tmp_path / "device-b")
    engine.set_remote(lib.db, config.validate(endpoint, BUCKET, prefix))
    return lib


def sync_ok(lib) -> None:
    from app.storage.sync import engine

    r = engine.SyncEngine.for_db(lib.db, lib.media).run_cycle(fetch_media=False)
    assert r.ok, r.error


def test_settings_badge_pull_and_conflict_restore(fast, s3, tmp_path):
    win = fast
    lib = win.lib
    pid = lib.create_project("Saturday")
    prefix = f"ui/{uuid.uuid4().hex[:10]}"
    b = other_device(tmp_path, s3.url, prefix)

    async def main():
        ui = win.sync_ui
        ui.start()
        await until(lambda: ui.badge.status is not None, what="first status")
        assert ui.badge.text == "Sync off" and ui.scheduler is None
        # the settings dialog: test the connection off the GUI thread, then save
        dlg = ui.show_settings()
        await until(lambda: dlg.keyring_ok is not None, what="keyring looked up off the GUI thread")
        assert "OS keyring" in dlg.where.text()  # says where the secret goes (or would go)
        dlg.endpoint.setText(s3.url)
        dlg.bucket.setText(BUCKET)
        dlg.prefix.setText(prefix)
        dlg.test_btn.click()
        await until(lambda: not dlg.testing, what="connection test")
        assert dlg.result.text().startswith("Connected"), dlg.result.text()
        dlg.bucket.setText("no-such-bucket-here")
        dlg.test_btn.click()
        await until(lambda: not dlg.testing, what="failing connection test")
        assert dlg.result.text().startswith("Failed") and "testing-secret-key" not in dlg.result.text()
        dlg.bucket.setText(BUCKET)
        dlg.key_id.setText("typed-key")
        dlg.secret.setText("typed-secret-never-stored")
        dlg.save()
        try:
            await until(lambda: ui.scheduler is not None, what="scheduler started after saving")
            await until(lambda: ui.badge.status and ui.badge.status["state"] == "synced", what="synced")
            # an edit: pending N, then synced about a second later (no pull due meanwhile: a pull
            # cycle running when the edit lands would carry it, rightly shown as syncing)
            ui.scheduler.pull_interval_s = 3600.0
            ui.badge.history.clear()
            await until(lambda: ui.badge.history[-2:] == ["syncing", "synced"], what="last short-interval pull")
            ui.badge.history.clear()
            await off_thread(lib.rename_project, pid, "Saturday edited")
            await until(lambda: ui.badge.status["state"] == "synced" and len(ui.badge.history) > 1,
                        what="pending → synced")
            assert "pending" in ui.badge.history, ui.badge.history
            assert ui.badge.history.index("pending") < len(ui.badge.history) - 1
            ui.scheduler.pull_interval_s = 0.5  # the pulls below
            ui.scheduler.sync_now()
            # a pull that changes a project refreshes its card
            await off_thread(sync_ok, b)
            await off_thread(b.rename_project, pid, "from B")
            await off_thread(sync_ok, b)
            await until(lambda: card_name(win, pid) == "from B", what="card refreshed by a pull")
            # concurrent edits: B's older one loses on A; restoring it brings it back
            await off_thread(b.rename_project, pid, "B's name")
            await off_thread(lib.rename_project, pid, "A's name")
            await until(lambda: ui.badge.status["pending_changes"] == 0 and
                        ui.badge.status["state"] == "synced", what="A pushed")
            await off_thread(sync_ok, b)
            await until(lambda: len(ui.badge.status["conflicts"]) == 1, what="conflict on A")
            assert "1 conflict" in ui.badge.text and ui.badge.conflicts_btn.isVisibleTo(ui.badge)
            ui.badge.conflicts_btn.click()
            cd = ui.dialogs["conflicts"]
            await until(lambda: not cd.busy and cd.table.rowCount() == 1, what="conflict listed")
            cells = [cd.table.item(0, j).text() for j in range(5)]
            assert cells[1] == "name" and cells[2] == "A's name" and cells[3] == "B's name", cells
            assert cells[4] == "this device"
            assert not cd.undo_btn.isEnabled()
            # dismissing is undoable: the conflict comes back
            cd.dismiss_btn.click()
            await until(lambda: not cd.busy and cd.table.rowCount() == 0, what="dismissed")
            assert "Dismiss" in win.act_undo.text() and cd.undo_btn.isEnabled()
            cd.undo_btn.click()
            await until(lambda: not cd.busy and cd.table.rowCount() == 1, what="dismissal undone")
            assert lib.document(pid)["name"] == "A's name"
            assert not cd.undo_btn.isEnabled()
            cd.restore_btn.click()
            await until(lambda: not cd.busy and cd.table.rowCount() == 0, what="restored")
            await until(lambda: card_name(win, pid) == "B's name", what="restored value shown")
            assert lib.document(pid)["name"] == "B's name"
            # the restore is an undoable edit: undo it, the conflict is back; redo it from the grid
            assert cd.undo_btn.isEnabled()
            cd.undo_btn.click()
            await until(lambda: not cd.busy and cd.table.rowCount() == 1, what="restore undone")
            await until(lambda: card_name(win, pid) == "A's name", what="winner shown again")
            assert "Restore" in win.act_redo.text()
            win.act_redo.trigger()
            await until(lambda: not cd.busy and cd.table.rowCount() == 0, what="restored again")
            await until(lambda: card_name(win, pid) == "B's name", what="restored value shown again")
            await until(lambda: ui.badge.status["state"] == "synced" and not ui.badge.status["conflicts"]
                        and ui.badge.status["pending_changes"] == 0, what="restore pushed")
            await off_thread(sync_ok, b)
            assert b.document(pid)["name"] == "B's name"
        finally:
            await ui.stop()

    try:
        run_loop(main())
    finally:
        b.close()
    # the secret typed in the dialog went nowhere near the database
    raw = (lib.data_dir / "reelforge.db").read_bytes()
    assert b"typed-secret-never-stored" not in raw and b"testing-secret-key" not in raw


def test_unreachable_endpoint_shows_offline_and_editing_goes_on(fast):
    from app.storage.sync import config, engine

    win = fast
    lib = win.lib
    pid = lib.create_project("Offline")
    engine.set_remote(lib.db, config.validate(f"http://127.0.0.1:{free_port()}", BUCKET, "ui/offline"))

    async def main():
        ui = win.sync_ui
        ui.start()
        try:
            await until(lambda: ui.badge.status and ui.badge.status["state"] == "offline", what="offline")
            assert ui.badge.text.startswith("Offline")
            assert "cannot reach" in ui.badge.toolTip()
            assert ui.badge.retry_btn.isVisibleTo(ui.badge)
            await off_thread(lib.rename_project, pid, "edited offline")
            await until(lambda: card_name(win, pid) == "edited offline", what="local edit shown")
            await until(lambda: ui.badge.status["pending_changes"] >= 1 and
                        ui.badge.status["state"] == "offline", what="offline with pending")
            assert "pending" in ui.badge.text
            ui.badge.retry_btn.click()  # retries at once, still offline, still words
            await until(lambda: ui.scheduler.cycles >= 2, what="retried")
            await until(lambda: ui.badge.status["state"] == "offline", what="offline again")
        finally:
            await ui.stop()

    run_loop(main())
    assert lib.document(pid)["name"] == "edited offline"


def test_the_badge_says_how_far_a_video_upload_is(fast, s3, tmp_path):
    """A long game's video takes minutes to upload: the badge shows the percentage as it goes
    (it said "Syncing…" and nothing more)."""
    from app.storage.sync import config, engine
    from tests.test_import import padded_video

    win = fast
    lib = win.lib
    pid = lib.create_project("Upload")
    lib.add_clip(pid, padded_video(tmp_path / "game.mp4"))  # 16 MiB: several multipart chunks
    engine.set_remote(lib.db, config.validate(s3.url, BUCKET, f"ui/{uuid.uuid4().hex[:10]}"))
    shown: list[str] = []
    # what the badge says right after each progress report reaches it (connected after the badge)
    win.sync_ui.bridge.progress.connect(lambda *_a: shown.append(win.sync_ui.badge.text))

    async def main():
        ui = win.sync_ui
        ui.start()
        try:
            await until(lambda: ui.badge.status and ui.badge.status["state"] == "synced", 30, "synced")
        finally:
            await ui.stop()

    run_loop(main())
    told = [t for t in shown if t.startswith("Syncing… uploading")]
    assert told and told[-1] == "Syncing… uploading 100%", shown


def test_gui_thread_never_stalls_during_a_sync_of_200_projects(fast, s3):
    from app.storage.sync import config, engine
    from tests.ui.stall import StallProbe

    win = fast
    lib = win.lib
    for i in range(200):
        lib.create_project(f"Project {i:03d}")
    engine.set_remote(lib.db, config.validate(s3.url, BUCKET, f"ui/{uuid.uuid4().hex[:10]}"))
    probe = StallProbe()

    async def main():
        ui = win.sync_ui
        await until(lambda: len(win.model.rows) == 200, what="cards")
        await asyncio.sleep(0.3)
        probe.start()
        ui.start()
        try:
            await until(lambda: ui.scheduler is not None and ui.scheduler.cycles >= 1 and
                        ui.badge.status["state"] == "synced", timeout=30, what="synced")
            last_result.append(ui.scheduler.last_result)
        finally:
            probe.stop()
            await ui.stop()

    last_result: list[dict] = []
    run_loop(main())
    assert engine.status(lib.db)["pending_changes"] == 0
    assert "syncing" in win.sync_ui.badge.history
    assert last_result[0]["pushed_changes"] >= 200, last_result[0]
    probe.check(work_s=0.060)  # the whole cycle ran while the probe was measuring


def test_a_clip_order_conflict_is_shown_as_the_clips_names_in_order():
    from app.ui.sync_ui import value_text

    c = {"field": "clips"}
    labels = {"a": "game.mp4, 0.0–8.0 s", "b": "game.mp4, 60.0–70.0 s"}
    assert value_text(c, ["b", "a", "gone"], labels) == \
        "1. game.mp4, 60.0–70.0 s; 2. game.mp4, 0.0–8.0 s; 3. a removed clip"
    assert value_text({"field": "name"}, "Saturday", labels) == "Saturday"
    assert value_text({"field": "name"}, None, labels) == "—"
