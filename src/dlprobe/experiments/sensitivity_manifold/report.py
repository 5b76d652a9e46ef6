"""sensitivity-manifold: headline numbers, observations and settings for the report."""

from __future__ import annotations

import numpy as np

from dlprobe.experiments.classification import classifier_settings
from dlprobe.experiments.common import group_rows
from dlprobe.experiments.sensitivity_manifold.protocol import (
    CASE_TITLES,
    CASES,
    Config,
    per_ellipse,
)


def _stats(results: dict) -> dict[tuple[str, str], dict]:
    """(case, phase) -> median ratio, fraction with ratio > 1, mean class changes, n."""
    out = {}
    for (case, phase), rs in group_rows(per_ellipse(results), "case", "phase").items():
        ratios = np.array([r["ratio"] for r in rs])
        out[(case, phase)] = {
            "median_ratio": float(np.median(ratios)),
            "above_one": int((ratios > 1).sum()),
            "median_at": float(np.median([r["at_data"] for r in rs])),
            "median_between": float(np.median([r["between"] for r in rs])),
            "class_changes": float(np.mean([r["class_changes"] for r in rs])),
            "n": len(rs),
        }
    return out


def summarize(results: dict) -> dict:
    out = {}
    acc = group_rows(results["accuracy"], "phase")
    out["test accuracy, trained (mean over models)"] = float(
        np.mean([r["test_accuracy"] for r in acc[("trained",)]])
    )
    for (case, phase), s in _stats(results).items():
        out[f"{case} class, {phase}: sensitivity between / at inputs (median)"] = s["median_ratio"]
        out[f"{case} class, {phase}: predicted-class changes per ellipse (mean)"] = s[
            "class_changes"
        ]
    return out


def observations(results: dict) -> list[str]:
    stats = _stats(results)
    acc = group_rows(results["accuracy"], "phase")
    test_acc = np.mean([r["test_accuracy"] for r in acc[("trained",)]])
    w = results["window"]
    lines = [
        f"{len(results['seeds'])} trained model(s) reach mean test accuracy {test_acc:.3f}; "
        f"'at the inputs' means within ±{w:g} rad of the three inputs' angles, 'between' "
        "the rest of the ellipse."
    ]
    for case in CASES:
        tr, init = stats[(case, "trained")], stats[(case, "initial")]
        lines.append(
            f"{CASE_TITLES[case].capitalize()}: after training the mean Jacobian sensitivity "
            f"between the inputs is {tr['median_ratio']:.2f}x that at the inputs (median over "
            f"n={tr['n']} ellipses; ratio > 1 in {tr['above_one']}/{tr['n']}; median "
            f"{tr['median_at']:.2e} at vs {tr['median_between']:.2e} between); at "
            f"initialization the ratio is {init['median_ratio']:.2f} "
            f"(> 1 in {init['above_one']}/{init['n']})."
        )
    same, diff = stats[("same", "trained")], stats[("different", "trained")]
    lines.append(
        f"The trained models' predicted class changes {same['class_changes']:.1f} times on "
        f"average along a same-class ellipse and {diff['class_changes']:.1f} times along a "
        f"different-class ellipse (n={same['n']} and {diff['n']})."
    )
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    return [
        *classifier_settings(cfg, results),
        (
            "ellipses",
            f"{cfg.ellipses} per case (same class / different classes), inputs drawn with "
            f"seed {cfg.seed}; {cfg.n_points} points each; at-the-data window ±{cfg.window:g} rad",
        ),
        ("sensitivity", "Frobenius norm of the Jacobian of the softmax probabilities w.r.t. x"),
    ]
