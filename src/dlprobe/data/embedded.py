"""Datasets that need no download: mnist1d (generated) and scikit-learn's 8x8 digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlprobe.data.dataset import Dataset


def load_mnist1d(cache_dir: Path) -> Dataset:
    """mnist1d (Greydanus 2020) with the package's standard arguments: 4000 train, 1000 test.

    Generated once and cached as ``cache_dir/mnist1d/mnist1d_standard.npz``; inputs are
    (n, 1, 40) so that both MLPs (which flatten) and 1-D CNNs can read them.
    """
    path = Path(cache_dir) / "mnist1d" / "mnist1d_standard.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        raw = make_dataset(get_dataset_args())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=raw["x"], y=raw["y"], x_test=raw["x_test"], y_test=raw["y_test"])
        tmp.replace(path)
    raw = np.load(path)
    x, x_test = (torch.as_tensor(raw[k], dtype=torch.float32) for k in ("x", "x_test"))
    mean, std = x.mean(), x.std()
    return Dataset(
        name="mnist1d",
        x_train=((x - mean) / std).unsqueeze(1),
        y_train=torch.as_tensor(raw["y"], dtype=torch.long),
        x_test=((x_test - mean) / std).unsqueeze(1),
        y_test=torch.as_tensor(raw["y_test"], dtype=torch.long),
        task="classification",
        num_classes=10,
        meta={"source": "mnist1d package, get_dataset_args() defaults", "cache": str(path)},
    )


def load_digits(split_seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's 1797 8x8 digits, a seeded stratified split; inputs (n, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    raw = sk_digits()
    x = raw.images.astype(np.float32) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, raw.target, test_size=test_fraction, random_state=split_seed, stratify=raw.target
    )
    mean, std = x_tr.mean(), x_tr.std()
    return Dataset(
        name="digits",
        x_train=torch.as_tensor((x_tr - mean) / std).unsqueeze(1),
        y_train=torch.as_tensor(y_tr, dtype=torch.long),
        x_test=torch.as_tensor((x_te - mean) / std).unsqueeze(1),
        y_test=torch.as_tensor(y_te, dtype=torch.long),
        task="classification",
        num_classes=10,
        meta={"source": "sklearn.datasets.load_digits", "split_seed": split_seed},
    )
