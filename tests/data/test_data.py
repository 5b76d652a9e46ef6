import struct

import numpy as np
import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.data import (
    FUNCTIONS,
    corrupt_labels,
    dataset_status,
    function_dataset,
    load_dataset,
)


def test_at_least_eight_functions_with_domains():
    assert len(FUNCTIONS) >= 8
    for name, f in FUNCTIONS.items():
        d = function_dataset(name, 64)
        assert d.x_train.shape == (64, 1) and d.y_train.shape == (64, 1)
        assert torch.isfinite(d.y_test).all(), name
        assert d.x_train.min() == f.domain[0] and d.x_train.max() == pytest.approx(f.domain[1])
    sinc = function_dataset("sinc", 11)
    assert sinc.y_train[0, 0] == 1.0  # the limit at x = 0


def test_mnist1d_standard_split_is_cached(tmp_path):
    d = load_dataset("mnist1d", data_dir=tmp_path)
    assert (d.n_train, d.n_test, d.input_shape, d.num_classes) == (4000, 1000, (1, 40), 10)
    assert (tmp_path / "mnist1d" / "mnist1d_standard.npz").exists()
    again = load_dataset("mnist1d", data_dir=tmp_path)
    assert torch.equal(again.x_train, d.x_train)


def test_digits_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.n_train + a.n_test == 1797 and a.input_shape == (1, 8, 8)
    assert torch.equal(a.y_test, b.y_test)


@pytest.mark.parametrize("mode", ["uniform", "shuffle"])
def test_label_corruption_touches_training_labels_only(mode):
    d = load_dataset("digits")
    c = corrupt_labels(d, 0.6, seed=1, mode=mode)
    assert torch.equal(c.y_test, d.y_test), "test labels must keep their true values"
    assert torch.equal(c.x_train, d.x_train) and torch.equal(c.x_test, d.x_test)
    chosen = c.meta["corrupted_indices"]
    assert len(chosen) == round(0.6 * d.n_train)
    untouched = torch.ones(d.n_train, dtype=torch.bool)
    untouched[chosen] = False
    assert torch.equal(c.y_train[untouched], d.y_train[untouched])
    changed = (c.y_train != d.y_train).float().mean().item()
    assert 0.4 < changed < 0.6  # ~ 0.6 * 9/10 of labels differ
    assert torch.equal(corrupt_labels(d, 0.6, seed=1, mode=mode).y_train, c.y_train)
    if mode == "shuffle":
        assert torch.equal(c.y_train.bincount(), d.y_train.bincount())


def test_label_corruption_rejects_bad_fraction():
    d = load_dataset("digits")
    with pytest.raises(DlprobeError, match=r"\[0, 1\]"):
        corrupt_labels(d, 1.5, seed=0)


def _write_idx(path, array: np.ndarray) -> None:
    """torchvision's MNIST raw format: big-endian magic, dims, then uint8 data."""
    dims = array.shape
    magic = 0x0800 + len(dims)
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for n in dims:
            f.write(struct.pack(">I", n))
        f.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_format_files_load_offline(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 7)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    d = load_dataset(name, data_dir=tmp_path, download=False)
    assert (d.n_train, d.n_test, d.input_shape) == (20, 7, (1, 28, 28))
    assert abs(d.x_train.mean().item()) < 1e-5
    assert [r["present"] for r in dataset_status(tmp_path) if r["name"] == name] == [True]


def test_cifar10_format_files_load_offline(tmp_path, monkeypatch):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, 4).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # torchvision checks the md5 sums of the real files; ours are format-exact stand-ins
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: True)
    d = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert (d.n_train, d.n_test, d.input_shape) == (20, 4, (3, 32, 32))


def test_missing_files_error_names_folder_and_files(tmp_path):
    with pytest.raises(DlprobeError) as err:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    with pytest.raises(DlprobeError, match="valid names: mnist1d"):
        load_dataset("imagenet")
