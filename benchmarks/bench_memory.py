"""Peak memory of a 2-minute 1080p framing export, whole process (`reelforge export framing`).

Target (issue 3): at most 1 GB — exports stream frames, they never hold the video.
The reference in the same run is the peak of `reelforge project list` (the interpreter,
SQLAlchemy and the app's imports), so the figure above it is what the export itself holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _peak_child(cmd: list[str], env: dict) -> tuple[int, float]:
    """Run cmd in a fresh process; return (exit code, its peak RSS in MB)."""
    code = (
        "import resource, subprocess, sys, json\n"
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    rc, kb = json.loads(out.stdout)
    scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss: KB on Linux, bytes on macOS
    return rc, kb * scale / 1e6


def run(quick: bool = False) -> dict:
    from tests.media import make_video

    seconds = 20.0 if quick else 120.0
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = make_video(d / "game.mp4", width=1920, height=1080, fps=30, duration=seconds, gop=60)
        env = dict(os.environ, REELFORGE_LOG_DIR=str(d / "logs"))
        base = [sys.executable, "-m", "app", "--data-dir", str(d / "data")]
        pid = subprocess.run([*base, "project", "create", "Memory"], capture_output=True, text=True,
                             env=env, cwd=ROOT, check=True).stdout.strip()
        subprocess.run([*base, "clip", "add", pid, str(src)], capture_output=True, env=env, cwd=ROOT, check=True)
        subprocess.run([*base, "project", "apply", pid, "-"], input=json.dumps({"export_settings": {
            "preset": "ultrafast"}}), text=True, capture_output=True, env=env, cwd=ROOT, check=True)
        rc_ref, ref_mb = _peak_child([*base, "project", "list", "--json"], env)
        rc, peak_mb = _peak_child([*base, "export", "framing", pid], env)
        assert rc == 0 and rc_ref == 0, "export failed"
    result = {
        "source": f"{seconds:g} s 1080p30 H.264 -> 1080x1920",
        "export_peak_rss_mb": round(peak_mb, 1),
        "cli_baseline_peak_rss_mb": round(ref_mb, 1),
        "target_mb": 1000,
        "within_target": peak_mb <= 1000,
    }
    for k, v in result.items():
        print(f"  {k}: {v}")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
