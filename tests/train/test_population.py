import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import CNN, MLP
from dlprobe.train import (
    Checkpoint,
    Population,
    TrainConfig,
    evaluate_population,
    train_plain,
    train_population,
)
from dlprobe.train import population as population_module


def _mnist1d_small():
    return load_dataset("mnist1d").subset_train(256, seed=0)


@pytest.mark.parametrize(
    "optimizer,schedule,arch",
    [
        ("sgd", "constant", "mlp"),
        ("adam", "cosine", "mlp"),
        ("momentum", "step", "mlp"),
        ("adam", "constant", "cnn"),  # the general vmap road
    ],
)
def test_population_equals_separate_trainings(optimizer, schedule, arch):
    """K models in lockstep give the same parameters and losses as K plain loops."""
    data = _mnist1d_small()
    cfg = TrainConfig(
        optimizer=optimizer,
        lr=0.05 if optimizer != "adam" else 3e-3,
        epochs=3,
        batch_size=50,
        schedule=schedule,
        step_every_epochs=1,
        warmup_epochs=0.5,
    )
    seeds = [3, 7, 11, 19]

    def factory():
        if arch == "cnn":
            return CNN([1, 40], [4, 4], 10, "tanh")
        return MLP([40, 32, 32, 10], "tanh")

    pop = Population(factory, seeds)
    hist = train_population(pop, data, cfg)
    for k, seed in enumerate(seeds):
        torch.manual_seed(seed)
        model = factory()
        train_plain(model, data, cfg, seed)
        for (name, p), q in zip(model.named_parameters(), pop.model(k).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"model {k} {name}")
        loss, _ = evaluate_population(
            Population.from_models([model]),
            data.x_train,
            data.y_train,
            torch.nn.functional.cross_entropy,
        )
        assert hist.final("train_loss")[k] == pytest.approx(loss.item(), rel=1e-4)


def test_batchnorm_models_train_one_by_one_with_same_interface():
    data = _mnist1d_small()
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=2, batch_size=64)
    pop = Population(lambda: MLP([40, 16, 10], "relu", batch_norm=True), [0, 1])
    assert not pop.batched
    hist = train_population(pop, data, cfg)
    torch.manual_seed(1)
    model = MLP([40, 16, 10], "relu", batch_norm=True)
    train_plain(model, data, cfg, seed=1)
    for p, q in zip(model.state_dict().values(), pop.model(1).state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    assert len(hist.train_accuracy[-1]) == 2


def test_diverging_model_is_frozen_and_others_continue():
    data = function_dataset("sinc", 64)
    pop = Population(lambda: MLP([1, 16, 1], "tanh"), [0, 1, 2])
    with torch.no_grad():  # model 1 starts from parameters that overflow the loss
        for p in pop.parameters():
            p[1].fill_(1e30)
    before = pop.flat_params()[1].clone()
    initial, _ = evaluate_population(pop, data.x_train, data.y_train, F.mse_loss)
    hist = train_population(
        pop, data, TrainConfig(optimizer="adam", lr=1e-2, epochs=5, batch_size=16)
    )
    assert hist.diverged == [1]
    assert hist.diverged_at_epoch[1] == 0 and hist.diverged_reason[1] == "non-finite loss"
    assert hist.steps_taken == [5 * 4, 0, 5 * 4]
    assert torch.equal(pop.flat_params()[1], before), "diverged model must stay frozen"
    finals = hist.final("train_loss")
    assert math.isnan(finals[1]) and math.isnan(hist.initial_train_loss[1])
    for k in (0, 2):  # the others trained on: their loss went down from the start
        assert hist.initial_train_loss[k] == initial[k].item()
        assert finals[k] < initial[k].item()
    records = hist.final_records()  # regression: no accuracy columns
    assert [r["seed"] for r in records] == [0, 1, 2]
    assert [r["diverged"] for r in records] == [False, True, False]
    assert [r["train_loss"] for r in records[::2]] == finals[::2]
    assert set(records[0]) == {
        "seed",
        "train_loss",
        "test_loss",
        "diverged",
        "diverged_at_epoch",
        "diverged_reason",
    }
    assert (records[1]["diverged_at_epoch"], records[1]["diverged_reason"]) == (
        0,
        "non-finite loss",
    )


def test_grad_norm_objective_reduces_gradient_norm_and_stops_models():
    data = function_dataset("sine", 64)
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=60, batch_size=0)
    pop = Population(lambda: MLP([1, 10, 10, 1], "tanh"), [0, 1])
    train_population(pop, data, cfg)
    phase2 = TrainConfig(
        optimizer="adam",
        lr=1e-3,
        epochs=40,
        batch_size=0,
        objective="grad_norm_sq",
        stop_below_grad_norm=1e-9,
    )
    hist = train_population(pop, data, phase2)
    assert all(hist.grad_norm[-1][k] < hist.grad_norm[0][k] for k in range(2))


def test_snapshots_and_step_records():
    data = function_dataset("sinc", 32)
    cfg = TrainConfig(epochs=6, batch_size=8, snapshot_every_epochs=3, record_steps=True)
    pop = Population(lambda: MLP([1, 4, 1], "relu"), [0, 1, 2])
    hist = train_population(pop, data, cfg)
    assert hist.snapshot_epochs == [0, 3, 6]
    assert hist.snapshots[0].shape == (3, 13)
    assert torch.equal(hist.snapshots[-1], pop.flat_params())
    assert len(hist.step_loss) == 6 * 4 and len(hist.step_grad_norm[0]) == 3
    assert {r["model"] for r in hist.step_records()} == {0, 1, 2}


def test_checkpoint_resume_gives_identical_result(tmp_path):
    data = _mnist1d_small()
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3)

    def factory():
        return MLP([40, 16, 10], "relu")

    full = train_population(pop_a := Population(factory, [0, 1]), data, cfg)
    ckpt = Checkpoint(tmp_path / "c.pt", every_epochs=1)

    def interrupt(done, total, metrics):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_population(
            Population(factory, [0, 1]), data, cfg, checkpoint=ckpt, progress=interrupt
        )
    assert ckpt.load()["epoch"] == 2
    resumed = train_population(pop_b := Population(factory, [0, 1]), data, cfg, checkpoint=ckpt)
    assert resumed.epochs == full.epochs
    assert resumed.train_loss == full.train_loss
    assert torch.equal(pop_b.flat_params(), pop_a.flat_params())


def test_bad_training_config_is_rejected_before_training():
    data = function_dataset("sinc", 32)
    pop = Population(lambda: MLP([1, 4, 1]), [0])
    for cfg, msg in [
        (TrainConfig(epochs=0), "epochs"),
        (TrainConfig(batch_size=-1), "batch_size"),
        (TrainConfig(batch_size=33), "batch_size"),
        (TrainConfig(optimizer="adamx"), "valid names: sgd"),
        (TrainConfig(lr=0), "lr"),
    ]:
        with pytest.raises(DlprobeError, match=msg):
            train_population(pop, data, cfg)


def test_recorded_step_grad_norm_matches_a_single_model_backward():
    data = function_dataset("sinc", 16)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=1, batch_size=0, record_steps=True)
    pop = Population(lambda: MLP([1, 5, 1], "tanh"), [4, 5])
    model = pop.model(1)
    hist = train_population(pop, data, cfg)
    loss = torch.nn.functional.mse_loss(model(data.x_train), data.y_train)
    loss.backward()
    expected = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert hist.step_grad_norm[0][1] == pytest.approx(expected.item(), rel=1e-5)
    assert hist.step_loss[0][1] == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize(
    "factory,x_shape",
    [
        (lambda: MLP([40, 8, 8, 10], "leaky_relu"), (6, 1, 40)),  # Flatten first
        (lambda: MLP([1, 6, 1], "cos"), (6, 1)),
        (
            lambda: torch.nn.Sequential(
                torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
            ),
            (6, 5, 3),
        ),
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.SELU()), (6, 3)),
    ],
)
def test_sequential_shortcut_equals_vmap(factory, x_shape, monkeypatch):
    """The batched-matmul road for plain Sequentials gives vmap's outputs and gradients."""
    pop = Population(factory, seeds=[0, 1, 2])
    assert not _forward_calls_vmap(pop, torch.zeros(*x_shape), monkeypatch)  # the shortcut
    models = pop.models_list()
    params, buffers = stack_module_state(models)  # the vmap road, built here
    base = copy.deepcopy(models[0]).to("meta")
    gen = torch.Generator().manual_seed(0)
    x_shared = torch.randn(*x_shape, generator=gen)
    x_each = torch.randn(3, *x_shape, generator=gen)
    for x, shared in ((x_shared, True), (x_each, False)):
        out = pop.forward(x, shared=shared)
        grads = torch.autograd.grad((out**2).sum(), pop.parameters())
        expected = vmap(
            lambda p, b, xb: functional_call(base, (p, b), (xb,)),
            in_dims=(0, 0, None if shared else 0),
        )(params, buffers, x)
        expected_grads = torch.autograd.grad((expected**2).sum(), list(params.values()))
        assert out.shape == expected.shape and out.shape[:2] == (3, 6)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        for a, b in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: MLP([3, 5, 5, 2], "relu"),
        lambda: MLP([3, 5, 2], "tanh"),
        lambda: MLP([3, 5, 2], "sigmoid"),
        lambda: MLP([3, 5, 2], "leaky_relu"),
        # activations before any Linear act on the caller's input: never in place
        lambda: torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU(), torch.nn.Linear(3, 2)),
        lambda: torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(3, 2, bias=False)),
    ],
)
def test_evaluation_forward_in_place_gives_the_same_numbers_and_keeps_the_input(factory):
    """Under no_grad the shortcut adds the bias and applies ReLU/tanh/sigmoid in place:
    bitwise the outputs of the autograd-mode forward, and the input is left as it was."""
    pop = Population(factory, seeds=[0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    for x, shared in ((torch.randn(6, 3, generator=gen), True),
                      (torch.randn(3, 6, 3, generator=gen), False)):  # fmt: skip
        before = x.clone()
        expected = pop.forward(x, shared=shared).detach()
        with torch.no_grad():
            out = pop.forward(x, shared=shared)
        assert torch.equal(out, expected)
        assert torch.equal(x, before)


def _forward_calls_vmap(pop, x, monkeypatch) -> bool:
    """Whether ``pop.forward(x, shared=True)`` goes through torch.func.vmap."""
    calls = []

    def counting_vmap(*args, **kwargs):
        calls.append(args)
        return vmap(*args, **kwargs)

    monkeypatch.setattr(population_module, "vmap", counting_vmap)
    pop.forward(x, shared=True)
    monkeypatch.undo()
    return bool(calls)


def test_shortcut_only_for_plain_sequentials(monkeypatch):
    """Other models take the vmap road, and give each model's own outputs."""

    class Residual(torch.nn.Sequential):
        def forward(self, x):
            return x + super().forward(x)

    for factory, x in [
        (lambda: MLP([4, 6, 2], "maxout"), torch.randn(5, 4)),  # learnable groups
        (lambda: CNN([1, 40], [4], 10), torch.randn(5, 1, 40)),
        (lambda: Residual(torch.nn.Linear(3, 3)), torch.randn(5, 3)),
    ]:
        pop = Population(factory, [0, 1])
        assert _forward_calls_vmap(pop, x, monkeypatch)
        expected = torch.stack([m(x) for m in pop.models_list()])
        torch.testing.assert_close(pop.forward(x, shared=True), expected, rtol=1e-6, atol=1e-6)


def test_per_model_losses_equal_vmapped_losses():
    from dlprobe.train.evaluation import per_model_losses

    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(4, 7, 5, generator=gen), torch.randint(0, 5, (4, 7), generator=gen)
    pred, target = torch.randn(4, 7, 2, generator=gen), torch.randn(4, 7, 2, generator=gen)
    for loss_fn, out, y in ((F.cross_entropy, logits, labels), (F.mse_loss, pred, target)):
        torch.testing.assert_close(per_model_losses(loss_fn, out, y), vmap(loss_fn)(out, y))
    # bit for bit on a CPU, also for targets shared by all models (an expanded view), as
    # evaluations pass them: the recorded losses are vmap's
    for k, n, c in itertools.product((1, 3, 64), (7, 256, 3200), (1, 10)):
        out = torch.randn(k, n, c, generator=gen) * 3
        y = torch.randint(0, c, (n,), generator=gen) if c > 1 else torch.randn(n, 1, generator=gen)
        loss_fn = F.cross_entropy if c > 1 else F.mse_loss
        expected = vmap(loss_fn, in_dims=(0, None))(out, y)
        assert torch.equal(per_model_losses(loss_fn, out, y.expand(k, *y.shape)), expected)

    def l1(out, y):  # any other loss takes the vmap road
        return (out - y).abs().mean()

    torch.testing.assert_close(
        per_model_losses(l1, pred, target), (pred - target).abs().mean((1, 2))
    )


@pytest.mark.parametrize(
    "factory",
    [lambda: MLP([40, 8, 10], "relu"), lambda: CNN([1, 40], [4], 10, "tanh")],
    ids=["mlp", "cnn"],
)
def test_population_builds_seeded_models_and_leaves_global_rng_alone(factory):
    torch.manual_seed(123)
    torch.rand(5)  # some state a caller has reached
    before = torch.get_rng_state()
    pop = Population(factory, [3, 8])
    assert torch.equal(torch.get_rng_state(), before)
    for k, seed in enumerate([3, 8]):
        torch.manual_seed(seed)
        expected, built = factory().state_dict(), pop.model(k).state_dict()
        assert expected.keys() == built.keys()
        for name, p in expected.items():
            assert torch.equal(built[name], p), f"model {k} {name}"


def test_training_without_random_layers_leaves_global_rng_alone():
    data = function_dataset("sinc", 32)
    pop = Population(lambda: MLP([1, 6, 1], "tanh"), [0, 1])
    torch.manual_seed(5)
    before = torch.get_rng_state()
    train_population(pop, data, TrainConfig(epochs=2, batch_size=8))
    assert torch.equal(torch.get_rng_state(), before)
