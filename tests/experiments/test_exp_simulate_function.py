from exp_util import assert_complete_run, assert_redraws, load_results, run_smoke

from dlprobe.experiments.simulate_function import PROFILES, Config
from dlprobe.models import MLP, count_params


def test_smoke_run_through_cli_and_redraw(tmp_path):
    run = run_smoke("simulate-function", tmp_path)
    assert_complete_run(run, ["loss-sinc", "fit-sinc"])
    results = load_results(run)
    # every model's curve and prediction is there for every seed
    assert {r["model"] for r in results["curves"]} == {m["label"] for m in results["models"]}
    assert {r["seed"] for r in results["final"]} == {0, 1}
    assert_redraws(run)


def test_reference_models_have_equal_parameter_counts():
    widths = Config().model_widths()
    counts = [count_params(MLP(w)) for w in widths]
    assert counts == [571, 572, 571]
    assert max(counts) - min(counts) <= 0.02 * max(counts)
    assert PROFILES["full"].epochs == 20000


def test_depths_are_solved_for_the_budget_within_two_percent():
    cfg = Config(depths=(1, 4, 10), param_budget=1000)
    counts = [count_params(MLP(w)) for w in cfg.model_widths()]
    assert all(abs(c - 1000) <= 20 for c in counts)
    assert [len(w) - 2 for w in cfg.model_widths()] == [1, 4, 10]
