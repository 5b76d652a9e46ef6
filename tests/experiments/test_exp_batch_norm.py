import copy
import json
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import from_dict
from dlprobe.data import load_dataset
from dlprobe.experiments.batch_norm import EXPERIMENT, Config, epoch_losses, notes
from dlprobe.experiments.kit import group_rows, probe_examples, seeds_from
from dlprobe.measure import hessian_eigenvalues
from dlprobe.models import MLP, recompute_batch_norm_statistics
from dlprobe.train import History, Population
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("batch-norm")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("batch-norm")
    cfg = from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, load_results(run), cfg


def test_epoch_losses_are_the_mean_minibatch_loss_of_each_epoch():
    hist = History(seeds=[0, 1], step_loss=[[1.0, 2.0], [3.0, 4.0], [5.0, math.nan], [7.0, 8.0]])
    out = epoch_losses(hist, steps=2, epochs=3)  # the third epoch never ran (all stopped)
    np.testing.assert_array_equal(out[:, :2], [[2.0, 6.0], [3.0, math.nan]])
    assert np.isnan(out[:, 2]).all()


@pytest.mark.parametrize("step_loss", [[], [[math.nan, math.nan]]])
def test_epoch_losses_of_a_population_that_diverged_in_its_first_epoch_are_all_nan(step_loss):
    """Every model diverged before one epoch was complete (the quick profile's relu at lr
    x100): no epoch has a mean, and nothing fails on the empty reshape."""
    out = epoch_losses(History(seeds=[0, 1], step_loss=step_loss), steps=22, epochs=3)
    assert out.shape == (2, 3) and np.isnan(out).all()


def test_top_eigenvalue_equals_the_exact_hessians_largest(smoke_run):
    """The Hessian figure's points, against the exact float64 Hessian of the model rebuilt
    from its snapshot with BatchNorm statistics recomputed on the training set."""
    run, results, cfg = smoke_run
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    x, y = probe_examples(data, cfg.probe_examples, cfg.seed)
    widths = results["widths"]
    act = cfg.activations[0]
    checked = 0
    for variant, batch_norm in (("plain", False), ("batch norm", True)):
        stage = f"{act}-{variant.replace(' ', '-')}-x1.done.pt"
        hist = History.from_state(load_checkpoint_file(run / "checkpoints" / stage)["history"])
        factory = partial(MLP, widths, act, batch_norm=batch_norm, init=cfg.init)
        seeds = seeds_from(cfg.seed, cfg.seeds)
        pop = Population(factory, seeds)
        rows = group_rows(
            [r for r in results["hessian"] if r["variant"] == variant], "seed", "epoch"
        )
        for t in (0, len(hist.snapshots) - 1):
            pop.load_flat_params(hist.snapshots[t])
            for k, seed in enumerate(seeds):
                model = recompute_batch_norm_statistics(pop.model(k), data.x_train)
                exact = hessian_eigenvalues(model, F.cross_entropy, x, y)[-1].item()
                (row,) = rows[(seed, hist.snapshot_epochs[t])]
                assert row["top_eigenvalue"] == pytest.approx(exact, rel=1e-6, abs=1e-9)
                checked += 1
    assert checked == 2 * 2 * cfg.seeds


def test_epochs_to_target_is_the_first_epoch_below_it(smoke_run):
    _, results, cfg = smoke_run
    curves = group_rows(results["curves"], "activation", "variant", "lr", "seed")
    for r in results["runs"]:
        losses = [c["loss"] for c in curves[(r["activation"], r["variant"], r["lr"], r["seed"])]]
        below = [e for e, v in enumerate(losses, 1) if v < cfg.target_loss]
        expected = None if r["diverged"] or not below else below[0]
        assert r["epochs_to_target"] == expected
        assert r["final_train_mode_loss"] == pytest.approx(losses[-1], nan_ok=True)
    assert {r["lr"] for r in results["runs"]} == {cfg.train.lr * f for f in cfg.lr_factors}


def _synthetic(results: dict, reached: dict) -> dict:
    """The smoke results with ``epochs_to_target`` set per (variant, lr): an epoch count,
    or None for every seed."""
    changed = copy.deepcopy(results)
    for r in changed["runs"]:
        r["epochs_to_target"] = reached[(r["variant"], r["lr"])]
        r["diverged"] = False
    return changed


KEYS = ("larger learning rates", "fewer epochs", "fails without BN")


def test_trainable_range_and_speed_verdicts_follow_the_numbers(smoke_run):
    _, results, cfg = smoke_run
    small, large = (cfg.train.lr * f for f in cfg.lr_factors)
    act = cfg.activations[0]

    def verdicts(reached):
        rows = notes(_synthetic(results, reached)).fidelity
        return {key: r["verdict"] for r in rows for key in KEYS if key in r["claim"]}

    bn_wider = verdicts({("plain", small): 2, ("plain", large): None,
                         ("batch norm", small): 1, ("batch norm", large): 1})  # fmt: skip
    assert bn_wider["larger learning rates"] == "reproduced"
    assert bn_wider["fewer epochs"] == "reproduced"  # 1 epoch vs 2
    if act == "sigmoid":
        assert bn_wider["fails without BN"].startswith("differs")  # plain trains at small
    same = verdicts({("plain", small): 1, ("plain", large): 1,
                     ("batch norm", small): 3, ("batch norm", large): 3})  # fmt: skip
    assert same["larger learning rates"].startswith("differs")
    assert same["fewer epochs"].startswith("differs")
    only_bn = verdicts({("plain", small): None, ("plain", large): None,
                        ("batch norm", small): 2, ("batch norm", large): None})  # fmt: skip
    assert only_bn["larger learning rates"] == "reproduced"
    if act == "sigmoid":
        assert only_bn["fails without BN"] == "reproduced"


def test_bad_settings_are_refused():
    with pytest.raises(DlprobeError, match="lr_factors must hold 1"):
        EXPERIMENT.make_config("smoke", {"lr_factors": (0.5, 2.0)})
    with pytest.raises(DlprobeError, match="multiple of snapshot_every_epochs"):
        EXPERIMENT.make_config("smoke", {"train.snapshot_every_epochs": 3})


def test_batch_norm_populations_train_one_by_one_and_plain_ones_stacked(smoke_run):
    _, results, cfg = smoke_run
    widths, act = results["widths"], cfg.activations[0]
    assert Population(partial(MLP, widths, act), [0]).batched
    assert not Population(partial(MLP, widths, act, batch_norm=True), [0]).batched
    assert torch.isfinite(torch.tensor([r["top_eigenvalue"] for r in results["hessian"]])).all()
