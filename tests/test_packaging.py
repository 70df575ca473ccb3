"""Smoke test of the PyInstaller build (`make package` runs it with --run-package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / "dist" / "reelforge" / ("reelforge.exe" if sys.platform == "win32" else "reelforge")


@pytest.fixture
def built(request):
    if not request.config.getoption("--run-package"):
        pytest.skip("packaging smoke test: run `make package`")
    assert EXE.exists(), "dist/reelforge is missing: build it with `make package`"
    return EXE


def test_built_program_runs_headless(built, tmp_path):
    env = dict(os.environ, REELFORGE_LOG_DIR=str(tmp_path / "logs"), QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([str(built), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "reelforge" in r.stdout
    data = str(tmp_path / "data")
    r = subprocess.run([str(built), "--data-dir", data, "project", "create", "Packaged", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    pid = json.loads(r.stdout)["id"]
    r = subprocess.run([str(built), "--data-dir", data, "project", "list", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [p["id"] for p in json.loads(r.stdout)] == [pid]
