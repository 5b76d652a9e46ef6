"""Rewrite pins/smoke-summaries.json from the smoke runs of every experiment.

Run it when a change is MEANT to change an experiment's numbers, and say why in the
commit: ``.venv/bin/python tests/experiments/update_pins.py [ID ...]``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from dlprobe.cli import main
from dlprobe.experiments.kit import registry

PINS = Path(__file__).parent / "pins" / "smoke-summaries.json"


def pin(ids: list[str]) -> None:
    os.environ["DLPROBE_NO_PROGRESS"] = "1"
    torch.set_num_threads(1)
    pins = json.loads(PINS.read_text()) if PINS.exists() else {"experiments": {}}
    pins["torch"] = torch.__version__
    with tempfile.TemporaryDirectory() as tmp:
        for eid in ids:
            out = Path(tmp) / eid
            args = ["run", eid, "--profile", "smoke", "--device", "cpu", "--quiet", "--out"]
            assert main([*args, str(out)]) == 0, eid
            summary = json.loads((out / "summary.json").read_text())
            pins["experiments"][eid] = {
                "summary": summary["summary"],
                "observations": summary["observations"],
            }
            print(f"pinned {eid}")
    PINS.write_text(json.dumps(pins, indent=1) + "\n")


if __name__ == "__main__":
    pin(sys.argv[1:] or list(registry()))
