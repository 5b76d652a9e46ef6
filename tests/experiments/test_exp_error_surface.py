import copy
import json

import pytest
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.experiments.error_surface import EXPERIMENT, Config, notes
from dlprobe.models import MLP, count_params, mlp_param_count

pytestmark = pytest.mark.xdist_group("error-surface")


def test_smoke_run_probes_the_best_run_four_ways(smoke):
    run = smoke("error-surface")
    results = load_results(run)
    cfg = json.loads((run / "config.json").read_text())["config"]
    runs = {r["seed"]: r for r in results["runs"]}
    assert sorted(runs) == results["seeds"]

    # (a) the straight line passes through the initial loss (measured before training) at
    # alpha 0 and the History's final training loss at alpha 1, for every run.
    for seed, r in runs.items():
        line = {p["alpha"]: p["train_loss"] for p in results["line"] if p["seed"] == seed}
        assert min(line) == pytest.approx(cfg["alpha_range"][0])
        assert max(line) == pytest.approx(cfg["alpha_range"][1])
        assert line[0.0] == pytest.approx(r["initial_train_loss"], rel=1e-5, abs=1e-8)
        assert line[1.0] == pytest.approx(r["train_loss"], rel=1e-5, abs=1e-8)

    # (b) every per-parameter curve passes through the final loss at zero perturbation.
    final = runs[results["probed_seed"]]["train_loss"]
    assert final == min(r["train_loss"] for r in results["runs"]) == results["final_train_loss"]
    at_zero = [r for r in results["per_parameter"] if r["delta"] == 0.0]
    assert len(at_zero) == results["model"]["params"]
    assert all(r["loss"] == pytest.approx(final, rel=1e-5, abs=1e-8) for r in at_zero)
    assert len(results["per_parameter"]) == results["model"]["params"] * cfg["param_points"]

    # (c) one sample per (radius, draw), coloured by a real loss.
    assert len(results["perturbed"]) == len(cfg["sample_radii"]) * cfg["samples_per_radius"]
    assert all(r["loss"] >= 0 for r in results["perturbed"])

    # (d) the surface grid has the configured shape and is centred on the final weights,
    # which is where the projected trajectory ends.
    surface = results["surface"]
    n = cfg["surface_points"]
    assert len(surface["a"]) == len(surface["b"]) == n
    assert len(surface["loss"]) == n and all(len(row) == n for row in surface["loss"])
    assert surface["center_loss"] == pytest.approx(final, rel=1e-5, abs=1e-8)
    end = results["trajectory"][-1]
    assert abs(end["a"]) < 1e-6 and abs(end["b"]) < 1e-6 and end["distance_to_final"] == 0
    assert results["trajectory"][0]["epoch"] == 0
    assert [t["epoch"] for t in results["trajectory"]] == list(
        range(0, cfg["train"]["epochs"] + 1, cfg["train"]["snapshot_every_epochs"])
    )
    assert (
        results["trajectory"][0]["train_loss"] == runs[results["probed_seed"]]["initial_train_loss"]
    )


def test_tiny_model_has_fewer_than_50_parameters():
    for profile in ("smoke", "quick", "full"):
        cfg = EXPERIMENT.make_config(profile)
        widths = [int(w) for w in cfg.widths.split("-")]
        params = count_params(MLP(widths, cfg.activation))
        assert params < 50
        assert params == mlp_param_count(widths, cfg.activation)
    assert count_params(MLP([1, 4, 4, 1])) == 33


def test_validation_rejects_large_models_and_grids_without_zero():
    with pytest.raises(DlprobeError, match="tiny model"):
        validate(Config(widths="1-50-1"))
    with pytest.raises(DlprobeError, match="odd"):
        validate(Config(param_points=40))
    with pytest.raises(DlprobeError, match=r"contain \[0, 1\]"):
        validate(Config(alpha_range=(0.2, 1.0)))
    with pytest.raises(DlprobeError, match="multiple of snapshot_every_epochs"):
        EXPERIMENT.make_config(changes={"epochs": 2010})
    with pytest.raises(DlprobeError, match="sample_radii must be > 0"):
        EXPERIMENT.make_config(changes={"sample_radii": (0.1, 0.0)})


def test_report_follows_the_numbers(smoke):
    """Each sentence turns with the numbers it states (a copy of the smoke results, edited)."""
    results = load_results(smoke("error-surface"))
    edited = copy.deepcopy(results)
    seed = edited["seeds"][0]
    for r in edited["line"]:  # a bump in the middle of one run's line
        if r["seed"] == seed and r["alpha"] == 0.5:
            r["train_loss"] *= 10
    n = len(edited["surface"]["loss"])
    edited["surface"]["loss"] = [[1.0 + (i - n // 2) ** 2 + (j - n // 2) ** 2 for j in range(n)]
                                 for i in range(n)]  # fmt: skip
    edited["trajectory"][0]["distance_in_plane"] = edited["trajectory"][0]["distance_to_final"]
    before = " ".join(notes(results).observations)
    after = " ".join(notes(edited).observations)
    assert "never rises in any of the 2 run(s)" in before
    assert "rises somewhere in 1 of 2 runs" in after
    assert "the final weights at (0, 0) are its lowest grid point" in after
    assert "The plane holds 100%" in after and "is close to the real path" in after
    assert {r["verdict"] for r in notes(results).fidelity} == {"reproduced"}
