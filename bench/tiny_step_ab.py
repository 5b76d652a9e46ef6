"""The tiny population's step time of two checkouts of dlprobe, timed alternately.

Issue 14 asked for the step time of 3 tiny MLPs (simulate-function's setting) to be at
least halved. ``dlprobe bench`` compares the default road with today's reference road,
which got faster too; this compares two versions of the code, each as its own process
(one run of 4 trainings of 200 full-batch Adam epochs, best of the last 3), ``rounds``
times in turn, and prints the median of the same-round ratios and the final losses
(equal when the numbers did not change). From the repo root:

    git worktree add /tmp/dlprobe-old 59028fd^   # the code when issue 14 was filed
    .venv/bin/python bench/tiny_step_ab.py /tmp/dlprobe-old/src src --rounds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ONE_RUN = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from dlprobe.data import function_dataset
from dlprobe.models import MLP
from dlprobe.train import Population, TrainConfig, train_population

torch.set_num_threads(2)
data = function_dataset("sinc", 256)
cfg = TrainConfig(lr=3e-3, epochs=200, batch_size=0, eval_every_epochs=10)
ms = []
for _ in range(4):
    pop = Population(lambda: MLP([1, 10, 18, 15, 4, 1], "relu"), range(3))
    hist = train_population(pop, data, cfg)
    ms.append(1e3 * hist.seconds / cfg.epochs)
print(json.dumps({"ms_per_step": min(ms[1:]), "loss": hist.train_loss[-1]}))
"""


def one_run(src: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, src], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{src}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the older checkout's src folder")
    parser.add_argument("new", help="the newer checkout's src folder")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for r in range(args.rounds):
        old, new = one_run(args.old), one_run(args.new)
        rows.append((old, new))
        print(f"round {r + 1}: {old['ms_per_step']:.2f} ms vs {new['ms_per_step']:.2f} ms")
    ratio = statistics.median(o["ms_per_step"] / n["ms_per_step"] for o, n in rows)
    print(f"median same-round ratio: {ratio:.2f}x; median step: "
          f"{statistics.median(o['ms_per_step'] for o, _ in rows):.2f} ms vs "
          f"{statistics.median(n['ms_per_step'] for _, n in rows):.2f} ms")  # fmt: skip
    same = all(o["loss"] == n["loss"] for o, n in rows)
    print(
        "final training losses " + ("identical" if same else "DIFFER") + f": {rows[-1][1]['loss']}"
    )


if __name__ == "__main__":
    main()
