"""Divergence never breaks a run: for every registered experiment, at its smoke profile,
with every model diverging and with some diverging, the run ends with exit 0, draws every
figure of a normal run, and its report names the diverged runs."""

from __future__ import annotations

import json

import pytest
import torch
from exp_util import run_smoke

import dlprobe.train.trainer as trainer
from dlprobe.config import field_paths
from dlprobe.experiments.kit import registry
from dlprobe.train.backprop import SequentialBackprop


def _explode_everything(experiment_id: str) -> list[str]:
    """Settings that make every training of the experiment blow up: SGD at lr 1e8."""
    cfg = registry()[experiment_id].make_config("smoke")
    settings = []
    for path, _, _ in field_paths(cfg):
        if path.endswith(".lr"):
            settings += [f"--{path}", "1e8"]
        elif path == "lrs":  # flatness-interpolation's second pair: two distinct rates
            settings += ["--lrs", "1e8", "1e9"]
        elif path.endswith(".optimizer"):
            settings += [f"--{path}", "sgd"]
    return settings


def _check(run, normal_run) -> None:
    summary = json.loads((run / "summary.json").read_text())
    normal = json.loads((normal_run / "summary.json").read_text())
    assert summary["figures"] == normal["figures"], "every figure of a normal run is drawn"
    for name in summary["figures"]:
        assert (run / "figures" / f"{name}.png").stat().st_size > 2000
    text = " ".join(summary["observations"])
    assert "diverged" in text, summary["observations"]
    assert "diverged" in (run / "report.html").read_text()


IDS = [pytest.param(e, marks=pytest.mark.xdist_group(e)) for e in registry()]


@pytest.mark.parametrize("experiment_id", IDS)
def test_every_model_diverging_still_gives_a_complete_report(experiment_id, smoke, tmp_path):
    settings = _explode_everything(experiment_id)
    if not settings:
        pytest.skip(f"{experiment_id} trains nothing")
    normal = smoke(experiment_id)
    run = run_smoke(experiment_id, tmp_path, *settings)
    _check(run, normal)


@pytest.mark.parametrize("experiment_id", IDS)
def test_some_models_diverging_still_gives_a_complete_report(
    experiment_id, smoke, tmp_path, monkeypatch
):
    """Model 0 of every population gets a NaN loss from the third training step on (a
    population of one then diverges whole), on both roads of the trainer (autograd's and
    the written-out backward pass of plain MLPs)."""
    normal = smoke(experiment_id)  # the shared normal run, made before anything is poisoned
    calls = {"n": 0}

    def poison(losses):  # (K,)
        calls["n"] += 1
        if calls["n"] > 2:
            first = torch.arange(losses.shape[0], device=losses.device) == 0
            losses = torch.where(first, torch.full_like(losses, float("nan")), losses)
        return losses

    real, real_written = trainer.per_model_losses, SequentialBackprop.losses
    monkeypatch.setattr(trainer, "per_model_losses", lambda *a: poison(real(*a)))
    monkeypatch.setattr(SequentialBackprop, "losses", lambda *a: poison(real_written(*a)))
    run = run_smoke(experiment_id, tmp_path)
    _check(run, normal)
