import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import mlp_population
from dlprobe.experiments.kit.lr_grid import validation_split
from dlprobe.experiments.kit.surfaces2d import argmin, grad_norm
from dlprobe.experiments.mse_vs_cross_entropy import (
    EXPERIMENT,
    _blobs,
    _loss_fns,
    figures,
    softmax_mse,
)
from dlprobe.train import full_batch_grad_norms
from dlprobe.train.evaluation import per_model_losses

pytestmark = pytest.mark.xdist_group("mse-vs-cross-entropy")


@pytest.fixture(scope="module")
def run(smoke):
    return smoke("mse-vs-cross-entropy")


@pytest.fixture(scope="module")
def results(run):
    return load_results(run)


# -- the losses and the 2-D tools, against brute force ----------------------------------


def test_softmax_mse_is_the_squared_error_against_one_hot_per_example_and_per_model():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(3, 7, 4, generator=g), torch.randint(0, 4, (3, 7), generator=g)
    for k in range(3):
        brute = (
            sum(
                sum((torch.softmax(out[k, i], -1)[c] - float(c == y[k, i])) ** 2 for c in range(4))
                for i in range(7)
            )
            / 7
        )
        assert float(softmax_mse(out[k], y[k])) == pytest.approx(float(brute), rel=1e-6)
    per_model = per_model_losses(softmax_mse, out, y)  # (3,), through vmap as in training
    expected = [float(softmax_mse(out[k], y[k])) for k in range(3)]
    np.testing.assert_allclose(per_model.numpy(), expected, rtol=1e-6)


def test_the_two_weight_losses_are_softmax_over_logits_zero_and_w_dot_x():
    cfg = EXPERIMENT.make_config("smoke")
    x, t = _blobs(cfg)
    fns = _loss_fns(x, t)
    for w in ([0.3, -1.2], [-5.0, 2.0]):
        w = torch.tensor(w, dtype=torch.float64)
        logits = torch.stack([torch.zeros(len(x), dtype=torch.float64), x @ w], -1)  # (N, 2)
        assert float(fns["cross-entropy"](w)) == pytest.approx(
            float(F.cross_entropy(logits, t.long())), rel=1e-12
        )
        assert float(fns["MSE"](w)) == pytest.approx(
            float(softmax_mse(logits, t.long())), rel=1e-12
        )


def test_grad_norm_of_a_grid_is_each_points_own_gradient_and_argmin_is_stationary():
    cfg = EXPERIMENT.make_config("smoke")
    fns = _loss_fns(*_blobs(cfg))
    w = torch.tensor([[0.5, -2.0], [3.0, 1.0], [-4.0, -4.0]], dtype=torch.float64)
    for fn in fns.values():
        norms = grad_norm(fn, w)
        for i in range(3):
            wi = w[i].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(wi), wi)
            assert float(norms[i]) == pytest.approx(float(g.norm()), rel=1e-12)
        assert float(grad_norm(fn, argmin(fn))) < 1e-8


def test_config_refuses_a_repeated_lr_and_a_validation_split_of_everything():
    with pytest.raises(DlprobeError, match="lr_factors must differ"):
        EXPERIMENT.make_config("smoke", {"lr_factors": (1.0, 1.0)})
    with pytest.raises(DlprobeError, match="validation_fraction"):
        EXPERIMENT.make_config("smoke", {"validation_fraction": 1.0})


# -- the smoke run: its rows, figures and sentences -------------------------------------


def test_the_far_start_is_opposite_the_cross_entropy_minimum_and_its_gradients_are_right(
    results,
):
    cfg = EXPERIMENT.make_config("smoke")
    ex = results["exact"]
    fns = _loss_fns(*_blobs(cfg))
    start, w_ce = np.array(ex["start"]), np.array(ex["ce_minimum"])
    assert np.linalg.norm(start) == pytest.approx(0.9 * cfg.box)
    assert start @ w_ce / (np.linalg.norm(start) * np.linalg.norm(w_ce)) == pytest.approx(-1)
    for name, s in ex["losses"].items():
        w = torch.tensor(start, dtype=torch.float64)
        assert s["start_grad_norm"] == pytest.approx(float(grad_norm(fns[name], w)))
        assert s["line_value"][0] == pytest.approx(float(fns[name](w)))
        assert s["line_value"][-1] == pytest.approx(
            float(fns[name](torch.tensor(w_ce, dtype=torch.float64)))
        )
        path = np.asarray(s["paths"][0]["path"], dtype=float)
        assert path.shape == (cfg.surface_steps + 1, 2)
        np.testing.assert_allclose(path[0], start)


def test_both_losses_start_from_the_same_initial_weights(results):
    """The rows' gradient norms at the initial weights are those of one rebuilt population
    under each loss: the same seeds, so the same inits."""
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    fit = validation_split(data, cfg.validation_fraction, cfg.seed)
    widths = [fit.input_dim, *cfg.hidden, fit.output_dim]
    for loss, fn in (("MSE", softmax_mse), ("cross-entropy", F.cross_entropy)):
        pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, torch.device("cpu"))
        expected = full_batch_grad_norms(pop, fit, fn).tolist()
        for lr in {r["lr"] for r in results["grid"]}:
            rows = [r for r in results["grid"] if (r["loss"], r["lr"]) == (loss, lr)]
            got = [r["initial_grad_norm"] for r in sorted(rows, key=lambda r: r["seed"])]
            np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_figures_show_both_losses_and_the_selected_lrs(results):
    figs = figures(results)
    titles = [ax.get_title() for ax in figs["surfaces"].axes]
    assert sum("gradient norm" in t for t in titles) == 2 and len(titles) == 5  # + colorbar
    labels = [t.get_text() for t in figs["curves"].axes[1].get_legend().get_texts()]
    n = EXPERIMENT.make_config("smoke").seeds
    for loss, lr in results["selected"].items():
        if lr is not None:
            assert f"{loss} lr {lr:g} (n={n})" in labels
    line_labels = [t.get_text() for t in figs["line"].axes[1].get_legend().get_texts()]
    assert line_labels == ["MSE", "cross-entropy"]


def test_observations_and_verdicts_follow_the_numbers(run, results):
    summary = json.loads((run / "summary.json").read_text())
    g = {k: s["start_grad_norm"] for k, s in results["exact"]["losses"].items()}
    ratio = g["cross-entropy"] / g["MSE"]
    assert any(f"({ratio:.3g}x)" in line for line in summary["observations"])
    flat = summary["fidelity"][0]
    assert (flat["verdict"] == "reproduced") == (ratio >= 10)
    target = results["exact"]["ce_minimum_accuracy"] - 0.02
    steps = {
        k: next((i for i, a in enumerate(s["path_accuracy"]) if a >= target), np.inf)
        for k, s in results["exact"]["losses"].items()
    }
    assert (summary["fidelity"][1]["verdict"] == "reproduced") == (
        steps["cross-entropy"] < steps["MSE"]
    )
