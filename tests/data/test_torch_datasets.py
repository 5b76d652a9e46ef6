import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset, TensorDataset

from dlprobe import DlprobeError
from dlprobe.data import from_torch_dataset


class _Items(torch.utils.data.Dataset):
    """A map-style dataset of (numpy array, int) items, as a user might write."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].numpy(), int(self.y[i])


def _labelled(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 5, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def test_tensor_dataset_becomes_a_classification_dataset():
    x, y = _labelled(20)
    xt, yt = _labelled(8, seed=1)
    data = from_torch_dataset(TensorDataset(x, y.int()), TensorDataset(xt, yt))
    assert data.task == "classification" and data.num_classes == int(torch.cat([y, yt]).max()) + 1
    assert torch.equal(data.x_train, x) and torch.equal(data.y_train, y)
    assert data.y_train.dtype == torch.int64 and torch.equal(data.y_test, yt)
    assert data.input_shape == (3, 5) and data.meta["has_test_split"]


def test_map_style_items_are_stacked_like_the_tensor_dataset():
    x, y = _labelled(12)
    stacked = from_torch_dataset(_Items(x, y))
    direct = from_torch_dataset(TensorDataset(x, y))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(stacked, name), getattr(direct, name)), name
    assert stacked.n_test == 0 and not stacked.meta["has_test_split"]


def test_one_dimensional_regression_targets_become_a_column():
    x = torch.linspace(0, 1, 10).unsqueeze(1)
    data = from_torch_dataset(TensorDataset(x, x.squeeze(1) ** 2))
    assert data.task == "regression" and data.y_train.shape == (10, 1)
    assert data.y_test.shape == (0, 1) and data.output_dim == 1
    mixed = from_torch_dataset(TensorDataset(x, x.squeeze(1)), TensorDataset(x, x))
    assert mixed.y_train.shape == mixed.y_test.shape == (10, 1)


class _Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(2), 0


@pytest.mark.parametrize(
    "train,test,message",
    [
        (_Stream(), None, "IterableDataset"),
        ([(torch.zeros(2), 0)], None, "map-style torch Dataset"),
        (TensorDataset(torch.zeros(3, 2)), None, "two tensors"),
        (TensorDataset(torch.zeros(0, 2), torch.zeros(0)), None, "empty"),
        (_Items(torch.zeros(0, 2), torch.zeros(0)), None, "empty"),
        (
            TensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)),
            TensorDataset(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)),
            "one input shape",
        ),
        (
            TensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)),
            TensorDataset(torch.zeros(3, 2), torch.zeros(3)),
            "both must be classification or both regression",
        ),
        (TensorDataset(torch.zeros(3, 2), torch.tensor([0, -1, 2])), None, "non-negative"),
        (
            TensorDataset(torch.zeros(3, 2), torch.zeros(3, 2)),
            TensorDataset(torch.zeros(3, 2), torch.zeros(3, 3)),
            "one target shape",
        ),
    ],
)
def test_unusable_datasets_are_refused_with_the_reason(train, test, message):
    with pytest.raises(DlprobeError, match=message):
        from_torch_dataset(train, test)


def test_items_that_are_not_pairs_are_refused():
    class Triples(_Items):
        def __getitem__(self, i):
            return (*super().__getitem__(i), np.float32(0))

    x, y = _labelled(4)
    with pytest.raises(DlprobeError, match=r"pair \(x, y\)"):
        from_torch_dataset(Triples(x, y))


def test_tensors_go_to_the_requested_device():
    x, y = _labelled(6)
    data = from_torch_dataset(TensorDataset(x, y), device="meta")
    assert {t.device.type for t in (data.x_train, data.y_train, data.x_test, data.y_test)} == {
        "meta"
    }
