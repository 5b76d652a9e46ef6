"""kit/outcomes.py: diverged, collapsed, not converged and fine runs told apart."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlprobe import DlprobeError
from dlprobe.experiments.kit import outcomes
from dlprobe.models import MLP
from dlprobe.train import Population


def _identity_mlp() -> MLP:
    """A ReLU MLP 1-2-1 that computes y = x exactly: relu(x) - relu(-x)."""
    net = MLP([1, 2, 1], "relu")
    first, last = net.linears
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0, -1.0]]))
        last.bias.zero_()
    return net


def _dead_mlp(output: float) -> MLP:
    """A ReLU MLP 1-2-1 whose hidden units are all dead: it outputs its last bias."""
    net = MLP([1, 2, 1], "relu")
    first, last = net.linears
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(-1.0)  # relu(-1) = 0 for every input
        last.bias.fill_(output)
    return net


def _regression() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-1, 1, 33).unsqueeze(1)  # (n, 1)
    return x, x.clone()  # target y = x


def _rows(pop: Population, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Run rows as an experiment writes them: final MSE, not diverged, and the probe."""
    with torch.no_grad():
        out = pop.forward(x, shared=True)  # (K, n, 1)
    losses = [float(F.mse_loss(o, y)) for o in out]
    probe = outcomes.collapse_probe(pop, x, y)
    return [
        {"seed": k, "train_loss": loss, "diverged": False, **p}
        for k, (loss, p) in enumerate(zip(losses, probe, strict=True))
    ]


def test_constant_loss_is_the_target_variance_and_the_class_entropy():
    x, y = _regression()
    assert outcomes.constant_loss(y) == pytest.approx(float(y.var(unbiased=False)))
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2])  # frequencies 1/4, 1/2, 1/4
    entropy = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert outcomes.constant_loss(labels) == pytest.approx(entropy)
    # the best constant logits (log frequencies) reach exactly that cross-entropy
    logits = torch.tensor([0.25, 0.5, 0.25]).log().expand(len(labels), 3)
    assert float(F.cross_entropy(logits, labels)) == pytest.approx(entropy)


def test_collapsed_model_is_detected_and_a_trained_model_is_fine():
    x, y = _regression()
    pop = Population.from_models([_identity_mlp(), _dead_mlp(float(y.mean()))])
    fitted, dead = _rows(pop, x, y)
    assert fitted["train_loss"] < 1e-12 and fitted["output_spread"] == pytest.approx(1.0)
    # the dead net sits at the best constant prediction: loss = the target variance
    assert dead["output_spread"] == 0.0
    assert dead["train_loss"] == pytest.approx(dead["constant_loss"])
    assert outcomes.outcome(fitted) == outcomes.FINE
    assert outcomes.outcome(dead) == outcomes.COLLAPSED
    assert pop.models_list()[0].training  # the probe leaves training mode on


def test_a_constant_model_off_the_mean_is_collapsed_but_a_barely_trained_one_is_not():
    x, y = _regression()
    off = {"diverged": False, "output_spread": 0.0, "constant_loss": 1 / 3, "train_loss": 0.9}
    assert outcomes.outcome(off) == outcomes.COLLAPSED  # constant, loss above the variance
    # output varies a little (spread 0.05) and loss already below the variance: learning
    young = {**off, "output_spread": 0.05, "train_loss": 0.3}
    assert outcomes.outcome(young) == outcomes.FINE
    # constant output but loss far below the constant loss cannot happen for a real run;
    # the loss condition keeps such a row from being called collapsed
    assert outcomes.outcome({**off, "train_loss": 0.1}) == outcomes.FINE


def test_collapsed_classifier_has_no_spread_in_its_probabilities():
    torch.manual_seed(0)
    x = torch.randn(40, 1)
    labels = (x[:, 0] > 0).long()  # (n,)
    net = MLP([1, 4, 2], "relu")
    first = net.linears[0]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(-1.0)
    pop = Population.from_models([net, MLP([1, 4, 2], "relu")])
    logits = pop.forward(x, shared=True).detach()  # (K, n, 2)
    spread = outcomes.output_spread(logits, labels)
    assert float(spread[0]) < 1e-6 < float(spread[1])  # 0 up to rounding
    # the dead net predicts its last bias for every input: the constant's cross-entropy
    dead_loss = float(F.cross_entropy(logits[0], labels))
    assert dead_loss >= outcomes.constant_loss(labels)


def test_diverged_beats_everything_and_not_converged_is_labelled():
    base = {"output_spread": 0.5, "constant_loss": 1.0, "train_loss": 0.2, "diverged": False}
    assert outcomes.outcome(base) == outcomes.FINE
    assert outcomes.outcome(base, converged=False) == outcomes.NOT_CONVERGED
    # a diverged run's loss comes back from JSON as None; it is diverged, not collapsed
    gone = {**base, "diverged": True, "train_loss": None, "output_spread": 0.0}
    assert outcomes.outcome(gone) == outcomes.DIVERGED
    assert not outcomes.is_collapsed(0.0, None, 1.0)
    assert not outcomes.is_collapsed(0.0, float("nan"), 1.0)


def test_excluded_lines_name_each_left_out_run_and_count_the_table():
    rows = [
        {"depth": 1, "seed": 0, "outcome": outcomes.FINE},
        {"depth": 1, "seed": 1, "outcome": outcomes.DIVERGED},
        {"depth": 4, "seed": 0, "outcome": outcomes.COLLAPSED},
        {"depth": 4, "seed": 1, "outcome": outcomes.NOT_CONVERGED},
    ]
    (line,) = outcomes.excluded_lines(rows, lambda r: f"depth {r['depth']} seed {r['seed']}", "x")
    assert line == (
        "Left out of the comparison, 3 of 4 runs: 1 collapsed to a constant output (depth 4 "
        "seed 0), 1 diverged (depth 1 seed 1), 1 trained but missed x (depth 4 seed 1)."
    )
    assert outcomes.fine_rows(rows) == rows[:1]
    table = {t["depth"]: t for t in outcomes.outcome_table(rows, "depth")}
    assert table[1]["runs"] == 2 and table[1]["fine"] == 1 and table[1]["diverged"] == 1
    assert table[4]["collapsed"] == 1 and table[4]["not converged"] == 1
    (all_in,) = outcomes.excluded_lines(rows[:1], str, "x")
    assert all_in == "All 1 runs trained and met x; none is left out."


def test_left_out_runs_differing_in_their_last_setting_share_one_name():
    names = [
        "CNN 1 conv (16 ch), seed 0",
        "MLP, lr 0.01, noise 0",
        "CNN 1 conv (16 ch), seed 1",
        "MLP, lr 0.01, noise 0.1",
        "MLP, lr 0.04, noise 0.1",  # another lr: its own name
        "seed 1 (100 epochs, |g| 3e-02)",  # the last field's value is not a plain value
        "seed 1 (100 epochs, |g| 4e-02)",
        "depth 4 seed 0",  # no ", ": nothing to merge
        "depth 4 seed 0",  # two runs of one name stay two
    ]
    assert outcomes.merged_names(names) == [
        "CNN 1 conv (16 ch), seed 0/1",
        "MLP, lr 0.01, noise 0/0.1",
        "MLP, lr 0.04, noise 0.1",
        "seed 1 (100 epochs, |g| 3e-02)",
        "seed 1 (100 epochs, |g| 4e-02)",
        "depth 4 seed 0",
        "depth 4 seed 0",
    ]
    rows = [{"seed": s, "outcome": outcomes.NOT_CONVERGED} for s in (0, 1, 2)]
    (line,) = outcomes.excluded_lines(rows, lambda r: f"MLP (40), seed {r['seed']}", "x")
    assert line.endswith("3 trained but missed x (MLP (40), seed 0/1/2).")


def test_a_name_given_twice_is_never_merged_into_itself():
    names = ["MLP, seed 0", "MLP, seed 1", "MLP, seed 1", "MLP, seed 2"]
    assert outcomes.merged_names(names) == ["MLP, seed 0/1/2", "MLP, seed 1"]


def test_merged_names_expand_back_to_exactly_the_names_given():
    """Random subsets of a grid of settings: expanding every merged name into the product
    of its "/"-joined values gives the names given, each once, and no other."""
    import itertools
    import random

    grid = {"w": ["w8", "w32"], "lr": ["0.002", "0.008"], "wd": ["0", "3e-4"], "seed": "012"}
    names = [
        f"{w}, lr {lr}, wd {wd}, seed {seed}"
        for w, lr, wd, seed in itertools.product(*grid.values())
    ]
    rng = random.Random(0)
    for _ in range(200):
        given = rng.sample(names, rng.randint(1, len(names)))
        merged = outcomes.merged_names(given)
        expanded = []
        for name in merged:
            fields = [f.rsplit(" ", 1) if " " in f else [f] for f in name.split(", ")]
            choices = [
                [f"{f[0]} {v}" for v in f[1].split("/")] if len(f) == 2 else f for f in fields
            ]
            expanded += [", ".join(c) for c in itertools.product(*choices)]
        assert sorted(expanded) == sorted(given)
        assert len(merged) <= len(given)
    assert outcomes.merged_names(names) == [  # "w8" is no "key value" setting: kept apart
        "w8, lr 0.002/0.008, wd 0/3e-4, seed 0/1/2",
        "w32, lr 0.002/0.008, wd 0/3e-4, seed 0/1/2",
    ]


def test_bad_input_is_rejected_with_a_message():
    y = torch.zeros(5, 1)
    with pytest.raises(DlprobeError, match="constant targets"):
        outcomes.output_spread(torch.zeros(2, 5, 1), y)
    with pytest.raises(DlprobeError, match=r"\(K, n, d\)"):
        outcomes.output_spread(torch.zeros(5, 1), torch.randn(5, 1))
