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

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Circle

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import check_common, group_rows, model_seeds, require
from dlprobe.experiments.plotting import COLORS, new_figure
from dlprobe.measure.regions import linear_regions, mean_region_size_near_anchors
from dlprobe.models import MLP, count_params
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

PHASES = ("initial", "trained")
PHASE_TITLES = {"initial": "before training", "trained": "after training"}
DRAWN_PLANES = 3  # region maps kept (for the first model) and drawn: the first planes
REGION_ACTIVATIONS = ("relu", "leaky_relu")  # those whose on/off pattern the probe reads


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[int, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation: relu or leaky_relu
    seeds: int = 5  # models, trained as one population; every plane is probed on each
    seed: int = 0  # base seed: model i uses seed + i; the planes' inputs are drawn with it
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-3  # learning rate
    epochs: int = 30  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    planes: int = 5  # planes, each through three training inputs of three different classes
    resolution: int = 200  # grid points per plane axis
    extent: float = 0.5  # grid margin around the three inputs, fraction of their box's longer side
    near_radius: float = 0.15  # "near the inputs": within this fraction of their mean distance

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            self.activation in REGION_ACTIVATIONS,
            f"linear regions need a piecewise-linear activation with an on/off pattern: "
            f"{', '.join(REGION_ACTIVATIONS)}; got {self.activation!r}",
        )
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden needs >= 1 width >= 1")
        require(self.planes >= 1, f"planes must be >= 1, got {self.planes}")
        require(self.resolution >= 10, f"resolution must be >= 10, got {self.resolution}")
        require(self.extent >= 0, f"extent must be >= 0, got {self.extent}")
        require(
            0 < self.near_radius < 0.5,
            f"near_radius must be in (0, 0.5) (a fraction of the inputs' mean distance), "
            f"got {self.near_radius}",
        )


PROFILES = {
    "smoke": Config(hidden=(16,), seeds=1, epochs=2, planes=1, resolution=40),
    "quick": Config(),
    "full": Config(dataset="mnist", hidden=(200, 200), epochs=20, resolution=400),
}


def pick_planes(labels: np.ndarray, n: int, rng: np.random.Generator) -> list[list[int]]:
    """``n`` triplets of training indices, each of three different classes."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    out = []
    for _ in range(n):
        classes = rng.choice(list(by_class), size=3, replace=False)
        out.append([int(rng.choice(by_class[c])) for c in classes])
    return out


def mean_anchor_distance(anchor_coords: np.ndarray) -> float:
    """Mean of the three pairwise distances between the anchors (plane units)."""
    a = np.asarray(anchor_coords)
    return float(np.mean([np.linalg.norm(a[i] - a[j]) for i, j in ((0, 1), (0, 2), (1, 2))]))


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    widths = [data.input_dim, *cfg.hidden, data.num_classes]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)
    loss_fn = default_loss(data)
    labels = data.y_train.cpu().numpy()
    triplets = pick_planes(labels, cfg.planes, np.random.default_rng(cfg.seed))
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.epochs,
    )

    accuracy, planes, regions, maps = [], [], [], []
    for phase in PHASES:
        if phase == "trained":
            run_dir.train("trained", pop, data, train_cfg)
        _, train_acc = evaluate_population(pop, data.x_train, data.y_train, loss_fn)
        _, test_acc = evaluate_population(pop, data.x_test, data.y_test, loss_fn)
        run_dir.log(f"linear regions on {cfg.planes} plane(s), {cfg.resolution}² grid ({phase})")
        for k, seed in enumerate(seeds):
            accuracy.append(
                {
                    "phase": phase,
                    "seed": seed,
                    "train_accuracy": float(train_acc[k]),
                    "test_accuracy": float(test_acc[k]),
                }
            )
            model = pop.model(k)
            for p, idx in enumerate(triplets):
                lr = linear_regions(model, *data.x_train[idx], cfg.resolution, cfg.extent)
                radius = cfg.near_radius * mean_anchor_distance(lr.anchor_coords)
                near, elsewhere = mean_region_size_near_anchors(lr, radius)
                if phase == PHASES[0] and k == 0:
                    planes.append(
                        {
                            "plane": p,
                            "train_indices": idx,
                            "classes": [int(labels[i]) for i in idx],
                            "anchor_coords": lr.anchor_coords.tolist(),
                            "near_radius": radius,
                        }
                    )
                regions.append(
                    {
                        "plane": p,
                        "seed": seed,
                        "phase": phase,
                        "n_regions": lr.n_regions,
                        "size_near": near,
                        "size_elsewhere": elsewhere,
                    }
                )
                if k == 0 and p < DRAWN_PLANES:
                    maps.append(
                        {
                            "plane": p,
                            "seed": seed,
                            "phase": phase,
                            "u": lr.grid_coords[0].tolist(),
                            "v": lr.grid_coords[1].tolist(),
                            "region_ids": lr.region_ids.tolist(),
                        }
                    )
    return {
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "model": {
            "kind": "mlp",
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(MLP(widths, cfg.activation)),
            "hidden_units": sum(cfg.hidden),
        },
        "seeds": seeds,
        "resolution": cfg.resolution,
        "extent": cfg.extent,
        "near_fraction": cfg.near_radius,
        "accuracy": accuracy,
        "planes": planes,
        "regions": regions,
        "maps": maps,
    }


# -- figures -----------------------------------------------------------------------------

PALETTE = [c for name in ("tab20", "tab20b", "Set3") for c in matplotlib.colormaps[name].colors]


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
    ids = np.array(m["region_ids"])
    u, v = m["u"], m["v"]
    ax.imshow(
        region_colours(ids)[ids],
        cmap=ListedColormap(PALETTE),
        vmin=-0.5,
        vmax=len(PALETTE) - 0.5,
        origin="lower",
        extent=(u[0], u[-1], v[0], v[-1]),
        interpolation="nearest",
    )
    anchors = np.array(plane["anchor_coords"])
    for i, (cu, cv) in enumerate(anchors):
        ax.add_patch(Circle((cu, cv), plane["near_radius"], fill=False, ls="--", lw=1.0))
        ax.plot(cu, cv, "o", color="black", mec="white", mew=1.2, ms=7)
        ax.annotate(
            f"x{i + 1} ({plane['classes'][i]})",
            (cu, cv),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
            color="black",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
        )
    ax.set_xlabel("u (along x2 - x1)")
    ax.set_ylabel("v")
    ax.grid(False)


def figures(results: dict) -> dict:
    figs = {}
    planes = {p["plane"]: p for p in results["planes"]}
    maps = {(m["plane"], m["phase"]): m for m in results["maps"]}
    counts = {(r["plane"], r["seed"], r["phase"]): r for r in results["regions"]}
    seed0 = results["maps"][0]["seed"]
    drawn = sorted({m["plane"] for m in results["maps"]})

    fig, axes = new_figure(ncols=2, nrows=len(drawn), width=5.0, height=4.6, squeeze=False)
    for row, p in enumerate(drawn):
        for col, phase in enumerate(PHASES):
            ax = axes[row, col]
            _draw_map(ax, maps[(p, phase)], planes[p])
            r = counts[(p, seed0, phase)]
            ax.set_title(
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
    figs["regions"] = fig

    fig, axes = new_figure(ncols=2, width=5.0, height=4.0, squeeze=False)
    keys = sorted({(r["plane"], r["seed"]) for r in results["regions"]})
    n = len(keys)
    ax = axes[0, 0]
    for i, key in enumerate(keys):
        ys = [counts[(*key, ph)]["n_regions"] for ph in PHASES]
        ax.plot([0, 1], ys, "-o", color=COLORS[i % len(COLORS)], alpha=0.7, ms=4)
    means = [np.mean([counts[(*key, ph)]["n_regions"] for key in keys]) for ph in PHASES]
    ax.bar([0, 1], means, width=0.5, color="lightgray", zorder=0)
    ax.set_xticks([0, 1], [PHASE_TITLES[ph] for ph in PHASES])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("regions on the grid")
    ax.set_title(f"Region count (bars: mean; lines: one plane and model, n={n})", fontsize=10)

    ax = axes[0, 1]
    for i, key in enumerate(keys):
        ys = [
            counts[(*key, ph)]["size_near"] / counts[(*key, ph)]["size_elsewhere"] for ph in PHASES
        ]
        ax.plot([0, 1], ys, "-o", color=COLORS[i % len(COLORS)], alpha=0.7, ms=4)
    for x, ph in enumerate(PHASES):
        ratios = [
            counts[(*key, ph)]["size_near"] / counts[(*key, ph)]["size_elsewhere"] for key in keys
        ]
        ax.hlines(np.median(ratios), x - 0.2, x + 0.2, color="black", lw=2.5, zorder=3)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xticks([0, 1], [PHASE_TITLES[ph] for ph in PHASES])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("mean region size near inputs / elsewhere")
    ax.set_title(f"Are regions larger near the inputs? (black: median, n={n})", fontsize=10)
    fig.tight_layout()
    figs["region-stats"] = fig
    return figs


# -- report ------------------------------------------------------------------------------


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
    m, d = results["model"], results["dataset"]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, m['widths']))} {m['activation']} ({m['params']} params)",
        ),
        ("data", f"{d['name']}: {d['n_train']} train / {d['n_test']} test"),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}, "
            f"{cfg.epochs} epochs",
        ),
        ("seeds", f"{cfg.seeds} model(s) (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1})"),
        (
            "planes",
            f"{cfg.planes}, each through three training inputs of different classes (drawn with "
            f"seed {cfg.seed}); {cfg.resolution}x{cfg.resolution} grid, margin {cfg.extent:g} of "
            "the inputs' box; regions are counted on the grid (a lower bound)",
        ),
        ("near", f"within {cfg.near_radius:g} x the mean distance between the three inputs"),
    ]


EXPERIMENT = Experiment(
    id="linear-regions",
    homework="Lecture",
    title="Linear regions of a ReLU network through training inputs",
    question="How does training change the piecewise-linear regions of a ReLU network "
    "around the data: are they larger near the training inputs (Novak et al. 2018)?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
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
