import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import function_dataset
from dlprobe.experiments.simulated_annealing import EXPERIMENT, rastrigin
from dlprobe.measure._functional import unflatten
from dlprobe.models import MLP
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("simulated-annealing")


@pytest.fixture(scope="module")
def run(smoke):
    return smoke("simulated-annealing")


@pytest.fixture(scope="module")
def results(run):
    return load_results(run)


def test_every_start_of_every_function_ran_both_methods(results):
    cfg = EXPERIMENT.make_config("smoke")
    rows = results["function_runs"]
    for d in cfg.dims:
        for method in ("GD", "SA"):
            mine = [r for r in rows if (r["dims"], r["method"]) == (d, method)]
            assert [r["start"] for r in mine] == list(range(cfg.n_starts))
            assert all(len(r["x"]) == d for r in mine)


def test_global_basin_and_final_loss_are_what_the_final_points_say(results):
    for r in results["function_runs"]:
        x = torch.tensor(r["x"], dtype=torch.float64)
        assert r["loss"] == pytest.approx(float(rastrigin(x[None])[0]))
        assert r["global_basin"] == bool((x.abs() < 0.5).all())


def test_gradient_descent_ends_near_a_stationary_point_of_the_function(results):
    """GD with a stable step ends at a local minimum: its gradient there is tiny against
    the function's scale (20π ≈ 63 per coordinate)."""
    x = torch.tensor([r["x"] for r in results["function_runs"]
                      if r["method"] == "GD" and r["dims"] == 1], dtype=torch.float64)  # fmt: skip
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(rastrigin(x).sum(), x)
    assert g.abs().median() < 1e-3


def test_summary_shares_match_the_rows(run, results):
    summary = json.loads((run / "summary.json").read_text())["summary"]
    for d in EXPERIMENT.make_config("smoke").dims:
        rows = [r for r in results["function_runs"] if r["dims"] == d]
        shares = [
            np.mean([r["global_basin"] for r in rows if r["method"] == m]) for m in ("GD", "SA")
        ]
        key = f"Rastrigin {d}-D: share of starts ending in the global basin, GD / SA"
        assert summary[key] == pytest.approx(shares)


def test_acceptance_rates_are_shares_and_temperatures_fall(results):
    cfg = EXPERIMENT.make_config("smoke")
    problems = {}
    for r in results["acceptance"]:
        problems.setdefault(r["problem"], []).append(r)
        assert 0 <= r["p10"] <= r["mean"] <= 1 and r["p10"] <= r["p90"] <= 1
    assert set(problems) == {"Rastrigin 1-D", "Rastrigin 2-D", "network"}
    for name, rows in problems.items():
        t = [r["temperature"] for r in rows]
        assert len(rows) == cfg.windows and all(a > b for a, b in zip(t, t[1:], strict=False))
        chains = cfg.seeds if name == "network" else cfg.n_starts
        assert all(r["chains"] == chains for r in rows)
        a = cfg.network_annealing if name == "network" else cfg.function_annealing
        assert a.t_end <= t[-1] < t[0] <= a.t_start


def test_both_methods_start_the_network_from_the_same_weights_and_budget(results):
    """The loss curves begin at one loss per seed for GD and SA, and end at the budget:
    SA's last evaluation is GD's steps times the evaluations a gradient counts as."""
    cfg = EXPERIMENT.make_config("smoke")
    curves = results["curves"]
    for seed in range(cfg.seeds):
        gd = [r for r in curves if (r["method"], r["seed"]) == ("GD", seed)]
        sa = [r for r in curves if (r["method"], r["seed"]) == ("SA", seed)]
        assert gd[0]["evaluations"] == sa[0]["evaluations"] == 0
        assert gd[0]["loss"] == pytest.approx(sa[0]["loss"], rel=1e-5)
        budget = cfg.train.epochs * cfg.evaluations_per_gradient
        assert gd[-1]["evaluations"] == sa[-1]["evaluations"] == budget


def test_final_network_losses_are_those_of_the_saved_weights(run, results):
    """Brute force: rebuild each GD model and each SA chain as a plain MLP from the run's
    checkpoints and evaluate its MSE; it is the loss the rows report."""
    cfg = EXPERIMENT.make_config("smoke")
    data = function_dataset(cfg.function, cfg.n_points)
    widths = [int(w) for w in cfg.model.split("-")]
    gd = load_checkpoint_file(run / "checkpoints" / "gradient-descent.done.pt")
    sa = load_checkpoint_file(run / "checkpoints" / "annealing.done.pt")
    rows = {(r["method"], r["seed"]): r for r in results["network_runs"]}
    for k in range(cfg.seeds):
        for method in ("GD", "SA"):
            model = MLP(widths, cfg.activation)
            if method == "GD":
                state = {n: p[k] for n, p in gd["population"]["params"].items()}
            else:
                state = unflatten(model, sa["x"][k].float())
            model.load_state_dict(state)
            with torch.no_grad():
                loss = F.mse_loss(model(data.x_train), data.y_train).item()
            assert rows[method, k]["loss"] == pytest.approx(loss, rel=1e-4)


def test_notes_name_the_winner_per_problem_from_the_rows(run, results):
    obs = json.loads((run / "summary.json").read_text())["observations"]
    for d in EXPERIMENT.make_config("smoke").dims:
        rows = [r for r in results["function_runs"] if r["dims"] == d]
        g = sum(r["global_basin"] for r in rows if r["method"] == "GD")
        a = sum(r["global_basin"] for r in rows if r["method"] == "SA")
        n = len(rows) // 2
        assert any(f"{g} of {n} GD starts and {a} of {n} SA starts" in o for o in obs)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"train.batch_size": 8}, "full batch"),
        ({"network_annealing.t_end": 1.0}, "t_end"),
        ({"windows": 500}, "windows"),
        ({"dims": (3,)}, "dims"),
    ],
)
def test_bad_settings_are_refused(changes, match):
    with pytest.raises(DlprobeError, match=match):
        EXPERIMENT.make_config("smoke", changes)


def test_unpaired_network_runs_are_left_out_of_the_comparison():
    from dlprobe.experiments.simulated_annealing import _pairs

    runs = [
        {"method": "GD", "seed": 0, "loss": 0.1, "diverged": False},
        {"method": "GD", "seed": 1, "loss": math.nan, "diverged": True},
        {"method": "SA", "seed": 0, "loss": 0.2, "diverged": False},
        {"method": "SA", "seed": 1, "loss": 0.3, "diverged": False},
    ]
    assert _pairs({"network_runs": runs}) == [(0.1, 0.2)]
