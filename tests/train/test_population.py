import math

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import MLP
from dlprobe.train import (
    Checkpoint,
    Population,
    TrainConfig,
    evaluate_population,
    train_plain,
    train_population,
)


def _mnist1d_small():
    return load_dataset("mnist1d").subset_train(256, seed=0)


@pytest.mark.parametrize(
    "optimizer,schedule", [("sgd", "constant"), ("adam", "cosine"), ("momentum", "step")]
)
def test_population_equals_separate_trainings(optimizer, schedule):
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
    hist = train_population(
        pop, data, TrainConfig(optimizer="adam", lr=1e-2, epochs=5, batch_size=16)
    )
    assert hist.diverged == [1]
    assert hist.diverged_at_epoch[1] == 0
    assert torch.equal(pop.flat_params()[1], before), "diverged model must stay frozen"
    finals = hist.final("train_loss")
    assert math.isfinite(finals[0]) and math.isfinite(finals[2])
    assert finals[0] < hist.train_loss[0][0] or hist.epochs[0] == 1


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
