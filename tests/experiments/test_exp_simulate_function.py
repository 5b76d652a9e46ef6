import pytest
from exp_util import load_results

from dlprobe.experiments.simulate_function import EXPERIMENT, Config
from dlprobe.models import MLP, count_params

pytestmark = pytest.mark.xdist_group("simulate-function")


def test_smoke_run_has_every_model_curve_and_seed(smoke):
    results = load_results(smoke("simulate-function"))
    # every model's curve and prediction is there for every seed
    assert {r["model"] for r in results["curves"]} == {m["label"] for m in results["models"]}
    assert {r["model"] for r in results["predictions"]} == {m["label"] for m in results["models"]}
    assert {r["seed"] for r in results["final"]} == {0, 1}


def test_reference_models_have_equal_parameter_counts():
    widths = Config().model_widths()
    counts = [count_params(MLP(w)) for w in widths]
    assert counts == [571, 572, 571]
    assert max(counts) - min(counts) <= 0.02 * max(counts)
    assert EXPERIMENT.make_config("full").train.epochs == 20000


def test_depths_are_solved_for_the_budget_within_two_percent():
    cfg = Config(depths=(1, 4, 10), param_budget=1000)
    counts = [count_params(MLP(w)) for w in cfg.model_widths()]
    assert all(abs(c - 1000) <= 20 for c in counts)
    assert [len(w) - 2 for w in cfg.model_widths()] == [1, 4, 10]
