"""Divergence: a model whose loss or parameters blow up is frozen, the others train on."""

import dataclasses
import math

import pytest
import torch

from dlprobe.data import function_dataset
from dlprobe.models import MLP
from dlprobe.train import (
    Population,
    TrainConfig,
    default_loss,
    evaluate_population,
    train_plain,
    train_population,
)
from dlprobe.train.history import LOSS_ABOVE_BLOWUP, NON_FINITE_LOSS, NON_FINITE_PARAMETERS


def _square():
    return function_dataset("square", 32)  # targets x² on [-1, 1]


def _is_nan(values):
    return all(math.isnan(v) for v in values)


def _train_loss(model, data):
    loss, _ = evaluate_population(
        Population.from_models([model]), data.x_train, data.y_train, default_loss(data)
    )
    return loss.item()


def test_every_model_diverging_still_returns_an_evaluated_history():
    """SGD with a huge learning rate: all models blow up before the first scheduled
    evaluation (epoch 5); training stops there and evaluates once."""
    data = _square()
    pop = Population(lambda: MLP([1, 8, 1], "tanh"), [0, 1, 2])
    cfg = TrainConfig(optimizer="sgd", lr=1e4, epochs=20, batch_size=8, eval_every_epochs=5)
    hist = train_population(pop, data, cfg)
    assert hist.diverged == [0, 1, 2]
    assert hist.diverged_reason == [NON_FINITE_LOSS] * 3
    last = max(hist.diverged_at_epoch)
    assert hist.epochs == [last + 1] and last + 1 < 5
    assert _is_nan(hist.final("train_loss")) and _is_nan(hist.final("test_loss"))
    assert [r["diverged"] for r in hist.final_records()] == [True] * 3
    assert torch.isfinite(pop.flat_params()).all()
    assert all(0 < s < cfg.epochs * cfg.steps_per_epoch(data.n_train) for s in hist.steps_taken)


def test_overflowed_parameters_are_rolled_back_to_the_last_finite_ones():
    """With targets x 100 and lr 1e38 the first step overflows every parameter: each model
    is frozen at its parameters before training, the last ones known finite."""
    data = _square()
    big = dataclasses.replace(data, y_train=data.y_train * 100, y_test=data.y_test * 100)
    pop = Population(lambda: MLP([1, 8, 1], "tanh"), [0, 1])
    before = pop.flat_params()
    hist = train_population(pop, big, TrainConfig(optimizer="sgd", lr=1e38, batch_size=8))
    assert hist.diverged_at_epoch == [0, 0] and hist.steps_taken == [1, 1]
    assert torch.equal(pop.flat_params(), before)
    assert hist.epochs == [1] and _is_nan(hist.final("train_loss"))


def test_some_models_diverge_and_the_others_equal_their_separate_training():
    data = _square()
    cfg = TrainConfig(optimizer="sgd", lr=0.3, epochs=8, batch_size=8, snapshot_every_epochs=1)

    def model(seed):
        torch.manual_seed(seed)
        m = MLP([1, 16, 1], "tanh")
        if seed % 2:  # 10x the initial weights: SGD at lr 0.3 blows these up
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(10)
        return m

    seeds = [0, 1, 2, 3]
    pop = Population.from_models([model(s) for s in seeds], seeds)
    hist = train_population(pop, data, cfg)
    assert hist.diverged == [1, 3]
    assert hist.diverged_reason == [None, LOSS_ABOVE_BLOWUP, None, LOSS_ABOVE_BLOWUP]
    for k in (1, 3):
        e = hist.diverged_at_epoch[k]
        row = hist.epochs.index(e)
        assert all(math.isfinite(v) for v in [r[k] for r in hist.train_loss[:row]])
        assert _is_nan([r[k] for r in hist.train_loss[row:]] + [r[k] for r in hist.test_loss[row:]])
        assert torch.isfinite(hist.snapshots[e][k]).all()
        for later in hist.snapshots[e:]:  # frozen from the divergence on
            assert torch.equal(later[k], hist.snapshots[e][k])
        frozen_loss = _train_loss(pop.model(k), data)  # what the check saw
        assert frozen_loss > cfg.blowup_loss_factor * _train_loss(model(seeds[k]), data)
        assert hist.steps_taken[k] == e * cfg.steps_per_epoch(data.n_train)
    for k in (0, 2):
        separate = model(seeds[k])
        train_plain(separate, data, cfg, seeds[k])
        for (name, p), q in zip(
            separate.named_parameters(), pop.model(k).parameters(), strict=True
        ):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=f"model {k} {name}")
        assert hist.final("train_loss")[k] == pytest.approx(_train_loss(separate, data), rel=1e-4)


@pytest.mark.parametrize("factor,eval_every", [(100.0, 1), (0.0, 5)])
def test_blowup_factor_catches_a_finite_blow_up_and_zero_turns_it_off(factor, eval_every):
    """Full-batch SGD on a linear model with a learning rate past stability: the loss grows
    by a steady factor per step, so it passes 100 x its start long before inf."""
    data = _square()
    pop = Population(lambda: torch.nn.Sequential(torch.nn.Linear(1, 1)), [0, 1])
    cfg = TrainConfig(
        optimizer="sgd",
        lr=2.0,
        epochs=60,
        batch_size=0,
        blowup_loss_factor=factor,
        eval_every_epochs=eval_every,
    )
    hist = train_population(pop, data, cfg)
    assert hist.diverged == [0, 1]
    for k in range(2):
        row = next(i for i, r in enumerate(hist.train_loss) if math.isnan(r[k]))
        before = [r[k] for r in hist.train_loss[:row]]
        assert all(math.isfinite(v) for v in before)
        assert _is_nan([r[k] for r in hist.train_loss[row:]])
        if factor:
            assert hist.diverged_reason[k] == LOSS_ABOVE_BLOWUP
            assert hist.epochs[row] == hist.diverged_at_epoch[k]  # found at that evaluation
            assert max(before) <= factor * hist.initial_train_loss[k]
            assert math.isfinite(_train_loss(pop.model(k), data))  # frozen where it was seen
        else:
            assert hist.diverged_reason[k] == NON_FINITE_LOSS
            assert max(before) > 1e6 * hist.initial_train_loss[k]  # passed 1e6 x unnoticed
    if not factor:  # found by the per-step check between evaluations: one row is forced
        last = max(hist.diverged_at_epoch) + 1
        assert hist.epochs[-1] == last and last % eval_every != 0
        assert len(hist.epochs) == last // eval_every + 1


def test_non_finite_parameter_with_finite_loss_is_caught_at_evaluation():
    """A -inf first-layer bias leaves a ReLU unit at 0, so the loss stays finite; the
    evaluation still finds the parameter and freezes the model at its last finite ones."""
    data = _square()
    pop = Population(lambda: MLP([1, 8, 1], "relu"), [0, 1])
    first_bias = pop.params["1.bias"]  # (K, 8)
    kept = {}

    def overflow_model_1(done, total, metrics):  # after the evaluation at epoch 2
        if done == 2:
            kept["params"] = pop.flat_params()[1].clone()
            with torch.no_grad():
                first_bias[1, 0] = -math.inf

    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=5, batch_size=8)
    hist = train_population(pop, data, cfg, progress=overflow_model_1)
    assert hist.diverged_at_epoch == [None, 3]
    assert hist.diverged_reason == [None, NON_FINITE_PARAMETERS]
    assert math.isfinite(hist.train_loss[1][1]) and math.isnan(hist.train_loss[2][1])
    assert torch.equal(pop.flat_params()[1], kept["params"])
    assert all(math.isfinite(r[0]) for r in hist.train_loss)


def test_models_diverged_before_training_give_one_nan_row_at_epoch_zero():
    data = _square()
    pop = Population(lambda: MLP([1, 8, 1], "relu"), [0, 1])
    with torch.no_grad():
        pop.parameters()[0][0].fill_(1e30)  # model 0: the loss overflows
        pop.parameters()[1][1, 0] = math.nan  # model 1: a NaN bias
    before = pop.flat_params()
    hist = train_population(pop, data, TrainConfig(epochs=3, batch_size=8, record_steps=True))
    assert hist.diverged_at_epoch == [0, 0] and hist.steps_taken == [0, 0]
    assert hist.diverged_reason == [NON_FINITE_LOSS, NON_FINITE_LOSS]
    assert hist.epochs == [0] and _is_nan(hist.final("train_loss"))
    assert _is_nan(hist.initial_train_loss) and hist.step_loss == []
    assert torch.equal(pop.flat_params().isnan(), before.isnan())
    finite = before.isfinite()
    assert torch.equal(pop.flat_params()[finite], before[finite])


def test_step_records_of_a_diverged_model_are_nan_from_its_divergence_on():
    data = _square()
    pop = Population(lambda: MLP([1, 8, 1], "tanh"), [0, 1])
    with torch.no_grad():  # model 1 starts 10x larger: SGD at lr 0.5 overflows it
        for p in pop.parameters():
            p[1].mul_(10)
    cfg = TrainConfig(optimizer="sgd", lr=0.5, epochs=6, batch_size=8, record_steps=True)
    hist = train_population(pop, data, cfg)
    assert hist.diverged == [1] and hist.diverged_reason[1] is not None
    first_nan = next(s for s, losses in enumerate(hist.step_loss) if math.isnan(losses[1]))
    assert first_nan == hist.steps_taken[1]  # the steps before updated it
    assert _is_nan([r[1] for r in hist.step_loss[first_nan:]])
    assert _is_nan([r[1] for r in hist.step_grad_norm[first_nan:]])
    assert all(math.isfinite(r[0]) for r in hist.step_loss)


def test_freezer_keeps_each_models_last_finite_parameters():
    """One copy for all while every active model is finite, a copy per model otherwise:
    either way a model frozen with overflowed parameters gets back the ones it had when
    last found finite, also after a checkpoint round trip of the freezer's state."""
    from dlprobe.train.freezer import Freezer

    pop = Population(lambda: MLP([1, 4, 1], "tanh"), [0, 1, 2])
    freezer = Freezer(pop)
    first = pop.flat_params()
    freezer.remember_finite(torch.tensor([True, True, True]))  # one copy of all
    with torch.no_grad():
        for p in pop.params.values():
            p.add_(1.0)
    second = pop.flat_params()
    freezer.remember_finite(torch.tensor([True, False, True]))  # model 1 not finite: per model
    with torch.no_grad():
        for p in pop.params.values():
            p.fill_(math.inf)
    restored = Freezer(pop)
    restored.load(freezer.state())
    for f in (freezer, restored):
        for k in range(3):
            f.freeze(k)
        f.restore()  # puts every frozen model's kept parameters back
        expected = torch.stack([second[0], first[1], second[2]])
        assert torch.equal(pop.flat_params(), expected)
        with torch.no_grad():
            for p in pop.params.values():
                p.fill_(math.inf)
