"""Image datasets through torchvision (MNIST, Fashion-MNIST, CIFAR-10), loaded whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlprobe import DlprobeError
from dlprobe.data.dataset import Dataset

# The folder layout torchvision reads below --data-dir, and where to fetch the files.
IMAGE_SETS = {
    "mnist": {
        "class": "MNIST",
        "folder": "MNIST/raw",
        "files": [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/ (each file as .gz, unpacked or not)",
        "classes": 10,
    },
    "fashion-mnist": {
        "class": "FashionMNIST",
        "folder": "FashionMNIST/raw",
        "files": [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (each file as .gz)",
        "classes": 10,
    },
    "cifar10": {
        "class": "CIFAR10",
        "folder": "cifar-10-batches-py",
        "files": [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"],
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (unpack into --data-dir)",
        "classes": 10,
    },
}


def missing_files_message(name: str, data_dir: Path) -> str:
    spec = IMAGE_SETS[name]
    folder = Path(data_dir) / spec["folder"]
    files = ", ".join(spec["files"])
    return (
        f"{name} is not in {folder} and could not be downloaded (no network?). "
        f"Put these files there: {files}. Fetch them on a machine with internet from "
        f"{spec['url']}, or let torchvision download them there "
        f"(torchvision.datasets.{spec['class']}(ROOT, download=True)) and copy ROOT/"
        f"{spec['folder'].split('/')[0]} into {data_dir}."
    )


def _to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = ds.data
    x = torch.as_tensor(np.asarray(data)).float() / 255.0
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (n, c, h, w)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return x.contiguous(), y


def load_image_dataset(name: str, data_dir: Path, download: bool = True) -> Dataset:
    """Load train and test split whole, standardized with the training split's channel stats."""
    import torchvision.datasets as tvd

    spec = IMAGE_SETS[name]
    cls = getattr(tvd, spec["class"])
    data_dir = Path(data_dir)
    splits = {}
    for train in (True, False):
        try:
            splits[train] = cls(str(data_dir), train=train, download=download)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError ...
            raise DlprobeError(missing_files_message(name, data_dir)) from exc
    x_train, y_train = _to_tensors(splits[True])
    x_test, y_test = _to_tensors(splits[False])
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Dataset(
        name=name,
        x_train=(x_train - mean) / std,
        y_train=y_train,
        x_test=(x_test - mean) / std,
        y_test=y_test,
        task="classification",
        num_classes=spec["classes"],
        meta={"source": "torchvision", "data_dir": str(data_dir)},
    )


def image_files_present(name: str, data_dir: Path) -> bool:
    folder = Path(data_dir) / IMAGE_SETS[name]["folder"]
    return all(
        (folder / f).exists() or (folder / f"{f}.gz").exists() for f in IMAGE_SETS[name]["files"]
    )
