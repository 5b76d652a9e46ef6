"""HW1-2 optimization: the weights of 8 training events projected into one common 2-D basis.

Protocol: train one MLP 8 times (seeds of one population), keeping the weights, loss and
accuracy every few epochs. ONE PCA (per-run PCAs would not share a basis) of all snapshots
stacked, for the first layer and the whole model, and PCA then t-SNE. Control: a "permuted
twin", event 0 with its hidden units permuted (the same functions elsewhere in weight
space). Then each event's hidden units are aligned to event 0 (Hungarian matching of the
final models, applied to all its snapshots) and everything is projected again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from dlprobe.experiments.kit import (
    COLORS,
    Activation,
    Bound,
    DatasetName,
    Experiment,
    Notes,
    PosInt,
    RunContext,
    Seed,
    check_batch_sizes,
    check_classifier_fits,
    data_record,
    group_rows,
    mlp_population,
    n_train_of,
    new_figure,
    require,
    sci,
)
from dlprobe.experiments.kit.trajectories import (
    check_snapshots,
    initial_metrics,
    model_to_vector,
    snapshot_metrics,
    vector_to_model,
    weight_trajectories,
)
from dlprobe.measure.alignment import align_hidden_units, permute_hidden_units
from dlprobe.measure.trajectories import project_trajectories
from dlprobe.models import MLP, count_params
from dlprobe.train import TrainConfig

TWIN = "twin of event 0"  # label of the permuted-twin control trajectory
VIEWS = (("first layer", "pca"), ("whole model", "pca"), ("whole model", "pca+tsne"))


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # classification dataset (see `dlprobe datasets`)
    hidden_widths: tuple[PosInt, ...] = (16, 16)  # MLP hidden layers; in/out sizes from the data
    activation: Activation = "relu"  # hidden activation (element-wise, so units can be permuted)
    seeds: Annotated[int, Bound(ge=2)] = 8  # training events (seeds), trained as one population
    seed: Seed = 0  # base seed: event i uses seed + i; the twin's permutation uses seed
    # weights, loss and accuracy are kept every snapshot_every_epochs (a multiple of
    # eval_every_epochs); epochs must be a multiple of it so the final weights are a snapshot
    train: TrainConfig = TrainConfig(epochs=30, eval_every_epochs=3, snapshot_every_epochs=3)
    tsne_pca_components: Annotated[int, Bound(ge=2)] = 10  # PCA dimensions fed to t-SNE

    def check(self) -> None:
        require(len(self.hidden_widths) >= 1, "hidden_widths needs >= 1 width")
        require(self.activation != "maxout", "maxout units come in groups; use another activation")
        check_snapshots(self.train)
        check_batch_sizes([self.train.batch_size], n_train_of(self.dataset), "train.batch_size")
        check_classifier_fits(self.dataset, self.hidden_widths, self.activation, self.seeds)


PROFILES = {
    "smoke": {
        "hidden_widths": (8,),
        "seeds": 3,
        "train.epochs": 4,
        "train.batch_size": 256,
        "train.eval_every_epochs": 2,
        "train.snapshot_every_epochs": 2,
    },
    "full": {"dataset": "mnist"},
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    widths = [data.input_dim, *cfg.hidden_widths, data.num_classes]
    template = MLP(widths, cfg.activation)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    start = initial_metrics(pop, data)
    hist = ctx.train("events", pop, data, cfg.train)
    trajectories = weight_trajectories(hist).to(torch.float64)  # (K, T, P)
    ctx.log(f"{trajectories.shape[0]} events x {trajectories.shape[1]} snapshots")
    events = [f"event {k}" for k in range(pop.size)] + [TWIN]
    at = snapshot_metrics(hist, start)
    snapshots = [
        {"event": f"event {k}", "seed": s, "epoch": e, **{m: v[k] for m, v in at[e].items()}}
        for k, s in enumerate(pop.seeds)
        for e in hist.snapshot_epochs
    ]
    # The twin computes event 0's functions, so its metrics are event 0's.
    snapshots += [{**r, "event": TWIN} for r in snapshots if r["event"] == "event 0"]

    twin_perms = random_permutations(template, cfg.seed)
    raw = [*trajectories, permute_trajectory(template, trajectories[0], twin_perms)]  # (T, P) each
    pairs = [align_trajectory(template, raw[0][-1], t) for t in raw]  # to event 0's final model
    aligned, alignment_perms = [a for a, _ in pairs], [p for _, p in pairs]
    layer_name, layer = first_layer_slice(template)
    return {
        "model": {
            "widths": widths,
            "activation": cfg.activation,
            "params": count_params(template),
            "layer": layer_name,
            "layer_params": layer.stop - layer.start,
        },
        "dataset": data_record(data),
        "seeds": pop.seeds,
        "events": events,
        "snapshot_epochs": list(hist.snapshot_epochs),
        "snapshots": snapshots,
        **projections(cfg, raw, aligned, layer, events, hist.snapshot_epochs),
        "distances": final_distances(raw, aligned, events),
        "alignment_check": alignment_check(template, raw, aligned, events, data.x_test),
        "twin_permutations": [p.tolist() for p in twin_perms],
        "alignment_permutations": [[p.tolist() for p in ps] for ps in alignment_perms],
    }


def first_layer_slice(model: MLP) -> tuple[str, slice]:
    """Name and range, in the flat parameter vector, of the first layer's weight and bias."""
    first = model.linears[0]  # its weight and bias lead the flat vector (Flatten has none)
    size = first.weight.numel() + first.bias.numel()
    return f"first layer ({first.in_features}->{first.out_features})", slice(0, size)


def permute_trajectory(template: MLP, trajectory: torch.Tensor, permutations) -> torch.Tensor:
    """(T, P) -> (T, P): every snapshot with its hidden units reordered by ``permutations``."""
    models = (permute_hidden_units(vector_to_model(template, v), permutations) for v in trajectory)
    return torch.stack([model_to_vector(m) for m in models])


def align_trajectory(
    template: MLP, reference_final: torch.Tensor, trajectory: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Align the trajectory's final model to ``reference_final`` (P,) and apply the same
    permutations to every snapshot of the trajectory (T, P); returns (aligned (T, P), perms)."""
    reference = vector_to_model(template, reference_final)
    _, perms = align_hidden_units(reference, vector_to_model(template, trajectory[-1]))
    return permute_trajectory(template, trajectory, perms), perms


def random_permutations(template: MLP, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(w, generator=gen) for w in template.widths[1:-1]]


def alignment_check(template: MLP, raw, aligned, events: list[str], x: torch.Tensor) -> list:
    """Per event: an aligned final model must compute what the unaligned one does."""
    x = x.to("cpu", torch.float64)  # the snapshots live on the CPU
    rows = []
    with torch.no_grad():
        for name, before, after in zip(events, raw, aligned, strict=True):
            out = [vector_to_model(template, t[-1])(x) for t in (before, after)]  # (n_test, C)
            change = (out[0] - out[1]).abs().max().item()
            same = bool(torch.equal(out[0].argmax(1), out[1].argmax(1)))
            rows.append(
                {"event": name, "max_abs_output_difference": change, "same_predictions": same}
            )
    return rows


def projections(cfg: Config, raw, aligned, layer: slice, events: list[str], epochs) -> dict:
    """2-D coordinates of every snapshot in each view, as trained and aligned; one basis each."""
    coords, variance = [], []
    for is_aligned, trajs in ((False, raw), (True, aligned)):
        for view, method in VIEWS:
            cols = layer if view == "first layer" else slice(None)
            proj = project_trajectories(
                [t[:, cols] for t in trajs],
                method=method,
                pca_components_before_tsne=cfg.tsne_pca_components,
                seed=cfg.seed,
            )
            tag = {"view": view, "method": method, "aligned": is_aligned}
            evr = [float(v) for v in proj.explained_variance_ratio]
            variance.append({**tag, "explained_variance_ratio": evr})
            coords += [
                {**tag, "event": name, "epoch": epoch, "x": float(p[0]), "y": float(p[1])}
                for name, xy in zip(events, proj.coords, strict=True)
                for epoch, p in zip(epochs, xy, strict=True)
            ]
    return {"coords": coords, "explained_variance": variance}


def final_distances(raw, aligned, events: list[str]) -> list[dict]:
    rows = []
    for is_aligned, trajs in ((False, raw), (True, aligned)):
        finals = torch.stack([t[-1] for t in trajs])  # (K + 1, P)
        d = torch.cdist(finals, finals)  # (K + 1, K + 1)
        rows += [
            {"aligned": is_aligned, "a": a, "b": b, "distance": d[i, j].item()}
            for i, a in enumerate(events)
            for j, b in enumerate(events)
        ]
    return rows


def select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def explained_variance(results: dict, view: str, method: str, aligned: bool) -> list[float]:
    row = select(results["explained_variance"], view=view, method=method, aligned=aligned)[0]
    return row["explained_variance_ratio"]


def distance_matrix(results: dict, aligned: bool) -> np.ndarray:
    index = {n: i for i, n in enumerate(results["events"])}
    d = np.zeros((len(index), len(index)))
    for r in select(results["distances"], aligned=aligned):
        d[index[r["a"]], index[r["b"]]] = r["distance"]
    return d


def _draw_trajectories(ax, results: dict, view: str, method: str, aligned: bool) -> None:
    rows = select(results["coords"], view=view, method=method, aligned=aligned)
    accuracy = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    by_event = group_rows(rows, "event")
    for i, name in enumerate(results["events"]):
        pts = by_event[(name,)]
        xs, ys = [r["x"] for r in pts], [r["y"] for r in pts]
        twin = name == TWIN
        color = "black" if twin else COLORS[i % len(COLORS)]
        label = f"{name} (permuted)" if twin else name
        ax.plot(xs, ys, ls="--" if twin else "-", marker=".", ms=4, lw=1, color=color,
                alpha=0.8, label=label)  # fmt: skip
        ax.plot(xs[0], ys[0], "o", color=color, ms=7, mfc="white")
        ax.plot(xs[-1], ys[-1], "*", color=color, ms=13, mec="white" if twin else "black")
        if method == "pca+tsne":
            continue
        # accuracy written at a third, two thirds and the end (the twin's: at the end only)
        n = len(pts)
        for j in sorted({n - 1} if twin else {n // 3, (2 * n) // 3, n - 1}):
            acc = accuracy[(name, pts[j]["epoch"])]
            ax.annotate("-" if acc is None else f"{acc:.2f}", (xs[j], ys[j]),
                        xytext=(4, -10 if twin else 4), textcoords="offset points", fontsize=7,
                        color=color)  # fmt: skip
    ax.plot([], [], "o", color="gray", mfc="white", label="start (epoch 0)")
    ax.plot([], [], "*", color="gray", ms=11, label=f"end (epoch {results['snapshot_epochs'][-1]})")
    if method == "pca":
        evr = explained_variance(results, view, method, aligned)
        ax.set(xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)")
        ax.set(ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)")
    else:
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")


def figures(results: dict) -> dict:
    figs = {}
    model = results["model"]
    k, t = len(results["seeds"]), len(results["snapshot_epochs"])
    n_text = f"n={k} events + twin, {t} snapshots each"
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
                f"{n_text}; labels: training accuracy",
                fontsize=10,
            )
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            figs[f"pca-{key}{'-aligned' if aligned else ''}"] = fig

    fig, axes = new_figure(ncols=2, width=6.0, height=5.0)
    for ax, aligned in zip(axes, (False, True), strict=True):
        _draw_trajectories(ax, results, "whole model", "pca+tsne", aligned)
        ax.set_title("hidden units aligned to event 0" if aligned else "as trained", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"PCA then t-SNE of all whole-model snapshots ({n_text})")
    figs["pca-tsne"] = fig

    names = [n.replace("twin of event 0", "twin of 0") for n in results["events"]]
    fig, axes = new_figure(ncols=2, width=5.6, height=5.0)
    vmax = max(distance_matrix(results, False).max(), 1e-12)
    for ax, aligned in zip(axes, (False, True), strict=True):
        d = distance_matrix(results, aligned)  # (K + 1, K + 1)
        im = ax.imshow(d, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.grid(False)
        for (i, j), v in np.ndenumerate(d):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6,
                    color="white" if v < 0.6 * vmax else "black")  # fmt: skip
        ax.set_title("aligned to event 0" if aligned else "as trained", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="L2 distance between final weights")
    fig.suptitle(f"Distances between final weight vectors (n={k} events + twin)")
    figs["final-distances"] = fig
    return figs


def _event_distances(results: dict, aligned: bool) -> dict:
    """Distances between distinct events (pairs), from event 0, and of the twin to event 0."""
    k = len(results["seeds"])
    d = distance_matrix(results, aligned)
    return {
        "pairs": [d[i, j] for i in range(k) for j in range(i + 1, k)],
        "to_event_0": [d[0, j] for j in range(1, k)],
        "twin": d[0, k],
    }


def notes(results: dict) -> Notes:
    k, t = len(results["seeds"]), len(results["snapshot_epochs"])
    last = results["snapshot_epochs"][-1]
    final = [r for r in results["snapshots"] if r["epoch"] == last and r["event"] != TWIN]
    train, test = [r["train_accuracy"] for r in final], [r["test_accuracy"] for r in final]
    before, after = _event_distances(results, False), _event_distances(results, True)
    evr = {
        (view, aligned): float(sum(explained_variance(results, view, "pca", aligned)[:2]))
        for view in ("whole model", "first layer")
        for aligned in (False, True)
    }
    check = results["alignment_check"]
    max_change = max(r["max_abs_output_difference"] for r in check)
    summary = {
        "final train accuracy, mean over events": float(np.mean(train)),
        "final test accuracy, mean over events": float(np.mean(test)),
        **{
            f"PCA variance in 2 components, {view}: as trained / aligned": [
                evr[(view, aligned)] for aligned in (False, True)
            ]
            for view in ("whole model", "first layer")
        },
        "median L2 distance between events: as trained / aligned": [
            float(np.median(d["pairs"])) for d in (before, after)
        ],
        "twin's L2 distance to event 0: as trained / aligned": [before["twin"], after["twin"]],
        "max |output change| from alignment": max_change,
    }
    med_b, med_a = np.median(before["to_event_0"]), np.median(after["to_event_0"])
    pairs_b = np.median(before["pairs"])
    same = sum(d < 0.01 * pairs_b for d in after["pairs"])
    lines = [
        f"After {last} epochs the {k} events reach training accuracy "
        f"{min(train):.3f}-{max(train):.3f} (test {min(test):.3f}-{max(test):.3f}).",
        f"One PCA basis fitted on all {(k + 1) * t} snapshots ({k} events and the twin, {t} "
        f"each): 2 components explain {100 * evr[('whole model', False)]:.1f}% of the "
        f"variance of the whole model and {100 * evr[('first layer', False)]:.1f}% of the "
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
        f"final models is {sci(max_change)}, and "
        f"{sum(r['same_predictions'] for r in check)} of {len(check)} predict the same classes.",
    ]
    m = results["model"]
    model = {**m, "widths": "-".join(map(str, m["widths"]))}
    return Notes(summary, lines, [("Model", [model]), ("Data", [results["dataset"]])])


EXPERIMENT = Experiment(
    id="optimization-trajectory",
    item="HW1-2",
    part="hw1-2",
    rank=1,
    title="Optimization trajectories of 8 training events",
    question="Where do 8 trainings of the same network go in weight space, and are their "
    "'different' minima different functions or the same one up to a permutation of units?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
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
