"""Smoke tests of the PyInstaller build (`make package` runs them with --run-package): the program in
dist/reelforge runs the CLI, a framing export through torch (the AI upscaler) and an overlay export,
and opens the GUI; the bundle holds the metadata the app reads and none of torch's test programs
or the test tools. The icon helper (packaging/make_icons.py) is tested in every run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist" / "reelforge"
SUFFIX = ".exe" if sys.platform == "win32" else ""
EXE = DIST / f"reelforge{SUFFIX}"
INTERNAL = DIST / "_internal"


@pytest.fixture
def built(request):
    if not request.config.getoption("--run-package"):
        pytest.skip("packaging smoke test: run `make package`")
    assert EXE.exists(), "dist/reelforge is missing: build it with `make package`"
    return EXE


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, REELFORGE_LOG_DIR=str(tmp_path / "logs"), QT_QPA_PLATFORM="offscreen")


def run(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr
    return r


def test_built_program_runs_headless(built, env, tmp_path):
    r = ok(run(env, "--version"))
    assert "reelforge" in r.stdout
    data = str(tmp_path / "data")
    pid = json.loads(ok(run(env, "--data-dir", data, "project", "create", "Packaged", "--json")).stdout)["id"]
    r = ok(run(env, "--data-dir", data, "project", "list", "--json"))
    assert [p["id"] for p in json.loads(r.stdout)] == [pid]


def decoded(path: Path) -> tuple[int, int, int, int]:
    """(width, height, video frames, audio samples) of a video, decoded with PyAV."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        size = (v.codec_context.width, v.codec_context.height)
        assert c.streams.audio, f"{path.name} has no audio stream"
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    return (*size, frames, samples)


def test_built_program_exports_with_the_ai_upscaler(built, env, tmp_path):
    """A framing export with the AI upscaler (the only path on a CPU machine that runs torch) and an
    overlay export with a spotlight, each decoded: size, pictures and sound."""
    torch = pytest.importorskip("torch")
    from app.pipeline.upscaler import SRVGGNetCompact
    from tests.media import make_video

    src = make_video(tmp_path / "game.mp4", width=160, height=90, duration=1.5, audio=True)
    torch.manual_seed(0)
    weights = tmp_path / "realesr-general-x4v3.pth"  # random weights of a small network, the real layout
    torch.save({"params": SRVGGNetCompact(num_feat=8, num_conv=2).state_dict()}, weights)
    data = str(tmp_path / "data")
    pid = ok(run(env, "--data-dir", data, "project", "create", "Packaged export")).stdout.strip()
    ok(run(env, "--data-dir", data, "clip", "add", pid, str(src)))
    doc = tmp_path / "doc.json"
    region = {"start": 0.2, "end": 1.2, "keyframes": [{"time": 0.2, "x": 45, "y": 80, "rx": 12, "ry": 24}]}
    doc.write_text(json.dumps({"export_settings": {"width": 90, "height": 160, "upscaler": "ai"},
                               "overlay": {"regions": [region]}}), encoding="utf-8")
    ok(run(env, "--data-dir", data, "project", "apply", pid, str(doc)))

    r = run(env, "--data-dir", data, "export", "framing", pid, "--json", "--device", "cpu", timeout=300)
    assert r.returncode != 0 and "weights file" in r.stderr  # the AI upscaler was asked for
    for kind, extra in (("framing", ["--device", "cpu", "--ai-weights", str(weights)]), ("overlay", [])):
        job = json.loads(ok(run(env, "--data-dir", data, "export", kind, pid, "--json", *extra, timeout=300)).stdout)
        assert job["status"] == "complete", job
        width, height, frames, samples = decoded(Path(job["output"]))
        assert (width, height) == (90, 160) and frames == 45 and samples > 48000, (kind, frames, samples)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_bundle_has_the_metadata_the_app_reads(built):
    """importlib.metadata finds torch's version in the bundle (the About dialog's "torch 2.x"), and
    the main libraries' versions, the same as in this environment."""
    found = {_norm(d.metadata["Name"]): d.version for d in importlib.metadata.distributions(path=[str(INTERNAL)])}
    for name in ("torch", "av", "PySide6_Essentials", "SQLAlchemy", "alembic", "boto3"):
        assert found.get(_norm(name)) == importlib.metadata.version(name), name


def test_bundle_leaves_out_tests_and_test_tools(built):
    torch_dir = INTERNAL / "torch"
    assert (torch_dir / "lib").is_dir() and not (torch_dir / "test").exists()
    if (torch_dir / "bin").exists():
        extra = [p.name for p in (torch_dir / "bin").iterdir()
                 if p.name not in ("torch_shm_manager", "torch_shm_manager.exe") and p.suffix != ".dll"]
        assert not extra
    if sys.platform != "win32":
        assert (torch_dir / "bin" / "torch_shm_manager").is_file()  # `import torch` looks for it
    test_libs = [p.name for p in (torch_dir / "lib").iterdir()
                 if re.search(r"_test\.|backend_with_compiler|aoti_custom_ops", p.name)]
    assert not test_libs
    from PyInstaller.archive.readers import pkg_archive_contents

    modules = set(pkg_archive_contents(str(EXE)))
    assert {"app.cli", "torch", "alembic.command"} <= modules
    test_tools = sorted(m for m in modules if m.split(".")[0] in {"_pytest", "pytest", "pygments", "hypothesis", "moto"}
                        or m.startswith(("alembic.testing", "sqlalchemy.testing")))
    assert not test_tools, test_tools[:10]
    assert not [p.name for p in INTERNAL.glob("*.dist-info") if p.name.split("-")[0].lower() in {"hypothesis", "pytest"}]


@pytest.mark.parametrize("name", ["reelforge", "reelforge-gui"])
def test_gui_starts(built, env, tmp_path, name):
    """With no command the program opens the GUI (offscreen here) and keeps running; reelforge-gui
    (Windows and macOS: no console) is the same program."""
    exe = DIST / f"{name}{SUFFIX}"
    if not exe.exists():
        pytest.skip(f"{exe.name} is built on Windows and macOS only")
    proc = subprocess.Popen([str(exe), "--data-dir", str(tmp_path / "data")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        code = None  # still running: what a GUI does
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert code is None, f"the GUI ended with {code}: {err[-3000:]}"
    log = tmp_path / "logs" / "reelforge.log"
    assert "Traceback" not in err and "Traceback" not in (log.read_text("utf-8") if log.exists() else "")


def test_icons_are_made_from_the_svg(tmp_path, qapp):
    """packaging/make_icons.py (the spec runs it on Windows and macOS): every size reads back."""
    from PySide6.QtGui import QImageReader

    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "make_icons.py"),
                        str(ROOT / "resources" / "icons" / "reelforge.svg"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name, sizes in (("reelforge.ico", [16, 20, 24, 32, 40, 48, 64, 128, 256]),
                        ("reelforge.icns", [16, 32, 64, 128, 256, 512, 1024, 32, 64, 256, 512])):
        reader = QImageReader(str(tmp_path / name))
        got = []
        for i in range(reader.imageCount()):
            reader.jumpToImage(i)
            img = reader.read()
            assert not img.isNull(), (name, i, reader.errorString())
            assert img.pixelColor(img.width() // 2, img.height() - 1).alpha() == 0  # the rounded corner's outside
            assert img.pixelColor(img.width() // 4, img.height() // 4).alpha() == 255
            got.append(img.width())
        assert got == sizes, name
