"""Run every benchmark: python -m benchmarks [--quick] [NAME ...]."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHES = ["bench_cli", "bench_import", "bench_framing", "bench_overlay", "bench_splice", "bench_memory", "bench_sync", "bench_ui", "bench_playback"]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("names", nargs="*", default=BENCHES, help="e.g. bench_ui or ui")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    results = {}
    for name in (n if n.startswith("bench_") else f"bench_{n}" for n in args.names):
        mod = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        results[name] = mod.run(quick=args.quick)
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
