import json

import numpy as np
import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import load_dataset
from dlprobe.experiments.linear_regions import Config, mean_anchor_distance, region_colours
from dlprobe.measure.regions import linear_regions, mean_region_size_near_anchors
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


def test_region_counts_agree_with_the_probe_on_the_saved_models(smoke_run):
    run, results, cfg = smoke_run
    data = load_dataset(cfg["dataset"])
    models = _models(run, results)
    planes = {p["plane"]: p for p in results["planes"]}
    maps = {(m["plane"], m["seed"], m["phase"]): m for m in results["maps"]}
    assert len(results["regions"]) == cfg["planes"] * cfg["seeds"] * 2
    for r in results["regions"]:
        plane = planes[r["plane"]]
        model = models[r["phase"]][results["seeds"].index(r["seed"])]
        x = data.x_train[plane["train_indices"]]
        lr = linear_regions(model, *x, results["resolution"], results["extent"])
        assert lr.n_regions == r["n_regions"]
        near, elsewhere = mean_region_size_near_anchors(lr, plane["near_radius"])
        assert (near, elsewhere) == pytest.approx((r["size_near"], r["size_elsewhere"]))
        stored = maps.get((r["plane"], r["seed"], r["phase"]))
        if stored is not None:
            np.testing.assert_array_equal(np.array(stored["region_ids"]), lr.region_ids)
        if r["phase"] == "trained":
            assert r["n_regions"] > 1


def test_anchor_coordinates_map_back_to_the_three_inputs(smoke_run):
    _, results, cfg = smoke_run
    data = load_dataset(cfg["dataset"])
    for plane in results["planes"]:
        x1, x2, x3 = data.x_train[plane["train_indices"]].reshape(3, -1).double()
        # the plane's orthonormal basis by Gram-Schmidt, as the probe documents it
        e1 = (x2 - x1) / (x2 - x1).norm()
        b = (x3 - x1) - ((x3 - x1) @ e1) * e1
        e2 = b / b.norm()
        uv = torch.tensor(plane["anchor_coords"], dtype=torch.float64)  # (3, 2)
        back = x1 + uv[:, :1] * e1 + uv[:, 1:] * e2  # (3, D)
        torch.testing.assert_close(back, torch.stack([x1, x2, x3]), atol=1e-5, rtol=0)
        assert plane["near_radius"] == pytest.approx(
            cfg["near_radius"] * mean_anchor_distance(uv.numpy())
        )
        assert len(set(data.y_train[plane["train_indices"]].tolist())) == 3


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


def test_config_rejects_activations_without_linear_regions():
    with pytest.raises(DlprobeError, match="valid names: relu, leaky_relu"):
        validate(Config(activation="tanh"))
