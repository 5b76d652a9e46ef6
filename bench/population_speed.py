"""Benchmark: population training vs one-by-one and the torch.func recipe, a tiny
population's step time on the reference and default roads, and exact Hessians of 100 models.

The same as `dlprobe bench` (same options); from the repo root:
`.venv/bin/python bench/population_speed.py --sizes 1 4 16 64 --device auto --threads 1`.
"""

import sys

from dlprobe.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
