import pytest
import torch
from exp_util import load_results

from dlprobe.data import function_dataset
from dlprobe.experiments.kit.outcomes import (
    COLLAPSED,
    FINE,
    NOT_CONVERGED,
    collapse_probe,
    outcome,
)
from dlprobe.experiments.simulate_function import EXPERIMENT, Config, notes
from dlprobe.models import MLP, count_params
from dlprobe.train import Population

pytestmark = pytest.mark.xdist_group("simulate-function")


def test_smoke_run_has_every_model_curve_seed_and_outcome(smoke):
    results = load_results(smoke("simulate-function"))
    labels = {m["label"] for m in results["models"]}
    assert {r["model"] for r in results["curves"]} == labels
    assert {r["model"] for r in results["predictions"]} == labels
    assert {r["seed"] for r in results["final"]} == {0, 1}
    for r in results["final"]:
        # the saved outcome is the one its saved numbers give
        fitted = r["loss_share"] is not None and r["loss_share"] < results["fit_loss_share"]
        assert r["outcome"] == outcome(r, fitted)
        assert r["loss_share"] == pytest.approx(r["train_loss"] / r["constant_loss"])


def _dead_relu_mlp(widths: list[int], bias: float) -> MLP:
    """An MLP whose first layer maps every input in [0, 1] below zero: all ReLUs are dead,
    so it outputs the last layer's bias, as a deep narrow net that collapsed in training."""
    model = MLP(widths, "relu", init="kaiming")
    with torch.no_grad():
        first, last = model.linears[0], model.linears[-1]
        first.weight.fill_(-1.0)
        first.bias.fill_(-0.5)
        last.bias.fill_(bias)
    return model


def test_a_collapsed_model_is_detected_and_a_trained_one_is_not():
    data = function_dataset("sinc", 64)
    widths = [1, 5, 10, 10, 5, 1]
    mean = data.y_train.mean().item()
    torch.manual_seed(0)
    alive = MLP(widths, "relu", init="kaiming")
    pop = Population.from_models([_dead_relu_mlp(widths, mean), alive])
    probes = collapse_probe(pop, data.x_train, data.y_train)
    variance = data.y_train.var(unbiased=False).item()
    assert probes[0]["constant_loss"] == pytest.approx(variance)
    assert probes[0]["output_spread"] == pytest.approx(0.0, abs=1e-6)
    assert probes[1]["output_spread"] > 0.05
    # the collapsed model's loss is the target's variance: it predicts the mean
    dead = {"diverged": False, "train_loss": variance, **probes[0]}
    assert outcome(dead) == COLLAPSED
    assert outcome(dead, converged=False) == COLLAPSED  # collapse is named before "not fitted"
    fitted = {"diverged": False, "train_loss": 0.01 * variance, **probes[1]}
    assert outcome(fitted) == FINE
    assert outcome(fitted, converged=False) == NOT_CONVERGED
    # a varying output whose loss is still high is not collapsed either
    assert outcome({**fitted, "train_loss": variance}) == FINE


def _results(deep_losses: list[float], deep_outcomes: list[str], shallow_losses: list[float]):
    """Saved results of two models on one function, as ``run`` writes them."""
    models = [
        {"label": "7 hidden (deep)", "depth": 7, "params": 571, "widths": []},
        {"label": "1 hidden (1-190-1)", "depth": 1, "params": 571, "widths": []},
    ]

    def row(label, seed, loss, result):
        return {"function": "sinc", "model": label, "seed": seed, "train_loss": loss,
                "loss_share": loss / 0.05, "outcome": result, "diverged": False}  # fmt: skip

    final = [row(models[0]["label"], s, v, o) for s, (v, o) in enumerate(zip(deep_losses, deep_outcomes, strict=True))]  # fmt: skip
    final += [row(models[1]["label"], s, v, FINE) for s, v in enumerate(shallow_losses)]
    held = {"init": "kaiming", "n_points": 256, "optimizer": "adam", "lr": 3e-3, "epochs": 3000}
    return {
        "models": models,
        "functions": [{"name": "sinc", "formula": "sin(5πx)/(5πx)", "domain": [0, 1]}],
        "held_equal": held,
        "fit_loss_share": 0.2,
        "final": final,
        "seeds": list(range(len(shallow_losses))),
    }


def test_depths_are_compared_over_fine_runs_and_collapsed_ones_are_named():
    # 3 of 5 deep runs collapsed at the target's variance: over all runs the deep model's
    # median would be the worst; over the runs that trained it fits 10x better
    results = _results(
        [1e-4, 2e-4, 0.05, 0.05, 0.05],
        [FINE, FINE, COLLAPSED, COLLAPSED, COLLAPSED],
        [1e-3, 2e-3, 3e-3, 4e-3, 5e-3],
    )
    n = notes(results)
    text = " ".join(n.observations)
    assert "7 hidden 2/5" in text and "1 hidden 5/5" in text
    assert "The 7-hidden-layer model fits best" in text
    assert "3 collapsed to a constant output (sinc, 7 hidden, seed 2/3/4)." in text
    assert n.summary["sinc: 7 hidden (deep): median / best final train loss of fine runs"] == [
        pytest.approx(1.5e-4),
        1e-4,
    ]
    assert n.fidelity[0]["verdict"] == "reproduced"
    (table,) = [rows for title, rows in n.tables if title == "Outcomes per model"]
    assert table[0]["collapsed"] == 3 and table[0]["fine"] == 2


def test_a_depth_with_fewer_than_two_fine_runs_is_not_ranked():
    results = _results(
        [1e-4, 0.05, 0.05, 0.05, 0.05],
        [FINE, COLLAPSED, COLLAPSED, COLLAPSED, COLLAPSED],
        [1e-3, 2e-3, 3e-3, 4e-3, 5e-3],
    )
    n = notes(results)
    text = " ".join(n.observations)
    assert "Fewer than 2 fine runs, not ranked: 7 hidden" in text
    assert "no depth comparison" in text and "fits best" not in text
    assert n.fidelity[0]["verdict"].startswith("differs because on sinc the shallowest or all")


def test_depth_helps_only_when_the_deep_runs_beat_every_shallow_run():
    fine = [FINE] * 5
    results = _results([1e-4, 2e-4, 3e-4, 4e-4, 6e-3], fine, [1e-3, 2e-3, 3e-3, 4e-3, 5e-3])
    n = notes(results)
    assert "The 7-hidden-layer model fits best" in " ".join(n.observations)
    assert "overlap: their order is not settled" in " ".join(n.observations)
    assert n.fidelity[0]["verdict"] == (
        "differs because on sinc the 1-hidden-layer model overlaps the 7-hidden-layer model "
        "after 3000 epochs (reference: 20 000)"
    )


def test_reference_models_have_equal_parameter_counts_and_train_under_kaiming():
    cfg = Config()
    counts = [count_params(MLP(w)) for w in cfg.model_widths()]
    assert counts == [571, 572, 571]
    assert max(counts) - min(counts) <= 0.02 * max(counts)
    assert cfg.init == "kaiming" and cfg.seeds >= 5
    full = EXPERIMENT.make_config("full")
    assert full.train.epochs == 20000 and full.seeds >= 5
    assert EXPERIMENT.make_config("quick", {"init": "default"}).init == "default"


def test_depths_are_solved_for_the_budget_within_two_percent():
    cfg = Config(depths=(1, 4, 10), param_budget=1000)
    counts = [count_params(MLP(w)) for w in cfg.model_widths()]
    assert all(abs(c - 1000) <= 20 for c in counts)
    assert [len(w) - 2 for w in cfg.model_widths()] == [1, 4, 10]
