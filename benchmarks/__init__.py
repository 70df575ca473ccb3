"""Benchmarks: `make bench` (python -m benchmarks). Speed as ratios against a reference run
in the same process, alternating runs; absolute times on shared machines are noise."""
