import itertools

import pytest
from exp_util import assert_complete_run, assert_redraws, load_results, run_smoke

from dlprobe import DlprobeError
from dlprobe.experiments.actual_task import DEFAULT_BUDGETS, PROFILES, Config, model_specs
from dlprobe.models import build_model, count_params

FIGURES = ["train-loss", "train-accuracy", "test-accuracy"]
# (input shape, classes) of every dataset, written out so no download is needed
SHAPES = {
    "mnist1d": ([1, 40], 10),
    "digits": ([1, 8, 8], 10),
    "mnist": ([1, 28, 28], 10),
    "fashion-mnist": ([1, 28, 28], 10),
    "cifar10": ([3, 32, 32], 10),
}


def _assert_matched(models: list[dict]) -> None:
    """Counts within 2% of each other, both as saved and as rebuilt from the specs."""
    saved = [m["params"] for m in models]
    rebuilt = [count_params(build_model(m["spec"])) for m in models]
    assert rebuilt == saved
    assert max(saved) - min(saved) <= 0.02 * max(saved)


def test_smoke_run_through_cli_and_redraw(tmp_path):
    run = run_smoke("actual-task", tmp_path)
    assert_complete_run(run, FIGURES)
    results = load_results(run)
    cfg = PROFILES["smoke"]
    models = results["models"]
    # two families, three depths each, every model matched to the budget
    assert sorted((m["family"], m["depth"]) for m in models) == sorted(
        [("CNN", d) for d in cfg.cnn_depths] + [("MLP", d) for d in cfg.mlp_depths]
    )
    _assert_matched(models)
    # the curves: exactly one row per (model, seed, epoch), epoch 0 = before training
    keys = [(r["model"], r["seed"], r["epoch"]) for r in results["curves"]]
    expected = itertools.product(
        [m["label"] for m in models], results["seeds"], range(cfg.epochs + 1)
    )
    assert sorted(keys) == sorted(expected)
    assert all(0 <= r["train_accuracy"] <= 1 for r in results["curves"])
    # the final table repeats the last epoch of each curve
    last = {(r["model"], r["seed"]): r for r in results["curves"] if r["epoch"] == cfg.epochs}
    for f in results["final"]:
        assert f["test_accuracy"] == last[(f["model"], f["seed"])]["test_accuracy"]
    assert_redraws(run)


def test_digits_runs_with_two_dimensional_cnns(tmp_path):
    results = load_results(run_smoke("actual-task", tmp_path, "--dataset", "digits"))
    assert results["dataset"]["name"] == "digits"
    assert results["budget"] == DEFAULT_BUDGETS["digits"]
    cnns = [m for m in results["models"] if m["family"] == "CNN"]
    assert cnns and all(m["spec"]["input_shape"] == [1, 8, 8] for m in cnns)
    _assert_matched(results["models"])


@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_default_budget_matches_every_depth_of_both_families(dataset):
    shape, classes = SHAPES[dataset]
    models = model_specs(Config(dataset=dataset), shape, classes)
    assert len(models) == 6
    _assert_matched(models)
    assert all(
        abs(m["params"] - DEFAULT_BUDGETS[dataset]) <= 0.02 * DEFAULT_BUDGETS[dataset]
        for m in models
    )


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="repeated"):
        Config(mlp_depths=(2, 2)).validate()
    with pytest.raises(DlprobeError, match="odd"):
        Config(kernel_size=4).validate()
    with pytest.raises(DlprobeError, match="unknown dataset"):
        Config(dataset="imagenet").validate()
    with pytest.raises(DlprobeError, match="spread|too small|within"):
        model_specs(Config(param_budget=300), [1, 40], 10)
