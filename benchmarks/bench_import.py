"""Importing a large video into the media store, against plain file tools in the same run.

    python -m benchmarks import [--quick]

A 1 GiB MP4 (a short real H.264 video followed by a ``free`` box, which players skip; 256 MiB
with --quick) is imported with ``Library.add_clip`` into a fresh data directory on the same
file system, alternating with the references:

  cp          the ``cp`` program copying the file (or shutil.copyfile where there is no cp):
              the least any import that keeps its own copy can cost;
  cp + hash   ``cp``, then a SHA-256 pass over the file: a copy and its content address,
              one after the other, with the system's own tools.

Ours copies in the kernel (copy_file_range) and then hashes the stored copy, so its address is
the hash of the bytes it holds whatever happens to the original meanwhile.

Ratios are medians over the runs: ours / cp and ours / (cp + hash). Then the second clip from
the same unchanged file (``add_clip`` again), whose time is the probe alone: no read of the file.
Last, a copy of the video under another name (as when the same game is saved twice): one read
to recognise it, nothing written.
The page cache is warm for every candidate alike (the file was just written), so the figures
compare CPU and copy work, not the disk.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_source(path: Path, size: int) -> Path:
    from tests.media import make_video

    make_video(path, width=320, height=180, fps=30, duration=2.0)
    block = hashlib.sha256(b"reelforge").digest() * (1 << 15)  # 1 MiB, not all zeros (no sparse tricks)
    pad = size - path.stat().st_size
    with open(path, "ab") as f:
        f.write(struct.pack(">I4s", pad, b"free"))
        left = pad - 8
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return path


def time_ours(src: Path, root: Path, twin: Path) -> tuple[float, float, float]:
    from app.services.library import Library

    d = Path(tempfile.mkdtemp(prefix="data-", dir=root))
    lib = Library(d)
    try:
        pid = lib.create_project("Bench")
        t = time.perf_counter()
        lib.add_clip(pid, src, 0.0, 1.0)
        first = time.perf_counter() - t
        t = time.perf_counter()
        lib.add_clip(pid, src, 1.0, 2.0)
        second = time.perf_counter() - t
        t = time.perf_counter()
        lib.add_clip(pid, twin, 0.0, 1.0)
        copy = time.perf_counter() - t
    finally:
        lib.close()
        shutil.rmtree(d)
    return first, second, copy


def time_cp(src: Path, root: Path, then_hash: bool) -> float:
    dst = root / "copy.bin"
    cp = shutil.which("cp")
    t = time.perf_counter()
    if cp:
        subprocess.run([cp, str(src), str(dst)], check=True)
    else:
        shutil.copyfile(src, dst)
    if then_hash:
        h = hashlib.sha256()
        with open(src, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    took = time.perf_counter() - t
    dst.unlink()
    return took


def run(quick: bool = False) -> dict:
    size = (256 if quick else 1024) << 20
    reps = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = Path(tmp)
        src = make_source(root / "game.mp4", size)
        twin = Path(shutil.copyfile(src, root / "game (copy).mp4"))
        time_ours(src, root, twin)  # warm: imports, page cache
        ours, second, copy, cp, cp_hash = [], [], [], [], []
        for _ in range(reps):
            a, b, c = time_ours(src, root, twin)
            ours.append(a)
            second.append(b)
            copy.append(c)
            cp.append(time_cp(src, root, then_hash=False))
            cp_hash.append(time_cp(src, root, then_hash=True))
    m = {k: statistics.median(v) for k, v in (("ours", ours), ("second", second), ("copy", copy), ("cp", cp),
                                                       ("cp_hash", cp_hash))}
    result = {
        "size_mb": size / 1e6, "runs": reps, **{f"{k}_s": round(v, 3) for k, v in m.items()},
        "ours_over_cp": round(m["ours"] / m["cp"], 3),
        "ours_over_cp_then_hash": round(m["ours"] / m["cp_hash"], 3),
        "second_clip_over_first": round(m["second"] / m["ours"], 3),
        "copy_over_first": round(m["copy"] / m["ours"], 3),
    }
    print(report(result), flush=True)
    return result


def report(r: dict) -> str:
    return (f"import of {r['size_mb']:.0f} MB ({r['runs']} runs, medians): ours {r['ours_s']} s, cp {r['cp_s']} s, "
            f"cp then hash {r['cp_hash_s']} s -> ours / cp {r['ours_over_cp']}, ours / (cp + hash) "
            f"{r['ours_over_cp_then_hash']}; second clip from the same file {r['second_s']} s "
            f"({r['second_clip_over_first']} of the first); the same video again under another name "
            f"{r['copy_s']} s ({r['copy_over_first']} of the first)")


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
