import numpy as np
import pytest
import torch
from exp_util import load_results
from sklearn.decomposition import PCA

from dlprobe import DlprobeError
from dlprobe.experiments.optimization_trajectory import EXPERIMENT, notes
from dlprobe.measure.flat import parameter_slice
from dlprobe.measure.permutations import permute_trajectory
from dlprobe.models import MLP
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("optimization-trajectory")


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
    twin = "twin of event 0"
    assert results["events"] == [f"event {k}" for k in range(cfg.seeds)] + [twin]
    # every snapshot has its metrics; the twin's are event 0's
    metrics = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    assert len(metrics) == (cfg.seeds + 1) * len(epochs)
    assert all(metrics[(twin, e)] == metrics[("event 0", e)] for e in epochs)

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
    layer = parameter_slice(template, template.linears[0])
    for trajs, is_aligned in ((raw, False), (aligned, True)):
        for view, cols in (("whole model", slice(None)), ("first layer", layer)):
            stacked = torch.cat([t[:, cols] for t in trajs]).numpy()
            saved = _coords(results, view, is_aligned)
            assert saved.shape[0] == (cfg.seeds + 1) * len(epochs)
            _assert_same_up_to_sign(PCA(n_components=2).fit_transform(stacked), saved)

    # The twin is as far from event 0 as another event before alignment, at 0 after.
    dist = {(r["aligned"], r["a"], r["b"]): r["distance"] for r in results["distances"]}
    assert dist[(False, "event 0", twin)] > 0.3 * dist[(False, "event 0", "event 1")]
    assert dist[(True, "event 0", twin)] < 1e-9
    assert torch.equal(aligned[-1][-1], aligned[0][-1])
    # Alignment changes no model's outputs.
    assert all(r["max_abs_output_difference"] < 1e-5 for r in results["alignment_check"])
    assert all(r["same_predictions"] for r in results["alignment_check"])
    # The twin computes event 0's function, and the report and fidelity table say so.
    assert results["twin_check"]["max_abs_output_difference"] < 1e-9
    assert results["twin_check"]["same_predictions"]
    twin_row = notes(results).fidelity[-1]
    assert "permuted twin" in twin_row["claim"] and twin_row["verdict"] == "reproduced"


def test_report_follows_the_numbers(smoke):
    """The sentences and verdicts change when the numbers do: a twin that is not the same
    function, and a PCA that keeps little of the variance."""
    results = load_results(smoke("optimization-trajectory"))
    lines = " ".join(notes(results).observations)
    assert "computes the same function and aligns back onto it" in lines
    results["twin_check"] = {"max_abs_output_difference": 0.5, "same_predictions": False}
    for row in results["explained_variance"]:
        row["explained_variance_ratio"] = [0.3, 0.1]
    report = notes(results)
    lines = " ".join(report.observations)
    assert "does NOT compute the same function" in lines
    assert "whole-model figure shows less than half" in lines
    assert report.fidelity[-1]["verdict"].startswith("differs because")


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
