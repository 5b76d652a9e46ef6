import json
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import from_dict
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import RunContext
from dlprobe.experiments.regularization import (
    EXPERIMENT,
    Config,
    _train_setting,
    notes,
    settings,
    split,
)
from dlprobe.models import MLP
from dlprobe.train import History, Population, evaluate_population
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("regularization")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("regularization")
    cfg = from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, load_results(run), cfg


def _stage(run, label: str) -> tuple[History, dict]:
    saved = load_checkpoint_file(run / "checkpoints" / f"{label.replace(' ', '-')}.done.pt")
    return History.from_state(saved["history"]), saved["population"]


def test_validation_is_carved_from_the_training_split_and_the_test_split_is_kept():
    data = load_dataset("digits")
    cfg = Config(dataset="digits", validation=300, train_subset=500, seed=3)
    fit, x_test, y_test = split(data, cfg)
    assert (fit.n_train, fit.n_test) == (500, 300)
    assert torch.equal(x_test, data.x_test) and torch.equal(y_test, data.y_test)
    rows = {tuple(r.tolist()) for r in data.x_train.flatten(1)}
    train = {tuple(r.tolist()) for r in fit.x_train.flatten(1)}
    val = {tuple(r.tolist()) for r in fit.x_test.flatten(1)}
    assert train <= rows and val <= rows and not train & val
    again, _, _ = split(data, cfg)  # seeded
    assert torch.equal(again.x_test, fit.x_test)
    everything, _, _ = split(data, Config(dataset="digits", validation=300, train_subset=0))
    assert everything.n_train == data.n_train - 300


def test_early_stopped_parameters_are_those_of_the_lowest_validation_loss(smoke_run):
    """Each run's chosen epoch is the argmin of its validation curve, and its early-stopped
    test accuracy is that of the kept parameters on the test set."""
    run, results, cfg = smoke_run
    data = load_dataset(cfg.dataset)
    widths = results["widths"]
    for s in settings(cfg):
        hist, _ = _stage(run, s["setting"])
        rows = [r for r in results["final"] if r["setting"] == s["setting"]]
        dropout = s["strength"] if s["kind"] == "dropout" else 0.0
        pop = Population(partial(MLP, widths, cfg.activation, dropout=dropout), results["seeds"])
        pop.load_flat_params(hist.best_params)
        loss, acc = evaluate_population(pop, data.x_test, data.y_test, F.cross_entropy)
        for k, r in enumerate(rows):
            curve = [c["val_loss"] for c in results["curves"]
                     if (c["setting"], c["seed"]) == (s["setting"], r["seed"])]  # fmt: skip
            assert r["best_epoch"] == 1 + int(np.argmin(curve))  # evaluated after every epoch
            assert r["best_test_accuracy"] == pytest.approx(acc[k].item())
            assert r["best_test_loss"] == pytest.approx(loss[k].item(), rel=1e-5)
            assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])


def test_sparsity_and_histogram_count_the_final_weights(smoke_run):
    run, results, cfg = smoke_run
    for h in results["histograms"]:
        _, population = _stage(run, h["setting"])
        weights = torch.cat(
            [p.flatten(1) for n, p in population["params"].items() if n.endswith("weight")], 1
        )  # (K, W)
        assert sum(h["counts"]) == weights.numel()  # every weight of every run, clipped in
        rows = [r for r in results["final"] if r["setting"] == h["setting"]]
        for k, r in enumerate(rows):
            share = (weights[k].abs() < cfg.zero_below).float().mean().item()
            assert r["sparsity"] == pytest.approx(share)
            assert r["mean_abs_weight"] == pytest.approx(weights[k].abs().mean().item())


def test_each_setting_trains_with_its_own_penalty_or_dropout(tmp_path, monkeypatch):
    cfg = EXPERIMENT.make_config("smoke", {"train.epochs": 1, "l1": (0.003,), "l2": (0.02,)})
    data, x_test, y_test = split(load_dataset(cfg.dataset), cfg)
    ctx, seen = RunContext(tmp_path, torch.device("cpu"), quiet=True), {}
    real = RunContext.train

    def train(self, key, pop, data, train_cfg, **kw):
        seen[key] = (train_cfg, [m.p for m in pop.template.modules() if hasattr(m, "p")])
        return real(self, key, pop, data, train_cfg, **kw)

    monkeypatch.setattr(RunContext, "train", train)
    widths = [data.input_dim, *cfg.hidden, data.output_dim]
    for s in settings(cfg):
        part = _train_setting(cfg, ctx, s, data, (x_test, y_test), widths)
        assert {r["setting"] for r in part["final"]} == {s["setting"]}
    expected = {  # key: (weight decay, L1, dropout rates of the model)
        "none": (0.0, 0.0, []),
        "L2-0.02": (0.02, 0.0, []),
        "L1-0.003": (0.0, 0.003, []),
        "dropout-0.5": (0.0, 0.0, [0.5] * len(cfg.hidden)),
    }
    assert set(seen) == set(expected)
    for key, (wd, l1, rates) in expected.items():
        train_cfg, got_rates = seen[key]
        assert (train_cfg.weight_decay, train_cfg.l1_penalty, got_rates) == (wd, l1, rates)
        assert train_cfg.keep_best_test_loss and train_cfg.lr == cfg.train.lr


def test_diverged_runs_are_left_out_of_every_statistic(smoke_run):
    _, results, _ = smoke_run
    rows = [dict(r) for r in results["final"]]
    first = rows[0]
    first.update(diverged=True, diverged_at_epoch=1, diverged_reason="non-finite loss")
    for key in ("train_accuracy", "test_accuracy", "gap", "best_test_accuracy"):
        first[key] = math.nan
    out = notes({**results, "final": rows})
    table = out.tables[0][1]
    assert table[0]["runs"] == f"{len(results['seeds']) - 1} of {len(results['seeds'])}"
    assert any(f"setting {first['setting']}, seed {first['seed']}" in line
               for line in out.observations)  # fmt: skip
    assert "nan" not in json.dumps(out.summary).lower()


def test_bad_settings_are_refused():
    with pytest.raises(DlprobeError, match="must fit in"):
        EXPERIMENT.make_config("smoke", {"validation": 4000})
    with pytest.raises(DlprobeError, match="set penalties with l2 and l1"):
        EXPERIMENT.make_config("smoke", {"train.weight_decay": 0.1})
    with pytest.raises(DlprobeError, match="dropout"):
        EXPERIMENT.make_config("smoke", {"dropout": (1.0,)})
