import json
import shutil

import pytest
from exp_util import (
    assert_complete_run,
    assert_redraws,
    load_results,
    run_smoke,
    trained_model,
)

from dlprobe.experiments.base import config_from_dict
from dlprobe.experiments.flatness_interpolation import (
    METRICS,
    PROFILES,
    Config,
    evaluator,
    load_data,
)
from dlprobe.models import build_model

FIGURES = ["interpolation-batch-size", "interpolation-learning-rate"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    run = run_smoke("flatness-interpolation", tmp_path_factory.mktemp("runs"))
    results = load_results(run)
    cfg = config_from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, results, cfg


def test_smoke_run_is_complete_and_redraws(smoke, tmp_path):
    run, results, _ = smoke
    assert_complete_run(run, FIGURES)
    assert {r["pair"] for r in results["curves"]} == {"batch size", "learning rate"}
    copy = tmp_path / "copy"  # redraw a copy: the other tests read the checkpoints
    shutil.copytree(run, copy)
    assert_redraws(copy)


def test_endpoints_reproduce_the_trained_models_exactly(smoke):
    _, results, _ = smoke
    trained = {(r["setting"], r["seed"]): r for r in results["trained"]}
    for pair in results["pairs"]:
        for r in results["curves"]:
            if r["pair"] != pair["pair"] or r["alpha"] not in (0.0, 1.0):
                continue
            model = pair["m1"] if r["alpha"] == 0.0 else pair["m2"]
            own = trained[(model, r["seed"])]
            assert {m: r[m] for m in METRICS} == {m: own[m] for m in METRICS}


def test_curve_is_evaluated_without_training(smoke):
    """theta(0.5) of the curve is the hand-averaged pair, evaluated as it is."""
    run, results, cfg = smoke
    data = load_data(cfg, "cpu")
    evaluate = evaluator(data)
    pair = results["pairs"][0]
    k, seed = 1, results["seeds"][1]
    m1 = trained_model(run, results["model"], pair["m1"], k)
    m2 = trained_model(run, results["model"], pair["m2"], k)
    # the checkpoints hold the very models whose metrics were saved
    own = next(r for r in results["trained"] if r["setting"] == pair["m1"] and r["seed"] == seed)
    assert evaluate(m1) == {m: own[m] for m in METRICS}
    mid = build_model(results["model"])
    s1, s2 = m1.state_dict(), m2.state_dict()
    mid.load_state_dict({n: 0.5 * s1[n] + 0.5 * s2[n] for n in s1})
    row = next(
        r
        for r in results["curves"]
        if r["pair"] == pair["pair"] and r["seed"] == seed and r["alpha"] == 0.5
    )
    expected = evaluate(mid)
    for m in METRICS:
        assert row[m] == pytest.approx(expected[m], rel=1e-6, abs=1e-7)
    # and it is not one of the endpoints: the line really leaves the trained models
    assert row["train_loss"] != own["train_loss"]


def test_alpha_grid_and_pairs_follow_the_homework():
    for profile in ("quick", "full"):
        cfg = PROFILES[profile]
        alphas = cfg.alphas()
        assert alphas[0] == -1.0 and alphas[-1] == 2.0 and len(alphas) >= 31
        assert {0.0, 0.5, 1.0} <= set(alphas)
        assert cfg.batch_sizes == (64, 1024) and cfg.lrs == (1e-3, 1e-2)
    assert PROFILES["full"].dataset == "mnist"
