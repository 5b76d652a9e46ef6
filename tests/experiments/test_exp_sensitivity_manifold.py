import json
import math

import numpy as np
import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import group_rows
from dlprobe.experiments.kit.manifold import ANCHOR_T, ellipse_through
from dlprobe.experiments.sensitivity_manifold import Config, per_ellipse
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.models import MLP
from dlprobe.train import Population
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("sensitivity-manifold")


def _models(run, results) -> dict[str, list[torch.nn.Module]]:
    """The probed models, rebuilt: from their seeds (initial) and the saved parameters."""
    spec = results["model"]
    pop = Population(lambda: MLP(spec["widths"], spec["activation"]), results["seeds"])
    initial = pop.models_list()
    saved = load_checkpoint_file(run / "checkpoints" / "trained.done.pt")
    pop.load_state(saved["population"])
    return {"initial": initial, "trained": pop.models_list()}


@pytest.fixture
def smoke_run(smoke):
    run = smoke("sensitivity-manifold")
    config = json.loads((run / "config.json").read_text())["config"]
    return run, load_results(run), config


def test_every_curve_has_the_configured_number_of_points(smoke_run):
    _, results, cfg = smoke_run
    curves = group_rows(results["curves"], "case", "ellipse", "seed", "phase")
    assert len(curves) == 2 * cfg["ellipses"] * cfg["seeds"] * 2
    for rows in curves.values():
        t = np.array([r["t"] for r in rows])
        assert len(rows) == cfg["n_points"]
        np.testing.assert_allclose(np.diff(t), 2 * math.pi / cfg["n_points"], rtol=1e-9)


def test_ellipse_passes_exactly_through_the_three_inputs(smoke_run):
    _, results, cfg = smoke_run
    data = load_dataset(cfg["dataset"])
    x = data.x_train.reshape(data.n_train, -1).double().numpy()
    for e in results["ellipses"]:
        c, a, b = (np.array(e[k]) for k in ("center", "a", "b"))
        for t, i in zip(ANCHOR_T, e["train_indices"], strict=True):
            np.testing.assert_allclose(c + a * math.cos(t) + b * math.sin(t), x[i], atol=1e-5)
        labels = data.y_train[e["train_indices"]].tolist()
        assert labels == e["classes"]
        assert len(set(labels)) == (1 if e["case"] == "same" else 3)


def test_sensitivity_at_the_inputs_equals_the_probe_on_the_inputs(smoke_run):
    run, results, cfg = smoke_run
    data = load_dataset(cfg["dataset"])
    models = _models(run, results)
    anchors = [round(t / (2 * math.pi) * cfg["n_points"]) for t in ANCHOR_T]
    ellipses = {(e["case"], e["ellipse"]): e for e in results["ellipses"]}
    checked = 0
    for (case, e, seed, phase), rows in group_rows(
        results["curves"], "case", "ellipse", "seed", "phase"
    ).items():
        model = models[phase][results["seeds"].index(seed)]
        x = data.x_train[ellipses[(case, e)]["train_indices"]]  # (3, 1, 8, 8)
        direct = sensitivity(model, x, definition="jacobian").per_example.numpy()
        on_curve = np.array([rows[i]["sensitivity"] for i in anchors])
        np.testing.assert_allclose(on_curve, direct, rtol=1e-4, atol=1e-9)
        with torch.no_grad():
            predicted = model(x).argmax(-1).tolist()
        assert [rows[i]["predicted"] for i in anchors] == predicted
        checked += 1
    assert checked == len(results["ellipses"]) * len(results["seeds"]) * 2


def test_ellipse_formula_and_ratio_bookkeeping():
    rng = np.random.default_rng(1)
    x1, x2, x3 = rng.normal(size=(3, 7))
    c, a, b = ellipse_through(x1, x2, x3)
    for t, x in zip(ANCHOR_T, (x1, x2, x3), strict=True):
        np.testing.assert_allclose(c + a * np.cos(t) + b * np.sin(t), x, atol=1e-12)
    # sensitivity 1 within the window around the inputs and 5 elsewhere: ratio exactly 5
    n, window = 30, 0.25
    t = 2 * math.pi * np.arange(n) / n
    near = np.min([np.abs(np.angle(np.exp(1j * (t - a)))) for a in ANCHOR_T], axis=0) <= window
    curves = [
        {"case": "same", "phase": "trained", "seed": 0, "ellipse": 0, "t": float(ti)}
        | {"sensitivity": 1.0 if m else 5.0, "predicted": 0}
        for ti, m in zip(t, near, strict=True)
    ]
    (row,) = per_ellipse({"curves": curves, "window": window})
    assert row["ratio"] == pytest.approx(5.0)
    assert row["class_changes"] == 0


def test_config_rejects_points_off_the_anchor_grid():
    with pytest.raises(DlprobeError, match="multiple of 3"):
        validate(Config(n_points=100))
