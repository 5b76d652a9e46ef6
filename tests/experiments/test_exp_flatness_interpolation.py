import pytest
from exp_util import load_results, trained_model

from dlprobe.data import load_dataset
from dlprobe.experiments.flatness_interpolation import EXPERIMENT, METRICS
from dlprobe.experiments.kit.batches import split_metrics
from dlprobe.models import build_model

pytestmark = pytest.mark.xdist_group("flatness-interpolation")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("flatness-interpolation")
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    return run, load_results(run), data


def test_both_comparisons_are_interpolated(smoke_run):
    _, results, _ = smoke_run
    assert {r["pair"] for r in results["curves"]} == {"batch size", "learning rate"}


def test_endpoints_reproduce_the_trained_models_exactly(smoke_run):
    _, results, _ = smoke_run
    trained = {(r["setting"], r["seed"]): r for r in results["trained"]}
    for pair in results["pairs"]:
        for r in results["curves"]:
            if r["pair"] != pair["pair"] or r["alpha"] not in (0.0, 1.0):
                continue
            model = pair["m1"] if r["alpha"] == 0.0 else pair["m2"]
            own = trained[(model, r["seed"])]
            assert {m: r[m] for m in METRICS} == {m: own[m] for m in METRICS}


def test_curve_is_evaluated_without_training(smoke_run):
    """theta(0.5) of the curve is the hand-averaged pair, evaluated as it is."""
    run, results, data = smoke_run
    pair = results["pairs"][0]
    k, seed = 1, results["seeds"][1]
    m1 = trained_model(run, results["model"], pair["m1"], k)
    m2 = trained_model(run, results["model"], pair["m2"], k)
    # the checkpoints hold the very models whose metrics were saved
    own = next(r for r in results["trained"] if r["setting"] == pair["m1"] and r["seed"] == seed)
    assert split_metrics(m1, data) == {m: own[m] for m in METRICS}
    mid = build_model(results["model"])
    s1, s2 = m1.state_dict(), m2.state_dict()
    mid.load_state_dict({n: 0.5 * s1[n] + 0.5 * s2[n] for n in s1})
    row = next(
        r
        for r in results["curves"]
        if r["pair"] == pair["pair"] and r["seed"] == seed and r["alpha"] == 0.5
    )
    expected = split_metrics(mid, data)
    for m in METRICS:
        assert row[m] == pytest.approx(expected[m], rel=1e-6, abs=1e-7)
    # and it is not one of the endpoints: the line really leaves the trained models
    assert row["train_loss"] != own["train_loss"]


def test_alpha_grid_and_pairs_follow_the_homework():
    for profile in ("quick", "full"):
        cfg = EXPERIMENT.make_config(profile)
        alphas = cfg.alphas()
        assert alphas[0] == -1.0 and alphas[-1] == 2.0 and len(alphas) >= 31
        assert {0.0, 0.5, 1.0} <= set(alphas)
        assert cfg.batch_sizes == (64, 1024) and cfg.lrs == (1e-3, 1e-2)
        # pair 1 runs at train.lr, pair 2 at train.batch_size: one of each pair's models
        assert cfg.train.lr == cfg.lrs[0] and cfg.train.batch_size == cfg.batch_sizes[0]
    assert EXPERIMENT.make_config("full").dataset == "mnist"
