import copy
from dataclasses import replace

import pytest
import torch
from exp_util import load_results, trained_model

from dlprobe.data import load_dataset
from dlprobe.experiments.flatness_interpolation import EXPERIMENT, METRICS, notes
from dlprobe.experiments.kit import mlp_population
from dlprobe.experiments.kit.batches import split_metrics, train_config_for
from dlprobe.models import build_model
from dlprobe.train import train_population

pytestmark = pytest.mark.xdist_group("flatness-interpolation")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("flatness-interpolation")
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset)
    if cfg.train_subset:
        data = data.subset_train(cfg.train_subset, seed=cfg.seed)
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
            model, seed = (
                (pair["m1"], r["seed"]) if r["alpha"] == 0.0 else (pair["m2"], r["m2_seed"])
            )
            own = trained[(model, seed)]
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


def test_every_model_reaches_the_common_target(smoke_run):
    _, results, _ = smoke_run
    cfg = EXPERIMENT.make_config("smoke")
    assert cfg.budget.protocol == "converged"
    assert len(results["trained"]) == 3 * cfg.seeds  # m1 is shared by both comparisons
    for r in results["trained"]:
        assert r["reached_target"] and r["status"] == "fine", r
        assert r["train_loss"] < cfg.budget.train_loss and r["epochs"] < r["epoch_cap"]


def test_endpoints_start_from_independent_initializations(smoke_run):
    """m1 and m2 of a pair have different seeds, hence different initial parameters, and
    the recorded seed is the real one: training from it again gives m2's saved weights."""
    run, results, data = smoke_run
    cfg = EXPERIMENT.make_config("smoke")
    widths = results["model"]["widths"]
    for pair, p in zip(results["pairs"], cfg.pairs(), strict=True):
        rows = [r for r in results["curves"] if r["pair"] == pair["pair"] and r["alpha"] == 0]
        assert all(r["seed"] != r["m2_seed"] for r in rows)
        seeds = [(r["seed"], r["m2_seed"]) for r in rows]
        for s1, s2 in seeds:
            init1 = mlp_population(widths, cfg.activation, s1, 1, "cpu").flat_params()
            init2 = mlp_population(widths, cfg.activation, s2, 1, "cpu").flat_params()
            assert not torch.equal(init1, init2)
        (b, lr, first), k = p["m2"], 0
        pop = mlp_population(widths, cfg.activation, first, cfg.seeds, "cpu")
        assert pop.seeds[k] == seeds[k][1]
        train = train_config_for(
            replace(cfg.train, lr=lr), b, data.n_train, cfg.budget, "converged"
        )
        train_population(pop, data, train)
        saved = trained_model(run, results["model"], pair["m2"], k)
        torch.testing.assert_close(
            pop.model(k)(data.x_test), saved(data.x_test), rtol=1e-5, atol=1e-6
        )


def test_shared_init_reproduces_the_old_protocol():
    shared = EXPERIMENT.make_config("smoke", {"shared_init": True})
    independent = EXPERIMENT.make_config("smoke")
    for p in shared.pairs():
        assert p["m1"][2] == p["m2"][2] == shared.seed
    for p in independent.pairs():
        assert p["m2"][2] == p["m1"][2] + independent.seeds  # seeds do not overlap


def test_a_pair_with_an_endpoint_off_target_is_named_and_left_out(smoke_run):
    _, results, _ = smoke_run
    broken = copy.deepcopy(results)
    pair = broken["pairs"][0]
    r = next(r for r in broken["trained"] if r["setting"] == pair["m2"])
    r.update(status="not converged", reached_target=False)
    said = notes(broken)
    n = len(results["seeds"])
    assert f"n = {n - 1} pairs" in next(o for o in said.observations if o.startswith(pair["label"]))
    assert any(
        f"setting {pair['m2']} not converged: seed(s) {r['seed']}" in o for o in said.observations
    )


def test_fidelity_rows_are_computed(smoke_run):
    _, results, _ = smoke_run
    rows = notes(results).fidelity
    assert [r["claim"].split(" ")[0] for r in rows] == ["the", "independently", "the"]
    shared = copy.deepcopy(results)
    shared["shared_init"] = True  # same barriers, the opposite claim: its verdict flips
    flipped = {r["claim"]: r["verdict"] for r in notes(shared).fidelity}
    own = {r["claim"]: r["verdict"] for r in rows}
    barrier = "independently initialized minima are separated by a loss barrier"
    assert own[barrier] == "reproduced"
    assert flipped["models from one initialization sit in one valley (no barrier)"] != "reproduced"
