import itertools

import pytest
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.experiments.actual_task import DEFAULT_BUDGETS, EXPERIMENT, Config, model_specs
from dlprobe.models import build_model, count_params

pytestmark = pytest.mark.xdist_group("actual-task")

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


def test_smoke_run_has_both_families_and_a_curve_from_epoch_zero(smoke):
    results = load_results(smoke("actual-task"))
    cfg = EXPERIMENT.make_config("smoke")
    models = results["models"]
    # two families, three depths each, every model matched to the budget
    assert sorted((m["family"], m["depth"]) for m in models) == sorted(
        [("CNN", d) for d in cfg.cnn_depths] + [("MLP", d) for d in cfg.mlp_depths]
    )
    _assert_matched(models)
    assert results["dataset"]["n_train"] == cfg.train_subset
    # the curves: exactly one row per (model, seed, epoch), epoch 0 = before training
    keys = [(r["model"], r["seed"], r["epoch"]) for r in results["curves"]]
    expected = itertools.product(
        [m["label"] for m in models], results["seeds"], range(cfg.train.epochs + 1)
    )
    assert sorted(keys) == sorted(expected)
    assert all(0 <= r["train_accuracy"] <= 1 for r in results["curves"])
    # the final table repeats the last epoch of each curve
    last = {(r["model"], r["seed"]): r for r in results["curves"] if r["epoch"] == cfg.train.epochs}
    for f in results["final"]:
        assert f["test_accuracy"] == last[(f["model"], f["seed"])]["test_accuracy"]


def test_digits_runs_with_two_dimensional_cnns(smoke):
    results = load_results(smoke("actual-task", "--dataset", "digits"))
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
        validate(Config(mlp_depths=(2, 2)))
    with pytest.raises(DlprobeError, match="odd"):
        validate(Config(kernel_size=4))
    with pytest.raises(DlprobeError, match="unknown dataset"):
        validate(Config(dataset="imagenet"))
    with pytest.raises(DlprobeError, match="train.batch_size must be in"):
        EXPERIMENT.make_config("smoke", {"batch_size": 500})  # the subset has 400
    with pytest.raises(DlprobeError, match="train_subset must be <= 4000"):
        EXPERIMENT.make_config(changes={"train_subset": 5000})
    with pytest.raises(DlprobeError, match="spread|too small|within"):
        model_specs(Config(param_budget=300), [1, 40], 10)
