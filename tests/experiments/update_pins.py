"""Rewrite this machine's pins in pins/smoke-summaries.json from the smoke runs of every
experiment (or of the IDs given); other machines' pins stay as they are.

Run it when a change is MEANT to change an experiment's numbers, and say why in the
commit, or to pin a new kind of machine (``exp_util.machine_key``):
``.venv/bin/python tests/experiments/update_pins.py [ID ...]``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from exp_util import PINS, machine_key

from dlprobe.cli import main
from dlprobe.experiments.kit import registry


def pin(ids: list[str]) -> None:
    os.environ["DLPROBE_NO_PROGRESS"] = "1"
    torch.set_num_threads(1)
    saved = json.loads(PINS.read_text()) if PINS.exists() else {"machines": {}}
    pins = saved["machines"].setdefault(machine_key(), {})
    with tempfile.TemporaryDirectory() as tmp:
        for eid in ids:
            out = Path(tmp) / eid
            args = ["run", eid, "--profile", "smoke", "--device", "cpu", "--quiet", "--out"]
            assert main([*args, str(out)]) == 0, eid
            summary = json.loads((out / "summary.json").read_text())
            pins[eid] = {
                "summary": summary["summary"],
                "observations": summary["observations"],
            }
            print(f"pinned {eid}")
    PINS.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    pin(sys.argv[1:] or list(registry()))
