"""Every registered experiment's smoke profile: a complete run folder, a report that
redraws from results.json alone, and (on a machine like one the pins were made on: see
``exp_util.machine_key``) the same headline numbers and observations as the pinned ones."""

from __future__ import annotations

import json
import math

import pytest
from exp_util import PINS, assert_complete_run, assert_redraws, machine_key

from dlprobe.experiments.kit import registry


def _close(a, b, path: str) -> None:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a} != {b}"
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (
            math.isnan(a) and math.isnan(b)
        ), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    "experiment_id", [pytest.param(e, marks=pytest.mark.xdist_group(e)) for e in registry()]
)
def test_smoke_run_is_complete_redraws_and_matches_its_pins(experiment_id, smoke):
    run = smoke(experiment_id)
    summary = json.loads((run / "summary.json").read_text())
    assert_complete_run(run, summary["figures"])
    assert summary["observations"], "every experiment says something about its results"
    assert_redraws(run)
    machines = json.loads(PINS.read_text())["machines"]
    pins = machines.get(machine_key(), {})
    if experiment_id not in pins:
        pytest.skip(
            f"no pins for {experiment_id} on this machine ({machine_key()}); pinned on: "
            f"{'; '.join(machines)}. tests/experiments/update_pins.py makes them"
        )
    pinned = pins[experiment_id]
    assert list(summary["summary"]) == list(pinned["summary"])
    for key, value in pinned["summary"].items():
        _close(summary["summary"][key], value, key)
    assert summary["observations"] == pinned["observations"]
