"""Lecture: linear regions of a ReLU network along a path through three training inputs.

Protocol (Novak et al. 2018): ReLU MLP classifiers (a population of seeds). Through three
training inputs of different classes pass an ellipse and count, before and after training,
where the activation pattern changes along it; compare the transitions per unit length on
the arcs at the inputs with those midway between them, on the same path. The region map of
the plane through the inputs is drawn with the path on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import matplotlib
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from dlprobe.config import Bound
from dlprobe.experiments.kit import (
    COLORS,
    DatasetName,
    Experiment,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    data_record,
    fidelity_row,
    group_rows,
    mlp_population,
    mlp_spec,
    model_data_table,
    new_figure,
    no_data,
    one_of,
    require,
)
from dlprobe.experiments.kit.manifold import (
    ANCHOR_T,
    PHASES,
    accuracy_records,
    ellipse_points,
    ellipse_through,
    pick_triplets,
    probed_models,
    trained_test_accuracy,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.measure.regions import linear_regions, path_transitions, plane_coordinates
from dlprobe.models import mlp_param_count
from dlprobe.train import TrainConfig

DRAWN_PLANES = 3  # region maps kept (for the first model) and drawn: the first planes
PHASE_TITLES = {"initial": "before training", "trained": "after training"}
PALETTE = [c for name in ("tab20", "tab20b", "Set3") for c in matplotlib.colormaps[name].colors]
ARC = 2 * math.pi / 3  # angle between two inputs on the ellipse
MIDWAY_T = tuple(t + ARC / 2 for t in ANCHOR_T)  # angles halfway between two inputs
MAP_EXTENT = 0.5  # margin of a drawn plane around the inputs, share of their box (holds the path)


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the MLP
    # hidden activation: one whose on/off pattern the probe reads
    activation: one_of(("relu", "leaky_relu"), "activation") = "relu"
    seeds: PosInt = 5  # models, trained as one population; every path is probed on each
    seed: Seed = 0  # base seed: model i uses seed + i; the paths' inputs are drawn with it
    planes: PosInt = 5  # paths (and planes), each through three inputs of three classes
    path_points: Annotated[int, Bound(ge=30)] = 4000  # points along each ellipse
    # arcs compared: within window x (the angle between two inputs) of an input ("at the
    # inputs") or of the point halfway between two inputs ("midway"); at most 0.25, so
    # that the two kinds of arc do not overlap
    window: Annotated[float, Bound(gt=0, le=0.25)] = 0.15
    resolution: Annotated[int, Bound(ge=10)] = 200  # grid points per axis of a drawn plane
    train: TrainConfig = TrainConfig(epochs=30)

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)


PROFILES = {
    "smoke": {"hidden": (16,), "seeds": 1, "planes": 1, "resolution": 40, "path_points": 400,
              "train.epochs": 2},
    "full": {"dataset": "mnist", "hidden": (200, 200), "resolution": 400, "train.epochs": 20},
}  # fmt: skip


def arcs(t: np.ndarray, centres: tuple[float, ...], window: float) -> np.ndarray:
    """True where angle t is within ``window`` x ARC (circular distance) of a centre."""
    d = np.abs(t[:, None] - np.array(centres)[None, :]) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d).min(axis=1) <= window * ARC + 1e-12


def transition_densities(changes: np.ndarray, lengths: np.ndarray, t: np.ndarray, window: float):
    """(at the inputs, midway) transitions per unit length, over the path's segments whose
    middle angle lies on the respective arcs (segment i joins points i and i + 1)."""
    middle = t + math.pi / len(t)  # (M,) angle at the middle of each segment
    on = [arcs(middle, centres, window) for centres in (ANCHOR_T, MIDWAY_T)]
    return tuple(float(changes[o].sum() / lengths[o].sum()) for o in on)


def _probe(cfg: Config, model, x_train, triplets, seed, phase, out) -> None:
    """Transitions along every path and regions on the first planes, of one model."""
    t = np.linspace(0, 2 * math.pi, cfg.path_points, endpoint=False)
    for p, idx in enumerate(triplets):
        x = x_train[idx]  # (3, ...)
        c, a, b = ellipse_through(*(v.reshape(-1).double().cpu().numpy() for v in x))
        path = torch.as_tensor(ellipse_points(c, a, b, t), device=x.device)  # (M, D)
        tr = path_transitions(model, path.reshape(len(t), *x.shape[1:]))
        near, midway = transition_densities(tr.changes, tr.lengths, t, cfg.window)
        row = {"plane": p, "seed": seed, "phase": phase, "transitions": tr.n_transitions}
        row |= {"length": float(tr.lengths.sum()), "density_near": near, "density_midway": midway}
        if p < DRAWN_PLANES:
            lr = linear_regions(model, *x, cfg.resolution, MAP_EXTENT)
            row["n_regions"] = lr.n_regions
            if not any(m["plane"] == p and m["phase"] == phase for m in out["maps"]):
                uv = plane_coordinates(*x, path[:: max(1, len(t) // 400)])
                out["maps"].append({"plane": p, "seed": seed, "phase": phase,
                                    "u": lr.grid_coords[0].tolist(), "v": lr.grid_coords[1].tolist(),
                                    "region_ids": lr.region_ids.tolist(), "anchor_coords":
                                    lr.anchor_coords.tolist(), "path": uv.tolist()})  # fmt: skip
        out["paths"].append(row)


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    pop = mlp_population(spec["widths"], cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    labels = data.y_train.cpu().numpy()
    triplets = pick_triplets(labels, cfg.planes, False, np.random.default_rng(cfg.seed))
    out = {"seeds": pop.seeds, "accuracy": [], "paths": [], "maps": [], "runs": []}
    for phase in PHASES:
        if phase == "trained":
            out["runs"] = ctx.train("trained", pop, data, cfg.train).final_records()
        models = probed_models(pop.size, out["runs"])
        out["accuracy"] += accuracy_records(pop, data, phase, models)
        ctx.log(f"transitions along {cfg.planes} path(s) of {cfg.path_points} points ({phase})")
        for k in models:
            _probe(cfg, pop.model(k), data.x_train, triplets, pop.seeds[k], phase, out)
    model = {**spec, "params": mlp_param_count(spec["widths"], cfg.activation)}
    paths = [{"plane": p, "train_indices": ix, "classes": labels[ix].tolist()} for p, ix in enumerate(triplets)]  # fmt: skip
    return {
        "dataset": data_record(data),
        "model": {**model, "hidden_units": sum(cfg.hidden)},
        **{"resolution": cfg.resolution, "path_points": cfg.path_points, "window": cfg.window},
        "planes": paths,
        **out,
    }


def region_colours(region_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A palette index per region such that regions sharing a grid edge differ.

    Greedy colouring in a seeded random order: each region takes a random palette entry
    that none of its already coloured neighbours has (a plane map needs few colours).
    """
    ids = np.asarray(region_ids)
    n = int(ids.max()) + 1
    pairs = np.concatenate(
        [
            np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1),
            np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], 1),
        ]
    )
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in pairs:
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    rng = np.random.default_rng(seed)
    colour = np.full(n, -1)
    for r in rng.permutation(n):
        taken = {colour[q] for q in neighbours[r]}
        free = [c for c in rng.permutation(len(PALETTE)) if c not in taken]
        colour[r] = free[0] if free else rng.integers(len(PALETTE))
    return colour


def _draw_map(ax, m: dict | None, plane: dict, window: float) -> None:
    if m is None:
        no_data(ax, "not probed: every model diverged")
        return
    ids, u, v = np.array(m["region_ids"]), m["u"], m["v"]
    ax.imshow(region_colours(ids)[ids], cmap=ListedColormap(PALETTE), vmin=-0.5,
              vmax=len(PALETTE) - 0.5, origin="lower", extent=(u[0], u[-1], v[0], v[-1]),
              interpolation="nearest")  # fmt: skip
    path = np.array(m["path"])  # (m, 2) in plane coordinates
    t = np.linspace(0, 2 * math.pi, len(path), endpoint=False)
    ax.plot(*np.vstack([path, path[:1]]).T, color="white", lw=2.2)
    for centres, colour in ((ANCHOR_T, "black"), (MIDWAY_T, "crimson")):
        on = np.where(arcs(t, centres, window), path[:, 0], np.nan)  # gaps off the arcs
        ax.plot(on, path[:, 1], color=colour, lw=2.2)
    for i, (cu, cv) in enumerate(np.array(m["anchor_coords"])):
        ax.plot(cu, cv, "o", color="black", mec="white", mew=1.2, ms=7)
        ax.annotate(f"x{i + 1} ({plane['classes'][i]})", (cu, cv), xytext=(5, 5),
                    textcoords="offset points", fontsize=9, fontweight="bold", color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})  # fmt: skip
    ax.set(xlabel="u (along x2 - x1)", ylabel="v")
    ax.grid(False)


def _maps_figure(results: dict):
    planes = {p["plane"]: p for p in results["planes"]}
    maps = {(m["plane"], m["phase"]): m for m in results["maps"]}
    counts = {(r["plane"], r["seed"], r["phase"]): r for r in results["paths"]}
    drawn = sorted({m["plane"] for m in results["maps"]}) or [0]
    fig, axes = new_figure(ncols=2, nrows=len(drawn), width=5.0, height=4.6, squeeze=False)
    for row, p in enumerate(drawn):
        for col, phase in enumerate(PHASES):
            m = maps.get((p, phase))
            _draw_map(axes[row, col], m, planes[p], results["window"])
            if m is None:
                continue
            r = counts[(p, m["seed"], phase)]
            axes[row, col].set_title(
                f"path {p + 1}, {PHASE_TITLES[phase]} (seed {m['seed']}): {r['n_regions']} "
                f"regions\n{r['transitions']} transitions; per unit length at inputs "
                f"{r['density_near']:.2f}, midway {r['density_midway']:.2f}",
                fontsize=9,
            )
    fig.suptitle(
        f"Linear regions on planes through three training inputs, and the ellipse through "
        f"them (black: arcs at the inputs, red: midway; {results['resolution']}² grid)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _stats_figure(results: dict):
    fig, axes = new_figure(ncols=2, width=5.0, height=4.0, squeeze=False)
    pairs = _paired(results)
    labels = ("transitions along the path", "log10 density at inputs / midway")
    for ax, key, label in zip(axes[0], ("transitions", "log_ratio"), labels, strict=True):
        ys = np.array([[rows[ph][key] if ph in rows else np.nan for ph in PHASES]
                       for rows in pairs.values()], dtype=float).reshape(-1, 2)  # fmt: skip
        for i, y in enumerate(ys):
            ax.plot([0, 1], y, "-o", color=COLORS[i % len(COLORS)], alpha=0.7, ms=4)
        for x in (0, 1):
            if np.isfinite(ys[:, x]).any():
                ax.hlines(np.nanmedian(ys[:, x]), x - 0.2, x + 0.2, color="black", lw=2.5)
        ax.set_xticks([0, 1], [PHASE_TITLES[ph] for ph in PHASES])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(f"{label} (black: median, n={len(pairs)})", fontsize=10)
    axes[0, 1].axhline(0.0, color="black", lw=0.8, ls=":")
    axes[0, 1].set_ylabel("below 0: fewer transitions at the inputs")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {"regions": _maps_figure(results), "region-stats": _stats_figure(results)}


def _paired(results: dict) -> dict:
    """(plane, seed) -> phase -> row with its log10 density ratio (NaN without transitions)."""
    out: dict = {}
    for r in results["paths"]:
        ok = r["density_near"] > 0 and r["density_midway"] > 0
        ratio = math.log10(r["density_near"] / r["density_midway"]) if ok else np.nan
        out.setdefault((r["plane"], r["seed"]), {})[r["phase"]] = {**r, "log_ratio": ratio}
    return out


def _by_phase(results: dict) -> dict[str, dict]:
    """phase -> arrays over (plane, seed) pairs: transitions, densities, log ratio."""
    rows = [r for phases in _paired(results).values() for r in phases.values()]
    keys = ("transitions", "density_near", "density_midway", "log_ratio")
    return {
        phase: {k: np.array([r[k] for r in rs], dtype=float) for k in keys}
        for (phase,), rs in group_rows(rows, "phase").items()
    }


def notes(results: dict) -> Notes:
    by, acc, n_models = _by_phase(results), trained_test_accuracy(results), len(results["seeds"])
    units = f"{results['model']['hidden_units']} {results['model']['activation']}"
    w, pts = results["window"], results["path_points"]
    lines = [
        f"Along {len(results['planes'])} ellipse(s) through three training inputs of different "
        f"classes ({pts} points each), for {n_models} model(s) with {units} units; densities "
        f"are transitions per unit length on the arcs within {w:g} x the inputs' angular "
        f"spacing of an input ('at the inputs') or of a point midway between two inputs.",
        *diverged_lines(results["runs"], "were not probed after training"),
    ]
    summary = {}
    for phase in PHASES:
        if phase not in by:
            lines.append(f"{PHASE_TITLES[phase].capitalize()}: every model diverged.")
            continue
        st = by[phase]
        near, mid = st["density_near"], st["density_midway"]
        fewer = int((near < mid).sum())
        summary[f"{phase}: transitions along a path (mean)"] = float(st["transitions"].mean())
        summary[f"{phase}: density at inputs / midway (ratio of means)"] = near.mean() / mid.mean()
        lines.append(
            f"{PHASE_TITLES[phase].capitalize()}: {st['transitions'].mean():.0f} transitions per "
            f"path on average (range {st['transitions'].min():.0f}-{st['transitions'].max():.0f}); "
            f"density at the inputs {np.mean(near):.3g} vs midway {np.mean(mid):.3g} per unit "
            f"length (means); fewer at the inputs on {fewer}/{len(near)} paths."
        )
    lines += [f"The trained models reach mean test accuracy {acc:.3f}."] if "trained" in by else []
    return Notes(summary, lines, [model_data_table(results["model"], results["dataset"])],
                 _fidelity(by))  # fmt: skip


def _fidelity(by: dict) -> list[dict]:
    claim = "after training, region transitions are rarer at the training inputs than midway"
    ref = "Novak et al. 2018: transition density lowest at the training points"
    if "trained" not in by:
        return [fidelity_row(claim, ref, "not measured", False, "every model diverged")]
    near, mid = by["trained"]["density_near"], by["trained"]["density_midway"]
    fewer, n = int((near < mid).sum()), len(near)
    measured = f"at inputs {np.mean(near):.3g} vs midway {np.mean(mid):.3g}; fewer on {fewer}/{n}"
    return [fidelity_row(claim, ref, measured, np.mean(near) < np.mean(mid) and fewer > n / 2,
                         "the densities at the inputs are not lower on most paths")]  # fmt: skip


EXPERIMENT = Experiment(
    id="linear-regions",
    item="Lecture",
    part="indicators",
    rank=2,
    title="Linear regions of a ReLU network through training inputs",
    question="How does training change the piecewise-linear regions of a ReLU network "
    "around the data: are region transitions rarer at the training inputs than between "
    "them (Novak et al. 2018)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "regions": "activation regions (one colour per region, neighbours differ) on planes "
        "through three training inputs, before and after training, with the ellipse through "
        "them: black arcs at the inputs, red arcs midway, where transitions are counted",
        "region-stats": "left: region transitions along each path before and after training; "
        "right: log10 of the transition density at the inputs over that midway (below 0: "
        "fewer transitions at the data); one line per path and model, black: median",
    },
    quick_minutes=1.0,  # 85 s of CPU (user) measured under a load of 12 on 2 cores
    full_differs="digits and 64-64 MLPs (30 epochs) instead of MNIST, as in Novak et al. "
    "2018, and 200-200 MLPs (20 epochs) on a 400x400 grid.",
)
