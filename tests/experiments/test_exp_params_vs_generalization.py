import pytest
from exp_util import assert_complete_run, assert_redraws, load_results, run_smoke

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.params_vs_generalization import PROFILES, Config, model_specs
from dlprobe.models import build_model, count_params


def test_smoke_run_through_cli_and_redraw(tmp_path):
    run = run_smoke("params-vs-generalization", tmp_path)
    assert_complete_run(run, ["loss", "accuracy"])
    results = load_results(run)
    cfg = PROFILES["smoke"]
    # recorded counts are those of the rebuilt models, every size has every seed
    for m in results["models"]:
        assert m["params"] == count_params(build_model(m["spec"]))
        rows = [r for r in results["runs"] if r["params"] == m["params"]]
        assert sorted(r["seed"] for r in rows) == list(range(cfg.seed, cfg.seed + cfg.seeds))
    assert len(results["models"]) == cfg.sizes
    assert_redraws(run)


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
    cfg = PROFILES["quick"]
    data = load_dataset(cfg.dataset)
    counts = _check_family(model_specs(cfg, data.input_shape, data.num_classes))
    assert len(counts) >= 10
    assert counts[-1] / counts[0] >= 100


def test_full_profile_is_cnns_on_cifar10_up_to_about_4_5_million():
    cfg = PROFILES["full"]
    cfg.validate()
    assert cfg.dataset == "cifar10" and cfg.family == "cnn"
    counts = _check_family(model_specs(cfg, (3, 32, 32), 10))
    assert len(counts) >= 10
    assert counts[-1] / counts[0] >= 100
    assert 4.0e6 <= counts[-1] <= 5.0e6


def test_too_many_sizes_for_the_range_is_an_error():
    cfg = Config(min_params=300, max_params=400, sizes=10)
    with pytest.raises(DlprobeError, match="repeat"):
        model_specs(cfg, (1, 40), 10)
