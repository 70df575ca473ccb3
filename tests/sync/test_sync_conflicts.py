"""Never clobber a newer local commit, detect every conflict, deletes vs edits, skewed clocks,
restore and dismiss (SYNC.md 2, 3, 7, 21)."""

from __future__ import annotations

import pytest

from app.services.library import Library
from app.storage.sync import engine
from tests.sync.devices import clock

HOUR = 3600 * 1000


def shared_project(a, b, name="Saturday"):
    pid = a.lib.create_project(name)
    a.sync_ok()
    b.sync_ok()
    return pid


def one(conflicts: list[dict]) -> dict:
    assert len(conflicts) == 1, conflicts
    return conflicts[0]


def test_a_newer_offline_edit_survives_the_pull_and_wins_everywhere(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    b.lib.rename_project(pid, "B's name")
    b.sync_ok()
    a.lib.rename_project(pid, "A's name")  # later, offline: not pushed yet
    eng = a.engine()
    eng.pull()  # a pull alone: the older incoming value does not replace ours
    assert a.visible() == {pid: "A's name"}
    c = one(a.conflicts())
    assert (c["table"], c["row_id"], c["field"]) == ("project", pid, "name")
    assert (c["local_value"], c["remote_value"], c["winner"]) == ("A's name", "B's name", "local")
    a.sync_ok()
    b.sync_ok()
    assert a.visible() == b.visible() == {pid: "A's name"}
    cb = one(b.conflicts())
    assert (cb["local_value"], cb["remote_value"], cb["winner"]) == ("B's name", "A's name", "remote")
    assert len(a.conflicts()) == 1  # nothing new on A
    assert a.dump() == b.dump()


def test_follow_up_edits_are_not_conflicts(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    for i in range(3):
        b.lib.rename_project(pid, f"B{i}")
        b.sync_ok()
        a.sync_ok()
        a.lib.rename_project(pid, f"A{i}")
        a.sync_ok()
        b.sync_ok()
    assert a.visible() == b.visible() == {pid: "A2"}
    assert a.conflicts() == [] and b.conflicts() == []


def test_a_commit_made_while_a_pull_runs_survives(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    b.lib.rename_project(pid, "remote")
    b.sync_ok()

    def commit_meanwhile(keys):  # after the download, before the apply transaction
        a.lib.rename_project(pid, "committed during the pull")

    a.engine(hooks={"before_apply": commit_meanwhile}).pull()
    assert a.visible() == {pid: "committed during the pull"}
    a.sync_ok()
    b.sync_ok()
    assert b.visible() == {pid: "committed during the pull"}


def test_skewed_clocks_still_order_causal_edits(make_device, monkeypatch):
    a, b = make_device("a"), make_device("b")
    with clock(monkeypatch, +HOUR):
        pid = a.lib.create_project("ahead")
        a.sync_ok()
    with clock(monkeypatch, -HOUR):
        b.sync_ok()
        b.lib.rename_project(pid, "behind, but after seeing it")  # the HLC moved past A's stamps
        b.sync_ok()
    with clock(monkeypatch, +HOUR):
        a.sync_ok()
        assert a.visible() == {pid: "behind, but after seeing it"}
        a.lib.rename_project(pid, "ahead again")
        a.sync_ok()
    with clock(monkeypatch, -HOUR):
        b.sync_ok()
    assert a.visible() == b.visible() == {pid: "ahead again"}
    assert a.conflicts() == [] and b.conflicts() == []

    # concurrent offline edits: the clocks decide, and the loser is recorded on both sides
    with clock(monkeypatch, -HOUR):
        b.lib.rename_project(pid, "B offline")
    with clock(monkeypatch, +HOUR):
        a.lib.rename_project(pid, "A offline")
        a.sync_ok()
    with clock(monkeypatch, -HOUR):
        b.sync_ok()
    with clock(monkeypatch, +HOUR):
        a.sync_ok()
    assert a.visible() == b.visible() == {pid: "A offline"}
    assert one(a.conflicts())["winner"] == "local"
    assert one(b.conflicts())["remote_value"] == "A offline"


def test_an_edit_newer_than_a_delete_brings_the_project_back(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Contested")
    cid = a.lib.add_clip(pid, sample_video, 0.0, 1.0)
    a.sync_ok()
    b.sync_ok()
    a.lib.delete_project(pid)
    a.sync_ok()
    b.lib.rename_project(pid, "Still wanted")  # later, without having seen the delete
    b.sync_ok()
    a.sync_ok()
    b.sync_ok()
    assert a.visible() == b.visible() == {pid: "Still wanted"}
    doc = a.lib.document(pid)  # the rows deleted with it came back too
    assert [c["id"] for c in doc["clips"]] == [cid] and doc["export_settings"] is not None
    ca = one(a.conflicts())
    assert (ca["table"], ca["field"], ca["local_value"], ca["remote_value"], ca["winner"]) == \
        ("project", "deleted", True, False, "remote")
    cb = one(b.conflicts())
    assert (cb["field"], cb["local_value"], cb["remote_value"], cb["winner"]) == ("deleted", False, True, "local")
    assert a.dump() == b.dump()

    # restoring the losing side on A deletes it again: a normal edit that syncs
    engine.restore_conflict(a.db, ca["id"])
    assert a.visible() == {}
    assert a.conflicts() == []
    a.sync_ok()
    b.sync_ok()
    assert b.visible() == {} and a.dump() == b.dump()


def test_a_delete_newer_than_an_edit_wins_and_is_recorded(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b, "Old")
    b.lib.rename_project(pid, "edited before the delete")
    a.lib.delete_project(pid)  # later, without having seen the edit
    b.sync_ok()
    a.sync_ok()
    b.sync_ok()
    assert a.visible() == b.visible() == {}
    ca = one(a.conflicts())
    assert (ca["field"], ca["winner"], ca["local_value"]) == ("deleted", "local", True)
    cb = one(b.conflicts())
    assert (cb["field"], cb["winner"], cb["local_value"], cb["remote_value"]) == ("deleted", "remote", False, True)
    # B restores its side: the project comes back everywhere, with its name
    engine.restore_conflict(b.db, cb["id"])
    assert b.visible() == {pid: "edited before the delete"}
    b.sync_ok()
    a.sync_ok()
    assert a.visible() == {pid: "edited before the delete"}
    assert a.dump() == b.dump()


def test_a_restore_can_be_undone_and_both_sync(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    b.lib.rename_project(pid, "B's name")
    b.sync_ok()
    a.lib.rename_project(pid, "A's name")  # later: A wins
    a.sync_ok()
    b.sync_ok()
    cb = one(b.conflicts())
    engine.restore_conflict(b.db, cb["id"])
    assert b.visible() == {pid: "B's name"} and b.conflicts() == []
    with pytest.raises(engine.SyncUserError):
        engine.restore_conflict(b.db, cb["id"])  # not open any more
    engine.undo_restore(b.db, cb["id"])  # the winner is the newest edit again, the conflict open
    assert b.visible() == {pid: "A's name"} and one(b.conflicts())["id"] == cb["id"]
    with pytest.raises(engine.SyncUserError):
        engine.undo_restore(b.db, cb["id"])  # nothing restored to undo
    b.sync_ok()
    a.sync_ok()
    assert a.visible() == {pid: "A's name"} and a.dump() == b.dump()
    assert engine.conflict_project(b.db, cb["id"]) == pid


def test_undoing_a_restore_that_revived_a_row_deletes_it_again(make_device):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    b.lib.rename_project(pid, "B's name")
    b.sync_ok()
    a.lib.rename_project(pid, "A's name")  # later: A wins, B records the conflict
    a.sync_ok()
    b.sync_ok()
    cb = one(b.conflicts())
    b.lib.delete_project(pid)  # then B deletes the project
    engine.restore_conflict(b.db, cb["id"])  # restoring its name brings it back
    assert b.visible() == {pid: "B's name"}
    engine.undo_restore(b.db, cb["id"])  # the undo deletes it again, with the winning name
    assert b.visible() == {}
    b.lib.restore_project(pid)
    assert b.visible() == {pid: "A's name"}


def test_restore_and_dismiss_through_the_cli(make_device, run_sync_cli):
    a, b = make_device("a"), make_device("b")
    pid = shared_project(a, b)
    b.lib.rename_project(pid, "B wins? no")
    b.sync_ok()
    a.lib.rename_project(pid, "A wins")
    a.sync_ok()
    b.sync_ok()
    cid = one(b.conflicts())["id"]
    b.close()
    r = run_sync_cli(b, "sync", "restore", cid)
    assert r.returncode == 0, r.stderr
    r = run_sync_cli(b, "sync", "restore", cid)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    r = run_sync_cli(b, "sync", "run")
    assert r.returncode == 0, r.stderr
    a.sync_ok()
    assert a.visible() == {pid: "B wins? no"}
    # now A holds a conflict about its lost value; dismiss it
    c = one(a.conflicts())
    a.close()
    assert run_sync_cli(a, "sync", "dismiss", c["id"]).returncode == 0
    lib = Library(a.data_dir)
    try:
        assert engine.status(lib.db)["conflicts"] == []
    finally:
        lib.close()
    assert run_sync_cli(a, "sync", "dismiss", "no-such-id").returncode == 2


@pytest.mark.parametrize("field_doc", ["crop_keyframes", "trim"])
def test_clip_conflicts_are_named_as_in_the_document(make_device, sample_video, field_doc):
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Clips")
    cid = a.lib.add_clip(pid, sample_video, 0.0, 2.0)
    a.sync_ok()
    b.sync_ok()
    if field_doc == "crop_keyframes":
        edit_b = {"id": cid, "crop_keyframes": [{"time": 0.0, "x": 0, "y": 0, "width": 101, "height": 180}]}
        edit_a = {"id": cid, "crop_keyframes": [{"time": 0.0, "x": 50, "y": 0, "width": 101, "height": 180}]}
        want = "crop_keyframes"
    else:
        edit_b = {"id": cid, "trim": {"start": 0.5, "end": 2.0}}
        edit_a = {"id": cid, "trim": {"start": 0.25, "end": 2.0}}
        want = "trim.start"
    b.lib.apply(pid, {"clips": [edit_b]})
    b.sync_ok()
    a.lib.apply(pid, {"clips": [edit_a]})
    a.sync_ok()
    c = one(a.conflicts())
    assert (c["table"], c["row_id"], c["field"], c["winner"]) == ("clip", cid, want, "local")
    b.sync_ok()
    assert one(b.conflicts())["field"] == want
    assert a.dump() == b.dump()


def test_concurrent_reorders_keep_the_newer_order_whole_and_the_other_is_one_conflict(make_device, sample_video):
    """B moves the last clip first, A then swaps the first two, each offline. The newer order
    (A's) is shown on both, not a mix of both with two clips at one position; B's order is one
    conflict on the document's ``clips``, and restoring it puts B's order back everywhere."""
    a, b = make_device("a"), make_device("b")
    pid = a.lib.create_project("Order")
    x, y, z = (a.lib.add_clip(pid, sample_video, 0.0, 1.0) for _ in range(3))
    a.sync_ok()
    b.sync_ok()

    def order(dev):
        return [c["id"] for c in dev.lib.document(pid)["clips"]]

    def reorder(dev, ids):
        dev.lib.apply(pid, {"clips": [{"id": i} for i in ids]})
        assert order(dev) == ids

    reorder(b, [z, x, y])
    b.sync_ok()
    w = a.lib.add_clip(pid, sample_video, 0.0, 1.0)  # a clip B has not seen: listed in both orders
    reorder(a, [y, x, z, w])  # later
    a.engine().pull()  # B's order loses to A's not yet pushed one: the whole project is in A's conflict
    a.sync_ok()
    b.sync_ok()
    assert order(a) == order(b) == [y, x, z, w]
    for dev, winner in ((a, "local"), (b, "remote")):
        c = one(dev.conflicts())
        assert (c["table"], c["row_id"], c["field"], c["winner"]) == ("project", pid, "clips", winner)
        mine, theirs = ([y, x, z, w], [z, x, y, w]) if dev is a else ([z, x, y, w], [y, x, z, w])
        assert (c["local_value"], c["remote_value"]) == (mine, theirs)
    name = sample_video.name
    assert engine.clip_labels(b.db, [x, w]) == {x: f"{name}, 0.0–1.0 s", w: f"{name}, 0.0–1.0 s"}
    engine.restore_conflict(b.db, one(b.conflicts())["id"])
    assert order(b) == [z, x, y, w]
    b.sync_ok()
    a.sync_ok()
    assert order(a) == [z, x, y, w]
    assert a.dump() == b.dump()
