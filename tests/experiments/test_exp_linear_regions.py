import json
import math

import numpy as np
import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import load_dataset
from dlprobe.experiments.linear_regions import (
    Config,
    arcs,
    notes,
    region_colours,
    transition_densities,
)
from dlprobe.measure.regions import linear_regions, path_transitions
from dlprobe.models import MLP
from dlprobe.train import Population
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("linear-regions")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("linear-regions")
    return run, load_results(run), json.loads((run / "config.json").read_text())["config"]


def _models(run, results) -> dict[str, list[torch.nn.Module]]:
    """The probed models, rebuilt: from their seeds (initial) and the saved parameters."""
    spec = results["model"]
    pop = Population(lambda: MLP(spec["widths"], spec["activation"]), results["seeds"])
    initial = pop.models_list()
    saved = load_checkpoint_file(run / "checkpoints" / "trained.done.pt")
    pop.load_state(saved["population"])
    return {"initial": initial, "trained": pop.models_list()}


def _relu_patterns(model: MLP, x: torch.Tensor) -> np.ndarray:
    """On/off state of every hidden ReLU at each input, by walking the layers by hand."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    h, states = x.double(), []
    for lin in linears[:-1]:
        z = h @ lin.weight.double().T + lin.bias.double()
        states.append((z > 0).numpy())
        h = z.clamp_min(0)
    return np.concatenate(states, axis=1)  # (M, hidden units)


def _ellipse(x1, x2, x3, t):
    """The ellipse through x1, x2, x3 at t = 0, 2π/3, 4π/3, solved as a linear system."""
    anchors = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3])
    basis = np.stack([np.ones(3), np.cos(anchors), np.sin(anchors)], 1)  # (3, 3)
    c, a, b = np.linalg.solve(basis, np.stack([x1, x2, x3]))
    return c + np.cos(t)[:, None] * a + np.sin(t)[:, None] * b


def test_transitions_agree_with_a_hand_walk_along_the_same_ellipse(smoke_run):
    run, results, cfg = smoke_run
    data = load_dataset(cfg["dataset"])
    models = _models(run, results)
    planes = {p["plane"]: p for p in results["planes"]}
    t = np.linspace(0, 2 * math.pi, cfg["path_points"], endpoint=False)
    assert len(results["paths"]) == cfg["planes"] * cfg["seeds"] * 2
    for r in results["paths"]:
        x = data.x_train[planes[r["plane"]]["train_indices"]].reshape(3, -1).double().numpy()
        points = torch.as_tensor(_ellipse(*x, t))  # (M, D)
        model = models[r["phase"]][results["seeds"].index(r["seed"])]
        states = _relu_patterns(model, points)
        changes = (states != np.roll(states, -1, axis=0)).any(axis=1)
        lengths = np.linalg.norm(np.roll(points.numpy(), -1, axis=0) - points.numpy(), axis=1)
        assert r["transitions"] == changes.sum()
        assert r["length"] == pytest.approx(lengths.sum(), rel=1e-9)
        near, midway = transition_densities(changes, lengths, t, cfg["window"])
        assert (r["density_near"], r["density_midway"]) == pytest.approx((near, midway))
        lr = linear_regions(
            model, *data.x_train[planes[r["plane"]]["train_indices"]], cfg["resolution"], 0.5
        )
        assert r["n_regions"] == lr.n_regions


def test_arcs_at_the_inputs_and_midway_are_disjoint_and_of_equal_length():
    t = np.linspace(0, 2 * math.pi, 3000, endpoint=False)
    at = arcs(t, (0.0, 2 * math.pi / 3, 4 * math.pi / 3), 0.25)
    mid = arcs(t, (math.pi / 3, math.pi, 5 * math.pi / 3), 0.25)
    assert at.sum() == pytest.approx(mid.sum(), abs=6)
    assert not np.any(at & mid & arcs(t, (0.0,), 0.2))  # only the shared end points may touch
    assert at[0] and mid[len(t) // 6] and not at[len(t) // 6]


def test_path_transitions_count_the_crossings_of_a_single_relu():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        model[0].bias.zero_()
    t = torch.linspace(0, 2 * math.pi, 101)[:-1]
    circle = torch.stack([torch.cos(t), torch.sin(t)], 1)  # crosses x = 0 twice
    tr = path_transitions(model, circle)
    assert tr.n_transitions == 2
    assert tr.lengths.sum() == pytest.approx(2 * math.pi, rel=1e-3)


def test_the_fidelity_verdict_follows_the_densities(smoke_run):
    _, results, _ = smoke_run
    trained = [r for r in results["paths"] if r["phase"] == "trained"]
    near = np.mean([r["density_near"] for r in trained])
    midway = np.mean([r["density_midway"] for r in trained])
    fewer = sum(r["density_near"] < r["density_midway"] for r in trained)
    (row,) = notes(results).fidelity
    assert row["verdict"].startswith("reproduced") == (near < midway and fewer > len(trained) / 2)
    flipped = {**results, "paths": [
        {**r, "density_near": r["density_midway"], "density_midway": r["density_near"]}
        for r in results["paths"]
    ]}  # fmt: skip
    (row,) = notes(flipped).fidelity
    assert row["verdict"].startswith("reproduced") == (midway < near and fewer < len(trained) / 2)


def test_neighbouring_regions_get_different_colours(smoke_run):
    _, results, _ = smoke_run
    for m in results["maps"]:
        ids = np.array(m["region_ids"])
        colour = region_colours(ids)[ids]
        for a, b, ca, cb in (
            (ids[:, :-1], ids[:, 1:], colour[:, :-1], colour[:, 1:]),
            (ids[:-1], ids[1:], colour[:-1], colour[1:]),
        ):
            assert np.all(ca[a != b] != cb[a != b])
            assert np.all(ca[a == b] == cb[a == b])


def test_config_rejects_activations_without_linear_regions_and_overlapping_arcs():
    with pytest.raises(DlprobeError, match="valid names: relu, leaky_relu"):
        validate(Config(activation="tanh"))
    with pytest.raises(DlprobeError, match="window"):
        validate(Config(window=0.3))
