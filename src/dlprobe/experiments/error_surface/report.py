"""error-surface: headline numbers, observations and settings for the report."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.common import sci
from dlprobe.experiments.error_surface.protocol import Config, model_text, probed_run


def _line_endpoints(results: dict) -> list[dict]:
    """Per run: loss at alpha 0 and 1, the line's maximum in [0, 1] and its minimum."""
    out = []
    for seed in results["seeds"]:
        rows = [r for r in results["line"] if r["seed"] == seed]
        inside = [r["train_loss"] for r in rows if 0 <= r["alpha"] <= 1]
        start = next(r["train_loss"] for r in rows if r["alpha"] == 0)
        end = next(r["train_loss"] for r in rows if r["alpha"] == 1)
        increasing = int(np.sum(np.diff(inside) > 1e-6 * np.asarray(inside[:-1])))
        out.append(
            {"seed": seed, "start": start, "end": end, "max": max(inside), "bumps": increasing}
        )
    return out


def _sharpest_parameters(results: dict) -> list[tuple[str, float]]:
    """Parameters by the loss increase at the largest move, largest first."""
    final = probed_run(results)["final_train_loss"]
    worst = {}
    for r in results["per_parameter"]:
        worst[r["name"]] = max(worst.get(r["name"], 0.0), r["loss"] - final)
    return sorted(worst.items(), key=lambda kv: -kv[1])


def _loss_by_radius(results: dict) -> dict[float, float]:
    out = {}
    for radius in sorted({r["radius"] for r in results["perturbed"]}):
        out[radius] = float(
            np.median([r["loss"] for r in results["perturbed"] if r["radius"] == radius])
        )
    return out


def summarize(results: dict) -> dict:
    probed = probed_run(results)
    sharpest = _sharpest_parameters(results)
    return {
        "params": results["model"]["params"],
        "final train loss, probed seed": probed["final_train_loss"],
        "final train loss, median over runs": float(
            np.median([r["final_train_loss"] for r in results["runs"]])
        ),
        "runs whose line from init to final never rises": sum(
            e["bumps"] == 0 for e in _line_endpoints(results)
        ),
        "most sensitive parameter (max loss increase)": [sharpest[0][0], sharpest[0][1]],
        "median loss of perturbed weights, by radius": [
            [r, v] for r, v in _loss_by_radius(results).items()
        ],
        "surface: min / max loss on the plane": [
            float(np.min(results["surface"]["loss"])),
            float(np.max(results["surface"]["loss"])),
        ],
    }


def observations(results: dict) -> list[str]:
    n = len(results["seeds"])
    probed = probed_run(results)
    ends = _line_endpoints(results)
    monotone = sum(e["bumps"] == 0 for e in ends)
    lines = [
        f"{results['model']['params']}-parameter model on {results['function']['formula']}: "
        f"final training loss {sci(min(r['final_train_loss'] for r in results['runs']))}-"
        f"{sci(max(r['final_train_loss'] for r in results['runs']))} over {n} runs; seed "
        f"{results['probed_seed']} ({sci(probed['final_train_loss'])}) is probed.",
        f"On the straight line from initial to final weights the loss never rises in "
        f"{monotone} of {n} runs; the largest excess of the line over its starting loss in "
        f"[0, 1] is {sci(max(e['max'] - e['start'] for e in ends))}.",
    ]
    sharpest = _sharpest_parameters(results)
    final = probed["final_train_loss"]
    flat = [name for name, inc in sharpest if inc < 0.1 * final]
    lines.append(
        f"Moving one parameter alone by up to ±{max(r['delta'] for r in results['per_parameter']):g}: "
        f"{sharpest[0][0]} raises the loss most (by {sci(sharpest[0][1])}), "
        f"{sharpest[1][0]} next ({sci(sharpest[1][1])}); {len(flat)} of {len(sharpest)} "
        f"parameters change it by less than 10% of the final loss."
    )
    by_radius = _loss_by_radius(results)
    k = len(results["perturbed"]) // len(by_radius)
    lines.append(
        "Median loss of Gaussian perturbations of the final weights: "
        + ", ".join(f"{v:.3g} at std {r:g}" for r, v in by_radius.items())
        + f" (n={k} each; final loss {sci(final)})."
    )
    traj = results["trajectory"]
    captured = traj[0]["distance_in_plane"] / max(traj[0]["distance_to_final"], 1e-30)
    surface = results["surface"]
    loss = np.array(surface["loss"])
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    lines.append(
        f"On the {loss.shape[0]}x{loss.shape[1]} plane of two random filter-normalized "
        f"directions the loss spans {sci(loss.min())}-{sci(loss.max())}; its lowest grid "
        f"point is at ({surface['a'][i]:.2f}, {surface['b'][j]:.2f}), the final weights at "
        f"(0, 0) have {sci(surface['center_loss'])}. The plane holds {100 * captured:.0f}% of "
        "the length of the displacement from initial to final weights, so the projected "
        "trajectory shows only part of the path."
    )
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    f = results["function"]
    return [
        ("model", model_text(results)),
        (
            "function",
            f"{f['formula']} on [{f['domain'][0]:g}, {f['domain'][1]:g}], {f['n_points']} points",
        ),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, full batch, {cfg.epochs} epochs"),
        (
            "seeds",
            f"{cfg.seeds} runs (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}) as one population; "
            f"the lowest final loss (seed {results['probed_seed']}) is probed",
        ),
        (
            "line",
            f"{cfg.alpha_points} alphas in [{cfg.alpha_range[0]:g}, {cfg.alpha_range[1]:g}], "
            "no training in between",
        ),
        (
            "per parameter",
            f"{cfg.param_points} moves in [-{cfg.param_range:g}, {cfg.param_range:g}]",
        ),
        (
            "perturbations",
            f"{cfg.samples_per_radius} Gaussian samples per std in "
            f"{', '.join(f'{r:g}' for r in cfg.sample_radii)}; PCA, and PCA to "
            f"{cfg.tsne_pca_components} dims then t-SNE",
        ),
        (
            "surface",
            f"{cfg.surface_points}x{cfg.surface_points} grid on [-{cfg.surface_extent:g}, "
            f"{cfg.surface_extent:g}]^2 along two random filter-normalized directions "
            f"(seed {cfg.seed}); biases not moved",
        ),
        (
            "trajectory",
            f"weights every {cfg.snapshot_every_epochs} epochs, least-squares projection",
        ),
    ]
