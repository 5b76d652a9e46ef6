"""Datasets as whole in-memory tensors, and label corruption.

``load_dataset(name)`` returns a :class:`Dataset`; ``DATASETS`` lists every name.
``from_torch_dataset(train, test)`` loads a user's map-style torch Dataset into one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dlprobe import DlprobeError
from dlprobe.data.corruption import CORRUPTION_MODES, corrupt_labels
from dlprobe.data.dataset import Dataset
from dlprobe.data.embedded import load_digits, load_mnist1d
from dlprobe.data.functions import FUNCTIONS, TargetFunction, function_dataset, get_function
from dlprobe.data.images import IMAGE_SETS, image_files_present, load_image_dataset
from dlprobe.data.torch_datasets import from_torch_dataset

__all__ = [
    "CORRUPTION_MODES",
    "DATASETS",
    "FUNCTIONS",
    "Dataset",
    "DatasetInfo",
    "TargetFunction",
    "corrupt_labels",
    "dataset_status",
    "default_data_dir",
    "from_torch_dataset",
    "function_dataset",
    "get_function",
    "load_dataset",
]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    embedded: bool  # True: generated or shipped with a dependency, no download
    description: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("mnist1d", True, "mnist1d: 10 classes, 40-sample 1-D signals, 4000/1000"),
        DatasetInfo("digits", True, "scikit-learn 8x8 digits: 10 classes, 1347/450"),
        DatasetInfo("mnist", False, "MNIST 28x28: 10 classes, 60000/10000 (torchvision)"),
        DatasetInfo("fashion-mnist", False, "Fashion-MNIST 28x28: 10 classes, 60000/10000"),
        DatasetInfo("cifar10", False, "CIFAR-10 32x32x3: 10 classes, 50000/10000 (torchvision)"),
    ]
}


def default_data_dir() -> Path:
    """``$DLPROBE_DATA_DIR`` if set, else ``~/.cache/dlprobe``."""
    return Path(os.environ.get("DLPROBE_DATA_DIR", Path.home() / ".cache" / "dlprobe"))


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Load a classification dataset by name onto ``device``.

    Raises:
        DlprobeError: unknown name (the message lists the valid ones), or files missing
            and not downloadable (the message names the folder and files expected).
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "mnist1d":
        data = load_mnist1d(data_dir)
    elif name == "digits":
        data = load_digits()
    elif name in IMAGE_SETS:
        data = load_image_dataset(name, data_dir, download=download)
    else:
        raise DlprobeError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return data.to(device)


def dataset_status(data_dir: Path | str | None = None) -> list[dict]:
    """One record per dataset: embedded or not, present or not, where its files go."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rows = []
    for info in DATASETS.values():
        if info.name == "mnist1d":
            where = data_dir / "mnist1d" / "mnist1d_standard.npz"
            present = where.exists()
        elif info.name == "digits":
            where, present = Path("(inside scikit-learn)"), True
        else:
            where = data_dir / IMAGE_SETS[info.name]["folder"]
            present = image_files_present(info.name, data_dir)
        rows.append(
            {
                "name": info.name,
                "embedded": info.embedded,
                "present": present,
                "where": str(where),
                "description": info.description,
            }
        )
    return rows
