import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from exp_util import (
    assert_complete_run,
    assert_redraws,
    load_results,
    run_smoke,
    trained_model,
)

from dlprobe.experiments.base import config_from_dict
from dlprobe.experiments.classification import epochs_for_steps, load_classification
from dlprobe.experiments.sensitivity import PROFILES, Config
from dlprobe.measure.sensitivity import sensitivity

FIGURES = ["loss-sensitivity", "accuracy-sensitivity", "sensitivity-sharpness"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    run = run_smoke("sensitivity", tmp_path_factory.mktemp("runs"))
    results = load_results(run)
    cfg = config_from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    data = load_classification(cfg.dataset, cfg.train_subset, cfg.seed, "cpu")
    return run, results, cfg, data


def test_smoke_run_is_complete_and_redraws(smoke, tmp_path):
    run, results, cfg, _ = smoke
    assert_complete_run(run, FIGURES)
    assert len(results["runs"]) == len(cfg.batch_sizes) * cfg.seeds
    copy = tmp_path / "copy"  # redraw a copy: the other tests read the checkpoints
    shutil.copytree(run, copy)
    assert_redraws(copy)


def test_at_least_five_approaches_up_to_the_full_batch(smoke):
    _, results, _, data = smoke
    for cfg in (PROFILES["quick"], PROFILES["full"], Config()):
        assert len(set(cfg.batch_sizes)) >= 5 and min(b for b in cfg.batch_sizes if b) == 8
        assert 0 in cfg.batch_sizes  # the full training set is one of the approaches
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    assert len(sizes) >= 5 and sizes[-1] == data.n_train


def test_every_batch_size_gets_the_same_step_budget(smoke):
    """Steps, not epochs, are fixed: within one epoch of the budget for every batch size."""
    _, results, cfg, data = smoke
    for r in results["runs"]:
        per_epoch = math.ceil(data.n_train / r["batch_size"])
        assert abs(r["steps"] - cfg.steps) <= per_epoch / 2 or r["epochs"] == 1
        assert r["epochs"] == epochs_for_steps(cfg.steps, r["batch_size"], data.n_train)


def test_sensitivity_does_not_depend_on_the_evaluation_batch_size(smoke):
    run, results, _, data = smoke
    x, y = (
        data.x_test[: results["sensitivity_examples"]],
        data.y_test[: results["sensitivity_examples"]],
    )
    seen = set()
    for r in results["runs"]:
        if r["stage"] in seen:  # one seed per batch size
            continue
        seen.add(r["stage"])
        model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
        for definition, field in (
            ("loss-gradient", "sensitivity_loss_gradient"),
            ("jacobian", "sensitivity_jacobian"),
        ):
            values = [
                sensitivity(model, x, y, F.cross_entropy, definition, batch_size=b).mean
                for b in (7, x.shape[0])
            ]
            assert values[0] == pytest.approx(values[1], rel=1e-5)
            assert r[field] == pytest.approx(values[1], rel=1e-5)


def test_loss_gradient_sensitivity_is_per_example_not_divided_by_n(smoke):
    """Brute force: the gradient of the SUM of per-example losses by the inputs has the
    per-example gradients as rows; their mean norm is the saved sensitivity."""
    run, results, _, data = smoke
    r = results["runs"][-1]
    model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
    n = results["sensitivity_examples"]
    x = data.x_test[:n].clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), data.y_test[:n], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    per_example = g.reshape(n, -1).norm(dim=1)
    assert r["sensitivity_loss_gradient"] == pytest.approx(per_example.mean().item(), rel=1e-5)
    assert r["sensitivity_loss_gradient"] > 10 * per_example.mean().item() / n


def test_measures_are_finite_and_sharpness_positive(smoke):
    _, results, _, _ = smoke
    for r in results["runs"]:
        assert r["sensitivity_loss_gradient"] > 0 and r["sensitivity_jacobian"] > 0
        assert 0 < r["sharpness"] < math.inf
