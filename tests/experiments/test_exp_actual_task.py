import itertools

import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import load_dataset
from dlprobe.experiments.actual_task import (
    DEFAULT_BUDGETS,
    EXPERIMENT,
    Config,
    model_specs,
    notes,
)
from dlprobe.experiments.kit.outcomes import COLLAPSED, FINE, collapse_probe, outcome
from dlprobe.models import MLP, build_model, count_params
from dlprobe.train import Population, evaluate_population

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


def test_smoke_run_uses_digits_with_two_dimensional_cnns_and_sorts_every_run(smoke):
    results = load_results(smoke("actual-task"))
    assert results["dataset"]["name"] == "digits"
    assert results["budget"] == DEFAULT_BUDGETS["digits"]
    cnns = [m for m in results["models"] if m["family"] == "CNN"]
    assert cnns and all(m["spec"]["input_shape"] == [1, 8, 8] for m in cnns)
    assert all(m["spec"]["init"] == "kaiming" for m in results["models"])
    for r in results["final"]:
        assert r["outcome"] == outcome(r, r["train_accuracy"] >= results["fit_accuracy"])


def test_mnist1d_runs_with_one_dimensional_cnns(smoke):
    results = load_results(smoke("actual-task", "--dataset", "mnist1d"))
    assert results["budget"] == DEFAULT_BUDGETS["mnist1d"]
    cnns = [m for m in results["models"] if m["family"] == "CNN"]
    assert cnns and all(m["spec"]["input_shape"] == [1, 40] for m in cnns)
    _assert_matched(results["models"])


def test_a_classifier_that_predicts_the_class_frequencies_is_collapsed():
    data = load_dataset("digits")
    x, y = data.x_train[:300], data.y_train[:300]
    freq = torch.bincount(y, minlength=10).float() / len(y)
    dead = MLP([64, 20, 20, 10], "relu", init="kaiming")
    with torch.no_grad():  # every first-layer ReLU dead for any input: output = last bias
        dead.linears[0].weight.zero_()
        dead.linears[0].bias.fill_(-1.0)
        dead.linears[-1].weight.zero_()  # (the second layer passes on relu(its bias))
        dead.linears[-1].bias.copy_(freq.log())
    torch.manual_seed(0)
    pop = Population.from_models([dead, MLP([64, 20, 20, 10], "relu", init="kaiming")])
    probes = collapse_probe(pop, x, y)
    loss, _ = evaluate_population(pop, x, y, torch.nn.functional.cross_entropy)
    entropy = float(-(freq[freq > 0] * freq[freq > 0].log()).sum())
    assert probes[0]["constant_loss"] == pytest.approx(entropy)
    assert loss[0].item() == pytest.approx(entropy, rel=1e-5)  # the best constant prediction
    assert probes[0]["output_spread"] < 1e-6 < 0.05 < probes[1]["output_spread"]
    rows = [
        {"diverged": False, "train_loss": v, **p}
        for v, p in zip(loss.tolist(), probes, strict=True)
    ]
    assert [outcome(r) for r in rows] == [COLLAPSED, FINE]


def _results(accuracies: dict[str, list[tuple[float, float]]]) -> dict:
    """Saved results of models given as label -> [(train accuracy, test accuracy) per run]."""
    models, final = [], []
    for i, (label, runs) in enumerate(accuracies.items()):
        family, depth = label.split()[0], i + 1
        models.append({"label": label, "family": family, "depth": depth, "params": 3000})
        for seed, (train, test) in enumerate(runs):
            row = {"model": label, "family": family, "depth": depth, "seed": seed,
                   "train_loss": 1 - train, "train_accuracy": train, "test_loss": 1 - test,
                   "test_accuracy": test, "diverged": False, "output_spread": 0.5,
                   "constant_loss": 2.3}  # fmt: skip
            final.append({**row, "outcome": outcome(row, train >= 0.95)})
    held = {"init": "kaiming", "optimizer": "adam", "lr": 3e-3, "epochs": 30, "batch_size": 64}
    dataset = {"name": "digits", "n_train": 1347, "n_test": 450, "input_shape": [1, 8, 8]}
    return {"dataset": dataset, "budget": 3000, "held_equal": held, "fit_accuracy": 0.95,
            "models": models, "final": final, "seeds": [0, 1, 2]}  # fmt: skip


def test_models_are_compared_over_runs_that_fit_and_the_others_are_named():
    results = _results(
        {
            "CNN 1 conv": [(1.0, 0.98), (1.0, 0.97), (1.0, 0.99)],
            "MLP 1 hidden": [(1.0, 0.96), (0.99, 0.95), (1.0, 0.97)],
            # one run fits, two stop early at low accuracy: not compared
            "MLP 6 hidden": [(0.97, 0.93), (0.5, 0.45), (0.4, 0.38)],
        }
    )
    n = notes(results)
    text = " ".join(n.observations)
    assert "Fewer than 2 fine runs, not compared: MLP 6 hidden." in text
    assert (
        "Highest mean test accuracy of the fine runs: CNN 1 conv (0.980); lowest: MLP 1 hidden (0.960)"
        in text
    )
    assert "2 trained but missed train accuracy 0.95 (MLP 6 hidden, seed 1/2)" in text
    assert "Held equal: 3000-3000 parameters" in text and "adam at lr 0.003, 30 epochs" in text
    verdicts = {f["claim"]: f["verdict"] for f in n.fidelity}
    assert verdicts["every model fits its training set"].startswith("differs because")
    assert verdicts["a real image task"].startswith("differs because the quick profile uses")
    assert n.summary["MLP 6 hidden: fine runs, mean test accuracy"] == [1, 0.93]


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
    with pytest.raises(DlprobeError, match="train_subset must be <= 1347"):
        EXPERIMENT.make_config(changes={"train_subset": 2000})
    with pytest.raises(DlprobeError, match="spread|too small|within"):
        model_specs(Config(param_budget=300), [1, 40], 10)
    with pytest.raises(DlprobeError, match="init"):
        EXPERIMENT.make_config(changes={"init": "xavier"})


def test_quick_profile_trains_every_family_to_fit_with_five_seeds():
    cfg = EXPERIMENT.make_config("quick")
    assert cfg.dataset == "digits" and cfg.seeds >= 5 and cfg.init == "kaiming"
    assert cfg.fit_accuracy >= 0.95
    assert EXPERIMENT.make_config("full").dataset == "mnist"
