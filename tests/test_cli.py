"""The command-line contract of CLI.md, through the real entry point in a child process."""

from __future__ import annotations

import copy
import json
import os
import sys
import uuid

import pytest

from tests.media import make_audio_only, make_video, truncate

LIST_KEYS = {"id", "name", "aspect_ratio", "status", "progress", "clip_count", "has_working_video",
             "has_final_video", "updated_at"}


def ok(r):
    assert r.returncode == 0, r.stderr
    return r


def usage_error(r, words: str = ""):
    assert r.returncode == 2, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert words.lower() in last.lower(), last
    return last


def make_project(cli, name="Saturday final", aspect=None):
    args = ["project", "create", name, "--json"] + (["--aspect", aspect] if aspect else [])
    return json.loads(ok(cli(*args)).stdout)["id"]


def show(cli, pid):
    return json.loads(ok(cli("project", "show", pid, "--json")).stdout)


def test_version(cli):
    r = ok(cli("--version"))
    assert "0.1.0" in r.stdout


def test_create_list_show_delete(cli):
    pid = make_project(cli)
    uuid.UUID(pid)
    other = make_project(cli, "Cup", "16:9")
    rows = json.loads(ok(cli("project", "list", "--json")).stdout)
    assert {r["id"] for r in rows} == {pid, other}
    row = next(r for r in rows if r["id"] == pid)
    assert LIST_KEYS <= set(row)
    assert row | {"updated_at": None} == row | {
        "name": "Saturday final", "aspect_ratio": "9:16", "status": "not_started", "progress": None,
        "clip_count": 0, "has_working_video": False, "has_final_video": False, "updated_at": None}
    assert "+00:00" in row["updated_at"]
    doc = show(cli, other)
    assert doc["aspect_ratio"] == "16:9"
    assert doc["export_settings"] == {"width": 1920, "height": 1080, "fps": 30.0, "crf": 20,
                                      "preset": "veryfast", "upscaler": "lanczos"}
    assert doc["transition"] == {"type": "cut", "duration": 0.5}
    assert doc["overlay"]["regions"] == [] and doc["working_video"] is None and doc["final_video"] is None
    ok(cli("project", "delete", pid))
    assert [r["id"] for r in json.loads(ok(cli("project", "list", "--json")).stdout)] == [other]
    usage_error(cli("project", "show", pid), "no project")
    usage_error(cli("project", "delete", pid), "no project")


def test_plain_create_prints_the_id_and_json_is_one_document(cli):
    r = ok(cli("project", "create", "Plain"))
    uuid.UUID(r.stdout.strip())
    r = ok(cli("project", "list", "--json"))
    assert isinstance(json.loads(r.stdout), list)
    assert r.stderr == ""


@pytest.mark.parametrize("args, words", [
    (["project", "create", "X", "--aspect", "2:1"], "invalid choice"),
    (["project", "create", ""], "name"),
    (["project", "bogus"], "invalid choice"),
    (["clip", "remove", "no-such-clip"], "no clip"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_exit_2(cli, args, words):
    usage_error(cli(*args), words)


def test_an_unusable_data_directory_is_told_in_one_line(tmp_path):
    from tests.conftest import run_cli

    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    usage_error(run_cli("project", "list", data_dir=a_file), "is a file, not a folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "reelforge.db").write_bytes(b"these are not the database's bytes" * 200)
    r = run_cli("project", "list", data_dir=broken)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: the database in '{broken}' cannot be opened: file is not a database")
    assert (broken / "reelforge.db").read_bytes() == b"these are not the database's bytes" * 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland display variables")
def test_the_window_without_a_display_is_refused_in_one_line(tmp_path):
    import subprocess

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "app", "--data-dir", str(tmp_path / "data")], env=env, cwd=str(ROOT),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: no display to open the window on")


def test_clip_add_and_remove(cli, tmp_path):
    src = make_video(tmp_path / "game.mp4", duration=3.0, audio=True)
    pid = make_project(cli)
    cid = json.loads(ok(cli("clip", "add", pid, str(src), "--start", "0.5", "--end", "2.5", "--json")).stdout)["id"]
    second = ok(cli("clip", "add", pid, str(src))).stdout.strip()
    doc = show(cli, pid)
    assert [c["id"] for c in doc["clips"]] == [cid, second]
    c = doc["clips"][0]
    assert (c["source_start"], c["source_end"]) == (0.5, 2.5)
    assert c["trim"] == {"start": 0.0, "end": 2.0}
    assert c["segments"] == [{"start": 0.0, "end": 2.0, "speed": 1.0}]
    assert c["media"]["width"] == 320 and c["media"]["height"] == 180 and c["media"]["has_audio"] is True
    assert c["media"]["fps"] == pytest.approx(30.0)
    assert doc["clips"][1]["source_end"] == pytest.approx(3.0, abs=0.05)
    # stored once, and the project survives the original being deleted
    stored = list((tmp_path / "data").rglob("*.mp4"))
    assert len(stored) == 1
    src.unlink()
    assert show(cli, pid)["clips"][0]["media"]["local"] is True
    ok(cli("clip", "remove", cid))
    assert [c["id"] for c in show(cli, pid)["clips"]] == [second]
    rows = json.loads(ok(cli("project", "list", "--json")).stdout)
    assert rows[0]["clip_count"] == 1


def test_bad_media_changes_nothing(cli, tmp_path):
    pid = make_project(cli)
    good = make_video(tmp_path / "good.mp4", duration=1.0)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n" * 20)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 200)
    audio = make_audio_only(tmp_path / "song.m4a")
    cut = truncate(good, tmp_path / "cut.mp4", 0.5)
    cases = {
        str(tmp_path / "missing.mp4"): "does not exist",
        str(tmp_path): "directory",
        str(empty): "empty",
        str(pdf): "not a video",
        str(garbage): "",
        str(audio): "audio",
        str(cut): "",
    }
    for path, words in cases.items():
        usage_error(cli("clip", "add", pid, path), words)
    usage_error(cli("clip", "add", pid, str(good), "--start", "5"), "start")
    usage_error(cli("clip", "add", pid, str(good), "--start", "0.5", "--end", "0.2"), "end")
    usage_error(cli("clip", "add", pid, str(good), "--start", "0", "--end", "1e-9"), "shorter than one frame")
    usage_error(cli("clip", "add", pid, str(tmp_path / ("x" * 300 + ".mp4"))), "File name too long")
    for bad in ("nan", "inf", "-inf"):
        usage_error(cli("clip", "add", pid, str(good), "--start", "0.5", "--end", bad), "end")
        usage_error(cli("clip", "add", pid, str(good), "--start", bad), "start")
    r = cli("clip", "add", pid, str(tmp_path / "second\nhalf.mp4"))  # a name with a newline in it
    assert usage_error(r, "does not exist").endswith("second\\nhalf.mp4' does not exist")
    assert r.stderr.count("\n") == 1
    usage_error(cli("clip", "add", "no-such-project", str(good)), "no project")
    assert show(cli, pid)["clips"] == []
    assert not list((tmp_path / "data").rglob("*.mp4")), "nothing stored for rejected input"


@pytest.fixture
def project_with_clip(cli, tmp_path):
    src = make_video(tmp_path / "wide.mp4", width=640, height=360, duration=4.0, audio=True)
    pid = make_project(cli)
    cid = ok(cli("clip", "add", pid, str(src))).stdout.strip()
    cid2 = ok(cli("clip", "add", pid, str(src), "--start", "1", "--end", "3")).stdout.strip()
    return pid, cid, cid2


def apply(cli, pid, doc):
    return cli("project", "apply", pid, "-", stdin=json.dumps(doc))


def test_apply_names_the_keys_it_ignores(cli, project_with_clip):
    """A misspelt edit is applied as nothing: it used to be dropped without a word. The document
    as shown (its read-only fields included) draws no warning."""
    pid, cid, cid2 = project_with_clip
    doc = show(cli, pid)
    r = apply(cli, pid, doc)
    assert r.returncode == 0 and r.stderr == ""
    before = show(cli, pid)
    doc["nmae"] = "Typo"
    doc["clips"][0]["crop_keyframe"] = []
    doc["export_settings"]["bitrate"] = 8000
    r = apply(cli, pid, doc)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ("warning: ignored unknown fields: nmae, clips.0.crop_keyframe, "
                                "export_settings.bitrate")
    assert show(cli, pid) == before  # nothing else in the document changed


def test_apply_round_trip(cli, project_with_clip):
    pid, cid, cid2 = project_with_clip
    doc = show(cli, pid)
    doc["name"] = "Renamed"
    doc["clips"] = [doc["clips"][1], doc["clips"][0]]  # reorder
    c = doc["clips"][1]
    c["trim"] = {"start": 0.5, "end": 3.5}
    c["segments"] = [{"start": 0.0, "end": 2.0, "speed": 1.0}, {"start": 2.0, "end": 4.0, "speed": 0.5}]
    c["rotation"] = 5.0
    c["crop_keyframes"] = [{"time": 2.0, "x": 300, "y": 0, "width": 203, "height": 360},
                           {"time": 0.0, "x": 100, "y": 0, "width": 202, "height": 360}]
    c["audio"] = False
    doc["transition"] = {"type": "dissolve", "duration": 0.75}
    doc["export_settings"]["crf"] = 23
    doc["overlay"] = {"settings": {"color": "#00ff00", "dim": 0.5},
                      "regions": [{"start": 1.0, "end": 2.0,
                                   "keyframes": [{"time": 1.0, "x": 540, "y": 900, "rx": 80, "ry": 160}]}]}
    ok(apply(cli, pid, doc))
    new = show(cli, pid)
    assert new["name"] == "Renamed"
    assert [x["id"] for x in new["clips"]] == [cid2, cid]
    c = new["clips"][1]
    assert c["trim"] == {"start": 0.5, "end": 3.5} and c["rotation"] == 5.0 and c["audio"] is False
    assert [k["time"] for k in c["crop_keyframes"]] == [0.0, 2.0]  # kept sorted
    assert new["transition"] == {"type": "dissolve", "duration": 0.75}
    assert new["export_settings"]["crf"] == 23
    assert new["overlay"]["settings"]["color"] == "#00FF00" and new["overlay"]["settings"]["dim"] == 0.5
    (region,) = new["overlay"]["regions"]
    uuid.UUID(region["id"])
    assert new["status"] == "in_framing"
    # a region kept by id is updated; one left out is deleted
    ok(apply(cli, pid, {"overlay": {"regions": [dict(region, end=2.5)]}}))
    assert show(cli, pid)["overlay"]["regions"][0]["end"] == 2.5
    ok(apply(cli, pid, {"overlay": {"regions": []}}))
    assert show(cli, pid)["overlay"]["regions"] == []


def test_apply_leaves_out_fields_untouched(cli, project_with_clip):
    pid, *_ = project_with_clip
    before = show(cli, pid)
    ok(apply(cli, pid, {"name": "Only the name"}))
    after = show(cli, pid)
    assert after["name"] == "Only the name"
    for key in ("clips", "transition", "export_settings", "overlay"):
        assert after[key] == before[key]


def test_apply_aspect_change_refits_keyframes(cli, project_with_clip):
    pid, cid, _ = project_with_clip
    ok(apply(cli, pid, {"clips": [{"id": cid, "crop_keyframes": [
        {"time": 0, "x": 100, "y": 0, "width": 202, "height": 360}]}, {"id": project_with_clip[2]}]}))
    ok(apply(cli, pid, {"aspect_ratio": "1:1"}))
    doc = show(cli, pid)
    (k,) = doc["clips"][0]["crop_keyframes"]
    assert (k["width"], k["height"]) == (360, 360)
    assert k["x"] + k["width"] / 2 == pytest.approx(201, abs=1)
    assert doc["export_settings"]["width"] == doc["export_settings"]["height"]



def test_the_shown_document_with_only_its_ratio_changed_applies_and_refits(cli, project_with_clip):
    """`project show`, change "aspect_ratio", `project apply`: the natural edit. The keyframes
    and export size the document restates as shown are refitted as if left out; keyframes or a
    size written for the new ratio are taken as given, and a wrong one is still refused."""
    pid, cid, other = project_with_clip
    ok(apply(cli, pid, {"clips": [{"id": cid, "crop_keyframes": [
        {"time": 0, "x": 100, "y": 0, "width": 202, "height": 360},
        {"time": 1, "x": 20, "y": 0, "width": 202, "height": 360}]}, {"id": other}]}))
    doc = show(cli, pid)
    doc["aspect_ratio"] = "16:9"
    ok(apply(cli, pid, doc))
    after = show(cli, pid)
    assert after["aspect_ratio"] == "16:9"
    assert (after["export_settings"]["width"], after["export_settings"]["height"]) == (1920, 1080)
    keys = after["clips"][0]["crop_keyframes"]
    assert [(k["width"], k["height"]) for k in keys] == [(640, 360)] * 2  # the whole 640x360 frame

    mine = dict(copy.deepcopy(after), aspect_ratio="1:1", export_settings=dict(after["export_settings"], width=720, height=720))
    mine["clips"][0] = dict(mine["clips"][0], crop_keyframes=[{"time": 0, "x": 10, "y": 0, "width": 300, "height": 300}])
    ok(apply(cli, pid, mine))
    got = show(cli, pid)
    assert got["clips"][0]["crop_keyframes"] == [{"time": 0.0, "x": 10, "y": 0, "width": 300, "height": 300}]
    assert (got["export_settings"]["width"], got["export_settings"]["height"]) == (720, 720)

    bad = dict(copy.deepcopy(got), aspect_ratio="9:16")
    bad["clips"][0] = dict(bad["clips"][0], crop_keyframes=[{"time": 0, "x": 10, "y": 0, "width": 300, "height": 200}])
    usage_error(apply(cli, pid, bad), "aspect ratio")
    assert show(cli, pid) == got


INVALID = [
    ({"aspect_ratio": "2:3"}, "aspect_ratio"),
    ({"name": ""}, "name"),
    ({"transition": {"type": "wipe"}}, "transition"),
    ({"export_settings": {"crf": 99}}, "crf"),
    ({"export_settings": {"width": 1081}}, "width"),
    ({"export_settings": {"preset": "warp"}}, "preset"),
    ({"export_settings": {"crf": "20"}}, "crf: must be a number"),
    ({"export_settings": {"fps": True}}, "fps: must be a number"),
    ({"export_settings": {"upscaler": "magic"}}, "upscaler"),
    ({"overlay": {"settings": {"color": "yellow"}}}, "color"),
    ({"overlay": {"settings": {"dim": 1.5}}}, "dim"),
    ({"overlay": {"regions": [{"start": 1, "end": 1.2, "keyframes": [
        {"time": 1, "x": 1, "y": 1, "rx": 5, "ry": 5}]}]}}, "0.5"),
    ({"overlay": {"regions": [
        {"start": 1, "end": 3, "keyframes": [{"time": 1, "x": 1, "y": 1, "rx": 5, "ry": 5}]},
        {"start": 2, "end": 4, "keyframes": [{"time": 2, "x": 1, "y": 1, "rx": 5, "ry": 5}]}]}}, "overlap"),
    ({"overlay": {"regions": [{"id": "not-a-region", "start": 1, "end": 3, "keyframes": [
        {"time": 1, "x": 1, "y": 1, "rx": 5, "ry": 5}]}]}}, "unknown region"),
    ({"overlay": {"regions": [{"start": 1, "end": 3, "keyframes": []}]}}, "keyframes"),
    ("not an object", "object"),
]


@pytest.mark.parametrize("bad, words", INVALID)
def test_invalid_document_changes_nothing(cli, project_with_clip, bad, words):
    pid, *_ = project_with_clip
    before = show(cli, pid)
    usage_error(apply(cli, pid, bad), words)
    assert show(cli, pid) == before


def _clip_doc(pid_cid, **fields):
    pid, cid, cid2 = pid_cid
    return {"clips": [dict({"id": cid}, **fields), {"id": cid2}]}


CLIP_INVALID = [
    ({"trim": {"start": 2, "end": 1}}, "trim"),
    ({"trim": {"start": 0, "end": 99}}, "trim"),
    ({"trim": {"start": 1.0, "end": 1.01}}, "less than one frame"),
    ({"segments": [{"start": 0, "end": 2, "speed": 1}]}, "segments"),
    ({"segments": [{"start": 0, "end": 2, "speed": 1}, {"start": 2.5, "end": 4, "speed": 1}]}, "segments"),
    ({"segments": [{"start": 0, "end": 4, "speed": 8}]}, "speed"),
    ({"segments": [{"start": 0, "end": 4, "speed": True}]}, "speed: must be a number"),
    ({"segments": [{"start": 0, "end": 4, "speed": "2"}]}, "speed: must be a number"),
    ({"crop_keyframes": [{"time": "0", "x": 0, "y": 0, "width": 202, "height": 360}]}, "time: must be a number"),
    ({"rotation": 45}, "rotation"),
    ({"audio": "yes"}, "audio"),
    ({"crop_keyframes": [{"time": 0, "x": 0, "y": 0, "width": 300, "height": 360}]}, "ratio"),
    ({"crop_keyframes": [{"time": 0, "x": 500, "y": 0, "width": 202, "height": 360}]}, "outside"),
    ({"crop_keyframes": [{"time": 9, "x": 0, "y": 0, "width": 202, "height": 360}]}, "after"),
    ({"crop_keyframes": [{"time": 1.0, "x": 0, "y": 0, "width": 202, "height": 360},
                         {"time": 1.01, "x": 0, "y": 0, "width": 202, "height": 360}]}, "one frame"),
    ({"crop_keyframes": [{"time": 0, "x": 0, "y": 0, "width": 8, "height": 8}]}, "crop_keyframes"),
]


@pytest.mark.parametrize("fields, words", CLIP_INVALID)
def test_invalid_clip_fields_change_nothing(cli, project_with_clip, fields, words):
    pid = project_with_clip[0]
    before = show(cli, pid)
    usage_error(apply(cli, pid, dict(_clip_doc(project_with_clip, **fields), name="changed too")), words)
    assert show(cli, pid) == before


def test_clips_must_name_exactly_the_projects_clips(cli, project_with_clip):
    pid, cid, cid2 = project_with_clip
    before = show(cli, pid)
    usage_error(apply(cli, pid, {"clips": [{"id": cid}]}), "missing")
    usage_error(apply(cli, pid, {"clips": [{"id": cid}, {"id": cid2}, {"id": "x"}]}), "unknown")
    usage_error(apply(cli, pid, {"clips": [{"id": cid}, {"id": cid}]}), "twice")
    assert show(cli, pid) == before


def test_apply_reads_a_file_and_rejects_bad_json(cli, project_with_clip, tmp_path):
    pid, *_ = project_with_clip
    f = tmp_path / "doc.json"
    f.write_text(json.dumps({"name": "From a file"}))
    ok(cli("project", "apply", pid, str(f)))
    assert show(cli, pid)["name"] == "From a file"
    f.write_text("{not json")
    usage_error(cli("project", "apply", pid, str(f)), "not valid JSON")
    usage_error(cli("project", "apply", pid, str(tmp_path / "nope.json")), "cannot read")
    before = show(cli, pid)
    f.write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")  # beyond the parser's depth
    usage_error(cli("project", "apply", pid, str(f)), "nested too deeply")
    f.write_text('{"name": ' + "9" * 5000 + "}")  # beyond Python's digits for an int
    usage_error(cli("project", "apply", pid, str(f)), "not valid JSON")
    assert show(cli, pid) == before


def test_pixels_and_frame_rates_print_as_whole_numbers_as_in_the_contract(cli, project_with_clip):
    """CLI.md's document shows ``"x": 656``, ``"fps": 30``, ``"stroke_width": 2``; times stay
    decimal numbers (``"time": 0.0``)."""
    pid, cid, cid2 = project_with_clip
    ok(apply(cli, pid, _clip_doc(project_with_clip, crop_keyframes=[
        {"time": 0, "x": 10, "y": 0, "width": 202, "height": 360},
        {"time": 1, "x": 10.5, "y": 0, "width": 202, "height": 360}])))
    text = cli("project", "show", pid, "--json").stdout
    assert '"x": 10,' in text and '"x": 10.5,' in text and '"time": 0.0,' in text
    assert '"width": 202,' in text and '"fps": 30,' in text and '"stroke_width": 2' in text
    doc = json.loads(text)
    ok(apply(cli, pid, doc))
    assert show(cli, pid) == doc  # the round trip is still a no-op


def test_a_reader_that_stops_early_is_not_an_error(data_dir):
    """`reelforge project list | head -1`: the pipe closes before the list is written."""
    import subprocess

    from tests.conftest import ROOT

    lib_script = ("import sys; sys.path.insert(0, sys.argv[1]); from app.services.library import open_library; "
                  "lib = open_library(sys.argv[2]); [lib.create_project(f'P{i}') for i in range(2000)]")
    subprocess.run([sys.executable, "-c", lib_script, str(ROOT), str(data_dir)], check=True)
    cmd = f"{sys.executable} -m app --data-dir '{data_dir}' project list | head -1"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=str(ROOT),
                       timeout=120)
    assert r.stdout.count("\n") == 1
    assert r.stderr == "" and r.returncode == 0, r.stderr
