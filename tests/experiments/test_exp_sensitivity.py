import math

import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results, trained_model

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import epochs_for_steps
from dlprobe.experiments.sensitivity import EXPERIMENT, Config
from dlprobe.measure.sensitivity import sensitivity

pytestmark = pytest.mark.xdist_group("sensitivity")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("sensitivity")
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    return run, load_results(run), cfg, data


def test_one_run_per_batch_size_and_seed(smoke_run):
    _, results, cfg, _ = smoke_run
    assert len(results["runs"]) == len(cfg.batch_sizes) * cfg.seeds


def test_at_least_five_approaches_up_to_the_full_batch(smoke_run):
    _, results, _, data = smoke_run
    for cfg in (EXPERIMENT.make_config("quick"), EXPERIMENT.make_config("full"), Config()):
        assert len(set(cfg.batch_sizes)) >= 5 and min(b for b in cfg.batch_sizes if b) == 8
        assert 0 in cfg.batch_sizes  # the full training set is one of the approaches
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    assert len(sizes) >= 5 and sizes[-1] == data.n_train


def test_every_batch_size_gets_the_same_step_budget(smoke_run):
    """Steps, not epochs, are fixed: within one epoch of the budget for every batch size."""
    _, results, cfg, data = smoke_run
    steps = cfg.budget.steps
    for r in results["runs"]:
        per_epoch = math.ceil(data.n_train / r["batch_size"])
        assert abs(r["steps"] - steps) <= per_epoch / 2 or r["epochs"] == 1
        assert r["epochs"] == epochs_for_steps(steps, r["batch_size"], data.n_train)
        assert r["steps"] == r["epochs"] * per_epoch


@pytest.mark.parametrize("setting", ["epochs", "eval_every_epochs", "batch_size"])
def test_training_length_and_batch_size_are_left_to_the_sweep(setting):
    """A TrainConfig value the sweep overrides would be silently ignored: it is refused."""
    with pytest.raises(DlprobeError, match=f"train.{setting} is set for every model"):
        EXPERIMENT.make_config("smoke", {setting: 3})


def test_sensitivity_does_not_depend_on_the_evaluation_batch_size(smoke_run):
    run, results, _, data = smoke_run
    n = results["sensitivity_examples"]
    x, y = data.x_test[:n], data.y_test[:n]
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


def test_loss_gradient_sensitivity_is_per_example_not_divided_by_n(smoke_run):
    """Brute force: the gradient of the SUM of per-example losses by the inputs has the
    per-example gradients as rows; their mean norm is the saved sensitivity."""
    run, results, _, data = smoke_run
    r = results["runs"][-1]
    model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
    n = results["sensitivity_examples"]
    x = data.x_test[:n].clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), data.y_test[:n], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    per_example = g.reshape(n, -1).norm(dim=1)
    assert r["sensitivity_loss_gradient"] == pytest.approx(per_example.mean().item(), rel=1e-5)
    assert r["sensitivity_loss_gradient"] > 10 * per_example.mean().item() / n


def test_measures_are_finite_and_sharpness_positive(smoke_run):
    _, results, _, _ = smoke_run
    for r in results["runs"]:
        assert r["sensitivity_loss_gradient"] > 0 and r["sensitivity_jacobian"] > 0
        assert 0 < r["sharpness"] < math.inf
