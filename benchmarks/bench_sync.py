"""Sync cost grows with the change, not the database (SYNC.md 8), on a real S3 endpoint (moto) on
loopback, through a byte-counting proxy.

    python benchmarks/bench_sync.py [--quick]

``run(quick)`` builds a data directory of 1,000 projects, syncs it, then measures:

- one edited field: bytes sent to the remote by the next sync (payload, and everything on the
  wire through the proxy: HTTP heads of every request included), target <= 16 KB; and the time
  from the local commit to the change being readable on the remote, target <= 2 s;
- a new device bootstrapping all 1,000 projects (snapshot + batches), target <= 10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")

from app.services.library import Library  # noqa: E402
from app.storage.models import ExportSettings, OverlaySettings, Project, Transition, new_id  # noqa: E402
from app.storage.sync import config, engine, schema  # noqa: E402
from tests.sync.servers import FaultProxy, MotoServer  # noqa: E402

N_PROJECTS = 1000
TARGET_BYTES = 16 * 1024
TARGET_VISIBLE_S = 2.0
TARGET_BOOTSTRAP_S = 10.0
BUCKET = "bench-sync"


def _populate(lib: Library, n: int) -> list[str]:
    """n projects as Library.create_project makes them, in one transaction (stamped, outboxed)."""
    ids = []
    with lib.db.write() as s:  # two flushes in all (stamping scans the session at each)
        projects = [Project(id=new_id(), name=f"Project {i:04d}", aspect_ratio="9:16") for i in range(n)]
        s.add_all(projects)
        s.flush()
        for p in projects:
            s.add_all([Transition(project_id=p.id), ExportSettings(project_id=p.id, width=1080, height=1920),
                       OverlaySettings(project_id=p.id)])
            ids.append(p.id)
    return ids


def run(quick: bool = False) -> dict:
    reps = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = MotoServer()
    server.make_bucket(BUCKET)
    proxy = FaultProxy(server.port)
    try:
        cfg = config.validate(proxy.url, BUCKET, f"bench/{uuid.uuid4().hex[:8]}")
        a = Library(work / "a")
        engine.set_remote(a.db, cfg)
        ids = _populate(a, N_PROJECTS)
        t = time.perf_counter()
        first = engine.SyncEngine.for_db(a.db, a.media).run_cycle(fetch_media=False)
        initial_s = time.perf_counter() - t
        assert first.ok, first.error

        edits = []
        for r in range(reps):
            proxy.reset_counters()
            t0 = time.perf_counter()
            a.rename_project(ids[N_PROJECTS // 2], f"renamed {r}")
            res = engine.SyncEngine.for_db(a.db, a.media).run_cycle(fetch_media=False)
            assert res.ok and res.pushed_changes == 1, res.error
            visible_s = time.perf_counter() - t0
            edits.append({"visible_s": visible_s, "payload_bytes": res.bytes_up, "wire_bytes_up": proxy.bytes_in,
                          "requests": res.requests})
        # the change is readable on the remote: its batch object is there
        eng = engine.SyncEngine.for_db(a.db, a.media)
        keys = [o["Key"] for k, o in eng.remote.list(schema.changes_dir(cfg.prefix, a.db.device_id)) if k == "key"]
        assert keys, "no change object on the remote"

        boots = []
        for r in range(reps):
            b = Library(work / f"b{r}")
            engine.set_remote(b.db, cfg)
            t0 = time.perf_counter()
            res = engine.SyncEngine.for_db(b.db, b.media).run_cycle(fetch_media=False)
            boot_s = time.perf_counter() - t0
            assert res.ok, res.error
            n = len(b.list_projects())
            assert n == N_PROJECTS, n
            boots.append({"seconds": boot_s, "bytes_down": res.bytes_down, "snapshot": bool(res.snapshot_applied),
                          "rows": res.applied_rows})
            b.close()
        # the same without the snapshot: every change batch replayed
        eng.remote.delete([schema.manifest_key(cfg.prefix)])
        c = Library(work / "c")
        engine.set_remote(c.db, cfg)
        t0 = time.perf_counter()
        res = engine.SyncEngine.for_db(c.db, c.media).run_cycle(fetch_media=False)
        batches_s = time.perf_counter() - t0
        assert res.ok and len(c.list_projects()) == N_PROJECTS, res.error
        c.close()
        a.close()
        visible = statistics.median(e["visible_s"] for e in edits)
        wire = max(e["wire_bytes_up"] for e in edits)
        boot = statistics.median(x["seconds"] for x in boots)
        return {
            "projects": N_PROJECTS,
            "initial_push_s": round(initial_s, 3),
            "edit_payload_bytes": max(e["payload_bytes"] for e in edits),
            "edit_wire_bytes_up": wire,
            "edit_requests": edits[0]["requests"],
            "edit_commit_to_remote_s": round(visible, 3),
            "bootstrap_s": round(boot, 3),
            "bootstrap_bytes_down": boots[0]["bytes_down"],
            "bootstrap_from_snapshot": boots[0]["snapshot"],
            "bootstrap_from_batches_s": round(batches_s, 3),
            "targets": {"edit_bytes": TARGET_BYTES, "visible_s": TARGET_VISIBLE_S, "bootstrap_s": TARGET_BOOTSTRAP_S},
            "ok": wire <= TARGET_BYTES and visible <= TARGET_VISIBLE_S and boot <= TARGET_BOOTSTRAP_S,
        }
    finally:
        proxy.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
