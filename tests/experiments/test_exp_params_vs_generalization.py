import numpy as np
import pytest
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.params_vs_generalization import (
    EXPERIMENT,
    _fidelity,
    model_specs,
    notes,
)
from dlprobe.models import build_model, count_params

pytestmark = pytest.mark.xdist_group("params-vs-generalization")


def test_smoke_run_records_every_size_and_seed(smoke):
    results = load_results(smoke("params-vs-generalization"))
    cfg = EXPERIMENT.make_config("smoke")
    # recorded counts are those of the rebuilt models, every size has every seed
    for m in results["models"]:
        assert m["params"] == count_params(build_model(m["spec"]))
        rows = [r for r in results["runs"] if r["params"] == m["params"]]
        assert sorted(r["seed"] for r in rows) == list(range(cfg.seed, cfg.seed + cfg.seeds))
    assert len(results["models"]) == cfg.sizes
    assert results["dataset"]["n_train"] == cfg.train_subset


def _check_family(specs: list[dict]) -> list[int]:
    """Counts of one family: same kind, depth, activation; only the width knob varies."""
    kinds = {(s["kind"], s["activation"]) for s in specs}
    assert len(kinds) == 1
    if specs[0]["kind"] == "mlp":
        assert len({len(s["widths"]) for s in specs}) == 1
        for s in specs:
            assert len(set(s["widths"][1:-1])) == 1  # equal hidden widths
    else:
        for s in specs:
            c = s["channels"][0]
            assert s["channels"] == [c * 2**i for i in range(len(s["channels"]))]
        assert len({len(s["channels"]) for s in specs}) == 1
    counts = [count_params(build_model(s)) for s in specs]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    return counts


def test_quick_profile_spans_ten_sizes_over_two_orders_of_magnitude():
    cfg = EXPERIMENT.make_config("quick")
    data = load_dataset(cfg.dataset)
    counts = _check_family(model_specs(cfg, data.input_shape, data.num_classes))
    assert len(counts) >= 10
    assert counts[-1] / counts[0] >= 100


def test_full_profile_is_cnns_on_cifar10_up_to_about_4_5_million():
    cfg = EXPERIMENT.make_config("full")
    assert cfg.dataset == "cifar10" and cfg.family == "cnn"
    counts = _check_family(model_specs(cfg, (3, 32, 32), 10))
    assert len(counts) >= 10
    assert counts[-1] / counts[0] >= 100
    assert 4.0e6 <= counts[-1] <= 5.0e6


def test_too_many_sizes_for_the_range_is_an_error():
    cfg = EXPERIMENT.make_config("quick", {"min_params": 300, "max_params": 400, "sizes": 10})
    with pytest.raises(DlprobeError, match="repeat"):
        model_specs(cfg, (1, 40), 10)


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="min_params < max_params"):
        EXPERIMENT.make_config("quick", {"min_params": 5000, "max_params": 400})
    with pytest.raises(DlprobeError, match="odd"):
        EXPERIMENT.make_config("quick", {"kernel_size": 4})
    with pytest.raises(DlprobeError, match="family"):
        EXPERIMENT.make_config("quick", {"family": "rnn"})


def test_fidelity_verdicts_follow_the_trends():
    params = [100, 1000, 10000, 100000]
    train = np.array([0.6, 0.9, 0.99, 1.0])
    plateau = np.array([0.55, 0.96, 0.97, 0.97])
    u_shaped = np.array([1.2, 0.2, 0.15, 0.3])
    rows = {r["claim"]: r["verdict"] for r in _fidelity(params, train, plateau, u_shaped, "digits")}
    assert set(rows.values()) == {"reproduced"}
    falling = np.array([1.2, 0.5, 0.3, 0.2])  # lowest at the largest model
    still_rising = np.array([0.3, 0.6, 0.8, 0.9])
    rows = {
        r["claim"]: r["verdict"]
        for r in _fidelity(params, train * 0.8, still_rising, falling, "digits")
    }
    assert rows["test loss first falls, then rises"] == (
        "differs because the minimum is at the largest model"
    )
    assert rows["test accuracy plateaus as size grows"].startswith("differs because")
    assert rows["training accuracy rises with size to about 0.98"].startswith("differs because")


def test_collapsed_runs_are_left_out_of_the_means_and_named(smoke):
    results = load_results(smoke("params-vs-generalization"))
    for r in results["runs"]:
        r["outcome"] = "fine"
    small = results["models"][0]["params"]
    first = next(r for r in results["runs"] if r["params"] == small)
    first.update(outcome="collapsed", test_accuracy=-100.0)
    n = notes(results)
    others = [
        r["test_accuracy"] for r in results["runs"] if r["params"] == small and r is not first
    ]
    key = f"{small} params: test accuracy (mean of fine runs)"
    assert n.summary[key] == pytest.approx(np.mean(others))
    text = " ".join(n.observations)
    assert f"1 collapsed to a constant output ({small} params, seed {first['seed']})" in text
    (table,) = [rows for title, rows in n.tables if title == "Runs per size"]
    assert table[0]["collapsed"] == 1


def test_quick_stand_in_is_digits():
    assert EXPERIMENT.make_config("quick").dataset == "digits"
