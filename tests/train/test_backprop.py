"""The default road (written-out backward pass, fused Adam's kernel called directly) gives
the reference road's (autograd, torch.optim) losses, gradients and parameters bit for bit."""

import copy

import pytest
import torch
import torch.nn.functional as F

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import CNN, MLP
from dlprobe.train import Population, TrainConfig, train_population
from dlprobe.train.backprop import SequentialBackprop
from dlprobe.train.evaluation import per_model_losses
from dlprobe.train.optim import FusedAdamStep

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


@pytest.mark.parametrize(
    "layers",
    [
        lambda: [torch.nn.Linear(3, 6, bias=False), torch.nn.Identity(), torch.nn.Tanh(),
                 torch.nn.Linear(6, 2)],
        # the forward overwrites a product with its ReLU in place: never the ReLU's output
        # with the tanh after it, which the ReLU's backward still needs
        lambda: [torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Tanh(), torch.nn.Sigmoid(),
                 torch.nn.Linear(6, 2)],
        lambda: [torch.nn.Sigmoid(), torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)],
    ],
    ids=["no-bias-identity", "activation-chain", "activation-first"],
)  # fmt: skip
def test_plain_sequentials_without_bias_or_flatten(layers):
    gen = torch.Generator().manual_seed(1)
    pop = Population(lambda: torch.nn.Sequential(*layers()), range(3))
    x, y = torch.randn(3, 7, 3, generator=gen), torch.randn(3, 7, 2, generator=gen)
    weights = torch.ones(3)
    expected_losses, expected_grads = _autograd(pop, F.mse_loss, x, y, weights)
    backprop = SequentialBackprop.for_training(pop, F.mse_loss, x[0], y[0])
    x_before = x.clone()
    assert torch.equal(backprop.losses(x, y), expected_losses)
    assert torch.equal(x, x_before)  # the caller's inputs are never overwritten
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
    "cfg,data,batch_norm",
    [
        (TrainConfig(optimizer="adam", lr=3e-3, epochs=3, batch_size=50, record_steps=True),
         "mnist1d", False),
        (TrainConfig(optimizer="adamw", lr=3e-3, epochs=2, batch_size=64, weight_decay=0.1,
                     schedule="cosine"), "mnist1d", False),
        (TrainConfig(optimizer="momentum", lr=0.05, epochs=3, batch_size=64, schedule="cosine"),
         "mnist1d", False),
        (TrainConfig(optimizer="sgd", lr=0.1, epochs=40, batch_size=0), "sinc", False),
        (TrainConfig(optimizer="adam", lr=3e-3, epochs=2, batch_size=64), "mnist1d", True),
    ],
    ids=["adam", "adamw", "momentum", "full-batch-mse", "batch-norm-adam"],
)  # fmt: skip
def test_training_on_either_road_gives_the_same_numbers_bitwise(cfg, data, batch_norm):
    """The default road (written-out backward where it covers the model, fused Adam's
    kernel called directly) against the reference road (autograd, torch.optim's step)."""
    data = (
        load_dataset("mnist1d").subset_train(256, seed=0)
        if data == "mnist1d"
        else function_dataset("sinc", 64)
    )
    widths = [40, 16, 16, 10] if data.task == "classification" else [1, 12, 12, 1]

    def train(reference):
        pop = Population(lambda: MLP(widths, "tanh", batch_norm=batch_norm), [3, 7, 11])
        return pop, train_population(pop, data, cfg, reference=reference)

    calls = []
    real = SequentialBackprop.for_training

    def counted(*args):
        calls.append(real(*args))
        return calls[-1]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(SequentialBackprop, "for_training", counted)
        fast, hist = train(reference=False)
    assert (calls[0] is None) == batch_norm  # the written-out road where it covers the model
    reference, expected = train(reference=True)
    assert len(calls) == 1  # the reference road does not ask for it
    assert torch.equal(fast.flat_params(), reference.flat_params())
    assert hist.train_loss == expected.train_loss and hist.step_loss == expected.step_loss
    assert hist.step_grad_norm == expected.step_grad_norm


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_step_is_torchs_step_bitwise_and_keeps_its_state(name):
    gen = torch.Generator().manual_seed(0)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    ours = [torch.randn(4, 5, 3, generator=gen), torch.randn(4, 5, generator=gen)]
    theirs = [p.clone() for p in ours]
    lean = FusedAdamStep(cls(ours, lr=1e-2, weight_decay=0.05, fused=True))
    torch_opt = cls(theirs, lr=1e-2, weight_decay=0.05, fused=True)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        lr = 1e-2 / (1 + step)  # a schedule sets the groups' lr between steps
        lean.param_groups[0]["lr"] = torch_opt.param_groups[0]["lr"] = lr
        lean.step()
        torch_opt.step()
        if step == 2:  # a checkpoint round trip in the middle
            lean.load_state_dict(copy.deepcopy(lean.state_dict()))
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
    saved, expected = lean.state_dict(), torch_opt.state_dict()
    for i in range(2):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved["state"][i][key], expected["state"][i][key])


def test_fused_adam_step_refuses_other_optimizers():
    p = [torch.zeros(3, requires_grad=True)]
    for optimizer in (torch.optim.Adam(p), torch.optim.SGD(p, lr=0.1)):
        with pytest.raises(DlprobeError, match="wraps a torch.optim.Adam or AdamW with fused"):
            FusedAdamStep(optimizer)
    with pytest.raises(DlprobeError, match="without amsgrad"):
        FusedAdamStep(torch.optim.Adam(p, amsgrad=True, fused=True))


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
        return pop, train_population(pop, data, cfg, reference=road == "autograd")

    (pop_a, hist_a), (pop_b, hist_b) = train("written-out"), train("autograd")
    assert hist_a.diverged == [1] and hist_a.diverged_at_epoch == hist_b.diverged_at_epoch
    assert torch.equal(pop_a.flat_params(), pop_b.flat_params())
    assert repr(hist_a.step_loss) == repr(hist_b.step_loss)  # NaN == NaN as text
