"""linear-regions: headline numbers, observations and settings for the report."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.classification import classifier_settings
from dlprobe.experiments.common import group_rows
from dlprobe.experiments.linear_regions.protocol import Config


def _by_phase(results: dict) -> dict[str, dict]:
    """phase -> arrays over (plane, seed): counts, near and elsewhere sizes, their ratio."""
    out = {}
    rows = sorted(results["regions"], key=lambda r: (r["plane"], r["seed"]))  # paired order
    for (phase,), rs in group_rows(rows, "phase").items():
        near = np.array([r["size_near"] for r in rs], dtype=float)
        away = np.array([r["size_elsewhere"] for r in rs], dtype=float)
        out[phase] = {
            "counts": np.array([r["n_regions"] for r in rs]),
            "near": near,
            "away": away,
            "ratio": near / away,
        }
    return out


def summarize(results: dict) -> dict:
    out = {}
    by_phase = _by_phase(results)
    for phase, s in by_phase.items():
        out[f"{phase}: regions on the plane (mean over planes and models)"] = float(
            s["counts"].mean()
        )
        out[f"{phase}: region size near / elsewhere (median)"] = float(np.median(s["ratio"]))
    growth = by_phase["trained"]["ratio"] / by_phase["initial"]["ratio"]
    out["training's factor on the near / elsewhere ratio (median)"] = float(np.median(growth))
    acc = group_rows(results["accuracy"], "phase")
    out["test accuracy, trained (mean over models)"] = float(
        np.mean([r["test_accuracy"] for r in acc[("trained",)]])
    )
    return out


def observations(results: dict) -> list[str]:
    s = _by_phase(results)
    init, trained = s["initial"], s["trained"]
    n = len(trained["counts"])
    res = results["resolution"]
    more = int((trained["counts"] > init["counts"]).sum())
    acc = group_rows(results["accuracy"], "phase")
    test_acc = np.mean([r["test_accuracy"] for r in acc[("trained",)]])
    units = f"{results['model']['hidden_units']} {results['model']['activation']}"
    lines = [
        f"On a {res}x{res} grid over n={n} (plane, model) pairs, the network with {units} "
        f"units has {init['counts'].mean():.0f} regions on average before training "
        f"(range {init['counts'].min()}-{init['counts'].max()}) and "
        f"{trained['counts'].mean():.0f} after (range {trained['counts'].min()}-"
        f"{trained['counts'].max()}; more after training in {more}/{n}); the trained models "
        f"reach mean test accuracy {test_acc:.3f}.",
    ]
    frac = results["near_fraction"]
    for phase, st in (("before", init), ("after", trained)):
        lines.append(
            f"{phase.capitalize()} training, a grid point within {frac:g} x the inputs' mean "
            f"distance of an input lies in a region of median {np.median(st['near']):.0f} grid "
            f"points, one elsewhere in a region of {np.median(st['away']):.0f} (near/elsewhere "
            f"ratio: median {np.median(st['ratio']):.2f}, > 1 in {int((st['ratio'] > 1).sum())}"
            f"/{n})."
        )
    growth = trained["ratio"] / init["ratio"]
    lines.append(
        f"Training multiplies the mean region size near the inputs by "
        f"{np.median(trained['near'] / init['near']):.2f} and elsewhere by "
        f"{np.median(trained['away'] / init['away']):.2f} (medians over n={n}); the near/"
        f"elsewhere ratio grows in {int((growth > 1).sum())}/{n} (median factor "
        f"{np.median(growth):.2f})."
    )
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    return [
        *classifier_settings(cfg, results),
        (
            "planes",
            f"{cfg.planes}, each through three training inputs of different classes (drawn with "
            f"seed {cfg.seed}); {cfg.resolution}x{cfg.resolution} grid, margin {cfg.extent:g} of "
            "the inputs' box; regions are counted on the grid (a lower bound)",
        ),
        ("near", f"within {cfg.near_radius:g} x the mean distance between the three inputs"),
    ]
