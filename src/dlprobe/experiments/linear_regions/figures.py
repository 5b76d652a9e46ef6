"""linear-regions: the figures, drawn from the saved results alone."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Circle

from dlprobe.experiments.linear_regions.protocol import PHASES
from dlprobe.experiments.plotting import COLORS, new_figure

PHASE_TITLES = {"initial": "before training", "trained": "after training"}


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
