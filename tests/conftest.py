"""Shared test set-up: one thread per worker (CI has 2 cores and runs 2 workers), no display."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("DLPROBE_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _data_dir(tmp_path_factory, monkeypatch):
    """Datasets cache into a per-session folder, never the user's home."""
    cache = tmp_path_factory.getbasetemp() / "data-cache"
    monkeypatch.setenv("DLPROBE_DATA_DIR", str(cache))
