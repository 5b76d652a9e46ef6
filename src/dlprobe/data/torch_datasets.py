"""A user's map-style torch Dataset of (x, y) items as a dlprobe Dataset, in memory."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, TensorDataset

from dlprobe import DlprobeError
from dlprobe.data.dataset import Dataset


def from_torch_dataset(
    train: TorchDataset,
    test: TorchDataset | None = None,
    device: torch.device | str | None = None,
) -> Dataset:
    """Load ``train`` (and ``test``) whole into tensors, once.

    Every item must be a pair ``(x, y)``; the x are stacked into one tensor, and so are the
    y. A ``TensorDataset`` of two tensors is taken as it is; any other map-style dataset is
    read item by item (``dataset[i]`` for every ``i``), so transforms run once, here.
    Integer labels make a classification dataset (``num_classes`` is the largest label + 1),
    floating-point targets a regression dataset (1-D targets become a column ``(n, 1)``, the
    shape of a one-output model's predictions). Dtypes are kept as they are.

    Args:
        train: the training split.
        test: the test split, or None: the test tensors are then empty, and training
            evaluates the models on the training split only.
        device: where the tensors go (default: where they are; stacked items: the CPU).

    Returns:
        A :class:`Dataset` named after the dataset's class, with ``meta["source"]``.

    Raises:
        DlprobeError: an IterableDataset (it has no length or index), a dataset that is
            empty or whose items are not (x, y) pairs, or splits that disagree in input
            shape or task.
    """
    x_train, y_train = _tensors(train, "train")
    if test is None:
        x_test, y_test = x_train[:0], y_train[:0]
    else:
        x_test, y_test = _tensors(test, "test")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DlprobeError(
                f"the test inputs have shape {tuple(x_test.shape[1:])}, the training inputs "
                f"{tuple(x_train.shape[1:])}: both splits must have one input shape"
            )
        if y_test.is_floating_point() != y_train.is_floating_point():
            raise DlprobeError(
                "one split has integer labels and the other floating-point targets: both "
                "must be classification or both regression"
            )
    classification = not y_train.is_floating_point()
    if classification:
        y_train, y_test = y_train.long(), y_test.long()
        labels = torch.cat([y_train, y_test])
        if labels.dim() != 1 or labels.min() < 0:
            raise DlprobeError(
                "integer labels must be one non-negative class index per example; "
                f"got labels of shape {tuple(labels.shape)} and minimum {int(labels.min())}"
            )
    else:
        y_train, y_test = (y.unsqueeze(1) if y.dim() == 1 else y for y in (y_train, y_test))
        if y_train.shape[1:] != y_test.shape[1:]:
            raise DlprobeError(
                f"the test targets have shape {tuple(y_test.shape[1:])}, the training targets "
                f"{tuple(y_train.shape[1:])}: both splits must have one target shape"
            )
    data = Dataset(
        name=type(train).__name__,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        task="classification" if classification else "regression",
        num_classes=int(labels.max()) + 1 if classification else 0,
        meta={"source": type(train).__name__, "has_test_split": test is not None},
    )
    return data if device is None else data.to(device)


def _tensors(dataset: TorchDataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of every item of one split, stacked."""
    if isinstance(dataset, IterableDataset):
        raise DlprobeError(
            f"the {split} split is an IterableDataset, which has no length or index to load "
            "it by; collect its items into tensors first, e.g. a TensorDataset(x, y)"
        )
    if not isinstance(dataset, TorchDataset):
        raise DlprobeError(
            f"the {split} split must be a dlprobe Dataset or a map-style torch Dataset of "
            f"(x, y) items, got {type(dataset).__name__}"
        )
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            raise DlprobeError(
                f"a TensorDataset needs two tensors (x, y), the {split} split has "
                f"{len(dataset.tensors)}"
            )
        x, y = dataset.tensors
    else:
        items = [dataset[i] for i in range(len(dataset))]
        if any(not isinstance(item, (tuple, list)) or len(item) != 2 for item in items):
            raise DlprobeError(f"every item of the {split} split must be a pair (x, y)")
        x = torch.stack([torch.as_tensor(item[0]) for item in items]) if items else None
        y = torch.stack([torch.as_tensor(item[1]) for item in items]) if items else None
    if x is None or len(x) == 0:
        raise DlprobeError(f"the {split} split is empty")
    return x, y
