import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results
from torch import nn

from dlprobe import DlprobeError
from dlprobe.config import from_dict, validate
from dlprobe.data import load_dataset
from dlprobe.experiments.batch_size import Config, gradient_noise, noise_slope, notes
from dlprobe.experiments.kit import mlp_population
from dlprobe.train import TrainConfig

pytestmark = pytest.mark.xdist_group("batch-size")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("batch-size")
    cfg = from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, load_results(run), cfg


def _loop_noise(model, x, y, batch_size, n_batches, seed):
    """E|g_B - g|^2 by .backward() and .grad, one minibatch at a time."""

    def grad(xb, yb):
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])

    full, gen, values = grad(x, y), torch.Generator().manual_seed(seed), []
    for _ in range(n_batches):
        idx = torch.randperm(x.shape[0], generator=gen)[:batch_size]
        values.append(float(((grad(x[idx], y[idx]) - full) ** 2).sum()))
    return sum(values) / n_batches


def _tiny(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    return model, torch.randn(n, 3, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_gradient_noise_equals_a_plain_loop_and_leaves_the_model_alone():
    model, x, y = _tiny()
    before = copy.deepcopy(model.state_dict())
    got = gradient_noise(model, x, y, 7, 20, seed=3)
    assert got == pytest.approx(_loop_noise(model, x, y, 7, 20, 3), rel=1e-6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert gradient_noise(model, x, y, 40, 5, seed=0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DlprobeError, match="batch_size"):
        gradient_noise(model, x, y, 41, 5, seed=0)


def test_gradient_noise_matches_sampling_without_replacement():
    """sigma^2/B (N-B)/(N-1), with sigma^2 the per-example gradients' variance by a loop."""
    model, x, y = _tiny(1, n=30)
    per_example = torch.stack([_grad(model, x[i : i + 1], y[i : i + 1]) for i in range(30)])
    full = _grad(model, x, y)
    sigma2 = float(((per_example - full) ** 2).sum(1).mean())
    for b in (2, 10, 25):
        predicted = sigma2 / b * (30 - b) / 29
        assert gradient_noise(model, x, y, b, 800, seed=b) == pytest.approx(predicted, rel=0.12)


def _grad(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


def test_noise_slope_is_minus_one_for_the_exact_law():
    n, rows = 1000, []
    for b in (4, 50, 600):
        rows.append({"phase": "initial", "seed": 0, "batch_size": b,
                     "gradient_variance": 3.0 / b * (n - b) / (n - 1)})  # fmt: skip
    rows.append({"phase": "initial", "seed": 1, "batch_size": 50, "gradient_variance": math.nan})
    fit = noise_slope({"setup": {"n_train": n}, "noise": rows}, "initial")
    assert fit[0] == pytest.approx(-1.0, abs=1e-9) and fit[1] == 3
    assert noise_slope({"setup": {"n_train": n}, "noise": rows[:1]}, "initial") is None


def test_initial_noise_points_equal_a_plain_loop(smoke_run):
    """The noise figure's initial-weights points of model 0, recomputed by .backward()."""
    _, results, cfg = smoke_run
    data = load_dataset(cfg.dataset)
    pop = mlp_population(results["setup"]["widths"], cfg.activation, cfg.seed, cfg.seeds, "cpu")
    model = pop.model(0)
    rows = [r for r in results["noise"] if r["phase"] == "initial" and r["seed"] == cfg.seed]
    assert [r["batch_size"] for r in rows] == [b for b in cfg.batch_sizes if 0 < b < data.n_train]
    for r in rows:
        b = r["batch_size"]
        expected = _loop_noise(model, data.x_train, data.y_train, b, cfg.noise_batches,
                               cfg.seed + b)  # fmt: skip
        assert r["gradient_variance"] == pytest.approx(expected, rel=1e-5)


def test_steps_and_table_follow_the_runs(smoke_run):
    _, results, cfg = smoke_run
    n = results["setup"]["n_train"]
    for r in results["runs"]:
        b = r["batch_size"] or n
        assert r["steps"] == cfg.train.epochs * math.ceil(n / b)
        assert r["seconds_per_epoch"] > 0
    (_, table), *_ = notes(results).tables
    for row in table:
        rs = [r for r in results["runs"] if (r["batch_size"] or n) == row["batch size"]]
        mean = sum(r["test_accuracy"] for r in rs) / len(rs)
        assert row["test accuracy (mean)"] == pytest.approx(mean)


def test_verdicts_follow_the_numbers(smoke_run):
    _, results, _ = smoke_run
    flipped = copy.deepcopy(results)
    for r in flipped["arms"]:
        r["train_loss"] = 1.0 if r["arm"] == "SGD" else 2.0
    verdicts = {f["claim"]: f["verdict"] for f in notes(flipped).fidelity}
    assert verdicts["momentum moves past flat regions faster"].startswith("differs")
    for r in flipped["arms"]:
        r["train_loss"] = 2.0 if r["arm"] == "SGD" else 1.0
    verdicts = {f["claim"]: f["verdict"] for f in notes(flipped).fidelity}
    assert verdicts["momentum moves past flat regions faster"] == "reproduced"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_sizes": (8, 0)}, "at least two batch sizes below"),
        ({"batch_sizes": (8, 8, 0)}, "distinct"),
        ({"batch_sizes": (8, 99999)}, "batch sizes must be in"),
        ({"train": TrainConfig(optimizer="adam")}, "must be sgd"),
    ],
)
def test_bad_settings_are_refused(change, message):
    with pytest.raises(DlprobeError, match=message):
        validate(Config(**change))
