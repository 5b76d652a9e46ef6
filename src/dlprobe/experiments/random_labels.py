"""HW1-3 generalization: can a network fit random labels?

Protocol (Zhang et al. 2017; Arpit et al. 2017): shuffle a fraction p of the training
labels (the test labels stay true) and train the same MLP until the training set is
fitted. p = 0 is the network on true labels, p = 1 is fully random labels; in between,
the lecture's noise sweep (0, 20, ..., 100%). Every level is a population of seeds, all
levels share the model seeds and the training inputs. The corrupted examples of a level
are a superset of those of every lower level (one seeded permutation, cut at p * n).
After training: epochs needed to fit the (corrupted) training labels, the peak and final
test accuracy, the critical-sample ratio on a fixed set of training inputs and the weight
norms of every final model, against the noise level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlprobe.data import CORRUPTION_MODES, DATASETS, Dataset, corrupt_labels, load_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import (
    check_common,
    diverged_lines,
    group_rows,
    mean_std,
    model_seeds,
    require,
)
from dlprobe.experiments.plotting import COLORS, mean_band, new_figure
from dlprobe.measure.critical import critical_sample_ratio
from dlprobe.measure.norms import weight_norms
from dlprobe.models import MLP, mlp_param_count
from dlprobe.train import SCHEDULES, Population, TrainConfig

NORMS = ("l2_total", "spectral_product", "path_norm")


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    train_subset: int = 0  # training examples used; 0 = the whole training split
    hidden: tuple[int, ...] = (256, 256, 256)  # hidden-layer widths of the MLP
    activation: str = "relu"  # hidden activation
    noise_levels: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # shares of labels randomized
    corruption: str = "shuffle"  # "shuffle": permute the chosen labels; "uniform": redraw them
    seeds: int = 3  # training runs per noise level, trained as one population
    seed: int = 0  # base seed: run i uses seed + i; also seeds the subset and the label noise
    optimizer: str = "adam"  # optimizer
    lr: float = 3e-3  # peak learning rate
    schedule: str = "cosine"  # learning-rate decay: constant, step or cosine (ends near 0)
    epochs: int = 50  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    eval_every_epochs: int = 1  # curve resolution, in epochs (early epochs show the rise)
    fit_accuracy: float = 0.99  # training accuracy (on the corrupted labels) that counts as fitted
    critical_examples: int = 300  # training inputs searched for critical samples (the first ones)
    critical_radius: float = 0.1  # half-width of the L-inf box around an input, in input units
    critical_steps: int = 20  # signed-gradient steps of the search for a label flip

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}")
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, f"bad hidden widths {self.hidden}")
        require(
            all(0.0 <= p <= 1.0 for p in self.noise_levels),
            f"noise_levels must lie in [0, 1], got {self.noise_levels}",
        )
        require(
            len(set(self.noise_levels)) == len(self.noise_levels),
            f"noise_levels has repeated values: {self.noise_levels}",
        )
        require(
            0.0 in self.noise_levels and max(self.noise_levels) > 0,
            "noise_levels must contain 0 (true labels) and at least one level > 0",
        )
        require(
            self.corruption in CORRUPTION_MODES,
            f"unknown corruption {self.corruption!r}; valid: {', '.join(CORRUPTION_MODES)}",
        )
        require(
            self.train_subset == 0 or self.batch_size <= self.train_subset,
            f"batch_size must be <= train_subset ({self.train_subset}), got {self.batch_size}",
        )
        require(
            self.schedule in SCHEDULES,
            f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}",
        )
        require(self.eval_every_epochs >= 1, "eval_every_epochs must be >= 1")
        require(
            0 < self.fit_accuracy <= 1, f"fit_accuracy must be in (0, 1], got {self.fit_accuracy}"
        )
        require(self.critical_examples >= 1, "critical_examples must be >= 1")
        require(
            self.critical_radius > 0, f"critical_radius must be > 0, got {self.critical_radius}"
        )
        require(self.critical_steps >= 1, "critical_steps must be >= 1")


PROFILES = {
    "smoke": Config(
        train_subset=128,
        hidden=(32, 32, 32),
        noise_levels=(0.0, 0.5, 1.0),
        seeds=2,
        epochs=4,
        batch_size=32,
        critical_examples=16,
        critical_steps=3,
    ),
    "quick": Config(),
    "full": Config(dataset="mnist", lr=1e-3, epochs=200, batch_size=128, critical_examples=1000),
}


def prepare_data(cfg: Config, device) -> tuple[Dataset, dict[float, Dataset]]:
    """The clean dataset (subset if asked) and one label-corrupted copy per noise level.

    Only ``y_train`` differs between the copies; inputs and the test split are shared.
    """
    clean = load_dataset(cfg.dataset, device=device)
    if cfg.train_subset:
        clean = clean.subset_train(cfg.train_subset, seed=cfg.seed)
    noisy = {
        p: corrupt_labels(clean, p, seed=cfg.seed, mode=cfg.corruption) for p in cfg.noise_levels
    }
    return clean, noisy


def _epochs_to_fit(epochs: list[int], train_acc: list[float], threshold: float) -> int | None:
    return next((e for e, a in zip(epochs, train_acc, strict=True) if a >= threshold), None)


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    clean, noisy = prepare_data(cfg, run_dir.device)
    widths = [clean.input_dim, *cfg.hidden, clean.num_classes]
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        schedule=cfg.schedule,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.eval_every_epochs,
    )
    x_critical = clean.x_train[: cfg.critical_examples]  # (n_c, ...) same inputs at every level
    curves, finals, levels = [], [], []
    for p in cfg.noise_levels:
        data = noisy[p]
        changed = (data.y_train != clean.y_train).float().mean().item()
        levels.append({"noise": p, "labels_changed": changed})
        pop = Population(lambda: MLP(widths, cfg.activation), seeds, run_dir.device)
        hist = run_dir.train(f"noise-{p:g}", pop, data, train_cfg)
        for row in hist.epoch_records():
            curves.append({"noise": p, **{k: v for k, v in row.items() if k != "model"}})

        def probe(_ckpt, pop=pop):
            rows = []
            for k in range(pop.size):
                model = pop.model(k)
                csr = critical_sample_ratio(
                    model, x_critical, cfg.critical_radius, steps=cfg.critical_steps, seed=cfg.seed
                )
                norms = weight_norms(model)
                rows.append({"critical_ratio": csr.ratio, **{n: getattr(norms, n) for n in NORMS}})
            return {"rows": rows}

        probes = run_dir.stage(f"probe-noise-{p:g}", probe)["rows"]
        for k, seed in enumerate(seeds):
            test_acc = [a[k] for a in hist.test_accuracy]
            best = int(np.argmax(test_acc))
            finals.append(
                {
                    "noise": p,
                    "seed": seed,
                    "epochs_to_fit": _epochs_to_fit(
                        hist.epochs, [a[k] for a in hist.train_accuracy], cfg.fit_accuracy
                    ),
                    "train_loss": hist.final("train_loss")[k],
                    "test_loss": hist.final("test_loss")[k],
                    "train_accuracy": hist.final("train_accuracy")[k],
                    "test_accuracy": test_acc[-1],
                    "peak_test_accuracy": test_acc[best],
                    "peak_test_epoch": hist.epochs[best],
                    "diverged": k in hist.diverged,
                    **probes[k],
                }
            )
        run_dir.log(
            f"  noise {p:g}: final test accuracy {np.mean(hist.final('test_accuracy')):.3f}"
        )
    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": mlp_param_count(widths, cfg.activation),
        },
        "data": {
            "dataset": clean.name,
            "n_train": clean.n_train,
            "n_test": clean.n_test,
            "num_classes": clean.num_classes,
            "corruption": cfg.corruption,
        },
        "noise_levels": list(cfg.noise_levels),
        "levels": levels,
        "fit_accuracy": cfg.fit_accuracy,
        "critical": {
            "examples": int(x_critical.shape[0]),
            "radius": cfg.critical_radius,
            "steps": cfg.critical_steps,
        },
        "epochs": cfg.epochs,
        "seeds": seeds,
        "curves": curves,
        "final": finals,
    }


# -- figures -----------------------------------------------------------------------------


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _level_colors(levels: list[float]) -> dict[float, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["plasma"]
    hi = max(levels)
    return {p: cmap(0.85 * p / hi) for p in levels}


def _curve(results: dict, noise: float, metric: str) -> tuple[list, np.ndarray]:
    rows = [r for r in results["curves"] if r["noise"] == noise]
    by_seed = group_rows(rows, "seed")
    xs = [r["epoch"] for r in next(iter(by_seed.values()))]
    return xs, np.array([[r[metric] for r in rs] for rs in by_seed.values()], dtype=float)


def _true_vs_random(results: dict, metric: str, ylabel: str, log: bool):
    fig, ax = new_figure()
    worst = max(results["noise_levels"])
    random_name = "random labels" if worst == 1.0 else f"{_pct(worst)} random labels"
    for p, color, label in ((0.0, COLORS[0], "true labels"), (worst, COLORS[3], random_name)):
        for split, style in (("train", "-"), ("test", "--")):
            xs, runs = _curve(results, p, f"{split}_{metric}")
            mean_band(ax, xs, runs, f"{split}, {label}", color, log=log)
            ax.lines[-1].set_linestyle(style)
    if log:
        ax.set_yscale("log")
    d = results["data"]
    ax.set(
        xlabel="epoch",
        ylabel=ylabel,
        title=f"{ylabel.capitalize()}: true vs random labels "
        f"({d['dataset']}, {d['n_train']} train)",
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def _noise_curves(results: dict):
    levels = results["noise_levels"]
    colors = _level_colors(levels)
    fig, axes = new_figure(ncols=2, sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for p in levels:
            xs, runs = _curve(results, p, f"{split}_accuracy")
            mean_band(ax, xs, runs, f"{_pct(p)} noise", colors[p])
        ax.set(
            xlabel="epoch",
            title=f"{split} accuracy ({split} labels: "
            f"{'corrupted' if split == 'train' else 'true'})",
        )
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Accuracy per epoch at each label-noise level ({results['data']['dataset']})")
    fig.tight_layout()
    return fig


def _per_level(results: dict, metric: str) -> tuple[list[float], list[list[float]]]:
    by = group_rows(results["final"], "noise")
    levels = results["noise_levels"]
    return levels, [[r[metric] for r in by[(p,)]] for p in levels]


def _scatter_mean(ax, levels, values, color, label, n: int, log: bool = False) -> None:
    """One dot per run, and the mean (geometric on log axes) per level as a line."""
    for p, vs in zip(levels, values, strict=True):
        vs = [v for v in vs if v is not None]
        ax.scatter([100 * p] * len(vs), vs, color=color, s=14, alpha=0.5, lw=0)
    means = [
        (np.exp(np.mean(np.log(vs))) if log else np.mean(vs)) if vs else np.nan
        for vs in ([v for v in vs if v is not None] for vs in values)
    ]
    ax.plot(
        [100 * p for p in levels], means, color=color, marker="o", lw=1.6, label=f"{label} (n={n})"
    )
    if log:
        ax.set_yscale("log")


def _noise_fit(results: dict):
    fig, (ax1, ax2) = new_figure(ncols=2)
    levels = results["noise_levels"]
    n = len(results["seeds"])  # runs per level
    for metric, label, color in (
        ("train_accuracy", "final train accuracy (corrupted labels)", COLORS[0]),
        ("test_accuracy", "final test accuracy", COLORS[1]),
        ("peak_test_accuracy", "peak test accuracy during training", COLORS[2]),
    ):
        _scatter_mean(ax1, levels, _per_level(results, metric)[1], color, label, n)
    ax1.set(xlabel="labels randomized (%)", ylabel="accuracy", title="Accuracy vs label noise")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    epochs = _per_level(results, "epochs_to_fit")[1]
    budget = results["epochs"]
    fitted = [[e for e in es if e is not None] for es in epochs]
    _scatter_mean(ax2, levels, fitted, COLORS[3], "epochs to fit, runs per level", n)
    for p, es in zip(levels, epochs, strict=True):
        missed = sum(e is None for e in es)
        if missed:
            ax2.scatter([100 * p], [budget], marker="x", color="black", s=40, zorder=3)
            ax2.annotate(
                f"{missed} not fitted",
                (100 * p, budget),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax2.set(
        xlabel="labels randomized (%)",
        ylabel="epochs",
        title=f"First epoch with train accuracy >= {results['fit_accuracy']:g}",
        ylim=(0, budget * 1.1),
    )
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig


def _noise_complexity(results: dict):
    fig, axes = new_figure(ncols=2, nrows=2, width=5.0, height=3.4)
    levels = results["noise_levels"]
    n = len(results["seeds"])  # runs per level
    c = results["critical"]
    panels = [
        (
            "critical_ratio",
            f"critical-sample ratio (r={c['radius']:g}, {c['examples']} train inputs)",
            False,
        ),
        ("l2_total", "L2 norm of all parameters", False),
        ("spectral_product", "product of layer spectral norms", True),
        ("path_norm", "L2 path norm", True),
    ]
    for ax, (metric, title, log), color in zip(axes.flat, panels, COLORS, strict=False):
        _scatter_mean(ax, levels, _per_level(results, metric)[1], color, "mean", n, log=log)
        ax.set(xlabel="labels randomized (%)", title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.suptitle("Complexity of the final models vs label noise")
    fig.tight_layout()
    return fig


def figures(results: dict) -> dict:
    return {
        "loss": _true_vs_random(results, "loss", "cross-entropy loss", log=True),
        "accuracy": _true_vs_random(results, "accuracy", "accuracy", log=False),
        "noise-curves": _noise_curves(results),
        "noise-fit": _noise_fit(results),
        "noise-complexity": _noise_complexity(results),
    }


# -- numbers -------------------------------------------------------------------------------


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
        out[f"{_pct(p)} noise: epochs to fit (median), runs fitted"] = [med, f"{fitted}/{n}"]
        out[f"{_pct(p)} noise: final train / test accuracy"] = [
            _mean(results, p, "train_accuracy"),
            _mean(results, p, "test_accuracy"),
        ]
        out[f"{_pct(p)} noise: peak test accuracy"] = _mean(results, p, "peak_test_accuracy")
        out[f"{_pct(p)} noise: critical ratio / L2 norm"] = [
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
        f"{_pct(p)}{' (true labels)' if p == 0 else ''} {fit_text(p)}" for p in levels
    )
    med0, med1 = _fit_stats(results, 0.0)[0], _fit_stats(results, top)[0]
    lines.append(
        f"Runs reaching train accuracy {results['fit_accuracy']:g} on their (corrupted) labels "
        f"within {results['epochs']} epochs, by share of randomized labels: {by_level}. "
        f"At {_pct(top)}, {_pct(changed[top])} of the {d['n_train']} training labels actually "
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
        f"{_pct(top)} noise {_mean(results, top, 'train_accuracy'):.3f} / "
        f"{_mean(results, top, 'test_accuracy'):.3f} (chance {1 / d['num_classes']:.2f})."
    )
    test_by_level = ", ".join(f"{_pct(p)} {_mean(results, p, 'test_accuracy'):.3f}" for p in levels)
    lines.append(f"Final test accuracy by noise level (mean of {n}): {test_by_level}.")
    drops = []
    for p in levels:
        if p == 0.0:
            continue
        peak, final = _mean(results, p, "peak_test_accuracy"), _mean(results, p, "test_accuracy")
        epoch = _mean(results, p, "peak_test_epoch")
        drops.append(f"{_pct(p)}: peak {peak:.3f} at epoch {epoch:.0f} -> final {final:.3f}")
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
            f"{name.capitalize()}: {lo:.3g} at 0% noise vs {hi:.3g} at {_pct(top)} "
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
            f"{', '.join(_pct(p) for p in cfg.noise_levels)} of the training labels, "
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


EXPERIMENT = Experiment(
    id="random-labels",
    homework="HW1-3",
    title="Fitting random labels",
    question="Can a network fit randomly shuffled training labels, and what happens to test "
    "accuracy, the critical-sample ratio and the weight norms as the share of random labels grows?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "loss": "training (solid) and test (dashed) cross-entropy per epoch (log scale), the "
        "same MLP on true labels and on random training labels; line = geometric mean over "
        "seeds, band = min-max",
        "accuracy": "training (solid, against the labels trained on) and test (dashed, true "
        "labels) accuracy per epoch, true vs random training labels; band = min-max over seeds",
        "noise-curves": "training and test accuracy per epoch at every share of randomized "
        "labels; line = mean over seeds, band = min-max",
        "noise-fit": "left: final training and test accuracy and the best test accuracy seen "
        "during training vs label noise (dots: runs, line: mean); right: first epoch with "
        "training accuracy above the threshold (x: runs that never got there)",
        "noise-complexity": "critical-sample ratio and weight norms of the final models vs "
        "label noise (dots: runs, line: mean, geometric on log axes)",
    },
    quick_minutes=0.7,
    full_differs="scikit-learn's 8x8 digits (1347 training examples, 50 epochs) instead of "
    "MNIST (60 000 examples, 200 epochs in the full profile); same 3x256 MLP.",
)
