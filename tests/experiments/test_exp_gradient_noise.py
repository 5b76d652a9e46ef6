import json
from functools import partial

import pytest
import torch
from exp_util import load_results
from scipy.stats import fisher_exact

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.gradient_noise import EXPERIMENT, OUTCOMES
from dlprobe.models import MLP
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("gradient-noise")


@pytest.fixture(scope="module")
def run(smoke):
    return smoke("gradient-noise")


@pytest.fixture(scope="module")
def results(run):
    return load_results(run)


def test_every_arm_trains_the_same_seeds_from_the_same_weights(results):
    """Held equal: one population per η with the same seeds, so the same initial weights
    (the same loss before training) in every arm."""
    cfg = EXPERIMENT.make_config("smoke")
    by_eta = {}
    for r in results["runs"]:
        by_eta.setdefault(r["eta"], []).append(r)
    assert list(by_eta) == list(cfg.etas)
    first = [r["initial_train_loss"] for r in by_eta[0.0]]
    for rows in by_eta.values():
        assert [r["seed"] for r in rows] == list(range(cfg.seeds))
        assert [r["initial_train_loss"] for r in rows] == first


def test_the_noise_arms_train_differently_from_plain_training(results):
    """Same seeds, same minibatches: only the noise separates the arms after one epoch."""
    curves = results["curves"]
    for seed in range(EXPERIMENT.make_config("smoke").seeds):
        loss = {r["eta"]: r["train_loss"] for r in curves if r["seed"] == seed and r["epoch"] == 1}
        assert loss[0.3] != loss[0.0]


def test_outcomes_follow_the_stated_rules(results):
    target = EXPERIMENT.make_config("smoke").train.stop_at_train_accuracy
    for r in results["runs"]:
        assert r["outcome"] in OUTCOMES
        if r["outcome"] == "reached":
            assert r["train_accuracy"] >= target and r["epochs_to_target"] is not None
        elif r["outcome"] == "collapsed":
            assert r["predicted_classes"] == 1 and r["epochs_to_target"] is None
        elif r["outcome"] == "not converged":
            assert r["train_accuracy"] < target and r["predicted_classes"] > 1
        assert r["diverged"] == (r["outcome"] == "diverged")


def test_saved_models_give_the_reported_accuracy_and_classes(run, results):
    """Brute force: rebuild every trained model of the plain arm as an MLP from its
    checkpoint and predict the training set."""
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset)
    widths = [data.input_dim, *[cfg.width] * cfg.depth, data.output_dim]
    saved = load_checkpoint_file(run / "checkpoints" / "eta-0.done.pt")["population"]["params"]
    rows = [r for r in results["runs"] if r["eta"] == 0.0]
    for k, r in enumerate(rows):
        model = partial(MLP, widths, cfg.activation)()
        model.load_state_dict({n: p[k] for n, p in saved.items()})
        with torch.no_grad():
            pred = model(data.x_train).argmax(-1)
        assert (pred == data.y_train).float().mean().item() == pytest.approx(r["train_accuracy"])
        assert len(pred.unique()) == r["predicted_classes"]


def test_summary_and_table_count_the_runs_and_test_against_plain_training(run, results):
    summary = json.loads((run / "summary.json").read_text())
    n = EXPERIMENT.make_config("smoke").seeds
    reached = {
        eta: sum(r["outcome"] == "reached" for r in results["runs"] if r["eta"] == eta)
        for eta in EXPERIMENT.make_config("smoke").etas
    }
    for eta, k in reached.items():
        assert summary["summary"][f"η = {eta:g}: runs reaching the target"] == f"{k}/{n}"
    ((title, table),) = summary["tables"]
    for row in table:
        k = reached[row["η"]]
        p = fisher_exact([[k, n - k], [reached[0.0], n - reached[0.0]]])[1]
        assert row["Fisher p vs η = 0"] == pytest.approx(1.0 if row["η"] == 0 else p)
        assert sum(row[o] for o in OUTCOMES) == n


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"etas": (0.3, 1.0)}, "include 0"),
        ({"etas": (0.0, 0.0)}, "distinct"),
        ({"train.stop_at_train_accuracy": 0.0}, "success target"),
        ({"train.grad_noise_eta": 0.3}, "etas"),
    ],
)
def test_bad_settings_are_refused(changes, match):
    with pytest.raises(DlprobeError, match=match):
        EXPERIMENT.make_config("smoke", changes)
