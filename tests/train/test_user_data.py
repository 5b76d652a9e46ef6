"""A population trained on a torch Dataset equals one trained on the dlprobe Dataset."""

import pytest
from torch.utils.data import TensorDataset

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import MLP
from dlprobe.train import Population, TrainConfig, train_population


def _problems():
    yield (
        "mnist1d",
        load_dataset("mnist1d").subset_train(128, seed=0),
        lambda: MLP([40, 16, 10], "relu"),
    )
    yield "square", function_dataset("square", 32), lambda: MLP([1, 8, 1], "tanh")


@pytest.mark.parametrize("name", ["mnist1d", "square"])
def test_tensor_dataset_gives_the_history_of_the_dlprobe_dataset(name):
    _, data, factory = next(p for p in _problems() if p[0] == name)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    reference = train_population(Population(factory, [0, 1]), data, cfg)
    train = TensorDataset(data.x_train, data.y_train)
    if data.task == "regression":  # a user's 1-D targets: turned into the (n, 1) column
        train = TensorDataset(data.x_train, data.y_train.squeeze(1))
    hist = train_population(
        Population(factory, [0, 1]),
        train,
        cfg,
        test_data=TensorDataset(data.x_test, data.y_test),
    )
    for metric in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert getattr(hist, metric) == getattr(reference, metric), metric
    assert hist.epochs == reference.epochs == [1, 2, 3]

    train_only = train_population(Population(factory, [0, 1]), train, cfg)
    assert train_only.train_loss == reference.train_loss
    assert train_only.train_accuracy == reference.train_accuracy
    assert train_only.test_loss == [] and train_only.test_accuracy == []
    assert not any(key.startswith("test") for key in train_only.final_records()[0])


def test_test_data_with_a_dlprobe_dataset_is_refused():
    data = function_dataset("square", 16)
    with pytest.raises(DlprobeError, match="carries its own test split"):
        train_population(
            Population(lambda: MLP([1, 4, 1]), [0]),
            data,
            TrainConfig(epochs=1, batch_size=8),
            test_data=TensorDataset(data.x_test, data.y_test),
        )
