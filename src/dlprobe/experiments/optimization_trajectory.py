"""HW1-2 optimization: the weights of 8 training events projected into one common 2-D basis.

Protocol: train one MLP architecture 8 times (different seeds, one population) and
collect every event's weights every 3 epochs, with its loss and accuracy at that point.
All snapshots of all events are stacked and reduced by ONE PCA (a per-run PCA would put
each trajectory in its own basis), for the first layer alone and for the whole model,
and by PCA followed by t-SNE. A "permuted twin" joins as a control: event 0's trajectory
with its hidden units permuted, i.e. the same functions at other points of weight space
(training a permuted initialization gives exactly the permuted trajectory). Then every
event's hidden units are aligned to event 0 (Hungarian matching of the final models; the
same permutation is applied to all snapshots of the event so its trajectory stays
continuous) and everything is projected again, to see which "different minima" were the
same function up to a permutation of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.base import Experiment
from dlprobe.experiments.common import check_common, group_rows, model_seeds, require, sci
from dlprobe.experiments.plotting import COLORS, new_figure
from dlprobe.measure.alignment import align_hidden_units, permute_hidden_units
from dlprobe.measure.trajectories import project_trajectories
from dlprobe.models import MLP, count_params
from dlprobe.train import Population, TrainConfig, default_loss, evaluate_population

TWIN = "twin of event 0"  # label of the permuted-twin control trajectory


@dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden_widths: tuple[int, ...] = (16, 16)  # MLP hidden layers; in/out sizes from the data
    activation: str = "relu"  # hidden activation (element-wise, so units can be permuted)
    seeds: int = 8  # training events (seeds), trained as one population
    seed: int = 0  # base seed: event i uses seed + i; the twin's permutation uses seed
    optimizer: str = "adam"  # optimizer
    lr: float = 1e-3  # learning rate
    epochs: int = 30  # passes over the training set
    batch_size: int = 64  # examples per step; 0 = full batch
    snapshot_every_epochs: int = 3  # weights, loss and accuracy collected every n epochs
    tsne_pca_components: int = 10  # PCA dimensions fed to t-SNE

    def validate(self) -> None:
        check_common(self)
        require(
            self.dataset in DATASETS,
            f"unknown dataset {self.dataset!r}; valid names: {', '.join(DATASETS)}",
        )
        require(
            len(self.hidden_widths) >= 1 and min(self.hidden_widths) >= 1,
            f"hidden_widths needs >= 1 positive width, got {self.hidden_widths}",
        )
        require(self.activation != "maxout", "maxout units come in groups; use another activation")
        require(self.seeds >= 2, f"seeds must be >= 2 to compare training events, got {self.seeds}")
        require(
            self.snapshot_every_epochs >= 1 and self.epochs % self.snapshot_every_epochs == 0,
            f"epochs ({self.epochs}) must be a multiple of snapshot_every_epochs "
            f"({self.snapshot_every_epochs} >= 1) so that the final weights are a snapshot",
        )
        require(self.tsne_pca_components >= 2, "tsne_pca_components must be >= 2")


PROFILES = {
    "smoke": Config(hidden_widths=(8,), seeds=3, epochs=4, batch_size=256, snapshot_every_epochs=2),
    "quick": Config(),
    "full": Config(dataset="mnist", epochs=30),
}


# -- weights as flat vectors -------------------------------------------------------------
def vector_to_model(template: nn.Module, vector: torch.Tensor) -> nn.Module:
    """A copy of ``template`` whose parameters are the flat vector (P,) (parameters() order)."""
    model = MLP(template.widths, template.activation).to(vector.device, vector.dtype)
    nn.utils.vector_to_parameters(vector, model.parameters())
    return model


def model_to_vector(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach()


def first_layer_slice(model: nn.Module) -> tuple[str, slice]:
    """Name and range, in the flat parameter vector, of the first Linear's weight and bias."""
    name, first = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear))
    start, stop, offset = None, 0, 0
    for pname, p in model.named_parameters():  # the flat vector's order
        if pname.startswith(f"{name}."):
            start = offset if start is None else start
            stop = offset + p.numel()
        offset += p.numel()
    return f"first layer ({first.in_features}->{first.out_features})", slice(start, stop)


def permute_trajectory(template: nn.Module, trajectory: torch.Tensor, permutations) -> torch.Tensor:
    """(T, P) -> (T, P): every snapshot with its hidden units reordered by ``permutations``."""
    return torch.stack(
        [
            model_to_vector(permute_hidden_units(vector_to_model(template, v), permutations))
            for v in trajectory
        ]
    )


def align_trajectory(
    template: nn.Module, reference_final: torch.Tensor, trajectory: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Align the trajectory's final model to ``reference_final`` (P,) and apply the same
    permutations to every snapshot of the trajectory (T, P); returns (aligned (T, P), perms)."""
    reference = vector_to_model(template, reference_final)
    _, perms = align_hidden_units(reference, vector_to_model(template, trajectory[-1]))
    return permute_trajectory(template, trajectory, perms), perms


def random_permutations(template: nn.Module, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(w, generator=gen) for w in template.widths[1:-1]]


# -- protocol ------------------------------------------------------------------------------
def run(cfg: Config, run_dir) -> dict:
    cfg.validate()
    device = run_dir.device
    data = load_dataset(cfg.dataset, device=device)
    widths = [data.input_dim, *cfg.hidden_widths, data.num_classes]
    template = MLP(widths, cfg.activation)
    seeds = model_seeds(cfg.seed, cfg.seeds)
    loss_fn = default_loss(data)
    pop = Population(lambda: MLP(widths, cfg.activation), seeds, device)
    init_metrics = [
        evaluate_population(pop, x, y, loss_fn)
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test))
    ]
    train_cfg = TrainConfig(
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        eval_every_epochs=cfg.snapshot_every_epochs,
        snapshot_every_epochs=cfg.snapshot_every_epochs,
    )
    hist = run_dir.train("events", pop, data, train_cfg)
    # (K, T, P) float64: event k's weights at every snapshot epoch
    trajectories = torch.stack(hist.snapshots, dim=1).to(torch.float64)
    run_dir.log(f"{trajectories.shape[0]} events x {trajectories.shape[1]} snapshots")

    # Metrics at each snapshot: epoch 0 measured before training, the rest from History.
    snapshots = []
    for k, seed in enumerate(seeds):
        for epoch in hist.snapshot_epochs:
            if epoch == 0:
                (tr_loss, tr_acc), (te_loss, te_acc) = (
                    (m[0][k].item(), m[1][k].item()) for m in init_metrics
                )
            else:
                i = hist.epochs.index(epoch)
                tr_loss, tr_acc = hist.train_loss[i][k], hist.train_accuracy[i][k]
                te_loss, te_acc = hist.test_loss[i][k], hist.test_accuracy[i][k]
            snapshots.append(
                {
                    "event": f"event {k}",
                    "seed": seed,
                    "epoch": epoch,
                    "train_loss": tr_loss,
                    "train_accuracy": tr_acc,
                    "test_loss": te_loss,
                    "test_accuracy": te_acc,
                }
            )
    # The twin computes event 0's functions, so its metrics are event 0's.
    snapshots += [{**r, "event": TWIN} for r in snapshots if r["event"] == "event 0"]

    # The permuted twin and the alignment of every trajectory to event 0.
    twin_perms = random_permutations(template, cfg.seed)
    twin = permute_trajectory(template, trajectories[0], twin_perms)  # (T, P)
    events = [f"event {k}" for k in range(len(seeds))] + [TWIN]
    raw = [*trajectories, twin]  # per event (T, P)
    aligned, alignment_perms = [], []
    for traj in raw:
        a, perms = align_trajectory(template, raw[0][-1], traj)
        aligned.append(a)
        alignment_perms.append(perms)

    # Aligned models must compute what the unaligned ones do.
    alignment_check = []
    x_check = data.x_test.to("cpu", torch.float64)  # the snapshots live on the CPU
    with torch.no_grad():
        for name, before, after in zip(events, raw, aligned, strict=True):
            out_before = vector_to_model(template, before[-1])(x_check)
            out_after = vector_to_model(template, after[-1])(x_check)
            alignment_check.append(
                {
                    "event": name,
                    "max_abs_output_difference": (out_before - out_after).abs().max().item(),
                    "same_predictions": bool(
                        torch.equal(out_before.argmax(1), out_after.argmax(1))
                    ),
                }
            )

    layer_name, layer = first_layer_slice(template)
    coords, variance = [], []
    views = [
        ("first layer", "pca", layer),
        ("whole model", "pca", slice(None)),
        ("whole model", "pca+tsne", slice(None)),
    ]
    for is_aligned, trajs in ((False, raw), (True, aligned)):
        for view, method, cols in views:
            proj = project_trajectories(
                [t[:, cols] for t in trajs],
                method=method,
                pca_components_before_tsne=cfg.tsne_pca_components,
                seed=cfg.seed,
            )
            evr = proj.explained_variance_ratio
            variance.append(
                {
                    "view": view,
                    "method": method,
                    "aligned": is_aligned,
                    "explained_variance_ratio": [float(v) for v in evr],
                }
            )
            for name, xy in zip(events, proj.coords, strict=True):
                coords += [
                    {
                        "view": view,
                        "method": method,
                        "aligned": is_aligned,
                        "event": name,
                        "epoch": epoch,
                        "x": float(p[0]),
                        "y": float(p[1]),
                    }
                    for epoch, p in zip(hist.snapshot_epochs, xy, strict=True)
                ]

    distances = []
    for is_aligned, trajs in ((False, raw), (True, aligned)):
        finals = torch.stack([t[-1] for t in trajs])  # (K + 1, P)
        d = torch.cdist(finals, finals)  # (K + 1, K + 1)
        distances += [
            {"aligned": is_aligned, "a": a, "b": b, "distance": d[i, j].item()}
            for i, a in enumerate(events)
            for j, b in enumerate(events)
        ]

    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(template),
            "layer": layer_name,
            "layer_params": layer.stop - layer.start,
        },
        "dataset": {"name": data.name, "n_train": data.n_train, "n_test": data.n_test},
        "seeds": seeds,
        "events": events,
        "snapshot_epochs": list(hist.snapshot_epochs),
        "snapshots": snapshots,
        "coords": coords,
        "explained_variance": variance,
        "distances": distances,
        "alignment_check": alignment_check,
        "twin_permutations": [p.tolist() for p in twin_perms],
        "alignment_permutations": [[p.tolist() for p in ps] for ps in alignment_perms],
    }


# -- figures -------------------------------------------------------------------------------
def _select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _labelled_indices(n: int) -> set[int]:
    """Snapshots whose accuracy is written next to them: a third, two thirds, the end."""
    return {n // 3, (2 * n) // 3, n - 1}


def _draw_trajectories(ax, results: dict, view: str, method: str, aligned: bool) -> None:
    rows = _select(results["coords"], view=view, method=method, aligned=aligned)
    accuracy = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    by_event = group_rows(rows, "event")
    for i, name in enumerate(results["events"]):
        pts = by_event[(name,)]
        xs, ys = [r["x"] for r in pts], [r["y"] for r in pts]
        twin = name == TWIN
        color = "black" if twin else COLORS[i % len(COLORS)]
        ax.plot(
            xs,
            ys,
            ls="--" if twin else "-",
            marker=".",
            ms=4,
            lw=1,
            color=color,
            alpha=0.8,
            label=f"{name} (permuted)" if twin else name,
        )
        ax.plot(xs[0], ys[0], "o", color=color, ms=7, mfc="white")
        ax.plot(xs[-1], ys[-1], "*", color=color, ms=13, mec="black" if not twin else "white")
        if method == "pca+tsne":
            continue
        labelled = {len(pts) - 1} if twin else _labelled_indices(len(pts))
        for j in sorted(labelled):
            ax.annotate(
                f"{accuracy[(name, pts[j]['epoch'])]:.2f}",
                (xs[j], ys[j]),
                xytext=(4, 4 if not twin else -10),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
    ax.plot([], [], "o", color="gray", mfc="white", label="start (epoch 0)")
    ax.plot([], [], "*", color="gray", ms=11, label=f"end (epoch {results['snapshot_epochs'][-1]})")
    if method == "pca":
        evr = _variance(results, view, method, aligned)
        ax.set(xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)")
        ax.set(ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)")
    else:
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")


def _variance(results: dict, view: str, method: str, aligned: bool) -> list[float]:
    row = _select(results["explained_variance"], view=view, method=method, aligned=aligned)[0]
    return row["explained_variance_ratio"]


def _n_text(results: dict) -> str:
    k = len(results["seeds"])
    t = len(results["snapshot_epochs"])
    return f"n={k} events + twin, {t} snapshots each"


def _distance_matrix(results: dict, aligned: bool) -> np.ndarray:
    names = results["events"]
    index = {n: i for i, n in enumerate(names)}
    d = np.zeros((len(names), len(names)))
    for r in _select(results["distances"], aligned=aligned):
        d[index[r["a"]], index[r["b"]]] = r["distance"]
    return d


def figures(results: dict) -> dict:
    figs = {}
    model = results["model"]
    views = {
        "first-layer": ("first layer", f"{model['layer']}, {model['layer_params']} params"),
        "whole-model": ("whole model", f"whole model, {model['params']} params"),
    }
    for key, (view, what) in views.items():
        for aligned in (False, True):
            fig, ax = new_figure(width=8.5, height=5.5)
            _draw_trajectories(ax, results, view, "pca", aligned)
            state = "hidden units aligned to event 0" if aligned else "as trained"
            ax.set_title(
                f"PCA of {what} ({state}); one basis for all snapshots\n"
                f"{_n_text(results)}; labels: training accuracy",
                fontsize=10,
            )
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            figs[f"pca-{key}{'-aligned' if aligned else ''}"] = fig

    fig, axes = new_figure(ncols=2, width=6.0, height=5.0)
    for ax, aligned in zip(axes, (False, True), strict=True):
        _draw_trajectories(ax, results, "whole model", "pca+tsne", aligned)
        ax.set_title("hidden units aligned to event 0" if aligned else "as trained", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"PCA then t-SNE of all whole-model snapshots ({_n_text(results)})")
    figs["pca-tsne"] = fig

    names = [n.replace("twin of event 0", "twin of 0") for n in results["events"]]
    fig, axes = new_figure(ncols=2, width=5.6, height=5.0)
    vmax = max(_distance_matrix(results, False).max(), 1e-12)
    for ax, aligned in zip(axes, (False, True), strict=True):
        d = _distance_matrix(results, aligned)
        im = ax.imshow(d, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.grid(False)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{d[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if d[i, j] < 0.6 * vmax else "black",
                )
        ax.set_title("aligned to event 0" if aligned else "as trained", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="L2 distance between final weights")
    fig.suptitle(
        f"Distances between final weight vectors (n={len(results['seeds'])} events + twin)"
    )
    figs["final-distances"] = fig
    return figs


# -- numbers -------------------------------------------------------------------------------
def _finals(results: dict, metric: str) -> list[float]:
    last = results["snapshot_epochs"][-1]
    return [r[metric] for r in results["snapshots"] if r["epoch"] == last and r["event"] != TWIN]


def _event_distances(results: dict, aligned: bool) -> dict:
    """Distances between distinct events (pairs), from event 0, and of the twin to event 0."""
    k = len(results["seeds"])
    d = _distance_matrix(results, aligned)
    return {
        "pairs": [d[i, j] for i in range(k) for j in range(i + 1, k)],
        "to_event_0": [d[0, j] for j in range(1, k)],
        "twin": d[0, k],
    }


def summarize(results: dict) -> dict:
    before, after = _event_distances(results, False), _event_distances(results, True)
    return {
        "final train accuracy, mean over events": float(
            np.mean(_finals(results, "train_accuracy"))
        ),
        "final test accuracy, mean over events": float(np.mean(_finals(results, "test_accuracy"))),
        "PCA variance in 2 components, whole model: as trained / aligned": [
            float(sum(_variance(results, "whole model", "pca", a)[:2])) for a in (False, True)
        ],
        "PCA variance in 2 components, first layer: as trained / aligned": [
            float(sum(_variance(results, "first layer", "pca", a)[:2])) for a in (False, True)
        ],
        "median L2 distance between events: as trained / aligned": [
            float(np.median(before["pairs"])),
            float(np.median(after["pairs"])),
        ],
        "twin's L2 distance to event 0: as trained / aligned": [before["twin"], after["twin"]],
        "max |output change| from alignment": max(
            r["max_abs_output_difference"] for r in results["alignment_check"]
        ),
    }


def observations(results: dict) -> list[str]:
    k = len(results["seeds"])
    t = len(results["snapshot_epochs"])
    train, test = _finals(results, "train_accuracy"), _finals(results, "test_accuracy")
    before, after = _event_distances(results, False), _event_distances(results, True)
    med_b, med_a = np.median(before["to_event_0"]), np.median(after["to_event_0"])
    pairs_b = np.median(before["pairs"])
    same = sum(d < 0.01 * pairs_b for d in after["pairs"])
    check = results["alignment_check"]
    lines = [
        f"After {results['snapshot_epochs'][-1]} epochs the {k} events reach training accuracy "
        f"{min(train):.3f}-{max(train):.3f} (test {min(test):.3f}-{max(test):.3f}).",
        f"One PCA basis fitted on all {(k + 1) * t} snapshots ({k} events and the twin, {t} "
        f"each): 2 components explain "
        f"{100 * sum(_variance(results, 'whole model', 'pca', False)[:2]):.1f}% of the "
        f"variance of the whole model and "
        f"{100 * sum(_variance(results, 'first layer', 'pca', False)[:2]):.1f}% of the "
        "first layer's.",
        f"As trained, the final weights of the {k} events are {min(before['pairs']):.2f}-"
        f"{max(before['pairs']):.2f} apart in L2 (median {pairs_b:.2f} over "
        f"{len(before['pairs'])} pairs); aligning hidden units to event 0 brings the median "
        f"distance to event 0 from {med_b:.2f} to {med_a:.2f} "
        f"({100 * (med_a / med_b - 1):+.0f}%) over {k - 1} events.",
        f"The permuted twin of event 0 computes the same function but lies {before['twin']:.2f} "
        f"from it as trained (the median distance between events is {pairs_b:.2f}); after "
        f"alignment it lies {sci(after['twin'])} from it.",
        f"{same} of the {len(after['pairs'])} pairs of distinct events are closer than 1% of "
        "the median distance after alignment, i.e. the same minimum up to a permutation of "
        "units; the others are different points even after removing the permutation symmetry.",
        f"Alignment changes no model's function: the largest output change over {len(check)} "
        f"final models is {sci(max(r['max_abs_output_difference'] for r in check))}, and "
        f"{sum(r['same_predictions'] for r in check)} of {len(check)} predict the same classes.",
    ]
    return lines


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["dataset"]
    return [
        (
            "model",
            f"MLP {'-'.join(map(str, m['widths']))}, {m['activation']} ({m['params']} params; "
            f"{m['layer']}: {m['layer_params']} params)",
        ),
        ("data", f"{d['name']}: {d['n_train']} training / {d['n_test']} test examples"),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}"),
        ("epochs", f"{cfg.epochs}; weights, loss and accuracy every {cfg.snapshot_every_epochs}"),
        (
            "events",
            f"{cfg.seeds} seeds ({cfg.seed}..{cfg.seed + cfg.seeds - 1}) trained as one "
            f"population, plus event 0 with its hidden units randomly permuted (seed {cfg.seed})",
        ),
        (
            "projection",
            "one PCA fitted on all snapshots stacked (first layer; whole model); PCA to "
            f"{cfg.tsne_pca_components} dims then t-SNE",
        ),
        (
            "alignment",
            "each event's final model matched to event 0's layer by layer (Hungarian matching "
            "of incoming weights and bias); the same permutation applied to all its snapshots",
        ),
    ]


EXPERIMENT = Experiment(
    id="optimization-trajectory",
    homework="HW1-2",
    title="Optimization trajectories of 8 training events",
    question="Where do 8 trainings of the same network go in weight space, and are their "
    "'different' minima different functions or the same one up to a permutation of units?",
    config_cls=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    summarize=summarize,
    observations=observations,
    settings=settings,
    captions={
        "pca-first-layer": "first layer's weights at every snapshot of every event, projected "
        "by one PCA fitted on all of them; o start, * end, numbers = training accuracy",
        "pca-whole-model": "all weights at every snapshot of every event, one common PCA; "
        "the dashed black trajectory is event 0 with its hidden units permuted",
        "pca-first-layer-aligned": "as pca-first-layer after permuting every event's hidden "
        "units to match event 0 (the twin now lies on event 0)",
        "pca-whole-model-aligned": "as pca-whole-model after aligning hidden units to event 0",
        "pca-tsne": "PCA to 10 dimensions then t-SNE of all whole-model snapshots, as trained "
        "and aligned; t-SNE keeps neighbourhoods, not distances",
        "final-distances": "L2 distance between the final weight vectors of every pair of "
        "events, as trained and after alignment; the twin's distance to event 0 drops to 0",
    },
    quick_minutes=0.1,
    full_differs="digits (8x8 images) with a 64-16-16-10 MLP instead of MNIST; full uses "
    "MNIST with a 784-16-16-10 MLP.",
)
