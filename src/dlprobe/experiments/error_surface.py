"""HW1-2 bonus: the error surface of a tiny network, seen four ways.

Protocol: train a tiny MLP (1-4-4-1, 33 parameters) on a 1-D function from several seeds,
keeping its weights every few epochs. Then, without training again: (a) the loss on the
line from each run's initial to its final weights (Goodfellow et al. 2015); for the run
with the lowest final loss, (b) the loss when each parameter alone is moved, (c) the loss of
Gaussian perturbations of the final weights, in 2-D by PCA and by PCA then t-SNE, (d) the
loss on a plane of two random filter-normalized directions through the final weights (Li et
al. 2018) with the training trajectory projected on it. Diverged runs are left out, named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from dlprobe.data import FUNCTIONS
from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    Experiment,
    FunctionName,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    column,
    fidelity_row,
    finite,
    group_rows,
    mlp_population,
    new_figure,
    parse_widths,
    require,
    sci,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.trajectories import (
    blank_figures,
    check_snapshots,
    draw_embeddings,
    draw_loss_plane,
    initial_metrics,
    line_rows,
    loss_surface_figure,
    parameter_panels,
    per_parameter_rows,
    perturbed_rows,
    plane_rows,
    snapshot_rows,
    variance_shown,
    vector_to_model,
    weight_trajectories,
)
from dlprobe.measure.flat import parameter_names
from dlprobe.models import count_params, mlp_param_count
from dlprobe.train import TrainConfig

MAX_PARAMS = 64  # the per-parameter figure draws one panel per parameter
AtLeast2, AtLeast3 = Annotated[int, Bound(ge=2)], Annotated[int, Bound(ge=3)]


@dataclass(frozen=True)
class Config:
    function: FunctionName = "sinc"  # target function (see `dlprobe datasets`)
    widths: str = "1-4-4-1"  # layer widths of the tiny MLP (33 parameters; at most 64)
    activation: Activation = "relu"  # hidden activation
    n_points: AtLeast2 = 64  # training points, evenly spaced on the function's domain
    seeds: PosInt = 4  # training runs (one population); the lowest final loss is probed
    seed: Seed = 0  # base seed: run i uses seed + i; also seeds the samples and directions
    # full batch; weights and loss every snapshot_every_epochs: the trajectory on the plane
    train: TrainConfig = TrainConfig(
        lr=1e-2, epochs=2000, batch_size=0, eval_every_epochs=50, snapshot_every_epochs=50
    )
    alpha_range: tuple[float, float] = (-0.25, 1.25)  # alpha from..to on the init-final line
    alpha_points: AtLeast2 = 61  # alphas on the line (0 and 1 are always included)
    param_range: PosFloat = 1.0  # each parameter alone moved by -this..+this (absolute units)
    param_points: AtLeast3 = 41  # moves per parameter (odd: 0 is on the grid)
    # std of the Gaussian noise added to every parameter (one set of samples per value)
    sample_radii: tuple[PosFloat, ...] = (0.01, 0.03, 0.1, 0.3)
    samples_per_radius: AtLeast2 = 150  # perturbed weight vectors per radius
    tsne_pca_components: AtLeast2 = 10  # PCA dimensions fed to t-SNE
    surface_extent: PosFloat = 1.0  # plane coordinates span -this..+this (filter-normalized)
    surface_points: AtLeast3 = 41  # grid points per direction of the plane

    def check(self) -> None:
        params = mlp_param_count(parse_widths(self.widths), self.activation)
        require(params <= MAX_PARAMS, f"the model {self.widths} has {params} parameters; one panel "
                f"per parameter needs a tiny model (<= {MAX_PARAMS}, e.g. 1-4-4-1)")  # fmt: skip
        check_snapshots(self.train)
        check_batch_sizes([self.train.batch_size], self.n_points, "train.batch_size")
        lo, hi = self.alpha_range
        require(lo <= 0 and hi >= 1, f"alpha_range must contain [0, 1], got {self.alpha_range}")
        require(self.param_points % 2 == 1,
                f"param_points must be odd (0 on the grid), got {self.param_points}")  # fmt: skip
        require(len(self.sample_radii) >= 1, "give at least one sample radius")


PROFILES = {
    "smoke": {"seeds": 2, "train.epochs": 100, "train.eval_every_epochs": 25,
              "train.snapshot_every_epochs": 25, "alpha_points": 7, "param_points": 5,
              "sample_radii": (0.03, 0.3), "samples_per_radius": 10, "surface_points": 7},
    "full": {"seeds": 8, "train.epochs": 10000, "train.eval_every_epochs": 200,
             "train.snapshot_every_epochs": 200, "samples_per_radius": 500, "surface_points": 61},
}  # fmt: skip


def run(cfg: Config, ctx: RunContext) -> dict:
    data, widths = ctx.function(cfg.function, cfg.n_points), parse_widths(cfg.widths)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    start = initial_metrics(pop, data)
    hist = ctx.train("tiny", pop, data, cfg.train)
    weights = weight_trajectories(hist).to(ctx.device)  # (K, T, P)
    fine = [k for k in range(pop.size) if k not in hist.diverged]
    runs = [{**r, "initial_train_loss": start["train_loss"][k]}
            for k, r in enumerate(hist.final_records())]  # fmt: skip
    template, f = pop.model(0), FUNCTIONS[cfg.function]
    alphas = sorted({round(float(a), 10) for a in np.linspace(*cfg.alpha_range, cfg.alpha_points)}
                    | {0.0, 1.0})  # fmt: skip
    out = {
        "model": {"widths": widths, "activation": cfg.activation,
                  "params": count_params(template), "parameter_names": parameter_names(template)},
        "function": {"name": cfg.function, "formula": f.formula, "domain": list(f.domain),
                     "n_points": cfg.n_points},
        "seeds": pop.seeds,
        "runs": runs,
        "probed_seed": None,  # stays None when every run diverged: nothing to probe
        # (a) the line from each run's initial to its final weights
        "line": line_rows(template, weights[fine], [pop.seeds[k] for k in fine], data, alphas),
    }  # fmt: skip
    if not fine:
        ctx.log("every run diverged: nothing to probe")
        return out
    best = min(fine, key=lambda k: runs[k]["train_loss"])
    seed, final = pop.seeds[best], runs[best]["train_loss"]
    ctx.log(f"probing seed {seed} (final training loss {final:.3g})")
    model = vector_to_model(template, weights[best, -1])  # the probed final weights
    deltas = torch.linspace(-cfg.param_range, cfg.param_range, cfg.param_points)
    deltas[cfg.param_points // 2] = 0.0  # exactly on the final weights
    grid = np.linspace(-cfg.surface_extent, cfg.surface_extent, cfg.surface_points)
    path = [r["train_loss"] for r in snapshot_rows(hist, start) if r["seed"] == seed]
    return {
        **out,
        "probed_seed": seed,
        "final_train_loss": final,
        "per_parameter": per_parameter_rows(model, data, deltas),  # (b) one parameter at a time
        **perturbed_rows(model, data, cfg.sample_radii, cfg.samples_per_radius, cfg.seed,
                         cfg.tsne_pca_components),  # (c) Gaussian noise around the final weights
        # (d) a random plane through them, and the training trajectory on it
        **plane_rows(model, data, grid, weights[best], hist.snapshot_epochs, path, cfg.seed),
    }  # fmt: skip


def figures(results: dict) -> dict:
    probed, n = results["probed_seed"], len(results["seeds"])
    lost = [r for r in results["runs"] if r["diverged"]]
    if probed is None:
        message = f"every one of the {n} runs diverged (named in the report):\nnothing to probe"
        return blank_figures(EXPERIMENT.captions, message)
    m, final = results["model"], results["final_train_loss"]
    model = f"MLP {'-'.join(map(str, m['widths']))} {m['activation']}, {m['params']} params"
    what, whose = f"{model}, {results['function']['formula']}", f"seed {probed}'s final weights"
    fig, ax = new_figure(width=7.0, height=4.5)
    for i, ((seed,), rows) in enumerate(group_rows(results["line"], "seed").items()):
        ax.plot(column(rows, "alpha"), column(rows, "train_loss"), color=COLORS[i % len(COLORS)],
                lw=2.0 if seed == probed else 1.2,
                label=f"seed {seed}" + (" (probed below)" if seed == probed else ""))  # fmt: skip
    for a, text in ((0, "initial"), (1, "final")):
        ax.axvline(a, color="gray", ls="--", lw=1)
        ax.text(a, 0.02, f" {text}", transform=ax.get_xaxis_transform(), fontsize=8, color="gray")
    dropped = f" ({len(lost)} diverged, not drawn)" if lost else ""
    ax.set(xlabel="α   (θ(α) = (1 − α) θ_initial + α θ_final)", ylabel="training loss (MSE)",
           yscale="log", title="Loss on the line from initial to final weights\n"
           f"{what}, n={n - len(lost)} runs{dropped}")  # fmt: skip
    ax.legend(fontsize=8)
    rows, names = results["per_parameter"], m["parameter_names"]
    value = {r["index"]: r["value"] for r in rows}
    title = (f"Training loss when one parameter alone is moved by δ (one panel per parameter, "
             f"n={len(names)}); * = {whose}\n{what}")  # fmt: skip
    panels = [f"{name} = {value[i]:.2f}" for i, name in enumerate(names)]
    figs = {"line-init-final": fig, "per-parameter": parameter_panels(rows, panels, final, title)}
    fig, axes = new_figure(ncols=2, width=5.5, height=4.8)
    rows, radii = results["perturbed"], sorted({r["radius"] for r in results["perturbed"]})
    points = draw_embeddings(axes, rows, results["perturbed_center"], results["perturbed_variance"])
    fig.colorbar(points, ax=axes, label="training loss (log scale)")
    fig.suptitle(f"{len(rows)} Gaussian perturbations of {whose} (std "
                 f"{', '.join(f'{r:g}' for r in radii)} per parameter, {len(rows) // len(radii)} "
                 "each)")  # fmt: skip
    surf, figs["perturbed-samples"] = results["surface"], fig
    fig, ax = new_figure(width=6.5, height=5.2)
    filled = draw_loss_plane(ax, surf["a"], surf["b"], surf["loss"], results["trajectory"])
    fig.colorbar(filled, ax=ax, label="log10 training loss")
    ax.set(xlabel="direction 1 (random, filter-normalized)", title=f"Loss around {whose}\n{what}",
           ylabel="direction 2 (random, filter-normalized)")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14))
    figs["surface-contour"] = fig
    title = f"Loss surface around {whose} (red *)\ntwo random filter-normalized directions; {model}"
    figs["surface-3d"] = loss_surface_figure(surf["a"], surf["b"], surf["loss"],
                                             surf["center_loss"], title)  # fmt: skip
    return figs


def _line_sentence(results: dict) -> tuple[int, str]:
    """Runs whose loss never rises on alpha in [0, 1], and what the lines say."""
    rises = []  # per run drawn: the largest rise above the lowest loss before it (0: falls)
    for _, rows in group_rows(results["line"], "seed").items():
        inside = column([r for r in rows if 0 <= r["alpha"] <= 1], "train_loss")  # alpha 0 first
        steps_up = np.diff(inside) > 1e-6 * inside[:-1]
        rises.append(float(np.max(inside - np.minimum.accumulate(inside))) * steps_up.any())
    n, never = len(rises), sum(r == 0 for r in rises)
    return never, "On the straight line from initial to final weights the loss " + (
        f"never rises in any of the {n} run(s): no barrier lies between them." if never == n else
        f"rises somewhere in {n - never} of {n} runs (never in {never}); the largest rise above "
        f"the lowest loss before it is {sci(max(rises))}.")  # fmt: skip


def _parameter_sentence(results: dict, final: float) -> tuple[list, str]:
    """Parameters by the largest loss increase when moved alone, and what they say."""
    by_name = group_rows(results["per_parameter"], "name").items()
    changes = [(name, finite(column(rs, "loss")) - final) for (name,), rs in by_name]
    ups = sorted(((name, float(d.max())) for name, d in changes), key=lambda t: -t[1])
    lower = [name for name, d in changes if d.min() < -1e-6 * final]
    (top, up), (second, up2), P = ups[0], ups[1], len(ups)
    reach = max(r["delta"] for _, rs in by_name for r in rs)
    return ups, (
        f"Moving one parameter alone by up to ±{reach:g}: "
        + (f"{top} raises the loss most (by {sci(up)}), {second} next ({sci(up2)}); "
           f"{sum(v < 0.1 * final for _, v in ups)} of {P} raise it by less than 10% of the final "
           "loss." if up > 0 else "no parameter raises the loss.")
        + (f" {len(lower)} of {P} ({', '.join(lower[:3])}{', ...' * (len(lower) > 3)}) lower it: "
           "the final weights are not a minimum along those axes." if lower else
           " None lowers it: the final weights are a minimum along every axis.")
    )  # fmt: skip


def notes(results: dict) -> Notes:
    n, f, m = len(results["seeds"]), results["function"], results["model"]
    setup = {"model": f"MLP {'-'.join(map(str, m['widths']))} {m['activation']}, {m['params']} "
             f"params", "function": f["formula"], "domain": f["domain"], "training points":
             f["n_points"], "probed seed": results["probed_seed"]}  # fmt: skip
    tables = [("Model and data", [setup]), ("Runs", results["runs"])]
    dropped = diverged_lines(results["runs"], "are left out of the figures and statistics")
    if results["probed_seed"] is None:
        line = f"Every one of the {n} runs diverged: there is no trained network to probe."
        return Notes({"runs that diverged": n}, [line, *dropped], tables, fidelity(results))
    final, P = results["final_train_loss"], m["params"]
    finals = finite(r["train_loss"] for r in results["runs"] if not r["diverged"])
    never, line = _line_sentence(results)
    ups, per_parameter = _parameter_sentence(results, final)
    by_radius = sorted(group_rows(results["perturbed"], "radius").items())
    by_radius = {r: float(np.median(finite(column(rs, "loss")))) for (r,), rs in by_radius}
    steady = bool(np.all(np.diff(list(by_radius.values())) > 0))
    surface, start = results["surface"], results["trajectory"][0]
    loss = np.array(surface["loss"], dtype=float)  # (a, b)
    i, j = np.unravel_index(np.nanargmin(loss), loss.shape)
    held = start["distance_in_plane"] / max(start["distance_to_final"], 1e-30)
    summary = {
        "params": P,
        "final train loss, probed seed": final,
        "final train loss, median over runs": float(np.median(finals)),
        "runs whose line from init to final never rises": never,
        "most sensitive parameter (max loss increase)": list(ups[0]),
        "median loss of perturbed weights, by radius": [[r, v] for r, v in by_radius.items()],
        "surface: min / max loss on the plane": [float(np.nanmin(loss)), float(np.nanmax(loss))],
    }
    lines = [
        f"{P}-parameter model on {f['formula']}: final training loss {sci(finals.min())}-"
        f"{sci(finals.max())} over {len(finals)} run(s)" + (f" that did not diverge (of {n})"
        if len(finals) < n else "") + f"; seed {results['probed_seed']} ({sci(final)}) is probed.",
        line,
        per_parameter,
        "Median loss of Gaussian perturbations of the final weights: "
        + ", ".join(f"{v:.3g} at std {r:g}" for r, v in by_radius.items())
        + f" (n={len(results['perturbed']) // len(by_radius)} each; final loss {sci(final)}): "
        + ("it rises with every larger std" if steady else "it does not rise steadily with the std")
        + f"; {variance_shown({'PCA': sum(results['perturbed_variance'][:2])})}.",
        f"On the {loss.shape[0]}x{loss.shape[1]} plane of two random filter-normalized "
        f"directions the loss spans {sci(np.nanmin(loss))}-{sci(np.nanmax(loss))}; "
        + ("the final weights at (0, 0) are its lowest grid point."
           if surface["a"][i] == 0 and surface["b"][j] == 0 else
           f"its lowest grid point, ({surface['a'][i]:.2f}, {surface['b'][j]:.2f}), lies below "
           f"the final weights at (0, 0) ({sci(surface['center_loss'])}): they are not the "
           "minimum of this slice.")
        + f" The plane holds {held:.0%} of the length of the displacement from initial to final "
        "weights, so the projected trajectory "
        + ("is close to the real path." if held >= 0.9 else "shows most of it, not all."
           if held >= 0.5 else "shows less than half of it."),
    ]  # fmt: skip
    return Notes(summary, lines + dropped, tables, fidelity(results))


def fidelity(results: dict) -> list[dict]:
    """The SPEC's four bonus items, each checked on this run's results."""
    if results["probed_seed"] is None:
        return [fidelity_row("the four bonus items", "SPEC", "-", False, "every run diverged")]
    P, rows, line = results["model"]["params"], results["perturbed"], results["line"]
    moves = {r["delta"] for r in results["per_parameter"]}
    loss = np.array(results["surface"]["loss"], dtype=float)  # (a, b)
    return [
        fidelity_row("loss on the straight line from initial to final weights",
                     "θ(α) = (1 − α) θ_initial + α θ_final",
                     f"{len(group_rows(line, 'seed'))} runs x {len(group_rows(line, 'alpha'))} "
                     "alphas", bool(np.isfinite(column(line, "train_loss")).all()),
                     "the line has non-finite losses"),
        fidelity_row("loss when each parameter is perturbed alone", "one curve per parameter",
                     f"{P} parameters x {len(moves)} moves",
                     len(results["per_parameter"]) == P * len(moves), "parameters are missing"),
        fidelity_row("t-SNE of perturbed weights near the end of training, coloured by loss",
                     "a tiny model (< 50 params), e.g. 1-4-4-1 (33)",
                     f"{len(rows)} perturbations of a {P}-parameter model, PCA then t-SNE",
                     P < 50, f"the model has {P} parameters"),
        fidelity_row("a 3-D loss surface over two directions", "two directions", f"{loss.shape[0]}x"
                     f"{loss.shape[1]} grid, loss {sci(np.nanmin(loss))}-{sci(np.nanmax(loss))}",
                     bool(np.isfinite(loss).all()), "some grid points are not finite"),
    ]  # fmt: skip


EXPERIMENT = Experiment(
    id="error-surface",
    item="HW1-2 bonus",
    part="bonus",
    rank=1,
    title="The error surface of a tiny network",
    question="What does the loss of a tiny network look like between its initial and final "
    "weights, per parameter, under random perturbations, and on a 2-D slice?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "line-init-final": "training loss at θ(α) = (1 − α) θ_initial + α θ_final for every "
        "run (log scale); no training between the points",
        "per-parameter": "training loss when one parameter alone moves by δ (log, shared axes)",
        "perturbed-samples": "Gaussian perturbations of the final weights in 2-D by PCA (left) "
        "and PCA then t-SNE (right), coloured by training loss",
        "surface-contour": "log10 training loss on a plane of two random filter-normalized "
        "directions through the final weights, with the training trajectory projected on it",
        "surface-3d": "the same plane as a 3-D surface (height: log10 training loss)",
    },
    quick_minutes=0.3,
    full_differs="quick trains 4 seeds for 2000 epochs and draws 150 samples per radius; "
    "full: 8 seeds, 10 000 epochs, 500 samples per radius, a 61x61 surface.",
)
