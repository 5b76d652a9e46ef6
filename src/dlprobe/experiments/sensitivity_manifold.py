"""Lecture: sensitivity along an ellipse through three training inputs (Novak et al. 2018).

Protocol: train MLP classifiers (a population of seeds). Pick three training inputs of
the same class, or of three different classes, and run through them the ellipse
``x(t) = c + a cos t + b sin t`` that meets them exactly at t = 0, 2π/3 and 4π/3. At evenly
spaced angles along it, measure the input sensitivity (Frobenius norm of the Jacobian of
the class probabilities with respect to the input) and the predicted class, at
initialization and after training. The claim: a trained network is insensitive at the
data and sensitive between the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    DatasetName,
    Experiment,
    Notes,
    PosFloat,
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
    require,
)
from dlprobe.experiments.kit.manifold import (
    ANCHOR_T,
    CASE_TITLES,
    CASES,
    PHASES,
    accuracy_records,
    angle_axis,
    ellipses_through_triplets,
    jacobian_sensitivity_and_class,
    mark_anchors,
    near_anchors,
    probed_models,
    trained_test_accuracy,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.models import mlp_param_count
from dlprobe.train import TrainConfig


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden: tuple[PosInt, ...] = (128, 128)  # hidden-layer widths of the MLP
    activation: Activation = "relu"  # hidden activation
    seeds: PosInt = 3  # models, trained as one population; every ellipse is probed on each
    seed: Seed = 0  # base seed: model i uses seed + i; the ellipses' inputs are drawn with it
    ellipses: PosInt = 5  # ellipses per case (same class / different classes)
    n_points: PosInt = 300  # points along each ellipse, evenly spaced in angle; a multiple of 3
    window: PosFloat = 0.1  # "at the data": within this angle of an input's angle, in radians
    train: TrainConfig = TrainConfig(epochs=30)

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        check_classifier_fits(self.dataset, self.hidden, self.activation, self.seeds)
        require(
            self.n_points >= 6 and self.n_points % 3 == 0,
            f"n_points must be a multiple of 3 and >= 6 (so the three inputs lie on the "
            f"angle grid), got {self.n_points}",
        )
        require(
            2 * math.pi / self.n_points <= self.window < math.pi / 3,
            f"window must be in [2π/n_points, π/3) radians (at least one grid step, less "
            f"than half the gap between inputs), got {self.window}",
        )


PROFILES = {
    "smoke": {"hidden": (16,), "seeds": 1, "ellipses": 1, "n_points": 90, "train.epochs": 2},
    "full": {"dataset": "mnist", "hidden": (512, 512), "train.epochs": 20},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    spec = mlp_spec(data, cfg.hidden, cfg.activation)
    pop = mlp_population(spec["widths"], cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    labels = data.y_train.cpu().numpy()
    x_flat = data.x_train.reshape(data.n_train, -1).cpu().double().numpy()  # (n, D)
    t = 2 * math.pi * np.arange(cfg.n_points) / cfg.n_points  # anchors at 0, n/3, 2n/3
    ellipses, points = ellipses_through_triplets(labels, x_flat, cfg.ellipses, t, cfg.seed)
    x_all = torch.as_tensor(points, dtype=data.x_train.dtype)
    x_all = x_all.reshape(-1, *data.input_shape).to(ctx.device)  # (E * n_points, ...)
    accuracy, curves, runs = [], [], []
    for phase in PHASES:
        if phase == "trained":
            runs = ctx.train("trained", pop, data, cfg.train).final_records()
        models = probed_models(pop.size, runs)  # diverged models are not probed
        accuracy += accuracy_records(pop, data, phase, models)
        ctx.log(f"probing {len(ellipses)} ellipses x {cfg.n_points} points ({phase})")
        sens, pred = jacobian_sensitivity_and_class(pop, x_all, models)  # (M, E * n) each
        sens = sens.reshape(len(models), len(ellipses), cfg.n_points)
        pred = pred.reshape(len(models), len(ellipses), cfg.n_points)
        for j, seed in enumerate(pop.seeds[k] for k in models):
            for e, ell in enumerate(ellipses):
                curves += [
                    {
                        "case": ell["case"],
                        "ellipse": ell["ellipse"],
                        "seed": seed,
                        "phase": phase,
                        "t": float(t[i]),
                        "sensitivity": float(sens[j, e, i]),
                        "predicted": int(pred[j, e, i]),
                    }
                    for i in range(cfg.n_points)
                ]
    return {
        "dataset": {**data_record(data), "input_shape": list(data.input_shape)},
        "model": {**spec, "params": mlp_param_count(spec["widths"], cfg.activation)},
        "seeds": pop.seeds,
        "anchor_t": list(ANCHOR_T),
        "window": cfg.window,
        "accuracy": accuracy,
        "ellipses": ellipses,
        "curves": curves,
        "runs": runs,
    }


def per_ellipse(results: dict) -> list[dict]:
    """One record per (case, phase, seed, ellipse): mean sensitivity at / between the data,
    their ratio, and how often the predicted class changes along the closed ellipse."""
    rows = []
    groups = group_rows(results["curves"], "case", "phase", "seed", "ellipse")
    for (case, phase, seed, e), rs in groups.items():
        t = np.array([r["t"] for r in rs])
        s = np.array([r["sensitivity"] for r in rs])
        pred = np.array([r["predicted"] for r in rs])
        near = near_anchors(t, results["window"])
        at, between = float(s[near].mean()), float(s[~near].mean())
        rows.append(
            {
                **{"case": case, "phase": phase, "seed": seed, "ellipse": e},
                **{"at_data": at, "between": between},
                "ratio": between / at if at > 0 else float("inf"),
                "class_changes": int((pred != np.roll(pred, 1)).sum()),
            }
        )
    return rows


def _shade_classes(ax, t: np.ndarray, pred: np.ndarray) -> None:
    """Background spans coloured by predicted class, the class written on wide spans."""
    step = t[1] - t[0]
    starts = np.flatnonzero(np.r_[True, pred[1:] != pred[:-1]])
    ends = np.r_[starts[1:], len(pred)]
    for s, e in zip(starts, ends, strict=True):
        lo, hi = t[s] - step / 2 if s else 0.0, min(t[e - 1] + step / 2, 2 * math.pi)
        ax.axvspan(lo, hi, color=COLORS[pred[s] % len(COLORS)], alpha=0.15, lw=0)
        if hi - lo > 0.12:
            ax.annotate(str(pred[s]), ((lo + hi) / 2, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -11), textcoords="offset points", ha="center", fontsize=8,
                        color="dimgray")  # fmt: skip


def _example_figure(results: dict, curves: dict):
    ellipses = {(e["case"], e["ellipse"]): e for e in results["ellipses"]}
    trained_seeds = [s for (_, p, s, _) in curves if p == "trained"]  # diverged ones absent
    seed0 = trained_seeds[0] if trained_seeds else results["seeds"][0]
    fig, axes = new_figure(nrows=2, width=9.0, height=3.3, squeeze=False)
    for ax, case in zip(axes[:, 0], CASES, strict=True):
        trained, initial = (
            curves.get((case, "trained", seed0, 0)),
            curves[(case, "initial", seed0, 0)],
        )
        t = np.array([r["t"] for r in initial])
        if trained:
            _shade_classes(ax, t, np.array([r["predicted"] for r in trained]))
            ax.plot(t, [r["sensitivity"] for r in trained], color=COLORS[0], lw=1.4,
                    label="trained")  # fmt: skip
        ax.plot(t, [r["sensitivity"] for r in initial], color="gray", lw=1.0, ls="--",
                label="at initialization")  # fmt: skip
        classes = ellipses[(case, 0)]["classes"]
        mark_anchors(ax, classes)
        angle_axis(ax)
        ax.set_ylabel("‖∂softmax/∂x‖_F")
        ax.set_title(
            f"{CASE_TITLES[case]} (classes {', '.join(map(str, classes))}); one ellipse, "
            f"model seed {seed0}; shading and digits on top: predicted class (trained)",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _mean_figure(curves: dict):
    fig, axes = new_figure(ncols=2, width=5.5, height=4.0, squeeze=False, sharey=True)
    for ax, case in zip(axes[0], CASES, strict=True):
        for phase, color in (("trained", COLORS[0]), ("initial", "gray")):
            runs = [v for (c, p, _, _), v in curves.items() if c == case and p == phase]
            if not runs:  # every model diverged in training
                continue
            t = np.array([r["t"] for r in runs[0]])
            s = np.log(np.array([[r["sensitivity"] for r in rs] for rs in runs]))  # (n, T)
            label = "trained" if phase == "trained" else "at initialization"
            ax.plot(t, np.exp(s.mean(0)), color=color, lw=1.5, label=f"{label} (n={len(runs)})")
            lo, hi = np.exp(np.quantile(s, [0.25, 0.75], axis=0))
            ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)
        mark_anchors(ax)
        angle_axis(ax)
        ax.set_title(CASE_TITLES[case], fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    axes[0, 0].set_ylabel("‖∂softmax/∂x‖_F (geometric mean, IQR band)")
    fig.suptitle("Sensitivity along ellipses through three training inputs (n ellipses × models)")
    fig.tight_layout()
    return fig


def _ratio_figure(results: dict):
    fig, ax = new_figure(width=6.5)
    rows = per_ellipse(results)
    groups = [(case, phase) for case in CASES for phase in PHASES]
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, (case, phase) in enumerate(groups):
        ratios = [r["ratio"] for r in rows if r["case"] == case and r["phase"] == phase]
        if not ratios:  # every model diverged in training
            continue
        color = COLORS[0] if phase == "trained" else "gray"
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(ratios)), ratios, color=color, s=22)
        ax.hlines(np.median(ratios), i - 0.25, i + 0.25, color="black", lw=1.5)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)))
    n = {g: sum(1 for r in rows if (r["case"], r["phase"]) == g) for g in groups}
    ax.set_xticklabels([f"{c} class\n{p}\n(n={n[(c, p)]})" for c, p in groups], fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("mean sensitivity between inputs / at inputs")
    ax.set_title(f"Between vs at the data (at: within ±{results['window']:g} rad; bar: median)")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    curves = group_rows(results["curves"], "case", "phase", "seed", "ellipse")
    return {
        "ellipse-example": _example_figure(results, curves),
        "ellipse-mean": _mean_figure(curves),
        "ratio": _ratio_figure(results),
    }


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


def notes(results: dict) -> Notes:
    stats, test_acc = _stats(results), trained_test_accuracy(results)
    summary = {"test accuracy, trained (mean over models)": test_acc}
    for (case, phase), s in stats.items():
        head = f"{case} class, {phase}:"
        summary[f"{head} sensitivity between / at inputs (median)"] = s["median_ratio"]
        summary[f"{head} predicted-class changes per ellipse (mean)"] = s["class_changes"]
    n_trained = sum(r["phase"] == "trained" for r in results["accuracy"])
    lines = [
        f"{n_trained} trained model(s) reach mean test accuracy {test_acc:.3f}; "
        f"'at the inputs' means within ±{results['window']:g} rad of the three inputs' angles, "
        "'between' the rest of the ellipse."
        if n_trained
        else "Every model diverged in training: nothing is compared after training."
    ]
    fidelity = []
    for case in (c for c in CASES if (c, "trained") in stats):
        tr, init = stats[(case, "trained")], stats[(case, "initial")]
        lines.append(
            f"{CASE_TITLES[case].capitalize()}: after training the mean Jacobian sensitivity "
            f"between the inputs is {tr['median_ratio']:.2f}x that at the inputs (median over "
            f"n={tr['n']} ellipses; ratio > 1 in {tr['above_one']}/{tr['n']}; median "
            f"{tr['median_at']:.2e} at vs {tr['median_between']:.2e} between); at "
            f"initialization the ratio is {init['median_ratio']:.2f} "
            f"(> 1 in {init['above_one']}/{init['n']})."
        )
        fidelity.append(
            fidelity_row(
                f"sensitivity along ellipses through {CASE_TITLES[case]}",
                "low at the training inputs, high between them (Novak et al. 2018)",
                f"between / at = {tr['median_ratio']:.2f} (median, n={tr['n']})",
                tr["median_ratio"] > 1,
                "the trained models are not less sensitive at the inputs here",
            )
        )
    if ("same", "trained") in stats and ("different", "trained") in stats:
        same, diff = stats[("same", "trained")], stats[("different", "trained")]
        lines.append(
            f"The trained models' predicted class changes {same['class_changes']:.1f} times on "
            f"average along a same-class ellipse and {diff['class_changes']:.1f} times along a "
            f"different-class ellipse (n={same['n']} and {diff['n']})."
        )
    lines += diverged_lines(results["runs"], "are left out (not probed after training)")
    table = model_data_table(results["model"], results["dataset"])
    return Notes(summary, lines, [table], fidelity)


EXPERIMENT = Experiment(
    id="sensitivity-manifold",
    item="Lecture",
    part="indicators",
    rank=1,
    title="Sensitivity along an ellipse through training inputs",
    question="Is a trained network's input sensitivity low at the training data and high "
    "between training points (Novak et al. 2018)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "ellipse-example": "Jacobian sensitivity along one ellipse through three training "
        "inputs (dotted lines) for the trained model (solid) and at initialization (dashed), "
        "log scale; background shaded by the trained model's predicted class",
        "ellipse-mean": "geometric mean (line) and interquartile band of the sensitivity over "
        "all ellipses and models, trained vs at initialization; the three inputs sit at the "
        "same angles on every ellipse",
        "ratio": "per ellipse and model: mean sensitivity between the inputs divided by that "
        "within the window around them; above 1 = lower at the data",
    },
    quick_minutes=0.2,
    full_differs="digits and 128-128 MLPs (30 epochs) instead of MNIST, as in Novak et al. "
    "2018, and 512-512 MLPs (20 epochs).",
)
