"""Per-model settings: model k of a population equals model k trained alone with its own."""

import dataclasses

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.data import corrupt_labels, function_dataset, load_dataset
from dlprobe.models import MLP
from dlprobe.train import (
    OPTIMIZERS,
    Checkpoint,
    PerModel,
    Population,
    TrainConfig,
    default_loss,
    evaluate_population,
    train_plain,
    train_population,
)

SEEDS = [3, 7, 11]


def _data():
    return load_dataset("mnist1d").subset_train(200, seed=0)


def _model(seed, batch_norm=False):
    torch.manual_seed(seed)
    return MLP([40, 16, 10], "tanh", batch_norm=batch_norm)


def _alone(data, cfg, k, per_model: PerModel, batch_norm=False):
    """Model k trained alone: the config, labels and examples its settings make."""
    changes = {
        name: getattr(per_model, name)[k]
        for name in ("lr", "weight_decay", "momentum")
        if getattr(per_model, name) is not None
    }
    if per_model.label_noise is not None:
        seeds = per_model.label_noise_seeds or SEEDS
        data = corrupt_labels(data, per_model.label_noise[k], seeds[k], per_model.label_noise_mode)
    if per_model.train_subsets is not None:
        subset = torch.as_tensor(per_model.train_subsets[k])
        data = dataclasses.replace(data, x_train=data.x_train[subset], y_train=data.y_train[subset])
    model = _model(SEEDS[k], batch_norm)
    train_plain(model, data, dataclasses.replace(cfg, **changes), SEEDS[k])
    return model, data


def _assert_each_model_equals_its_training_alone(data, cfg, per_model, batch_norm=False):
    pop = Population.from_models([_model(s, batch_norm) for s in SEEDS], SEEDS)
    hist = train_population(pop, data, cfg, per_model=per_model)
    for k in range(len(SEEDS)):
        alone, own_data = _alone(data, cfg, k, per_model, batch_norm)
        for (name, p), q in zip(
            alone.state_dict().items(), pop.model(k).state_dict().values(), strict=True
        ):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"model {k} {name}")
        loss, accuracy = evaluate_population(
            Population.from_models([alone]), own_data.x_train, own_data.y_train, default_loss(data)
        )  # metrics on its own examples and labels
        assert hist.final("train_loss")[k] == pytest.approx(loss.item(), rel=1e-4)
        assert hist.final("train_accuracy")[k] == pytest.approx(accuracy.item(), abs=1e-6)
    return pop, hist


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_per_model_lr_and_weight_decay_for_every_optimizer(optimizer):
    data = _data()
    small = optimizer in ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad")
    lr = (1e-3, 3e-3, 1e-2) if small else (0.02, 0.05, 0.1)
    per_model = PerModel(
        lr=lr,
        weight_decay=(0.0, 1e-3, 0.1),
        momentum=(0.5, 0.9, 0.2) if optimizer in ("momentum", "nesterov") else None,
    )
    cfg = TrainConfig(optimizer=optimizer, epochs=3, batch_size=50, schedule="cosine")
    _assert_each_model_equals_its_training_alone(data, cfg, per_model)


@pytest.mark.parametrize(
    "per_model",
    [
        PerModel(lr=(1e-3, 3e-3, 1e-2)),
        PerModel(weight_decay=(0.0, 0.01, 0.3)),
        PerModel(label_noise=(0.0, 0.5, 1.0)),
        PerModel(
            label_noise=(0.2, 0.2, 0.2), label_noise_seeds=(0, 0, 5), label_noise_mode="shuffle"
        ),
        PerModel(train_subsets=torch.stack([torch.randperm(200)[:120] for _ in SEEDS])),
        PerModel(
            lr=(1e-3, 3e-3, 1e-2),
            weight_decay=(0.0, 0.01, 0.3),
            label_noise=(0.0, 0.4, 0.8),
            train_subsets=[list(range(k, 200, 2))[:90] for k in range(3)],
        ),
    ],
    ids=["lr", "weight-decay", "label-noise", "label-noise-seeds", "subsets", "all"],
)
def test_each_per_model_setting_equals_separate_trainings(per_model):
    cfg = TrainConfig(optimizer="adam", lr=3e-3, epochs=3, batch_size=32)
    _assert_each_model_equals_its_training_alone(_data(), cfg, per_model)


def test_per_model_momentum():
    cfg = TrainConfig(optimizer="nesterov", lr=0.05, epochs=3, batch_size=32, weight_decay=1e-3)
    _assert_each_model_equals_its_training_alone(_data(), cfg, PerModel(momentum=(0.1, 0.5, 0.95)))


def test_models_trained_one_by_one_take_per_model_settings_too():
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=2, batch_size=40)
    per_model = PerModel(
        lr=(0.01, 0.05, 0.1), momentum=(0.0, 0.5, 0.9), label_noise=(0.0, 0.3, 0.6)
    )
    pop, _ = _assert_each_model_equals_its_training_alone(_data(), cfg, per_model, batch_norm=True)
    assert not pop.batched


def test_per_model_subsets_for_regression_and_full_batch():
    data = function_dataset("sinc", 40)
    subsets = torch.stack([torch.arange(k, 40, 3)[:12] for k in range(3)])
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=30, batch_size=0)
    pop = Population(lambda: MLP([1, 8, 1], "tanh"), SEEDS)
    hist = train_population(pop, data, cfg, per_model=PerModel(train_subsets=subsets))
    for k, seed in enumerate(SEEDS):
        own = dataclasses.replace(
            data, x_train=data.x_train[subsets[k]], y_train=data.y_train[subsets[k]]
        )
        torch.manual_seed(seed)
        model = MLP([1, 8, 1], "tanh")
        train_plain(model, own, cfg, seed)
        torch.testing.assert_close(pop.model(k).state_dict(), model.state_dict())
        loss, _ = evaluate_population(
            Population.from_models([model]), own.x_train, own.y_train, default_loss(data)
        )
        assert hist.final("train_loss")[k] == pytest.approx(loss.item(), rel=1e-4)


def test_stop_targets_use_each_models_own_labels():
    """With all labels random, a model fits them much later than one with true labels;
    each stops at its own training accuracy."""
    data = _data()
    cfg = TrainConfig(lr=1e-2, epochs=40, batch_size=50, stop_at_train_accuracy=0.6)
    pop = Population(lambda: MLP([40, 64, 10], "relu"), [0, 1])
    hist = train_population(pop, data, cfg, per_model=PerModel(label_noise=(0.0, 1.0)))
    clean_stop = hist.stopped_at_epoch[0]
    assert hist.reached_target[0] and clean_stop is not None
    noisy = hist.train_accuracy[hist.epochs.index(clean_stop)][1]
    assert noisy < 0.6  # measured on its random labels, not the true ones


def test_resume_with_per_model_settings_gives_the_uninterrupted_result(tmp_path):
    data = _data()
    cfg = TrainConfig(optimizer="nadam", epochs=4, batch_size=50)
    per_model = PerModel(lr=(1e-3, 1e-2), weight_decay=(0.0, 0.1), label_noise=(0.0, 0.5))

    def population():
        return Population(lambda: MLP([40, 8, 10]), [0, 1])

    full = train_population(pop_full := population(), data, cfg, per_model=per_model)
    ckpt = Checkpoint(tmp_path / "c.pt")

    def interrupt(done, total, metrics):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_population(
            population(), data, cfg, checkpoint=ckpt, progress=interrupt, per_model=per_model
        )
    resumed = train_population(
        pop_resumed := population(), data, cfg, checkpoint=ckpt, per_model=per_model
    )
    assert resumed.train_loss == full.train_loss
    assert torch.equal(pop_resumed.flat_params(), pop_full.flat_params())


@pytest.mark.parametrize(
    "per_model,message",
    [
        (PerModel(lr=(1e-3, 1e-2)), "one value per model \\(3\\), got 2"),
        (PerModel(lr=(1e-3, 0.0, 1e-2)), "lr must be in \\(0, inf\\)"),
        (PerModel(lr=(1e-3, float("nan"), 1e-2)), "lr must be in"),
        (PerModel(weight_decay=(0.0, -1.0, 0.0)), "weight_decay must be in \\[0, inf\\)"),
        (PerModel(momentum=(0.9, 0.9, 0.9)), "momentum and nesterov optimizers, not adam"),
        (PerModel(label_noise=(0.0, 1.5, 0.0)), "label_noise must be in \\[0, 1\\]"),
        (PerModel(label_noise_seeds=(1, 2, 3)), "label_noise_seeds without label_noise"),
        (PerModel(label_noise=(0, 0, 0), label_noise_mode="swap"), "unknown label_noise_mode"),
        (PerModel(train_subsets=[[0, 1], [2, 3]]), "must be \\(3, m\\) indices"),
        (PerModel(train_subsets=[[0, 1], [2, 3], [4, 200]]), "must index \\[0, 200\\)"),
        (PerModel(train_subsets=[[0, 1], [2, 3], [4, 4]]), "train_subsets\\[2\\] repeats"),
        (PerModel(train_subsets=torch.rand(3, 4)), "must be integers"),
        (PerModel(train_subsets=[[0, 1], [2, 3], [4, 5]]), "batch_size must be in \\[1, 2\\]"),
    ],
)
def test_bad_per_model_settings_are_refused_before_training(per_model, message):
    pop = Population(lambda: MLP([40, 8, 10]), SEEDS)
    before = pop.flat_params()
    with pytest.raises(DlprobeError, match=message):
        train_population(pop, _data(), TrainConfig(batch_size=32), per_model=per_model)
    assert torch.equal(pop.flat_params(), before)


def test_nesterov_needs_momentum_above_zero():
    pop = Population(lambda: MLP([40, 8, 10]), [0, 1])
    cfg = TrainConfig(optimizer="nesterov", batch_size=32)
    with pytest.raises(DlprobeError, match="momentum must be > 0 for nesterov"):
        train_population(pop, _data(), cfg, per_model=PerModel(momentum=(0.9, 0.0)))
    with pytest.raises(DlprobeError, match="momentum must be > 0 for nesterov"):
        train_population(pop, _data(), dataclasses.replace(cfg, momentum=0.0))


def test_label_noise_needs_class_labels():
    pop = Population(lambda: MLP([1, 4, 1]), [0])
    with pytest.raises(
        DlprobeError, match="label_noise needs class labels; function:sinc is a regression"
    ):
        train_population(
            pop, function_dataset("sinc", 16), TrainConfig(), per_model=PerModel(label_noise=[0.5])
        )
