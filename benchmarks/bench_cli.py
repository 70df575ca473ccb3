"""`reelforge project list --json` on 1,000 projects: whole-process wall time and the query.

Targets (issue 2): whole process <= 0.6 s on a 2-core machine, the query itself < 50 ms.
The reference measured in the same run is a bare `python -c pass` start-up, so the ratio
shows what Reelforge adds over the interpreter itself.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def populate(data_dir: Path, n: int = 1000) -> None:
    from app.services.library import Library

    lib = Library(data_dir)
    for i in range(n):
        lib.create_project(f"Game {i:04d}", ("9:16", "16:9", "1:1", "4:5")[i % 4])
    lib.close()


def _wall(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t


def run(quick: bool = False) -> dict:
    reps = 5 if quick else 15
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        populate(data)
        env = dict(os.environ, REELFORGE_LOG_DIR=str(Path(d) / "logs"))
        cli = [sys.executable, "-m", "app", "--data-dir", str(data), "project", "list", "--json"]
        bare = [sys.executable, "-c", "pass"]
        _wall(cli, env)  # warm the OS cache
        ours, ref = [], []
        for _ in range(reps):  # alternate, so drift hits both alike
            ours.append(_wall(cli, env))
            ref.append(_wall(bare, env))
        from app.services.library import Library

        lib = Library(data)
        q = []
        for _ in range(reps):
            t = time.perf_counter()
            rows = lib.list_projects()
            q.append(time.perf_counter() - t)
        lib.close()
        assert len(rows) == 1000
    result = {
        "projects": 1000,
        "process_median_s": round(statistics.median(ours), 3),
        "process_max_s": round(max(ours), 3),
        "python_startup_median_s": round(statistics.median(ref), 3),
        "ratio_vs_bare_python": round(statistics.median(ours) / statistics.median(ref), 2),
        "query_median_ms": round(statistics.median(q) * 1000, 1),
        "target_process_s": 0.6,
        "target_query_ms": 50,
    }
    for k, v in result.items():
        print(f"  {k}: {v}")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
