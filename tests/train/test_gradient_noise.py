"""Annealed Gaussian gradient noise (TrainConfig.grad_noise_eta / grad_noise_gamma)."""

from dataclasses import replace

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import load_dataset
from dlprobe.models import MLP
from dlprobe.train import Checkpoint, Population, TrainConfig, train_plain, train_population


def _data():
    return load_dataset("mnist1d").subset_train(128, seed=0)


@pytest.mark.parametrize(
    "optimizer,batch_norm", [("sgd", False), ("adam", False), ("momentum", True)]
)
def test_population_with_noise_equals_separate_trainings(optimizer, batch_norm):
    """Each model's noise depends on its seed only: K models in lockstep (stacked, or one by
    one for BatchNorm) end where K plain loops with the same noise end."""
    data = _data()
    cfg = TrainConfig(
        optimizer=optimizer, lr=0.05 if optimizer != "adam" else 3e-3, epochs=2,
        batch_size=32, grad_noise_eta=0.3, grad_noise_gamma=0.55,
    )  # fmt: skip
    seeds = [5, 2, 9]

    def factory():
        return MLP([40, 16, 16, 10], "tanh", batch_norm=batch_norm)

    pop = Population(factory, seeds)
    train_population(pop, data, cfg)
    train_population(silent := Population(factory, seeds), data, replace(cfg, grad_noise_eta=0))
    for k, seed in enumerate(seeds):
        torch.manual_seed(seed)
        model = factory()
        train_plain(model, data, cfg, seed)
        for (name, p), q in zip(model.named_parameters(), pop.model(k).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"model {k} {name}")
    # the noise did something: without it every model ends elsewhere
    assert (pop.flat_params() - silent.flat_params()).abs().amax(1).min() > 1e-3


def test_noise_is_the_documented_annealed_gaussian():
    """Brute force: with a loss whose gradient is zero and SGD at lr 1, a step moves the
    parameters by minus the noise, so the snapshots give back every draw: the model's
    generator (seed + 2**32) drawn once per step over all parameters, scaled by
    sqrt(eta / (1 + t)^gamma), t counted over steps across epochs."""
    data = _data()
    eta, gamma, seed, steps_per_epoch, epochs = 0.3, 0.55, 4, 2, 3
    cfg = TrainConfig(
        optimizer="sgd", lr=1.0, epochs=epochs, batch_size=64, snapshot_every_epochs=1,
        grad_noise_eta=eta, grad_noise_gamma=gamma, blowup_loss_factor=0,
    )  # fmt: skip
    pop = Population(lambda: MLP([40, 32, 10], "relu"), [seed])
    hist = train_population(pop, data, cfg, loss_fn=lambda out, y: (0 * out).sum())
    snaps = torch.stack(hist.snapshots)[:, 0]  # (epochs + 1, P)
    gen = torch.Generator().manual_seed(seed + 2**32)
    theta = snaps[0].clone()
    stds = []
    for t in range(epochs * steps_per_epoch):
        std = (eta / (1 + t) ** gamma) ** 0.5
        z = torch.randn(theta.numel(), generator=gen)  # (P,)
        stds.append(float(z.std()) * std)
        theta -= std * z
        if (t + 1) % steps_per_epoch == 0:
            torch.testing.assert_close(snaps[(t + 1) // steps_per_epoch], theta)
    # and the size of one step's noise is sqrt(eta / (1 + t)^gamma), independently of draws
    first = (snaps[1] - snaps[0]).double()  # two steps: variance eta (1 + 2^-gamma)
    assert first.var().item() == pytest.approx(eta * (1 + 2**-gamma), rel=0.08)
    assert abs(first.mean().item()) < 4 * (eta * 2 / first.numel()) ** 0.5


def test_resume_with_noise_gives_identical_result(tmp_path):
    data = _data()
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, grad_noise_eta=1.0)

    def factory():
        return MLP([40, 16, 10], "relu")

    train_population(pop_a := Population(factory, [0, 1]), data, cfg)
    ckpt = Checkpoint(tmp_path / "c.pt", every_epochs=1)

    def interrupt(done, total, metrics):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_population(
            Population(factory, [0, 1]), data, cfg, checkpoint=ckpt, progress=interrupt
        )
    train_population(pop_b := Population(factory, [0, 1]), data, cfg, checkpoint=ckpt)
    assert torch.equal(pop_b.flat_params(), pop_a.flat_params())


def test_negative_noise_is_refused():
    with pytest.raises(DlprobeError, match="grad_noise_eta"):
        validate(TrainConfig(grad_noise_eta=-0.1))
