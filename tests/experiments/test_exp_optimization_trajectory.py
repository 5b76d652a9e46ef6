import numpy as np
import pytest
import torch
from exp_util import load_results
from sklearn.decomposition import PCA
from torch import nn

from dlprobe import DlprobeError
from dlprobe.experiments.kit.trajectories import vector_to_model
from dlprobe.experiments.optimization_trajectory import (
    EXPERIMENT,
    TWIN,
    align_trajectory,
    first_layer_slice,
    permute_trajectory,
    random_permutations,
)
from dlprobe.models import MLP
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("optimization-trajectory")


def _flat(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach()


def _coords(results: dict, view: str, aligned: bool) -> np.ndarray:
    rows = [
        r
        for r in results["coords"]
        if r["view"] == view and r["method"] == "pca" and r["aligned"] == aligned
    ]
    order = {name: i for i, name in enumerate(results["events"])}
    rows.sort(key=lambda r: (order[r["event"]], r["epoch"]))
    return np.array([[r["x"], r["y"]] for r in rows])


def _assert_same_up_to_sign(expected: np.ndarray, saved: np.ndarray) -> None:
    assert expected.shape == saved.shape
    for c in range(expected.shape[1]):
        sign = np.sign(expected[:, c] @ saved[:, c])
        np.testing.assert_allclose(sign * expected[:, c], saved[:, c], atol=1e-5)


def test_smoke_run_projects_all_snapshots_in_one_basis_and_aligns_the_twin(smoke):
    run = smoke("optimization-trajectory")
    results = load_results(run)
    cfg = EXPERIMENT.make_config("smoke")
    epochs = list(range(0, cfg.train.epochs + 1, cfg.train.snapshot_every_epochs))
    assert results["snapshot_epochs"] == epochs
    assert results["events"] == [f"event {k}" for k in range(cfg.seeds)] + [TWIN]
    # every snapshot has its metrics; the twin's are event 0's
    metrics = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    assert len(metrics) == (cfg.seeds + 1) * len(epochs)
    assert all(metrics[(TWIN, e)] == metrics[("event 0", e)] for e in epochs)

    # One common basis: a PCA fitted on ALL snapshots stacked (the events' trajectories from
    # the training checkpoint, plus the twin rebuilt from its saved permutation) reproduces
    # the saved coordinates, one row per snapshot.
    hist = load_checkpoint_file(run / "checkpoints" / "events.done.pt")["history"]
    trajectories = torch.stack(hist["snapshots"], dim=1).to(torch.float64)  # (K, T, P)
    template = MLP(results["model"]["widths"], results["model"]["activation"])
    twin_perms = [torch.tensor(p) for p in results["twin_permutations"]]
    raw = [*trajectories, permute_trajectory(template, trajectories[0], twin_perms)]
    aligned = [
        permute_trajectory(template, t, [torch.tensor(p) for p in perms])
        for t, perms in zip(raw, results["alignment_permutations"], strict=True)
    ]
    _, layer = first_layer_slice(template)
    for trajs, is_aligned in ((raw, False), (aligned, True)):
        for view, cols in (("whole model", slice(None)), ("first layer", layer)):
            stacked = torch.cat([t[:, cols] for t in trajs]).numpy()
            saved = _coords(results, view, is_aligned)
            assert saved.shape[0] == (cfg.seeds + 1) * len(epochs)
            _assert_same_up_to_sign(PCA(n_components=2).fit_transform(stacked), saved)

    # The twin is as far from event 0 as another event before alignment, at 0 after.
    dist = {(r["aligned"], r["a"], r["b"]): r["distance"] for r in results["distances"]}
    assert dist[(False, "event 0", TWIN)] > 0.3 * dist[(False, "event 0", "event 1")]
    assert dist[(True, "event 0", TWIN)] < 1e-9
    assert torch.equal(aligned[-1][-1], aligned[0][-1])
    # Alignment changes no model's outputs.
    assert all(r["max_abs_output_difference"] < 1e-5 for r in results["alignment_check"])
    assert all(r["same_predictions"] for r in results["alignment_check"])


def test_alignment_keeps_every_snapshot_the_same_function():
    template = MLP([6, 5, 4, 3], "tanh").to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    p = _flat(template).numel()
    reference = torch.randn(p, generator=gen, dtype=torch.float64)
    trajectory = torch.randn(5, p, generator=gen, dtype=torch.float64)  # (T, P)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    aligned, perms = align_trajectory(template, reference, trajectory)
    assert aligned.shape == trajectory.shape
    assert [sorted(q.tolist()) for q in perms] == [list(range(5)), list(range(4))]
    with torch.no_grad():
        for before, after in zip(trajectory, aligned, strict=True):
            out_before = vector_to_model(template, before)(x)
            out_after = vector_to_model(template, after)(x)
            torch.testing.assert_close(out_after, out_before, atol=1e-5, rtol=0)
    # one permutation for the whole trajectory: aligning the final snapshot alone agrees
    final_only, _ = align_trajectory(template, reference, trajectory[-1:])
    torch.testing.assert_close(final_only[0], aligned[-1])
    # the permuted twin of the reference aligns back onto it exactly
    twin = permute_trajectory(template, reference[None], random_permutations(template, 3))
    assert (twin[0] - reference).norm() > 0.1 * reference.norm()
    back, _ = align_trajectory(template, reference, twin)
    assert (back[0] - reference).norm().item() < 1e-12


def test_first_layer_slice_is_the_first_linear():
    model = MLP([64, 16, 16, 10])
    name, layer = first_layer_slice(model)
    assert (layer.start, layer.stop) == (0, 64 * 16 + 16)
    first = model.linears[0]
    torch.testing.assert_close(
        _flat(model)[layer], torch.cat([first.weight.reshape(-1), first.bias]).detach()
    )
    assert "64->16" in name


def test_profiles_and_validation():
    quick = EXPERIMENT.make_config()
    assert quick.seeds == 8 and quick.train.snapshot_every_epochs == 3
    assert quick.train.epochs % quick.train.snapshot_every_epochs == 0
    for profile in ("smoke", "full"):
        EXPERIMENT.make_config(profile)
    with pytest.raises(DlprobeError, match="multiple of snapshot_every_epochs"):
        EXPERIMENT.make_config(changes={"epochs": 10})
    with pytest.raises(DlprobeError, match="multiple of eval_every_epochs"):
        EXPERIMENT.make_config(changes={"epochs": 10, "snapshot_every_epochs": 5})
    with pytest.raises(DlprobeError, match="unknown dataset"):
        EXPERIMENT.make_config(changes={"dataset": "imagenet"})
    with pytest.raises(DlprobeError, match="seeds must be >= 2"):
        EXPERIMENT.make_config(changes={"seeds": 1})
