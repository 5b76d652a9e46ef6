"""One smoke run per experiment and worker, shared by every test that reads it.

Tests of one experiment carry ``pytest.mark.xdist_group(ID)`` so that, under
``pytest -n 2 --dist loadgroup``, they run in the worker that holds that experiment's run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exp_util import run_smoke


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """``smoke(ID, *settings)``: the run folder of ``dlprobe run ID --profile smoke``."""
    cache: dict[tuple, Path] = {}

    def get(experiment_id: str, *settings: str) -> Path:
        key = (experiment_id, settings)
        if key not in cache:
            folder = tmp_path_factory.mktemp(experiment_id)
            cache[key] = run_smoke(experiment_id, folder, *settings)
        return cache[key]

    return get
