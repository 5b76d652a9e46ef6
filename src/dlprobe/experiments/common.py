"""Small pieces shared by experiment files: checks, seeds, model labels, statistics."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from dlprobe import DlprobeError
from dlprobe.models import ACTIVATIONS
from dlprobe.train.config import OPTIMIZERS


def require(condition: bool, message: str) -> None:
    """Raise a one-line DlprobeError unless ``condition``."""
    if not condition:
        raise DlprobeError(message)


def check_common(cfg) -> None:
    """Checks of the fields most configs share, before any training starts."""
    for name in ("epochs", "seeds", "batch_size", "lr"):
        if hasattr(cfg, name):
            v = getattr(cfg, name)
            ok = v >= 0 if name == "batch_size" else v > 0
            require(ok, f"{name} must be {'>= 0' if name == 'batch_size' else '> 0'}, got {v}")
    if hasattr(cfg, "optimizer"):
        require(
            cfg.optimizer in OPTIMIZERS,
            f"unknown optimizer {cfg.optimizer!r}; valid names: {', '.join(OPTIMIZERS)}",
        )
    if hasattr(cfg, "activation"):
        require(
            cfg.activation in ACTIVATIONS,
            f"unknown activation {cfg.activation!r}; valid names: {', '.join(ACTIVATIONS)}",
        )


def parse_widths(text: str) -> list[int]:
    """``"1-190-1"`` -> ``[1, 190, 1]``."""
    try:
        widths = [int(w) for w in text.split("-")]
    except ValueError:
        raise DlprobeError(f"model widths must look like 1-190-1, got {text!r}") from None
    require(len(widths) >= 3 and min(widths) > 0, f"a model needs >= 1 hidden layer: {text!r}")
    return widths


def model_seeds(base_seed: int, n: int) -> list[int]:
    return [base_seed + i for i in range(n)]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def group_rows(rows: Sequence[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def series(rows: Sequence[dict], x: str, y: str, run: str = "seed") -> tuple[list, np.ndarray]:
    """(x values, array (n_runs, len(x))) from tidy rows of several runs."""
    by_run = group_rows(rows, run)
    xs = [r[x] for r in next(iter(by_run.values()))]
    return xs, np.array([[r[y] for r in rs] for rs in by_run.values()], dtype=float)


def sci(v: float) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.2e}"


def diverged_lines(
    rows: Sequence[dict], consequence: str = "were frozen (see results.json)"
) -> list[str]:
    """The report's line on runs whose loss turned NaN/inf, or nothing when there are none."""
    n = sum(1 for r in rows if r["diverged"])
    return [f"{n} run(s) diverged and {consequence}."] if n else []
