"""Regularization options of the trainer and the MLP: L1 penalty, dropout, keeping each
model's parameters at its lowest test loss (early stopping)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

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


def _small():
    return load_dataset("mnist1d").subset_train(200, seed=0)


@pytest.mark.parametrize("batch_norm", [False, True])  # stacked road and one-by-one road
def test_population_with_l1_equals_separate_trainings(batch_norm):
    data = _small()
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=2, batch_size=40, l1_penalty=1e-3)
    seeds = [2, 5, 9]

    def factory():
        return MLP([40, 16, 16, 10], "relu", batch_norm=batch_norm)

    pop = Population(factory, seeds)
    hist = train_population(pop, data, cfg)
    for k, seed in enumerate(seeds):
        torch.manual_seed(seed)
        model = factory()
        train_plain(model, data, cfg, seed)
        for p, q in zip(model.parameters(), pop.model(k).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)
    # the recorded train loss is the data's loss, without the penalty
    loss, _ = evaluate_population(pop, data.x_train, data.y_train, F.cross_entropy)
    assert hist.final("train_loss") == pytest.approx(loss.tolist(), rel=1e-5)


def test_l1_step_adds_penalty_times_sign_to_the_gradient():
    """One full-batch SGD step: theta - lr * (grad of the data loss + l1 * sign(theta))."""
    data = function_dataset("sinc", 16)
    lr, l1 = 0.1, 0.03
    pop = Population(lambda: MLP([1, 6, 1], "tanh"), [0, 1])
    model = pop.model(1)
    before = pop.flat_params()[1].clone()
    loss = F.mse_loss(model(data.x_train), data.y_train)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, model.parameters())])
    cfg = TrainConfig(optimizer="sgd", lr=lr, epochs=1, batch_size=0, l1_penalty=l1)
    train_population(pop, data, cfg)
    expected = before - lr * (grad + l1 * before.sign())
    torch.testing.assert_close(pop.flat_params()[1], expected, rtol=1e-5, atol=1e-7)
    unpenalized = Population(lambda: MLP([1, 6, 1], "tanh"), [0, 1])
    train_population(unpenalized, data, TrainConfig(optimizer="sgd", lr=lr, epochs=1, batch_size=0))
    assert not torch.allclose(unpenalized.flat_params()[1], expected)


def test_l1_with_the_gradient_norm_objective_is_refused():
    with pytest.raises(DlprobeError, match="l1_penalty is added to objective 'loss'"):
        train_population(
            Population(lambda: MLP([1, 4, 1]), [0]),
            function_dataset("sinc", 16),
            TrainConfig(objective="grad_norm_sq", l1_penalty=0.1),
        )


def test_mlp_dropout_zeroes_units_in_training_and_is_off_in_eval_mode():
    torch.manual_seed(0)
    model = MLP([5, 400, 3], "tanh", dropout=0.3)
    x = torch.randn(8, 5)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)  # brute force: the same Bernoulli draw, kept units scaled up
    h = torch.tanh(model.linears[0](x))
    keep = torch.empty_like(h).bernoulli_(0.7)
    torch.testing.assert_close(out, model.linears[1](h * keep / 0.7))
    assert 1 - keep.mean().item() == pytest.approx(0.3, abs=0.03)
    model.eval()
    torch.testing.assert_close(model(x), model.linears[1](torch.tanh(model.linears[0](x))))
    with pytest.raises(DlprobeError, match="dropout must be in"):
        MLP([5, 4, 3], dropout=1.0)


def test_population_with_dropout_draws_a_mask_per_model():
    """Two copies of one model: in training mode their outputs differ (each model draws
    its own mask), in eval mode they agree with the model without dropout."""
    pop = Population(lambda: MLP([5, 64, 3], "relu", dropout=0.5), [4, 4])
    assert torch.equal(pop.flat_params()[0], pop.flat_params()[1])
    x = torch.randn(16, 5)
    torch.manual_seed(0)
    out = pop.forward(x, shared=True)  # (2, 16, 3)
    assert not torch.allclose(out[0], out[1])
    pop.train(False)
    plain = pop.model(0).eval()
    torch.testing.assert_close(pop.forward(x, shared=True), plain(x).expand(2, -1, -1))


def test_population_of_one_with_dropout_equals_plain_training():
    """With one model the population draws the masks the plain loop draws, in the same
    order, from the global generator; with K models each draws its own (see above)."""
    data = _small()
    cfg = TrainConfig(optimizer="adam", lr=3e-3, epochs=2, batch_size=50)

    def factory():
        return MLP([40, 32, 10], "relu", dropout=0.4)

    torch.manual_seed(123)
    pop = Population(factory, [7])
    train_population(pop, data, cfg)
    torch.manual_seed(7)
    model = factory()
    torch.manual_seed(123)
    train_plain(model, data, cfg, seed=7)
    for p, q in zip(model.parameters(), pop.model(0).parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_keep_best_is_the_snapshot_at_the_lowest_test_loss():
    data = load_dataset("digits").subset_train(120, seed=0)  # small: test loss turns up
    cfg = TrainConfig(
        lr=1e-2, epochs=12, batch_size=20, snapshot_every_epochs=1, keep_best_test_loss=True
    )
    pop = Population(lambda: MLP([64, 64, 10], "relu"), [0, 1, 2])
    hist = train_population(pop, data, cfg)
    losses = torch.tensor(hist.test_loss)  # (T, K)
    for k in range(pop.size):
        i = int(losses[:, k].argmin())
        assert hist.best_epoch[k] == hist.epochs[i]
        snap = hist.snapshots[hist.snapshot_epochs.index(hist.best_epoch[k])][k]
        assert torch.equal(hist.best_params[k], snap)
    assert any(e < cfg.epochs for e in hist.best_epoch), "the test loss turned up for some"
    # separate trainings choose the same epochs and parameters
    for k, seed in enumerate(pop.seeds):
        one = train_population(Population(lambda: MLP([64, 64, 10], "relu"), [seed]), data, cfg)
        assert one.best_epoch == [hist.best_epoch[k]]
        torch.testing.assert_close(one.best_params[0], hist.best_params[k])


def test_keep_best_survives_a_resume_and_skips_diverged_models(tmp_path):
    data = load_dataset("digits").subset_train(120, seed=0)
    cfg = TrainConfig(lr=1e-2, epochs=6, batch_size=20, keep_best_test_loss=True)

    def population():
        pop = Population(lambda: MLP([64, 16, 10], "relu"), [0, 1])
        with torch.no_grad():  # model 1 cannot be evaluated: it never has a best epoch
            pop.parameters()[0][1].fill_(math.inf)
        return pop

    full = train_population(population(), data, cfg)
    assert full.best_epoch[1] is None and full.best_epoch[0] is not None

    def interrupt(done, total, metrics):
        if done == 3:
            raise KeyboardInterrupt

    ckpt = Checkpoint(tmp_path / "c.pt")
    with pytest.raises(KeyboardInterrupt):
        train_population(population(), data, cfg, checkpoint=ckpt, progress=interrupt)
    resumed = train_population(population(), data, cfg, checkpoint=ckpt)
    assert resumed.best_epoch == full.best_epoch
    assert torch.equal(resumed.best_params, full.best_params)


def test_keep_best_without_a_test_split_is_refused():
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    with pytest.raises(DlprobeError, match="keep_best_test_loss needs a test split"):
        train_population(
            Population(lambda: MLP([3, 4, 2]), [0]),
            TensorDataset(x, y),
            TrainConfig(epochs=1, batch_size=5, keep_best_test_loss=True),
        )
