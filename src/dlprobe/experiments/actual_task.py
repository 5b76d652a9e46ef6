"""HW1-1 deep vs shallow on a classification task: CNNs and MLPs of equal parameter count.

Protocol: on one dataset, build MLPs with 1, 3 and 6 hidden layers and CNNs with 1, 2 and
3 conv layers, every model solved for the same parameter budget (all counts within 2% of
each other); train each as a population of seeds with the same optimizer and record the
training and test loss and accuracy after every epoch. mnist1d (the default) is where the
two families differ most: its signals are shifted and scaled, which convolutions absorb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from dlprobe.data import DATASETS, load_dataset
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
from dlprobe.models import (
    build_model,
    count_params,
    describe_model,
    mlp_param_count,
    mlp_widths_for_budget,
    solve_width,
)
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

# Parameters per model when param_budget is 0, by dataset: small enough for a laptop,
# large enough that every depth of both families fits (checked by a test).
DEFAULT_BUDGETS = {
    "mnist1d": 5000,
    "digits": 3000,
    "mnist": 30000,
    "fashion-mnist": 30000,
    "cifar10": 100000,
}
MAX_SPREAD = 0.02  # largest allowed (max - min) / max of the parameter counts


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"  # classification dataset (see `dlprobe datasets`)
    mlp_depths: tuple[int, ...] = (1, 3, 6)  # hidden layers of each MLP
    cnn_depths: tuple[int, ...] = (1, 2, 3)  # conv layers of each CNN (then one linear layer)
    param_budget: int = 0  # parameters per model (matched within 2%); 0 = dataset default
    kernel_size: int = 5  # CNN kernel width (1-D) or side (2-D), in input samples
    activation: str = "relu"  # hidden activation of both families
    train_subset: int = 0  # training examples used; 0 = the whole training split
    seeds: int = 3  # training runs per model, trained as one population
    seed: int = 0  # base seed: run i uses seed + i
    optimizer: str = "adam"  # optimizer
    lr: float = 3e-3  # learning rate
    epochs: int = 20  # passes over the training set
    batch_size: int = 100  # examples per step; 0 = full batch

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            len(self.mlp_depths) + len(self.cnn_depths) >= 2,
            "give at least two models (mlp_depths and cnn_depths together)",
        )
        for name in ("mlp_depths", "cnn_depths"):
            depths = getattr(self, name)
            require(min(depths, default=1) >= 1, f"{name} must be >= 1, got {depths}")
            require(len(set(depths)) == len(depths), f"{name} has repeated depths: {depths}")
        require(self.param_budget >= 0, f"param_budget must be >= 0, got {self.param_budget}")
        require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"kernel_size must be odd and >= 1 (same-size padding), got {self.kernel_size}",
        )
        require(self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}")
        require(
            self.batch_size <= (self.train_subset or self.batch_size),
            f"batch_size must be <= train_subset ({self.train_subset}), got {self.batch_size}",
        )

    def budget(self) -> int:
        return self.param_budget or DEFAULT_BUDGETS[self.dataset]


PROFILES = {
    "smoke": Config(seeds=2, epochs=2, train_subset=400),
    "quick": Config(),
    "full": Config(dataset="mnist", seeds=5, epochs=30, lr=1e-3),
}


def cnn_channels_for_budget(
    input_shape: list[int],
    num_classes: int,
    depth: int,
    target: int,
    activation: str = "relu",
    kernel_size: int = 5,
) -> list[int]:
    """Channels ``[c, ..., c, v]`` of a ``depth``-layer CNN with about ``target`` parameters.

    Like ``mlp_widths_for_budget``: a common channel count c is solved first, then the
    last layer's v is tuned for common counts c-3 ... c+3 (a count of 1-conv or 2-conv
    nets jumps by hundreds per channel), and the closest total wins. Models are
    counted on the meta device, so no large tensor is ever allocated.
    """

    def count(channels: list[int]) -> int:
        spec = _cnn_spec(input_shape, channels, num_classes, activation, kernel_size)
        with torch.device("meta"):
            return count_params(build_model(spec))

    c = solve_width(lambda w: count([w] * depth), target, max_width=4096)
    candidates = []
    for base in range(max(1, c - 3), c + 4):
        head = [base] * (depth - 1)
        v = solve_width(lambda v, head=head: count([*head, v]), target, max_width=4096)
        candidates.append([*head, v])
    return min(candidates, key=lambda chs: (abs(count(chs) - target), abs(chs[-1] - chs[0])))


def _cnn_spec(input_shape, channels, num_classes, activation, kernel_size) -> dict:
    return {
        "kind": "cnn",
        "input_shape": list(input_shape),
        "channels": list(channels),
        "num_classes": num_classes,
        "activation": activation,
        "kernel_size": kernel_size,
    }


def model_specs(cfg: Config, input_shape: list[int], num_classes: int) -> list[dict]:
    """One record per model: label, family, depth, buildable spec and parameter count.

    Raises:
        DlprobeError: some depth cannot meet the budget, or the counts spread over more
            than 2%.
    """
    target = cfg.budget()
    n_in = int(np.prod(input_shape))
    models = []
    for depth in cfg.cnn_depths:
        channels = cnn_channels_for_budget(
            input_shape, num_classes, depth, target, cfg.activation, cfg.kernel_size
        )
        spec = _cnn_spec(input_shape, channels, num_classes, cfg.activation, cfg.kernel_size)
        with torch.device("meta"):
            params = count_params(build_model(spec))
        label = f"CNN {depth} conv ({'-'.join(map(str, channels))} ch)"
        models.append(
            {"label": label, "family": "CNN", "depth": depth, "spec": spec, "params": params}
        )
    for depth in cfg.mlp_depths:
        widths = mlp_widths_for_budget(n_in, num_classes, depth, target, cfg.activation)
        spec = {"kind": "mlp", "widths": widths, "activation": cfg.activation}
        label = f"MLP {depth} hidden ({'-'.join(map(str, widths[1:-1]))})"
        models.append(
            {
                "label": label,
                "family": "MLP",
                "depth": depth,
                "spec": spec,
                "params": mlp_param_count(widths, cfg.activation),
            }
        )
    counts = [m["params"] for m in models]
    spread = (max(counts) - min(counts)) / max(counts)
    listing = ", ".join(f"{m['label']}: {m['params']}" for m in models)
    require(
        spread <= MAX_SPREAD,
        f"with a budget of {target} parameters the models have {listing} parameters, a spread "
        f"of {spread:.1%} > {MAX_SPREAD:.0%}; try another param_budget",
    )
    return models


def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    data = load_dataset(cfg.dataset, device=run_dir.device)
    if cfg.train_subset:
        data = data.subset_train(cfg.train_subset, seed=cfg.seed)
    models = model_specs(cfg, list(data.input_shape), data.num_classes)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size
    )
    run_dir.log(
        f"{cfg.dataset}: {data.n_train} train / {data.n_test} test; "
        + "; ".join(f"{m['label']} {m['params']} params" for m in models)
    )
    curves, finals = [], []
    for m in models:
        pop = Population(lambda spec=m["spec"]: build_model(spec), seeds, run_dir.device)
        # epoch 0: the untrained models, so every curve starts at chance level
        start = {}
        for split, x, y in (
            ("train", data.x_train, data.y_train),
            ("test", data.x_test, data.y_test),
        ):
            loss, acc = evaluate_population(pop, x, y, default_loss(data))
            start[f"{split}_loss"], start[f"{split}_accuracy"] = loss.tolist(), acc.tolist()
        key = f"{m['family'].lower()}-{m['depth']}"
        hist = run_dir.train(key, pop, data, train_cfg)
        for k, seed in enumerate(seeds):
            curves.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "seed": seed,
                    "epoch": 0,
                    **{name: values[k] for name, values in start.items()},
                }
            )
        for row in hist.epoch_records():
            curves.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "seed": row["seed"],
                    "epoch": row["epoch"],
                    **{
                        name: row[name]
                        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
                    },
                }
            )
        for k, seed in enumerate(seeds):
            finals.append(
                {
                    "model": m["label"],
                    "family": m["family"],
                    "depth": m["depth"],
                    "params": m["params"],
                    "seed": seed,
                    **{
                        name: hist.final(name)[k]
                        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
                    },
                    "diverged": k in hist.diverged,
                }
            )
    return {
        "dataset": {
            "name": cfg.dataset,
            "n_train": data.n_train,
            "n_test": data.n_test,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "budget": cfg.budget(),
        "models": models,
        "curves": curves,
        "final": finals,
        "seeds": seeds,
    }


def _style(model: dict) -> str:
    return "-" if model["family"] == "CNN" else "--"


def figures(results: dict) -> dict:
    figs = {}
    by_model = group_rows(results["curves"], "model")
    ds = results["dataset"]["name"]
    panels = [
        ("train-loss", "train_loss", "training loss (cross-entropy)", True),
        ("train-accuracy", "train_accuracy", "training accuracy", False),
        ("test-accuracy", "test_accuracy", "test accuracy", False),
    ]
    for name, metric, ylabel, log in panels:
        fig, ax = new_figure(width=7.5, height=5.5)
        for i, m in enumerate(results["models"]):
            rows = by_model[(m["label"],)]
            xs, runs = _series(rows, metric)
            mean_band(ax, xs, runs, f"{m['label']}, {m['params']} params", COLORS[i], log=log)
            ax.lines[-1].set_linestyle(_style(m))
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            xlabel="epoch",
            ylabel=ylabel,
            title=f"{ylabel.capitalize()} on {ds} (CNN solid, MLP dashed; band: min-max)",
        )
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        fig.tight_layout()
        figs[name] = fig
    return figs


def _series(rows: list[dict], metric: str) -> tuple[list[int], np.ndarray]:
    """(epochs, (n_seeds, n_epochs)) of one model's metric, epochs sorted."""
    by_seed = group_rows(sorted(rows, key=lambda r: r["epoch"]), "seed")
    xs = [r["epoch"] for r in next(iter(by_seed.values()))]
    return xs, np.array([[r[metric] for r in rs] for rs in by_seed.values()], dtype=float)


def _final_stats(results: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """model label -> metric -> (mean, std) over seeds of the final value."""
    out = {}
    for (label,), rows in group_rows(results["final"], "model").items():
        out[label] = {
            name: mean_std(r[name] for r in rows)
            for name in ("train_loss", "train_accuracy", "test_accuracy")
        }
    return out


def summarize(results: dict) -> dict:
    n = len(results["seeds"])
    out = {}
    for label, s in _final_stats(results).items():
        out[f"{label}: final train loss / train acc / test acc (mean of {n})"] = [
            s["train_loss"][0],
            s["train_accuracy"][0],
            s["test_accuracy"][0],
        ]
    return out


def observations(results: dict) -> list[str]:
    models = results["models"]
    n = len(results["seeds"])
    stats = _final_stats(results)
    params = [m["params"] for m in models]
    lines = [
        f"All {len(models)} models have {min(params)}-{max(params)} parameters (spread "
        f"{100 * (max(params) - min(params)) / max(params):.1f}%), "
        f"trained on {results['dataset']['name']} with {n} seeds each."
    ]
    for m in models:
        s = stats[m["label"]]
        lines.append(
            f"{m['label']}: final training loss {s['train_loss'][0]:.3f}, training accuracy "
            f"{s['train_accuracy'][0]:.3f}, test accuracy {s['test_accuracy'][0]:.3f} "
            f"± {s['test_accuracy'][1]:.3f} (mean ± sd over {n} seeds)."
        )
    test = {m["label"]: stats[m["label"]]["test_accuracy"][0] for m in models}
    best = max(models, key=lambda m: test[m["label"]])
    lines.append(
        f"Highest mean test accuracy: {best['label']} ({test[best['label']]:.3f}); "
        f"lowest: {min(test, key=test.get)} ({min(test.values()):.3f})."
    )
    families = group_rows(models, "family")
    if len(families) == 2:
        top = {f: max(ms, key=lambda m: test[m["label"]]) for (f,), ms in families.items()}
        cnn, mlp = top["CNN"], top["MLP"]
        lines.append(
            f"Best of each family: CNN {test[cnn['label']]:.3f} ({cnn['depth']} conv) vs MLP "
            f"{test[mlp['label']]:.3f} ({mlp['depth']} hidden): a gap of "
            f"{100 * (test[cnn['label']] - test[mlp['label']]):+.1f} points for the CNN."
        )
    for (family,), ms in families.items():
        if len(ms) < 2:
            continue
        ms = sorted(ms, key=lambda m: m["depth"])
        accs = [test[m["label"]] for m in ms]
        trend = (
            "rises"
            if all(b > a for a, b in zip(accs, accs[1:], strict=False))
            else "falls"
            if all(b < a for a, b in zip(accs, accs[1:], strict=False))
            else "is not monotonic"
        )
        by_depth = ", ".join(f"{m['depth']}: {a:.3f}" for m, a in zip(ms, accs, strict=True))
        lines.append(f"{family}: test accuracy {trend} with depth ({by_depth}).")
    return lines + diverged_lines(results["final"])


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    ds = results["dataset"]
    return [
        (
            "models",
            "; ".join(
                f"{describe_model(m['spec'])} ({m['params']} params)" for m in results["models"]
            ),
        ),
        ("parameter budget", f"{results['budget']} (all counts within {MAX_SPREAD:.0%})"),
        ("CNN", f"conv kernel {cfg.kernel_size}, max-pool 2 after each conv, one linear layer"),
        (
            "data",
            f"{ds['name']}: {ds['n_train']} training / {ds['n_test']} test examples, "
            f"input {'x'.join(map(str, ds['input_shape']))}, {ds['num_classes']} classes",
        ),
        (
            "optimizer",
            f"{cfg.optimizer}, lr {cfg.lr:g}, batch "
            f"{'full' if cfg.batch_size == 0 else cfg.batch_size}, cross-entropy loss",
        ),
        ("epochs", str(cfg.epochs)),
        (
            "seeds",
            f"{cfg.seeds} per model (seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}), "
            "trained as one population",
        ),
    ]


EXPERIMENT = Experiment(
    id="actual-task",
    homework="HW1-1",
    title="Deep vs shallow on a classification task",
    question="With the same number of parameters, do deeper networks, and CNNs rather than "
    "MLPs, learn a real classification task better?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "train-loss": "training loss per epoch (log scale) of every model; line = geometric "
        "mean over seeds, band = min-max; CNNs solid, MLPs dashed",
        "train-accuracy": "training accuracy per epoch; line = mean over seeds, band = min-max",
        "test-accuracy": "test accuracy per epoch; line = mean over seeds, band = min-max",
    },
    quick_minutes=0.6,
    full_differs="mnist1d (embedded, 1-D signals) and 20 epochs with 3 seeds instead of the "
    "homework's MNIST; the full profile trains on MNIST with 5 seeds.",
)
