"""Lecture: linear regions of a ReLU network on the plane through three training inputs.

Protocol: build ReLU MLP classifiers (a population of seeds). For planes through three
training inputs of different classes, sample a grid and number the distinct activation
patterns (the network is affine on each such region), before and after training. Count
the regions and compare the size of the region a grid point lies in near the three
inputs with that elsewhere on the plane (Novak et al. 2018: regions are larger near the
data after training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Circle

from dlprobe.config import Bound
from dlprobe.experiments.kit import (
    COLORS,
    DatasetName,
    Experiment,
    NonNegFloat,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_classifier_fits,
    data_record,
    group_rows,
    mlp_population,
    mlp_spec,
    model_data_table,
    new_figure,
    one_of,
    require,
)
from dlprobe.experiments.kit.manifold import (
    PHASES,
    accuracy_records,
    pick_triplets,
    probed_models,
    trained_test_accuracy,
)
from dlprobe.measure.regions import linear_regions, mean_region_size_near_anchors
from dlprobe.models import mlp_param_count
from dlprobe.train import TrainConfig

DRAWN_PLANES = 3  # region maps kept (for the first model) and drawn: the first planes
PHASE_TITLES = {"initial": "before training", "trained": "after training"}
PALETTE = [c for name in ("tab20", "tab20b", "Set3") for c in matplotlib.colormaps[name].colors]


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the MLP
    # hidden activation: one whose on/off pattern the probe reads
    activation: one_of(("relu", "leaky_relu"), "activation") = "relu"
    seeds: PosInt = 5  # models, trained as one population; every plane is probed on each
    seed: Seed = 0  # base seed: model i uses seed + i; the planes' inputs are drawn with it
    planes: PosInt = 5  # planes, each through three training inputs of three different classes
    resolution: Annotated[int, Bound(ge=10)] = 200  # grid points per plane axis
    extent: NonNegFloat = 0.5  # grid margin around the inputs, fraction of their box's longer side
    near_radius: float = 0.15  # "near the inputs": within this fraction of their mean distance
    train: TrainConfig = TrainConfig(epochs=30)

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)
        require(
            0 < self.near_radius < 0.5,
            f"near_radius must be in (0, 0.5) (a fraction of the inputs' mean distance), "
            f"got {self.near_radius}",
        )


PROFILES = {
    "smoke": {"hidden": (16,), "seeds": 1, "planes": 1, "resolution": 40, "train.epochs": 2},
    "full": {"dataset": "mnist", "hidden": (200, 200), "resolution": 400, "train.epochs": 20},
}


def mean_anchor_distance(anchor_coords: np.ndarray) -> float:
    """Mean of the three pairwise distances between the anchors (plane units)."""
    a = np.asarray(anchor_coords)
    return float(np.mean([np.linalg.norm(a[i] - a[j]) for i, j in ((0, 1), (0, 2), (1, 2))]))


def _probe_planes(cfg: Config, model, x_train, triplets, labels, seed, phase, out) -> None:
    """Regions of one model on every plane, appended to ``out``'s record lists."""
    for p, idx in enumerate(triplets):
        lr = linear_regions(model, *x_train[idx], cfg.resolution, cfg.extent)
        radius = cfg.near_radius * mean_anchor_distance(lr.anchor_coords)
        near, elsewhere = mean_region_size_near_anchors(lr, radius)
        first_model = seed == out["seeds"][0]
        if phase == PHASES[0] and first_model:
            out["planes"].append(
                {
                    "plane": p,
                    "train_indices": idx,
                    "classes": [int(labels[i]) for i in idx],
                    "anchor_coords": lr.anchor_coords.tolist(),
                    "near_radius": radius,
                }
            )
        out["regions"].append(
            {
                **{"plane": p, "seed": seed, "phase": phase, "n_regions": lr.n_regions},
                **{"size_near": near, "size_elsewhere": elsewhere},
            }
        )
        if first_model and p < DRAWN_PLANES:
            out["maps"].append(
                {
                    **{"plane": p, "seed": seed, "phase": phase},
                    **{"u": lr.grid_coords[0].tolist(), "v": lr.grid_coords[1].tolist()},
                    "region_ids": lr.region_ids.tolist(),
                }
            )


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    pop = mlp_population(spec["widths"], cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    labels = data.y_train.cpu().numpy()
    triplets = pick_triplets(labels, cfg.planes, False, np.random.default_rng(cfg.seed))
    out = {"seeds": pop.seeds, "accuracy": [], "planes": [], "regions": [], "maps": []}
    runs = []
    for phase in PHASES:
        if phase == "trained":
            runs = ctx.train("trained", pop, data, cfg.train).final_records()
        models = probed_models(pop.size, runs)
        out["accuracy"] += accuracy_records(pop, data, phase, models)
        ctx.log(f"linear regions on {cfg.planes} plane(s), {cfg.resolution}² grid ({phase})")
        for k in models:
            seed = pop.seeds[k]
            _probe_planes(cfg, pop.model(k), data.x_train, triplets, labels, seed, phase, out)
    model = {**spec, "params": mlp_param_count(spec["widths"], cfg.activation)}
    return {
        "dataset": data_record(data),
        "model": {**model, "hidden_units": sum(cfg.hidden)},
        **{"resolution": cfg.resolution, "extent": cfg.extent, "near_fraction": cfg.near_radius},
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


def _draw_map(ax, m: dict, plane: dict) -> None:
    ids, u, v = np.array(m["region_ids"]), m["u"], m["v"]
    ax.imshow(region_colours(ids)[ids], cmap=ListedColormap(PALETTE), vmin=-0.5,
              vmax=len(PALETTE) - 0.5, origin="lower", extent=(u[0], u[-1], v[0], v[-1]),
              interpolation="nearest")  # fmt: skip
    for i, (cu, cv) in enumerate(np.array(plane["anchor_coords"])):
        ax.add_patch(Circle((cu, cv), plane["near_radius"], fill=False, ls="--", lw=1.0))
        ax.plot(cu, cv, "o", color="black", mec="white", mew=1.2, ms=7)
        ax.annotate(f"x{i + 1} ({plane['classes'][i]})", (cu, cv), xytext=(5, 5),
                    textcoords="offset points", fontsize=9, fontweight="bold", color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})  # fmt: skip
    ax.set_xlabel("u (along x2 - x1)")
    ax.set_ylabel("v")
    ax.grid(False)


def _maps_figure(results: dict, counts: dict):
    planes = {p["plane"]: p for p in results["planes"]}
    maps = {(m["plane"], m["phase"]): m for m in results["maps"]}
    seed0 = results["maps"][0]["seed"]
    drawn = sorted({m["plane"] for m in results["maps"]})
    fig, axes = new_figure(ncols=2, nrows=len(drawn), width=5.0, height=4.6, squeeze=False)
    for row, p in enumerate(drawn):
        for col, phase in enumerate(PHASES):
            _draw_map(axes[row, col], maps[(p, phase)], planes[p])
            r = counts[(p, seed0, phase)]
            axes[row, col].set_title(
                f"plane {p + 1}, {PHASE_TITLES[phase]}: {r['n_regions']} regions\n"
                f"mean region size near / elsewhere: {r['size_near']:.0f} / "
                f"{r['size_elsewhere']:.0f} grid points",
                fontsize=9,
            )
    res = results["resolution"]
    fig.suptitle(
        f"Linear regions on planes through three training inputs (first {len(drawn)} of "
        f"{len(planes)} planes, model seed {seed0}, {res}x{res} grid; dashed: 'near' radius)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _stats_figure(results: dict, counts: dict):
    fig, axes = new_figure(ncols=2, width=5.0, height=4.0, squeeze=False)
    keys = sorted({(r["plane"], r["seed"]) for r in results["regions"]})
    n = len(keys)

    def ratio(key, ph):
        return counts[(*key, ph)]["size_near"] / counts[(*key, ph)]["size_elsewhere"]

    ax = axes[0, 0]
    for i, key in enumerate(keys):
        ys = [counts[(*key, ph)]["n_regions"] for ph in PHASES]
        ax.plot([0, 1], ys, "-o", color=COLORS[i % len(COLORS)], alpha=0.7, ms=4)
    means = [np.mean([counts[(*key, ph)]["n_regions"] for key in keys]) for ph in PHASES]
    ax.bar([0, 1], means, width=0.5, color="lightgray", zorder=0)
    ax.set_ylabel("regions on the grid")
    ax.set_title(f"Region count (bars: mean; lines: one plane and model, n={n})", fontsize=10)
    ax = axes[0, 1]
    for i, key in enumerate(keys):
        ax.plot([0, 1], [ratio(key, ph) for ph in PHASES], "-o",
                color=COLORS[i % len(COLORS)], alpha=0.7, ms=4)  # fmt: skip
    for x, ph in enumerate(PHASES):
        median = np.median([ratio(key, ph) for key in keys])
        ax.hlines(median, x - 0.2, x + 0.2, color="black", lw=2.5, zorder=3)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_ylabel("mean region size near inputs / elsewhere")
    ax.set_title(f"Are regions larger near the inputs? (black: median, n={n})", fontsize=10)
    for ax in axes[0]:
        ax.set_xticks([0, 1], [PHASE_TITLES[ph] for ph in PHASES])
        ax.set_xlim(-0.6, 1.6)
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    counts = {(r["plane"], r["seed"], r["phase"]): r for r in results["regions"]}
    return {
        "regions": _maps_figure(results, counts),
        "region-stats": _stats_figure(results, counts),
    }


def _by_phase(results: dict) -> dict[str, dict]:
    """phase -> arrays over (plane, seed): counts, near and elsewhere sizes, their ratio."""
    out = {}
    rows = sorted(results["regions"], key=lambda r: (r["plane"], r["seed"]))  # paired order
    for (phase,), rs in group_rows(rows, "phase").items():
        near = np.array([r["size_near"] for r in rs], dtype=float)
        away = np.array([r["size_elsewhere"] for r in rs], dtype=float)
        counts = np.array([r["n_regions"] for r in rs])
        out[phase] = {"counts": counts, "near": near, "away": away, "ratio": near / away}
    return out


def notes(results: dict) -> Notes:
    s, test_acc = _by_phase(results), trained_test_accuracy(results)
    init, trained = s["initial"], s["trained"]
    growth = trained["ratio"] / init["ratio"]
    summary = {}
    for phase, st in s.items():
        summary[f"{phase}: regions on the plane (mean over planes and models)"] = float(
            st["counts"].mean()
        )
        summary[f"{phase}: region size near / elsewhere (median)"] = float(np.median(st["ratio"]))
    summary["training's factor on the near / elsewhere ratio (median)"] = float(np.median(growth))
    summary["test accuracy, trained (mean over models)"] = test_acc
    n, res = len(trained["counts"]), results["resolution"]
    more = int((trained["counts"] > init["counts"]).sum())
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
    lines.append(
        f"Training multiplies the mean region size near the inputs by "
        f"{np.median(trained['near'] / init['near']):.2f} and elsewhere by "
        f"{np.median(trained['away'] / init['away']):.2f} (medians over n={n}); the near/"
        f"elsewhere ratio grows in {int((growth > 1).sum())}/{n} (median factor "
        f"{np.median(growth):.2f})."
    )
    return Notes(summary, lines, [model_data_table(results["model"], results["dataset"])])


EXPERIMENT = Experiment(
    id="linear-regions",
    item="Lecture",
    part="indicators",
    rank=2,
    title="Linear regions of a ReLU network through training inputs",
    question="How does training change the piecewise-linear regions of a ReLU network "
    "around the data: are they larger near the training inputs (Novak et al. 2018)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "regions": "activation regions (one colour per region, neighbours differ) on planes "
        "through three training inputs (the first planes, first model), before and after "
        "training; dashed circles: the 'near' radius around each input",
        "region-stats": "left: number of regions on the grid before and after training; right: "
        "mean size of the region a grid point lies in near the inputs divided by that "
        "elsewhere (above 1: larger regions near the data)",
    },
    quick_minutes=0.2,
    full_differs="digits and 64-64 MLPs (30 epochs) on a 200x200 grid instead of MNIST, as in "
    "Novak et al. 2018, and 200-200 MLPs (20 epochs) on a 400x400 grid.",
)
