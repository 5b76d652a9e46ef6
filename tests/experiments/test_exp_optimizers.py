import json
import math

import numpy as np
import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.kit.lr_grid import select_lr, validation_split
from dlprobe.experiments.kit.surfaces2d import descend, rosenbrock, rotated_quadratic
from dlprobe.experiments.optimizers import EXPERIMENT, figures
from dlprobe.train import TrainConfig, lr_factor, make_optimizer

pytestmark = pytest.mark.xdist_group("optimizers")


@pytest.fixture(scope="module")
def run(smoke):
    return smoke("optimizers")


@pytest.fixture(scope="module")
def results(run):
    return load_results(run)


# -- the library pieces, against brute force --------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adagrad", "rmsprop", "adam", "nadam"])
def test_descend_at_several_lrs_equals_one_run_per_lr(optimizer):
    surface, lrs, steps = rosenbrock(), [1e-4, 1e-3, 3e-3], 25
    cfg = TrainConfig(optimizer=optimizer)
    paths = descend(surface.fn, surface.start, cfg, lrs, steps)  # (3, 26, 2)
    for i, lr in enumerate(lrs):
        w = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
        opt = make_optimizer([w], TrainConfig(optimizer=optimizer, lr=lr))
        for t in range(steps):
            opt.zero_grad()
            surface.fn(w).backward()
            opt.step()
            np.testing.assert_allclose(paths[i, t + 1], w.detach().numpy(), rtol=1e-12)


def test_gradient_descent_on_the_quadratic_is_w_minus_lr_times_hessian_w():
    surface, lr = rotated_quadratic(100.0, angle_deg=30.0), 0.01
    a = math.radians(30.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    hess = rot @ np.diag([1.0, 100.0]) @ rot.T
    assert np.linalg.cond(hess) == pytest.approx(100.0)
    path = descend(surface.fn, surface.start, TrainConfig(optimizer="sgd"), [lr], 5)[0]
    w = np.array(surface.start)
    for t in range(5):
        w = w - lr * hess @ w
        np.testing.assert_allclose(path[t + 1], w, rtol=1e-12)


def test_a_diverging_path_stays_nan_from_its_first_non_finite_point():
    surface = rosenbrock()
    path = descend(surface.fn, surface.start, TrainConfig(optimizer="sgd"), [1.0, 1e-4], 40)
    bad = ~np.isfinite(path[0]).all(-1)
    assert bad.any() and bad[bad.argmax() :].all()
    assert np.isfinite(path[1]).all()


def test_validation_split_holds_out_a_seeded_part_of_the_training_set_only():
    data = load_dataset("digits")
    fit = validation_split(data, 0.2, seed=3)
    assert fit.n_test == round(0.2 * data.n_train) and fit.n_train + fit.n_test == data.n_train
    rows = {tuple(x) for x in data.x_train.flatten(1).tolist()}
    fit_rows = [tuple(x) for x in fit.x_train.flatten(1).tolist()]
    val_rows = [tuple(x) for x in fit.x_test.flatten(1).tolist()]
    assert set(fit_rows) <= rows and set(val_rows) <= rows
    assert len(fit_rows) + len(val_rows) == data.n_train  # each example once
    again = validation_split(data, 0.2, seed=3)
    assert torch.equal(again.x_test, fit.x_test)


def _row(lr, acc, loss, diverged=False):
    return {"lr": lr, "val_accuracy": acc, "val_loss": loss, "diverged": diverged}


def test_select_lr_takes_the_best_mean_accuracy_then_loss_and_skips_diverged_lrs():
    rows = [_row(0.1, 0.9, 0.3), _row(0.1, 0.8, 0.3), _row(1.0, 0.95, 0.2),
            _row(1.0, None, None, True), _row(0.01, 0.85, 0.5), _row(0.01, 0.85, 0.4)]  # fmt: skip
    assert select_lr(rows) == 0.1  # 1.0 is better but had a diverged seed; 0.1 ties, lower loss
    assert select_lr([_row(1.0, None, None, True)]) is None


def test_config_refuses_a_schedule_on_the_compared_runs_and_a_missing_optimizer():
    with pytest.raises(DlprobeError, match="constant lr"):
        EXPERIMENT.make_config("smoke", {"train.schedule": "cosine"})
    with pytest.raises(DlprobeError, match="train.optimizer must be compared"):
        EXPERIMENT.make_config("smoke", {"optimizers": ("sgd", "momentum")})
    with pytest.raises(DlprobeError, match="lr_factors must differ"):
        EXPERIMENT.make_config("smoke", {"lr_factors": (1.0, 1.0)})


# -- the smoke run: its rows, figures and sentences -------------------------------------


def test_every_optimizer_trained_at_every_lr_of_the_grid_from_the_same_seeds(results):
    cfg = EXPERIMENT.make_config("smoke")
    lrs = sorted(cfg.train.lr * f for f in cfg.lr_factors)
    for opt in cfg.optimizers:
        mine = [r for r in results["grid"] if r["optimizer"] == opt]
        assert sorted({r["lr"] for r in mine}) == pytest.approx(lrs)
        assert sorted(r["seed"] for r in mine) == sorted(list(range(cfg.seeds)) * len(lrs))
    assert results["data"]["n_fit"] + results["data"]["n_val"] == cfg.train_subset


def test_the_selected_lr_is_the_best_mean_validation_accuracy_of_the_grid(results):
    for opt, lr in results["selected"].items():
        rows = [r for r in results["grid"] if r["optimizer"] == opt]
        by_lr = {}
        for r in rows:
            by_lr.setdefault(r["lr"], []).append(r["val_accuracy"])
        best = max(np.mean(v) for v in by_lr.values())
        assert np.mean(by_lr[lr]) == best


def test_paths_start_together_and_distances_are_the_final_points(results):
    cfg = EXPERIMENT.make_config("smoke")
    for s in results["surfaces"]:
        for p in s["paths"]:
            path = np.asarray(p["path"], dtype=float)
            assert path.shape == (cfg.surface_steps + 1, 2)
            np.testing.assert_allclose(path[0], s["start"])
            if p["final_distance"] is not None:
                dist = np.linalg.norm(path[-1] - np.asarray(s["minimum"]))
                assert p["final_distance"] == pytest.approx(dist)
            tried = [t for t in s["lr_grid"] if t["optimizer"] == p["optimizer"]]
            finite = [t["final_value"] for t in tried if t["final_value"] is not None]
            if finite:  # the drawn path is the lowest final value of the grid
                assert p["values"][-1] == pytest.approx(min(finite))


def test_schedules_are_what_each_variant_trained_with(results):
    cfg = EXPERIMENT.make_config("smoke")
    lr = results["variant_lr"]

    def at(variant, epoch):
        rows = [r for r in results["schedules"] if r["variant"] == variant]
        return min(rows, key=lambda r: abs(r["epoch"] - epoch))["lr"]

    assert at("constant", 0.0) == at("constant", cfg.train.epochs) == lr
    assert at("warm-up", 0.0) < 1e-6 * lr and at("warm-up", cfg.warmup_epochs) == lr
    after = cfg.train.step_every_epochs
    assert at("step decay", after - 0.05) == lr
    assert at("step decay", after) == pytest.approx(lr * cfg.train.step_gamma)
    cosine = TrainConfig(lr=lr, epochs=cfg.train.epochs, schedule="cosine")
    assert at("cosine", 1.5) == pytest.approx(lr * lr_factor(cosine, 1.5))


def test_curves_figure_draws_each_optimizer_at_its_selected_lr(results):
    figs = figures(results)
    labels = [t.get_text() for t in figs["curves"].axes[1].get_legend().get_texts()]
    n = EXPERIMENT.make_config("smoke").seeds
    for opt, lr in results["selected"].items():
        assert f"{opt} lr {lr:g} (n={n})" in labels
    quad = [t.get_text() for t in figs["paths-quadratic"].axes[1].get_legend().get_texts()]
    assert len(quad) == len(EXPERIMENT.make_config("smoke").optimizers)


def test_observations_name_the_lowest_loss_and_the_fidelity_verdicts_follow(run, results):
    summary = json.loads((run / "summary.json").read_text())
    means = {}
    for opt, lr in results["selected"].items():
        losses = [
            r["train_loss"] for r in results["grid"] if (r["optimizer"], r["lr"]) == (opt, lr)
        ]
        means[opt] = np.mean(losses)
    lowest = min(means, key=means.get)
    assert any(f"lowest loss {lowest}," in line for line in summary["observations"])
    adam = [row for row in summary["fidelity"] if row["claim"].startswith("Adam")]
    assert adam and (adam[0]["verdict"] == "reproduced") == (means["adam"] < means["sgd"])
