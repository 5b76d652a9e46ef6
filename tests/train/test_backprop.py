"""The written-out backward pass gives autograd's losses and gradients bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import CNN, MLP
from dlprobe.train import Population, TrainConfig, train_population
from dlprobe.train import trainer as trainer_module
from dlprobe.train.backprop import SequentialBackprop
from dlprobe.train.trainer import per_model_losses

ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "selu", "cos"]


def _autograd(pop, loss_fn, x, y, weights):
    """Losses and gradients as the autograd road computes them."""
    losses = per_model_losses(loss_fn, pop.forward(x), y)
    for p in pop.parameters():
        p.grad = torch.zeros_like(p)
    torch.where(weights.bool(), losses, 0.0).sum().backward()
    return losses.detach(), [p.grad.clone() for p in pop.parameters()]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_losses_and_gradients_are_bitwise_autograds(activation, loss):
    gen = torch.Generator().manual_seed(0)
    out = 10 if loss == "cross_entropy" else 3
    pop = Population(lambda: MLP([40, 33, 17, out], activation), range(5))
    x = torch.randn(5, 50, 1, 40, generator=gen)  # batch 50: 1/50 is not exact in float
    if loss == "cross_entropy":
        loss_fn, y = F.cross_entropy, torch.randint(0, 10, (5, 50), generator=gen)
    else:
        loss_fn, y = F.mse_loss, torch.randn(5, 50, out, generator=gen)
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])  # model 2 frozen
    expected_losses, expected_grads = _autograd(pop, loss_fn, x, y, weights)
    backprop = SequentialBackprop.for_training(pop, loss_fn, x[0], y[0])
    assert backprop is not None and backprop.loss == loss
    losses = backprop.losses(x, y)
    backprop.backward(weights)
    assert torch.equal(losses, expected_losses)
    for name, p, expected in zip(pop.params, pop.parameters(), expected_grads, strict=True):
        assert torch.equal(p.grad, expected), name
        assert p.grad.is_contiguous()  # fused optimizers misread strided gradients


def test_plain_sequentials_without_bias_or_flatten():
    gen = torch.Generator().manual_seed(1)
    pop = Population(
        lambda: torch.nn.Sequential(
            torch.nn.Linear(3, 6, bias=False), torch.nn.Identity(), torch.nn.Tanh(),
            torch.nn.Linear(6, 2),
        ),
        range(3),
    )  # fmt: skip
    x, y = torch.randn(3, 7, 3, generator=gen), torch.randn(3, 7, 2, generator=gen)
    weights = torch.ones(3)
    expected_losses, expected_grads = _autograd(pop, F.mse_loss, x, y, weights)
    backprop = SequentialBackprop.for_training(pop, F.mse_loss, x[0], y[0])
    assert torch.equal(backprop.losses(x, y), expected_losses)
    backprop.backward(weights)
    assert all(
        torch.equal(p.grad, g) for p, g in zip(pop.parameters(), expected_grads, strict=True)
    )


def test_other_models_losses_and_inputs_take_autograds_road():
    x, labels = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    mlp = Population(lambda: MLP([40, 8, 10]), [0, 1])
    assert SequentialBackprop.for_training(mlp, F.cross_entropy, x, labels) is not None
    for pop, loss_fn, xs, y in [
        (Population(lambda: CNN([1, 40], [4], 10), [0, 1]), F.cross_entropy, x, labels),
        (Population(lambda: MLP([40, 8, 10], "maxout"), [0, 1]), F.cross_entropy, x, labels),
        (Population(lambda: MLP([40, 8, 10], batch_norm=True), [0, 1]), F.cross_entropy, x, labels),
        (mlp, lambda out, y: F.cross_entropy(out, y, label_smoothing=0.1), x, labels),
        (mlp, F.mse_loss, x, torch.randn(8, 3)),  # targets of another width than the output
        (  # Linear on (K, B, 5, 3): not one batched product per layer
            Population(lambda: torch.nn.Sequential(torch.nn.Linear(3, 2)), [0]),
            F.mse_loss,
            torch.randn(8, 5, 3),
            torch.randn(8, 5, 2),
        ),
    ]:
        assert SequentialBackprop.for_training(pop, loss_fn, xs, y) is None


@pytest.mark.parametrize(
    "cfg,data",
    [
        (TrainConfig(optimizer="adam", lr=3e-3, epochs=3, batch_size=50, record_steps=True),
         "mnist1d"),
        (TrainConfig(optimizer="momentum", lr=0.05, epochs=3, batch_size=64, schedule="cosine"),
         "mnist1d"),
        (TrainConfig(optimizer="sgd", lr=0.1, epochs=40, batch_size=0), "sinc"),
    ],
    ids=["adam", "momentum", "full-batch-mse"],
)  # fmt: skip
def test_training_on_either_road_gives_the_same_numbers_bitwise(cfg, data, monkeypatch):
    data = (
        load_dataset("mnist1d").subset_train(256, seed=0)
        if data == "mnist1d"
        else function_dataset("sinc", 64)
    )
    widths = [40, 16, 16, 10] if data.task == "classification" else [1, 12, 12, 1]

    def train():
        pop = Population(lambda: MLP(widths, "tanh"), [3, 7, 11])
        return pop, train_population(pop, data, cfg)

    calls = []
    real = SequentialBackprop.for_training

    def counted(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(SequentialBackprop, "for_training", counted)
    written_out, hist = train()
    assert calls and calls[0] is not None  # the written-out road was taken
    monkeypatch.setattr(SequentialBackprop, "for_training", lambda *args: None)
    autograd, expected = train()
    assert torch.equal(written_out.flat_params(), autograd.flat_params())
    assert hist.train_loss == expected.train_loss and hist.step_loss == expected.step_loss
    assert hist.step_grad_norm == expected.step_grad_norm


def test_frozen_models_on_the_written_out_road_stay_frozen_and_others_match():
    """A model that diverges mid-training is frozen on either road, and the rest train on
    to the same numbers."""
    data = function_dataset("square", 32)
    cfg = TrainConfig(optimizer="sgd", lr=0.5, epochs=6, batch_size=8, record_steps=True)

    def train(road):
        pop = Population(lambda: MLP([1, 8, 1], "tanh"), [0, 1])
        with torch.no_grad():  # model 1 starts 10x larger: SGD at lr 0.5 overflows it
            for p in pop.parameters():
                p[1].mul_(10)
        with pytest.MonkeyPatch.context() as m:
            if road == "autograd":
                m.setattr(trainer_module.SequentialBackprop, "for_training", lambda *a: None)
            return pop, train_population(pop, data, cfg)

    (pop_a, hist_a), (pop_b, hist_b) = train("written-out"), train("autograd")
    assert hist_a.diverged == [1] and hist_a.diverged_at_epoch == hist_b.diverged_at_epoch
    assert torch.equal(pop_a.flat_params(), pop_b.flat_params())
    assert repr(hist_a.step_loss) == repr(hist_b.step_loss)  # NaN == NaN as text
