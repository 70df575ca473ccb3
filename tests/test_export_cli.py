"""`reelforge export ...` through the real entry point: output, jobs, cancel from another process,
kill -9 mid-export, failures with their reasons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from tests.media import make_video

ROOT = Path(__file__).resolve().parent.parent


def ok(r):
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def project(cli, tmp_path):
    src = make_video(tmp_path / "game.mp4", width=320, height=180, duration=1.5, audio=True)
    pid = ok(cli("project", "create", "Export me")).stdout.strip()
    ok(cli("clip", "add", pid, str(src)))
    return pid


def test_export_framing_then_overlay(cli, project, tmp_path):
    r = ok(cli("export", "framing", project))
    out = Path(r.stdout.strip())
    assert out.is_file()
    assert "100%" in r.stderr and "error" not in r.stderr  # plain percentage lines off a terminal
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (1080, 1920)  # the project's export settings (9:16)
        assert c.streams.audio
    r = ok(cli("export", "overlay", project, "--json"))
    job = json.loads(r.stdout)
    assert job["status"] == "complete" and job["type"] == "overlay" and Path(job["output"]).is_file()
    jobs = json.loads(ok(cli("export", "list", "--json")).stdout)
    assert {j["type"] for j in jobs} == {"framing", "overlay"}
    for j in jobs:
        assert set(j) >= {"id", "project_id", "type", "status", "progress", "error", "output", "created_at",
                          "finished_at"}
        assert j["status"] == "complete" and j["progress"] == 100.0 and "+00:00" in j["finished_at"]
    rows = json.loads(ok(cli("project", "list", "--json")).stdout)
    assert rows[0]["status"] == "complete" and rows[0]["has_final_video"] is True
    # a copy under the project's name, for uploading: into a folder, or as a named file
    saved = Path(ok(cli("export", "save", project, str(tmp_path))).stdout.strip())
    assert saved.name == "Export me.mp4" and saved.read_bytes() == Path(job["output"]).read_bytes()
    named = tmp_path / "working copy.mp4"
    assert Path(ok(cli("export", "save", project, str(named), "--working")).stdout.strip()) == named
    assert named.read_bytes() == out.read_bytes()
    assert json.loads(ok(cli("export", "clear", "--json")).stdout) == {"cleared": 2}
    assert json.loads(ok(cli("export", "list", "--json")).stdout) == [] and out.is_file()


def test_cpu_overlay_export_draws_without_importing_torch(cli, project):
    """On a machine without a GPU the spotlight is drawn with numpy: `export overlay` does not
    pay torch's import (about 1.5 s), the same way `export framing` does not."""
    from app.pipeline.device import _cuda_may_exist, _mps_may_exist

    ok(cli("export", "framing", project))
    regions = [{"start": 0.2, "end": 1.3, "keyframes": [{"time": 0.2, "x": 540, "y": 900, "rx": 80, "ry": 160},
                                                       {"time": 1.2, "x": 600, "y": 1000, "rx": 80, "ry": 160}]}]
    ok(cli("project", "apply", project, "-", stdin=json.dumps({"overlay": {"regions": regions}})))
    r = ok(cli("export", "overlay", project, "--json", env={"PYTHONPROFILEIMPORTTIME": "1"}))
    job = json.loads(r.stdout)
    assert job["status"] == "complete"
    with av.open(job["output"]) as c:  # really re-encoded: the spotlight was drawn
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (1080, 1920)
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "app.pipeline.spotlight" in imported and "av" in imported  # the import log is there
    if not (_cuda_may_exist() or _mps_may_exist()):
        assert "torch" not in imported


def test_export_errors(cli, project, data_dir):
    r = cli("export", "overlay", project)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "working video" in r.stderr
    r = cli("export", "framing", "no-such-project")
    assert r.returncode == 2 and "no project" in r.stderr
    empty = ok(cli("project", "create", "Empty")).stdout.strip()
    r = cli("export", "framing", empty)
    assert r.returncode == 2 and "no clips" in r.stderr
    r = cli("export", "save", project, str(data_dir))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "error: the project has no final video yet: run `export overlay` first")
    r = cli("export", "cancel", "no-such-job")
    assert r.returncode == 2


def test_missing_media_fails_with_the_reason(cli, project, data_dir):
    for f in (data_dir / "media").rglob("*.mp4"):
        f.unlink()
    r = cli("export", "framing", project)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "missing" in r.stderr
    (job,) = json.loads(ok(cli("export", "list", "--json")).stdout)
    assert job["status"] == "failed" and "missing" in job["error"]
    assert json.loads(ok(cli("project", "list", "--json")).stdout)[0]["status"] == "not_started"


@pytest.fixture(scope="module")
def long_src(tmp_path_factory):
    """Long enough (1080p, several seconds) that an export is still running when we act on it."""
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", width=1920, height=1080, duration=12.0)


@pytest.fixture
def long_project(cli, long_src):
    src = long_src
    pid = ok(cli("project", "create", "Long")).stdout.strip()
    ok(cli("clip", "add", pid, str(src)))
    ok(cli("project", "apply", pid, "-", stdin=json.dumps({"export_settings": {"preset": "medium"}})))
    return pid


def start_export(data_dir, pid):
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "app", "--data-dir", str(data_dir), "export", "framing", pid],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_running(cli, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = json.loads(ok(cli("export", "list", "--json")).stdout)
        running = [j for j in jobs if j["status"] == "running" and j["progress"] > 0]
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("the export never started running")


def test_cancel_from_another_process(cli, long_project, data_dir):
    proc = start_export(data_dir, long_project)
    try:
        job = wait_running(cli)
        ok(cli("export", "cancel", job["id"]))
        returned = time.monotonic()
        rc = proc.wait(10)
        assert time.monotonic() - returned < 2.0
        assert rc == 1
        assert "cancel" in proc.stderr.read().strip().splitlines()[-1]
    finally:
        proc.kill()
    (job,) = json.loads(ok(cli("export", "list", "--json")).stdout)
    assert job["status"] == "cancelled" and job["output"] is None
    assert not list((data_dir / "tmp").glob("*")), "no partial file left in the data directory"
    assert json.loads(ok(cli("project", "list", "--json")).stdout)[0]["has_working_video"] is False


def test_kill_9_mid_export_is_interrupted_and_leaves_no_pointer(cli, long_project, data_dir):
    proc = start_export(data_dir, long_project)
    try:
        wait_running(cli)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    killed = time.monotonic()
    (job,) = json.loads(ok(cli("export", "list", "--json")).stdout)
    assert job["status"] == "interrupted"
    assert time.monotonic() - killed < 10
    row = json.loads(ok(cli("project", "list", "--json")).stdout)[0]
    assert row["status"] == "not_started" and row["has_working_video"] is False and row["progress"] is None
    assert not list((data_dir / "tmp").glob("*"))


def test_terminal_progress_bar_says_the_time_left(monkeypatch, capsys):
    from app.cli_export import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = Progress("export framing")
    t0 = bar.t0
    assert bar.eta(1.0, t0 + 5) == " " * 12  # too early to tell
    assert bar.eta(50.0, t0 + 1) == " " * 12
    assert bar.eta(25.0, t0 + 20).strip() == "1:00 left"
    bar(40.0)
    assert bar.eta(100.0, t0 + 30) == " " * 12  # done: the last figure is wiped
    assert "\rexport framing [############..................]  40%" in capsys.readouterr().err


def test_plain_progress_says_something_every_second_even_when_slow(monkeypatch, capsys):
    """Off a terminal: a line a second, the same percentage again while a slow export (a slow
    preset, a long 4K clip) stays on it, never more often, and the last at 100 %."""
    import app.cli_export as ce

    clock = [1000.0]
    monkeypatch.setattr(ce.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bar = ce.Progress("export framing", ticker=False)
    for step in range(41):  # 10 s at 0.25 s a call, 0.3 % a second
        clock[0] = 1000.0 + step * 0.25
        bar(step * 0.075)
    bar(100.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["export framing 0%"] * 3
    assert len(lines) == 12 and lines[-2] == "export framing 3%" and lines[-1] == "export framing 100%"


def test_plain_progress_keeps_saying_something_when_no_progress_comes_at_all(monkeypatch, capsys):
    """A stretch with no progress call (the encoder's flush, a slow seek) still gets a line at
    least every second: gaps of 1.01-1.22 s were seen when lines were written only from calls."""
    import app.cli_export as ce

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bar = ce.Progress("export framing")
    stamps = []
    write = sys.stderr.write
    monkeypatch.setattr(sys.stderr, "write", lambda text: (stamps.append(time.monotonic()), write(text))[1])
    bar(42.0)
    time.sleep(2.5)
    bar(100.0)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["export framing 42%"] * 3 and lines[-1] == "export framing 100%"
    assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) <= 1.0


def test_a_gpu_asked_for_by_name_that_is_not_there_is_refused(cli, project):
    from app.pipeline.device import pick_device

    if pick_device("cuda") == "cuda":
        pytest.skip("this machine has CUDA")
    r = cli("export", "framing", project, "--device", "cuda")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: --device cuda: no CUDA device is available here")
    assert json.loads(ok(cli("export", "list", "--json")).stdout) == []  # no job was made


def test_the_listed_duration_is_the_exported_one_with_a_dissolve(cli, project, tmp_path):
    """Two 1.5 s clips joined by a 0.5 s dissolve overlap: 2.5 s in the grid, as exported."""
    clip = json.loads(ok(cli("project", "show", project, "--json")).stdout)["clips"][0]["media"]
    doc = {"transition": {"type": "dissolve", "duration": 0.5},
           "export_settings": {"width": 144, "height": 256, "preset": "ultrafast"}}
    ok(cli("clip", "add", project, str(tmp_path / "game.mp4")))
    ok(cli("project", "apply", project, "-", stdin=json.dumps(doc)))
    [row] = json.loads(ok(cli("project", "list", "--json")).stdout)
    assert row["duration"] == pytest.approx(2 * clip["duration"] - 0.5, abs=1e-3)
    out = Path(ok(cli("export", "framing", project)).stdout.strip())
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        exported = float(v.frames / v.average_rate)
    assert abs(exported - row["duration"]) <= 1 / 30 + 1e-6
