"""Test configuration: headless Qt, a throwaway log directory, and shared fixtures."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("REELFORGE_LOG_DIR", tempfile.mkdtemp(prefix="reelforge-logs-"))

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# CI replays the same examples every run (a red CI must be reproducible); locally hypothesis
# explores new ones each time.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def lib(data_dir: Path):
    from app.services.library import Library

    library = Library(data_dir)
    yield library
    library.close()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def sample_video(media_dir: Path) -> Path:
    from tests.media import make_video

    return make_video(media_dir / "game.mp4", width=320, height=180, fps=30, duration=4.0, audio=True)


def run_cli(*args: str, data_dir: Path, stdin: str | None = None, env: dict | None = None):
    """Run the real console entry point in a child process; returns CompletedProcess."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", "--data-dir", str(data_dir), *args],
        input=stdin, capture_output=True, text=True, cwd=str(ROOT), env=full_env, timeout=240,
    )


@pytest.fixture
def cli(data_dir: Path):
    def _run(*args: str, stdin: str | None = None, env: dict | None = None):
        return run_cli(*args, data_dir=data_dir, stdin=stdin, env=env)

    return _run


def pytest_addoption(parser):
    parser.addoption("--run-package", action="store_true", default=False,
                     help="run the smoke test of the PyInstaller build in dist/")
