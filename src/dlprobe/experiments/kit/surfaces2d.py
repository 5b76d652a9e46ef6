"""Exact 2-D loss surfaces: test functions, optimizer paths over them, contour drawings.

A ``Surface`` is a function of a 2-vector with a known minimum and a box to draw it in.
``descend`` runs one torch.optim optimizer (built by ``dlprobe.train.make_optimizer``) from
one start at several learning rates at once: each lr is its own parameter group, and the
optimizers are element-wise, so the runs are independent (tested against one run per lr).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.colors import LogNorm

from dlprobe.config import require
from dlprobe.experiments.kit.plotting import COLORS
from dlprobe.train import TrainConfig, make_optimizer


@dataclass(frozen=True)
class Surface:
    name: str
    formula: str  # for titles
    fn: Callable[[torch.Tensor], torch.Tensor]  # (..., 2) -> (...)
    minimum: tuple[float, float]  # where fn is lowest
    start: tuple[float, float]  # where every optimizer starts
    box: tuple[float, float, float, float]  # (x min, x max, y min, y max) for drawing


def rotated_quadratic(condition: float, angle_deg: float = 30.0) -> Surface:
    """0.5 (w - m)^T A (w - m), A with eigenvalues 1 and ``condition``, axes rotated."""
    require(condition >= 1, f"condition number must be >= 1, got {condition}")
    a = math.radians(angle_deg)
    rot = torch.tensor(
        [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64
    )
    hess = rot @ torch.diag(torch.tensor([1.0, condition], dtype=torch.float64)) @ rot.T  # (2, 2)

    def fn(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("...i,ij,...j->...", w, hess.to(w), w)

    return Surface(
        "quadratic",
        f"rotated quadratic, condition number {condition:g}",
        fn,
        (0.0, 0.0),
        (-3.0, 2.0),
        (-4.0, 4.0, -3.0, 3.0),
    )


def rosenbrock() -> Surface:
    """(1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1), from the classic start (-1.2, 1)."""

    def fn(w: torch.Tensor) -> torch.Tensor:
        x, y = w[..., 0], w[..., 1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    return Surface(
        "rosenbrock",
        "Rosenbrock (1-x)^2 + 100(y-x^2)^2",
        fn,
        (1.0, 1.0),
        (-1.2, 1.0),
        (-2.0, 2.0, -1.0, 3.0),
    )


def descend(
    fn: Callable[[torch.Tensor], torch.Tensor],
    start: Sequence[float],
    cfg: TrainConfig,
    lrs: Sequence[float],
    steps: int,
) -> np.ndarray:
    """Paths (L, steps + 1, 2) of ``cfg.optimizer`` from ``start``, one per lr (float64).

    A path whose point becomes non-finite stays NaN from then on.
    """
    ws = [torch.tensor(start, dtype=torch.float64, requires_grad=True) for _ in lrs]
    opt = make_optimizer([{"params": [w], "lr": lr} for w, lr in zip(ws, lrs, strict=True)], cfg)
    path = np.full((len(lrs), steps + 1, 2), np.nan)
    path[:, 0] = np.asarray(start, dtype=float)
    for t in range(steps):
        opt.zero_grad()
        fn(torch.stack(ws)).sum().backward()  # (L,) values; each w gets its own gradient
        opt.step()
        with torch.no_grad():
            path[:, t + 1] = torch.stack(ws).numpy()
    bad = ~np.isfinite(path).all(-1)  # (L, steps + 1)
    path[np.maximum.accumulate(bad, axis=1)] = np.nan
    return path


def grad_norm(fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """|grad fn| at every point of ``w`` (..., 2), by autograd of the sum (points do not
    interact, so each point's gradient is its own)."""
    w = w.detach().clone().requires_grad_(True)
    with torch.enable_grad():  # also inside no_grad (e.g. through grid_values)
        (g,) = torch.autograd.grad(fn(w).sum(), w)
    return g.norm(dim=-1)


def argmin(fn: Callable[[torch.Tensor], torch.Tensor], start=(0.0, 0.0)) -> torch.Tensor:
    """A local minimizer (2,) float64 of ``fn`` by L-BFGS with a strong-Wolfe line search."""
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = fn(w)
        value.backward()
        return value

    opt.step(closure)
    return w.detach()


def grid_values(
    fn: Callable[[torch.Tensor], torch.Tensor], box: Sequence[float], n: int
) -> dict[str, list]:
    """``fn`` on an n x n grid over ``box``: {"x": (n,), "y": (n,), "z": (n, n) rows y}."""
    xs = torch.linspace(box[0], box[1], n, dtype=torch.float64)
    ys = torch.linspace(box[2], box[3], n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (n, n, 2)
    with torch.no_grad():
        z = fn(grid)  # (n, n)
    return {"x": xs.tolist(), "y": ys.tolist(), "z": z.tolist()}


def draw_contours(ax, grid: dict, minimum: Sequence[float] | None = None) -> None:
    """Filled contours of a grid from ``grid_values`` at 16 log-spaced levels of the value
    above the grid's lowest (darker is lower); a star at ``minimum``."""
    z = np.asarray(grid["z"], dtype=float)
    lifted = z - np.nanmin(z)
    positive = lifted[lifted > 0]
    lo, hi = (positive.min(), positive.max()) if positive.size else (1e-12, 1.0)
    levels = np.geomspace(max(lo, hi * 1e-8), hi, 16)
    shown = np.clip(lifted, levels[0], None)
    ax.contourf(grid["x"], grid["y"], shown, levels=levels, norm=LogNorm(), cmap="Greys_r")
    if minimum is not None:
        ax.plot(*minimum, marker="*", color="gold", ms=14, mec="black", zorder=5)


def optimizer_paths(
    surface: Surface, optimizers: Sequence[str], lrs: Sequence[float], steps: int, momentum: float
) -> dict:
    """Every optimizer from ``surface.start`` for ``steps`` steps at each lr of ``lrs``; its
    path at the lr of the lowest finite final value (the first lr when none is finite).

    Returns {"name", "formula", "minimum", "start", "paths": one {"optimizer", "lr", "path"
    (steps + 1, 2), "values" (steps + 1,), "final_distance"} per optimizer, "lr_grid": one
    {"optimizer", "lr", "final_value", "final_distance"} per optimizer and lr}.
    """
    paths, tried = [], []
    for opt in optimizers:
        cfg = TrainConfig(optimizer=opt, momentum=momentum)
        path = descend(surface.fn, surface.start, cfg, lrs, steps)  # (L, steps + 1, 2)
        with torch.no_grad(), np.errstate(over="ignore", invalid="ignore"):  # huge: inf
            values = surface.fn(torch.from_numpy(path)).numpy()  # (L, steps + 1)
            dist = np.linalg.norm(path[:, -1] - np.asarray(surface.minimum), axis=-1)  # (L,)
        tried += [
            {"optimizer": opt, "lr": lr, "final_value": float(v), "final_distance": float(d)}
            for lr, v, d in zip(lrs, values[:, -1], dist, strict=True)
        ]
        i = int(np.argmin(np.where(np.isfinite(values[:, -1]), values[:, -1], np.inf)))
        paths.append(
            {
                "optimizer": opt,
                "lr": lrs[i],
                "path": path[i].tolist(),
                "values": values[i].tolist(),
                "final_distance": float(dist[i]),
            }
        )
    return {
        "name": surface.name,
        "formula": surface.formula,
        "minimum": list(surface.minimum),
        "start": list(surface.start),
        "paths": paths,
        "lr_grid": tried,
    }


def draw_paths(ax, paths: Sequence[dict], start: Sequence[float], grid: dict) -> None:
    """Paths (each {"path": (steps + 1, 2)}) over a plot of ``grid``, clipped to its box."""
    for i, p in enumerate(paths):
        xy = np.asarray(p["path"], dtype=float)  # (steps + 1, 2); None read back as NaN
        ax.plot(xy[:, 0], xy[:, 1], color=COLORS[i % len(COLORS)], lw=1.2)
    ax.plot(*start, "ko", ms=5)
    ax.set(xlim=(grid["x"][0], grid["x"][-1]), ylim=(grid["y"][0], grid["y"][-1]))
    ax.set(xlabel="w1", ylabel="w2")


def paths_figure(surface: dict, title: str):
    """Left: the paths of ``optimizer_paths`` (with a "grid" from ``grid_values``) over the
    contours, from the black dot; right: each path's value per step (log when every value
    is positive), the legend with each lr and final distance to the minimum (the star)."""
    from .plotting import log_scale_if_positive, new_figure

    fig, axes = new_figure(2, 1, width=5.5)
    draw_contours(axes[0], surface["grid"], surface["minimum"])
    draw_paths(axes[0], surface["paths"], surface["start"], surface["grid"])
    axes[0].set_title(title, fontsize=9)
    values = np.array([p["values"] for p in surface["paths"]], dtype=float)  # (n, steps + 1)
    for i, (p, v) in enumerate(zip(surface["paths"], values, strict=True)):
        d = p["final_distance"]
        d = "nan" if d is None or not math.isfinite(d) else f"{d:.2e}"
        label = p.get("label") or f"{p['optimizer']} lr {p['lr']:g}"
        axes[1].plot(v, color=COLORS[i % len(COLORS)], lw=1.2, label=f"{label}: {d}")
    log_scale_if_positive(axes[1], values)
    axes[1].set(xlabel="step", ylabel="value")
    axes[1].set_title("value along each path (legend: distance to the star)", fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    return fig
