"""random-labels: headline numbers, observations and settings for the report."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.common import diverged_lines, mean_std
from dlprobe.experiments.random_labels.protocol import Config, pct


def _mean(results: dict, noise: float, metric: str) -> float:
    return mean_std(r[metric] for r in results["final"] if r["noise"] == noise)[0]


def _fit_stats(results: dict, noise: float) -> tuple[float, int, int]:
    """(median epochs to fit over fitted runs, runs fitted, runs)."""
    es = [r["epochs_to_fit"] for r in results["final"] if r["noise"] == noise]
    fitted = [e for e in es if e is not None]
    return (float(np.median(fitted)) if fitted else float("nan")), len(fitted), len(es)


def _corr(results: dict, metric: str) -> tuple[float, int]:
    rows = [r for r in results["final"] if r[metric] is not None]
    x = np.array([r["noise"] for r in rows])
    y = np.array([r[metric] for r in rows], dtype=float)
    if len(rows) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan"), len(rows)
    return float(np.corrcoef(x, y)[0, 1]), len(rows)


def summarize(results: dict) -> dict:
    out = {}
    for p in results["noise_levels"]:
        med, fitted, n = _fit_stats(results, p)
        out[f"{pct(p)} noise: epochs to fit (median), runs fitted"] = [med, f"{fitted}/{n}"]
        out[f"{pct(p)} noise: final train / test accuracy"] = [
            _mean(results, p, "train_accuracy"),
            _mean(results, p, "test_accuracy"),
        ]
        out[f"{pct(p)} noise: peak test accuracy"] = _mean(results, p, "peak_test_accuracy")
        out[f"{pct(p)} noise: critical ratio / L2 norm"] = [
            _mean(results, p, "critical_ratio"),
            _mean(results, p, "l2_total"),
        ]
    return out


def observations(results: dict) -> list[str]:
    levels = results["noise_levels"]
    n = len(results["seeds"])
    top = max(levels)
    d = results["data"]
    lines = []
    changed = {r["noise"]: r["labels_changed"] for r in results["levels"]}

    def fit_text(p: float) -> str:
        median, fitted, runs = _fit_stats(results, p)
        return f"{fitted}/{runs}" + (f" (median epoch {median:g})" if fitted else "")

    by_level = ", ".join(
        f"{pct(p)}{' (true labels)' if p == 0 else ''} {fit_text(p)}" for p in levels
    )
    med0, med1 = _fit_stats(results, 0.0)[0], _fit_stats(results, top)[0]
    lines.append(
        f"Runs reaching train accuracy {results['fit_accuracy']:g} on their (corrupted) labels "
        f"within {results['epochs']} epochs, by share of randomized labels: {by_level}. "
        f"At {pct(top)}, {pct(changed[top])} of the {d['n_train']} training labels actually "
        "changed"
        + (
            f"; fitting them took {med1 / med0:.1f}x the epochs of true labels (medians)."
            if np.isfinite(med0) and np.isfinite(med1)
            else "."
        )
    )
    lines.append(
        f"Final train / test accuracy over {n} seeds: true labels "
        f"{_mean(results, 0.0, 'train_accuracy'):.3f} / "
        f"{_mean(results, 0.0, 'test_accuracy'):.3f}; "
        f"{pct(top)} noise {_mean(results, top, 'train_accuracy'):.3f} / "
        f"{_mean(results, top, 'test_accuracy'):.3f} (chance {1 / d['num_classes']:.2f})."
    )
    test_by_level = ", ".join(f"{pct(p)} {_mean(results, p, 'test_accuracy'):.3f}" for p in levels)
    lines.append(f"Final test accuracy by noise level (mean of {n}): {test_by_level}.")
    drops = []
    for p in levels:
        if p == 0.0:
            continue
        peak, final = _mean(results, p, "peak_test_accuracy"), _mean(results, p, "test_accuracy")
        epoch = _mean(results, p, "peak_test_epoch")
        drops.append(f"{pct(p)}: peak {peak:.3f} at epoch {epoch:.0f} -> final {final:.3f}")
    lines.append(
        "Rise then fall of test accuracy (mean of " + str(n) + " seeds): " + "; ".join(drops) + "."
    )
    for metric, name in (
        ("critical_ratio", "critical-sample ratio"),
        ("l2_total", "L2 norm of the parameters"),
        ("path_norm", "path norm"),
    ):
        r, m = _corr(results, metric)
        lo, hi = _mean(results, 0.0, metric), _mean(results, top, metric)
        lines.append(
            f"{name.capitalize()}: {lo:.3g} at 0% noise vs {hi:.3g} at {pct(top)} "
            f"(means of {n}); correlation with the noise level r = {r:.2f} over {m} runs."
        )
    return lines + diverged_lines(results["final"])


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d, c = results["model"], results["data"], results["critical"]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, m['widths']))} {m['activation']} ({m['params']} params)",
        ),
        (
            "data",
            f"{d['dataset']}: {d['n_train']} training examples"
            + (f" (seeded subset, seed {cfg.seed})" if cfg.train_subset else "")
            + f", {d['n_test']} test examples with true labels",
        ),
        (
            "label noise",
            f"{', '.join(pct(p) for p in cfg.noise_levels)} of the training labels, "
            f"mode {cfg.corruption} (seed {cfg.seed}); test labels untouched",
        ),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g} ({cfg.schedule}), "
            f"batch {'full' if cfg.batch_size == 0 else cfg.batch_size}",
        ),
        ("epochs", f"{cfg.epochs}, evaluated every {cfg.eval_every_epochs}"),
        ("fitted", f"train accuracy on the corrupted labels >= {cfg.fit_accuracy:g}"),
        (
            "critical samples",
            f"first {c['examples']} training inputs, L-inf radius {c['radius']:g}, "
            f"{c['steps']}-step signed-gradient search",
        ),
        (
            "seeds",
            f"{cfg.seeds} per noise level (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            f"n = {cfg.seeds * len(cfg.noise_levels)} runs",
        ),
    ]
