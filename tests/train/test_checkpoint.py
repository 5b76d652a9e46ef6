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


@pytest.mark.parametrize("batch_norm", [False, True], ids=["stacked", "one-by-one"])
def test_resume_with_frozen_models_gives_the_uninterrupted_history(tmp_path, batch_norm):
    """Everything a checkpoint holds (stopped and diverged models, their reasons, step
    records, snapshots) loads with weights_only and resumes to the same numbers."""
    data = function_dataset("square", 32)
    cfg = TrainConfig(
        optimizer="momentum",
        lr=0.1,
        epochs=8,
        batch_size=8,
        stop_below_train_loss=0.03,
        record_steps=True,
        snapshot_every_epochs=2,
    )

    def population():
        pop = Population(lambda: MLP([1, 8, 1], "relu", batch_norm=batch_norm), [0, 1, 2])
        with torch.no_grad():  # model 2 starts 100x larger and blows up
            for p in pop.per_model_parameters()[2]:
                p.mul_(100)
        return pop

    full = train_population(pop_full := population(), data, cfg)
    assert full.diverged == [2] and any(full.reached_target)
    ckpt = Checkpoint(tmp_path / "c.pt")

    def interrupt(done, total, metrics):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_population(population(), data, cfg, checkpoint=ckpt, progress=interrupt)
    assert load_checkpoint_file(ckpt.path)["epoch"] == 4
    resumed = train_population(pop_resumed := population(), data, cfg, checkpoint=ckpt)
    assert resumed.state().keys() == full.state().keys()
    for name, value in full.state().items():
        if name == "seconds":
            continue
        if name == "snapshots":
            assert all(torch.equal(a, b) for a, b in zip(resumed.snapshots, value, strict=True))
        else:
            assert repr(getattr(resumed, name)) == repr(value), name  # NaN == NaN as text
    assert torch.equal(pop_resumed.flat_params(), pop_full.flat_params())


def test_checkpoint_of_an_older_trainer_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    atomic_torch_save({"epoch": 1, "population": {}}, path)  # no "format": before this version
    with pytest.raises(DlprobeError, match="another version of dlprobe's trainer"):
        train_population(
            Population(lambda: MLP([1, 4, 1]), [0]),
            function_dataset("sinc", 16),
            TrainConfig(epochs=2, batch_size=8),
            checkpoint=Checkpoint(path),
        )


def test_dropout_draws_from_the_global_generator_and_resumes_exactly(tmp_path):
    """Dropout advances torch's global generator (documented); the checkpoint keeps its
    state, so a resumed training gives the uninterrupted numbers whatever the caller's."""
    data = function_dataset("square", 32)
    cfg = TrainConfig(epochs=4, batch_size=8)

    def population():
        return Population(
            lambda: torch.nn.Sequential(
                torch.nn.Linear(1, 16),
                torch.nn.Tanh(),
                torch.nn.Dropout(0.2),
                torch.nn.Linear(16, 1),
            ),
            [0, 1],
        )

    torch.manual_seed(0)
    before = torch.get_rng_state()
    full = train_population(population(), data, cfg)
    assert not torch.equal(torch.get_rng_state(), before)

    def interrupt(done, total, metrics):
        if done == 3:
            raise KeyboardInterrupt

    ckpt = Checkpoint(tmp_path / "c.pt")
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_population(population(), data, cfg, checkpoint=ckpt, progress=interrupt)
    torch.manual_seed(12345)  # another global state: the checkpoint's is restored
    resumed = train_population(population(), data, cfg, checkpoint=ckpt)
    assert resumed.train_loss == full.train_loss and resumed.test_loss == full.test_loss
