"""Benchmark: population training vs one-by-one, and exact Hessians of 100 models.

Same as `dlprobe bench`; run from the repo root: `.venv/bin/python bench/population_speed.py`.
"""

import argparse
from pathlib import Path

from dlprobe.bench import run_bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("bench-results.json"))
    a = p.parse_args()
    run_bench(a.sizes, a.steps, a.out)
