"""Stop targets: train each model until its train loss or accuracy meets a target, or a cap."""

import dataclasses

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import MLP
from dlprobe.train import (
    Population,
    TrainConfig,
    evaluate_population,
    train_plain,
    train_population,
)


def _square_net():
    return MLP([1, 16, 1], "tanh")


def _seeded(factory, seed):
    torch.manual_seed(seed)
    return factory()


def _zero_net():
    """Zero weights: the hidden units and their gradients stay 0, only the output bias learns,
    so the model is a constant and cannot go below the variance of the targets."""
    model = _square_net()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_loss_target_freezes_each_model_when_met_and_equals_separate_training():
    data = function_dataset("square", 32)  # targets x² on [-1, 1]: variance 0.1
    target, cap = 3e-3, 50
    cfg = TrainConfig(
        optimizer="adam",
        lr=3e-2,
        epochs=cap,
        batch_size=8,
        stop_below_train_loss=target,
        snapshot_every_epochs=1,
    )
    seeds = [0, 1, 2, 3]
    models = [_seeded(_square_net, s) for s in seeds[:3]] + [_zero_net()]
    pop = Population.from_models(models, seeds)
    hist = train_population(pop, data, cfg)

    stopped = hist.stopped_at_epoch
    assert all(e is not None for e in stopped[:3]) and len(set(stopped[:3])) == 3, stopped
    assert hist.reached_target == [True, True, True, False]
    assert stopped[3] is None and hist.epochs[-1] == cap  # the constant model ran to the cap
    assert hist.final("train_loss")[3] > target
    steps = cfg.steps_per_epoch(data.n_train)
    assert hist.steps_taken == [e * steps for e in stopped[:3]] + [cap * steps]
    assert hist.diverged == []
    for k in range(3):
        row = hist.epochs.index(stopped[k])
        assert hist.train_loss[row][k] < target <= min(hist.train_loss[i][k] for i in range(row))
        assert hist.final("train_loss")[k] < target
        for e in range(stopped[k], hist.snapshot_epochs[-1] + 1):  # frozen from there on
            assert torch.equal(hist.snapshots[e][k], hist.snapshots[stopped[k]][k])
        # The population equals a separate training of this model for its stop epoch.
        model = _seeded(_square_net, seeds[k])
        train_plain(model, data, dataclasses.replace(cfg, epochs=stopped[k]), seeds[k])
        for (name, p), q in zip(model.named_parameters(), pop.model(k).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"model {k} {name}")


def test_accuracy_or_loss_target_is_checked_at_every_evaluation():
    data = load_dataset("mnist1d").subset_train(256, seed=0)
    cfg = TrainConfig(
        optimizer="adam",
        lr=2e-2,
        epochs=40,
        batch_size=64,
        eval_every_epochs=2,
        stop_at_train_accuracy=0.8,
        stop_below_train_loss=0.6,
    )
    pop = Population(lambda: MLP([40, 32, 10], "relu"), [0, 1, 2])
    hist = train_population(pop, data, cfg)
    assert all(hist.reached_target) and all(e % 2 == 0 for e in hist.stopped_at_epoch)
    assert hist.epochs == list(range(2, max(hist.stopped_at_epoch) + 1, 2))  # then all stopped
    n = data.n_train
    for k, epoch in enumerate(hist.stopped_at_epoch):
        row = hist.epochs.index(epoch)
        correct = round(hist.train_accuracy[row][k] * n)
        assert correct >= 0.8 * n or hist.train_loss[row][k] < 0.6
        for earlier in range(row):  # not met at any earlier evaluation
            assert round(hist.train_accuracy[earlier][k] * n) < 0.8 * n
            assert hist.train_loss[earlier][k] >= 0.6
        _, acc = evaluate_population(
            Population.from_models([pop.model(k)]),
            data.x_train,
            data.y_train,
            torch.nn.functional.cross_entropy,
        )
        assert acc.item() == hist.final("train_accuracy")[k]  # frozen where it met the target


def test_without_targets_reached_target_is_none():
    data = function_dataset("square", 16)
    hist = train_population(
        Population(_square_net, [0, 1]), data, TrainConfig(epochs=2, batch_size=8)
    )
    assert hist.reached_target == [None, None] and hist.stopped_at_epoch == [None, None]
    assert hist.steps_taken == [4, 4]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"stop_below_train_loss": -1.0}, "stop_below_train_loss"),
        ({"stop_below_train_loss": float("nan")}, "stop_below_train_loss"),
        ({"stop_below_train_loss": float("inf")}, "stop_below_train_loss"),
        ({"stop_below_grad_norm": -1e-3}, "stop_below_grad_norm"),
        ({"stop_at_train_accuracy": 1.5}, "stop_at_train_accuracy must be <= 1"),
        ({"stop_at_train_accuracy": -0.1}, "stop_at_train_accuracy"),
        ({"stop_at_train_accuracy": float("nan")}, "stop_at_train_accuracy"),
        ({"blowup_loss_factor": 0.5}, "blowup_loss_factor"),
        ({"blowup_loss_factor": float("inf")}, "blowup_loss_factor"),
        ({"blowup_loss_factor": float("nan")}, "blowup_loss_factor"),
        ({"stop_at_train_accuracy": 0.9}, "needs integer class labels"),  # regression data
    ],
)
def test_bad_stop_targets_are_rejected_before_training(change, message):
    pop = Population(_square_net, [0])
    before = pop.flat_params()
    with pytest.raises(DlprobeError, match=message):
        train_population(pop, function_dataset("square", 16), TrainConfig(batch_size=8, **change))
    assert torch.equal(pop.flat_params(), before)
