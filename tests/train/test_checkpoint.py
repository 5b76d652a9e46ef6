import pickle

import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.data import function_dataset
from dlprobe.models import MLP
from dlprobe.train import (
    Checkpoint,
    Population,
    TrainConfig,
    atomic_torch_save,
    load_checkpoint_file,
    train_population,
)


class _WritesMarker:
    """Unpickling this object creates a file: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_checkpoint_holding_a_pickled_object_is_refused_unrun(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoints" / "trained.pt"
    path.parent.mkdir()
    state = {"epoch": 3, "payload": _WritesMarker(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)  # the protocol torch.save writes
    with pytest.raises(DlprobeError, match="not a dlprobe checkpoint or was tampered") as err:
        load_checkpoint_file(path)
    assert str(path) in str(err.value) and "checkpoints/" in str(err.value)
    assert "only an unsafe load would run" in str(err.value)
    assert not marker.exists()
    with pytest.raises(DlprobeError, match="tampered"):  # the trainer's resume refuses it too
        train_population(
            Population(lambda: MLP([1, 4, 1]), [0]),
            function_dataset("sinc", 16),
            TrainConfig(epochs=1, batch_size=8),
            checkpoint=Checkpoint(path),
        )
    assert not marker.exists()
    # The file really is malicious: the unsafe load runs its code.
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as f:
            pickle.load(f)
    assert marker.exists()


def test_unreadable_or_non_dict_files_are_refused(tmp_path):
    whole = tmp_path / "whole.pt"
    atomic_torch_save({"w": torch.zeros(100)}, whole)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[:300])
    with pytest.raises(DlprobeError, match="cannot be read"):
        load_checkpoint_file(truncated)
    listed = tmp_path / "list.pt"
    atomic_torch_save([torch.zeros(2)], listed)
    with pytest.raises(DlprobeError, match="holds a list, not a dict"):
        load_checkpoint_file(listed)
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(tmp_path / "missing.pt")


def test_plain_state_loads_back_equal(tmp_path):
    state = {
        "epoch": 2,
        "tensors": {"w": torch.arange(6.0).reshape(2, 3)},
        "nested": [None, 1.5, "non-finite loss", (1, 2), {"a": [True, False]}],
    }
    atomic_torch_save(state, tmp_path / "s.pt")
    loaded = load_checkpoint_file(tmp_path / "s.pt")
    assert loaded["nested"] == state["nested"] and loaded["epoch"] == 2
    assert torch.equal(loaded["tensors"]["w"], state["tensors"]["w"])
