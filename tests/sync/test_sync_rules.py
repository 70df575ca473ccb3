"""Edits that are valid on each device stay valid once merged: per-field last-write-wins can pair
a trim start from one device with a trim end from another, or a project's new aspect ratio with
crop keyframes drawn for the old one. The merged project must still open, export and round-trip
through its own document on every device, identically (SYNC.md 4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.service import ExportService, Settings
from app.limits import MIN_REGION
from app.services import editing
from app.services.errors import UserError
from app.storage.models import effective_region, effective_trim
from app.storage.sync import engine
from tests.sync.test_sync_converge import editable


def shared_clip(a, b, sample_video):
    pid = a.lib.create_project("Rules")
    cid = a.lib.add_clip(pid, sample_video, 0.0, 2.0)
    a.lib.apply(pid, {"export_settings": {"width": 144, "height": 256, "preset": "ultrafast"}})
    a.sync_ok()
    b.sync_ok(fetch_media=True)
    return pid, cid


def shared_region(a, b, sample_video, key_time: float):
    """A project with a working video and one region over [0.2, 2.0], on both devices."""
    pid, _ = shared_clip(a, b, sample_video)
    assert ExportService(a.lib, Settings(device="cpu")).export(pid, "framing")["status"] == "complete"
    key = {"x": 72, "y": 128, "rx": 20, "ry": 40}
    rid = editing.add_region(a.lib, pid, 0.2, 2.0, [{"time": key_time, **key}])
    a.sync_ok()
    b.sync_ok(fetch_media=True)
    return pid, rid, key


def exchange(first, second) -> None:
    """Both devices' changes through the remote to the other; they then hold the same data."""
    first.sync_ok()
    second.sync_ok()
    first.sync_ok()
    assert first.dump() == second.dump()


def trim(dev, pid):
    return dev.lib.document(pid)["clips"][0]["trim"]


def test_crossed_trims_keep_the_newer_edit_and_a_valid_clip(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid, cid = shared_clip(a, b, sample_video)
    b.lib.apply(pid, {"clips": [{"id": cid, "trim": {"start": 0.0, "end": 0.6}}]})  # older
    a.lib.apply(pid, {"clips": [{"id": cid, "trim": {"start": 1.5, "end": 2.0}}]})  # newer
    exchange(b, a)
    # A's start (the newer edit) is kept; B's end, which would put the end before it, yields
    assert trim(a, pid) == trim(b, pid) == {"start": 1.5, "end": 2.0}
    assert [p["duration"] for p in a.lib.list_projects() + b.lib.list_projects()] == [0.5, 0.5]  # the grid too
    assert editable(a.lib.document(pid)) == editable(b.lib.document(pid))
    for dev in (a, b):
        dev.lib.apply(pid, editable(dev.lib.document(pid)) | {"id": pid})  # its own document is valid
        job = ExportService(dev.lib, Settings(device="cpu")).export(pid, "framing")
        assert job["status"] == "complete", job


def test_an_edit_lost_to_a_crossed_trim_is_a_conflict_on_both_devices_and_can_be_restored(
        make_device, sample_video):
    """The two devices changed different fields (B the end, A the start), but the merge keeps
    only A's edit: B's end is lost, so it is a conflict like any other (SYNC.md 3), seen from
    both sides, and restoring it gives B's trim back everywhere."""
    a, b = make_device("a"), make_device("b")
    pid, cid = shared_clip(a, b, sample_video)
    b.lib.apply(pid, {"clips": [{"id": cid, "trim": {"start": 0.0, "end": 0.6}}]})  # older
    a.lib.apply(pid, {"clips": [{"id": cid, "trim": {"start": 1.5, "end": 2.0}}]})  # newer
    exchange(b, a)
    ca, cb = a.conflicts(), b.conflicts()
    assert [(c["table"], c["row_id"], c["field"], c["winner"]) for c in ca + cb] == [
        ("clip", cid, "trim.end", "local"), ("clip", cid, "trim.end", "remote")]
    assert (ca[0]["local_value"], ca[0]["remote_value"]) == (2.0, 0.6)  # A shows 2.0, B had 0.6
    assert (cb[0]["local_value"], cb[0]["remote_value"]) == (0.6, 2.0)
    exchange(a, b)
    assert len(a.conflicts()) == len(b.conflicts()) == 1  # recorded once on each side
    assert ExportService(b.lib, Settings(device="cpu")).export(pid, "framing")["status"] == "complete"
    assert b.lib.list_projects()[0]["status"] == "in_overlay"
    engine.restore_conflict(b.db, cb[0]["id"])
    # only the stamp of the stored end changed, yet the trim did: the working video is stale
    assert trim(b, pid) == {"start": 0.0, "end": 0.6}
    assert b.lib.list_projects()[0]["status"] == "in_framing"
    exchange(b, a)
    assert trim(a, pid) == trim(b, pid) == {"start": 0.0, "end": 0.6}
    assert a.lib.list_projects()[0]["status"] == "in_framing"


def test_crossed_region_ends_are_a_conflict(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid, rid, key = shared_region(a, b, sample_video, 0.8)
    a.lib.apply(pid, {"overlay": {"regions": [  # older: the end pulled back
        {"id": rid, "start": 0.2, "end": 0.9, "keyframes": [{"time": 0.8, **key}]}]}})
    b.lib.apply(pid, {"overlay": {"regions": [  # newer: the start pushed on past it
        {"id": rid, "start": 1.3, "end": 2.0, "keyframes": [{"time": 1.5, **key}]}]}})
    exchange(a, b)

    def ends(dev):
        return [(c["field"], c["winner"], c["local_value"], c["remote_value"])
                for c in dev.conflicts() if c["field"] in ("start", "end")]

    assert ends(a) == [("end", "remote", 0.9, 1.3 + MIN_REGION)]
    assert ends(b) == [("end", "local", 1.3 + MIN_REGION, 0.9)]
    assert ExportService(a.lib, Settings(device="cpu")).export(pid, "overlay")["status"] == "complete"
    assert a.lib.list_projects()[0]["status"] == "complete"
    engine.restore_conflict(a.db, next(c["id"] for c in a.conflicts() if c["field"] == "end"))
    [region] = a.lib.document(pid)["overlay"]["regions"]
    assert (region["start"], region["end"]) == pytest.approx((0.9 - MIN_REGION, 0.9))  # A's end is back
    assert a.lib.list_projects()[0]["status"] == "in_overlay"  # the final video no longer matches


def test_keyframes_drawn_for_the_old_aspect_ratio_follow_the_new_one(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid, cid = shared_clip(a, b, sample_video)
    a.lib.apply(pid, {"aspect_ratio": "1:1", "export_settings": {"width": 144, "height": 144}})
    # B, not knowing yet, draws a 9:16 box (the sample is 320x180: 101x180 is 9:16)
    b.lib.apply(pid, {"clips": [{"id": cid, "crop_keyframes": [
        {"time": 0.0, "x": 40, "y": 0, "width": 101, "height": 180},
        {"time": 1.0, "x": 200, "y": 0, "width": 101, "height": 180}]}]})
    exchange(a, b)
    for dev in (a, b):
        doc = dev.lib.document(pid)
        assert doc["aspect_ratio"] == "1:1"
        keys = doc["clips"][0]["crop_keyframes"]
        # square boxes around the drawn centres (90.5 and 250.5), inside the frame
        assert [(k["width"], k["height"]) for k in keys] == [(180.0, 180.0), (180.0, 180.0)]
        assert [k["x"] for k in keys] == [0.0, 140.0]
        dev.lib.apply(pid, editable(doc) | {"id": pid})  # its own document is valid
        job = ExportService(dev.lib, Settings(device="cpu")).export(pid, "framing")
        assert job["status"] == "complete", job


@settings(max_examples=300, deadline=None)
@given(st.floats(0.5, 30), st.data())
def test_the_trim_of_any_merge_of_valid_edits_is_valid_and_keeps_the_newer_edit(length, data):
    """Each device's trim is valid (0 <= start < end <= length); the merge takes each field from
    whichever device wrote it last. The trim derived from that is valid, and it is exactly the
    stored one when that is valid, else the newer field's value is kept."""
    # a valid trim's start is in [0, length) and its end in (0, length]: one from each device
    start = data.draw(st.floats(0, length, exclude_max=True))
    end = data.draw(st.floats(0, length, exclude_min=True))
    stamps = dict(zip(("trim_start", "trim_end"), data.draw(st.permutations(["0001", "0002"])), strict=True))
    got = effective_trim(start, end, length, stamps)
    assert 0.0 <= got[0] < got[1] <= length
    if start < end:
        assert got == (start, end)
    elif stamps["trim_start"] > stamps["trim_end"]:
        assert got == (start, length)
    else:
        assert got == (0.0, end)


def test_regions_added_on_two_devices_that_overlap_do_not_lock_the_editor(make_device, sample_video):
    a, b = make_device("a"), make_device("b")
    pid, cid = shared_clip(a, b, sample_video)
    key = {"x": 72, "y": 128, "rx": 20, "ry": 40}
    ra = editing.add_region(a.lib, pid, 0.5, 1.5, [{"time": 0.5, **key}])
    rb = editing.add_region(b.lib, pid, 1.0, 2.0, [{"time": 1.0, **key}])  # valid where it was drawn
    exchange(a, b)
    for dev in (a, b):
        doc = dev.lib.document(pid)
        assert [r["id"] for r in doc["overlay"]["regions"]] == [ra, rb]  # both kept, nothing lost
        # the editor sends its whole snapshot with every edit: an edit elsewhere still applies
        snap = editing.editable(doc)
        snap["clips"][0]["trim"] = {"start": 0.2, "end": 1.8}
        editing.apply_edit(dev.lib, pid, snap)
        assert dev.lib.document(pid)["clips"][0]["trim"] == {"start": 0.2, "end": 1.8}
        # one of the two can still be edited where it stays on the other
        snap["overlay"]["regions"][1]["end"] = 2.2
        editing.apply_edit(dev.lib, pid, snap)
        # but an overlap that an edit makes is refused, as before
        with pytest.raises(UserError, match="overlap"):
            editing.apply_edit(dev.lib, pid, snap | {"overlay": {"regions": [
                *snap["overlay"]["regions"], {"id": None, "start": 1.8, "end": 2.6, "keyframes": [{"time": 2.0, **key}]}]}})
        # resolving it by hand works, and it then stays resolved
        snap["overlay"]["regions"][0]["end"] = 1.0
        editing.apply_edit(dev.lib, pid, snap)
        snap["overlay"]["regions"][0]["end"] = 1.5
        with pytest.raises(UserError, match="overlap"):
            editing.apply_edit(dev.lib, pid, snap)


def test_a_region_whose_ends_crossed_in_a_merge_keeps_the_newer_edit(make_device, sample_video):
    """Start moved past the old end here, end moved before the old start there: once merged the
    stored start lies after the stored end. The region is shown, edited and rendered as the newer
    edit with the shortest region length, on both devices alike."""
    a, b = make_device("a"), make_device("b")
    pid, rid, key = shared_region(a, b, sample_video, 1.0)
    b.lib.apply(pid, {"overlay": {"regions": [  # older: the end pulled back before 1.3
        {"id": rid, "start": 0.2, "end": 0.9, "keyframes": [{"time": 0.5, **key}]}]}})
    a.lib.apply(pid, {"overlay": {"regions": [  # newer: the start pushed on past 0.9
        {"id": rid, "start": 1.3, "end": 2.0, "keyframes": [{"time": 1.5, **key}]}]}})
    exchange(b, a)
    for dev in (a, b):
        doc = dev.lib.document(pid)
        assert doc["overlay"]["regions"] == [
            {"id": rid, "start": 1.3, "end": 1.3 + MIN_REGION, "keyframes": [{"time": 1.5, **key}]}]
        dev.lib.apply(pid, editable(doc) | {"id": pid})  # its own document is valid
        job = ExportService(dev.lib, Settings(device="cpu")).export(pid, "overlay")
        assert job["status"] == "complete", job
    # the next edit of the region stores valid values again
    snap = editing.editable(a.lib.document(pid))
    snap["overlay"]["regions"][0]["end"] = 2.0
    editing.apply_edit(a.lib, pid, snap)
    exchange(a, b)
    assert [(r["start"], r["end"]) for r in b.lib.document(pid)["overlay"]["regions"]] == [(1.3, 2.0)]


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 60), st.floats(0, 60), st.lists(st.floats(0, 60), max_size=4), st.data())
def test_any_merged_region_is_at_least_the_shortest_length_with_its_keys_inside(start, end, times, data):
    stamps = dict(zip(("start", "end"), data.draw(st.permutations(["0001", "0002"])), strict=True))
    keys = [{"time": t} for t in times]
    lo, hi, kept = effective_region(start, end, keys, stamps)
    if start < end:
        assert (lo, hi, kept) == (start, end, keys)
        return
    assert 0.0 <= lo and hi - lo == pytest.approx(MIN_REGION)
    assert all(lo - 1e-6 <= k["time"] <= hi + 1e-6 for k in kept)
    assert (lo if stamps["start"] > stamps["end"] else hi) == (start if stamps["start"] > stamps["end"] else max(end, MIN_REGION))
