"""HW1-2 optimization: the weights of 8 training events projected into one common 2-D basis.

Protocol: train one MLP 8 times (seeds of one population), keeping weights, loss and accuracy
every few epochs. ONE PCA (per-run PCAs share no basis) of all snapshots stacked, for the
first layer and the whole model, and PCA then t-SNE. Control: a "permuted twin", the first
event with its hidden units permuted (the same functions elsewhere in weight space). Then
every event's units are aligned to the first event's (Hungarian matching of the final
models, applied to all snapshots) and projected again. Diverged events are left out, named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from dlprobe.experiments.kit import (
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
    fidelity_row,
    mlp_population,
    n_train_of,
    new_figure,
    require,
    sci,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.experiments.kit.trajectories import (
    blank_figures,
    check_snapshots,
    distance_heatmap,
    distance_matrix,
    draw_trajectories,
    final_distance_rows,
    initial_metrics,
    projection_rows,
    snapshot_rows,
    variance_shown,
    weight_trajectories,
)
from dlprobe.measure.flat import parameter_slice
from dlprobe.measure.permutations import (
    align_trajectory,
    output_difference,
    permute_trajectory,
    random_unit_permutations,
)
from dlprobe.models import MLP, count_params
from dlprobe.train import TrainConfig

VIEWS = (("first layer", "pca"), ("whole model", "pca"), ("whole model", "pca+tsne"))
SAME = 1e-6  # largest |output difference| (float64) of two weight vectors called one function


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
    "smoke": {"hidden_widths": (8,), "seeds": 3, "train.epochs": 4, "train.batch_size": 256,
              "train.eval_every_epochs": 2, "train.snapshot_every_epochs": 2},
    "full": {"dataset": "mnist"},
}  # fmt: skip


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset)
    widths = [data.input_dim, *cfg.hidden_widths, data.num_classes]
    template = MLP(widths, cfg.activation)
    pop = mlp_population(widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    start = initial_metrics(pop, data)
    hist = ctx.train("events", pop, data, cfg.train)
    fine = [k for k in range(pop.size) if k not in hist.diverged]
    trajectories = weight_trajectories(hist).to(torch.float64)[fine]  # (K_fine, T, P)
    ctx.log(f"{len(fine)} events (of {pop.size}) x {len(hist.snapshot_epochs)} snapshots")
    events = [f"event {k}" for k in fine] + [f"twin of event {k}" for k in fine[:1]]
    snapshots = snapshot_rows(hist, start, lambda k: f"event {k}")
    # The twin computes its event's functions, so its metrics are that event's.
    snapshots += [{**r, "event": events[-1]} for r in snapshots if fine and r["event"] == events[0]]
    first = template.linears[0]
    return {
        "model": {"widths": widths, "activation": cfg.activation, "params": count_params(template),
                  "layer": f"first layer ({first.in_features}->{first.out_features})",
                  "layer_params": first.weight.numel() + first.bias.numel()},
        "dataset": data_record(data),
        "seeds": pop.seeds,
        "runs": [{"event": f"event {k}", **r} for k, r in enumerate(hist.final_records())],
        "events": events,
        "snapshot_epochs": list(hist.snapshot_epochs),
        "snapshots": snapshots,
        **(compare(cfg, template, list(trajectories), events, hist.snapshot_epochs, data.x_test)
           if fine else {"coords": [], "explained_variance": [], "distances": []}),
    }  # fmt: skip


def compare(cfg: Config, template: MLP, trajs: list, events: list, epochs, x) -> dict:
    """Twin, alignment, projections and distances of the events' trajectories (T, P) each."""
    twin_perms = random_unit_permutations(template, cfg.seed)
    raw = [*trajs, permute_trajectory(template, trajs[0], twin_perms)]  # (T, P) each
    pairs = [align_trajectory(template, raw[0][-1], t) for t in raw]  # to the first's final
    aligned, layer = [a for a, _ in pairs], parameter_slice(template, template.linears[0])
    x = x.to("cpu", torch.float64)  # the snapshots live on the CPU
    coords, variance = [], []
    for is_aligned, trajs in ((False, raw), (True, aligned)):
        for view, method in VIEWS:  # one basis for all trajectories of each view
            cols = layer if view == "first layer" else slice(None)
            rows, evr = projection_rows([t[:, cols] for t in trajs], events, epochs, method,
                                        cfg.seed, cfg.tsne_pca_components, view=view,
                                        aligned=is_aligned)  # fmt: skip
            coords, variance = coords + rows, [*variance, evr]
    return {
        "coords": coords,
        "explained_variance": variance,
        "distances": [*final_distance_rows(raw, events, aligned=False),
                      *final_distance_rows(aligned, events, aligned=True)],
        "alignment_check": [{"event": n, **output_difference(template, r[-1], a[-1], x)}
                            for n, r, a in zip(events, raw, aligned, strict=True)],
        "twin_check": output_difference(template, raw[0][-1], raw[-1][-1], x),
        "twin_permutations": [p.tolist() for p in twin_perms],
        "alignment_permutations": [[p.tolist() for p in ps] for _, ps in pairs],
    }  # fmt: skip


def select(rows: list[dict], **match) -> list[dict]:  # the rows with these values
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def explained_variance(results: dict, view: str, method: str, aligned: bool) -> list[float]:
    row = select(results["explained_variance"], view=view, method=method, aligned=aligned)[0]
    return row["explained_variance_ratio"]


def distances(results: dict, aligned: bool) -> np.ndarray:
    """(K + 1, K + 1) L2 distances between the final weights of the events and the twin."""
    return distance_matrix(select(results["distances"], aligned=aligned), results["events"])


def _draw(ax, results: dict, view: str, method: str, aligned: bool) -> None:
    rows = select(results["coords"], view=view, method=method, aligned=aligned)
    accuracy = {(r["event"], r["epoch"]): r["train_accuracy"] for r in results["snapshots"]}
    labels = {key: "-" if a is None else f"{a:.2f}" for key, a in accuracy.items()}
    events, last = results["events"], results["snapshot_epochs"][-1]
    draw_trajectories(ax, rows, events, labels if method == "pca" else {}, events[-1:], last)
    evr = explained_variance(results, view, method, aligned)
    x, y = [f"PC{i + 1} ({100 * v:.1f}% of variance)" for i, v in enumerate(evr[:2])]
    ax.set(xlabel=x, ylabel=y) if method == "pca" else ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")


def figures(results: dict) -> dict:
    k, t, m = len(results["events"][:-1]), len(results["snapshot_epochs"]), results["model"]
    lost = sum(r["diverged"] for r in results["runs"])
    if k < 1:
        message = f"every one of the {lost} events diverged (named in the report)"
        return blank_figures(EXPERIMENT.captions, f"{message}:\nno trajectory to project")
    n_text = f"n={k} events + twin, {t} snapshots each" + (f"; {lost} diverged" if lost else "")
    state = {False: "as trained", True: f"hidden units aligned to {results['events'][0]}"}
    what = {"first layer": f"{m['layer']}, {m['layer_params']} params",
            "whole model": f"whole model, {m['params']} params"}  # fmt: skip
    figs = {}
    for view, aligned in ((v, a) for v in what for a in (False, True)):
        fig, ax = new_figure(width=8.5, height=5.5)
        _draw(ax, results, view, "pca", aligned)
        ax.set_title(f"PCA of {what[view]} ({state[aligned]}); one basis for all snapshots\n"
                     f"{n_text}; labels: training accuracy", fontsize=10)  # fmt: skip
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figs[f"pca-{view.replace(' ', '-')}{'-aligned' if aligned else ''}"] = fig
    fig, axes = new_figure(ncols=2, width=6.0, height=5.0)
    for ax, aligned in zip(axes, (False, True), strict=True):
        _draw(ax, results, "whole model", "pca+tsne", aligned)
        ax.set_title(state[aligned], fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"PCA then t-SNE of all whole-model snapshots ({n_text})")
    figs["pca-tsne"] = fig
    names = [n.replace("twin of event", "twin of") for n in results["events"]]
    fig, axes = new_figure(ncols=2, width=5.6, height=5.0)
    vmax = max(distances(results, False).max(), 1e-12)
    for ax, aligned in zip(axes, (False, True), strict=True):
        image = distance_heatmap(ax, distances(results, aligned), names, vmax)
        ax.set_title(state[aligned], fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="L2 distance between final weights")
    fig.suptitle(f"Distances between final weight vectors ({n_text})")
    figs["final-distances"] = fig
    return figs


def _event_distances(results: dict, aligned: bool) -> dict:
    """Distances between distinct events (pairs), from the first, and of the twin to it."""
    k, d = len(results["events"][:-1]), distances(results, aligned)
    pairs = [d[i, j] for i in range(k) for j in range(i + 1, k)]
    median = float(np.median(pairs)) if pairs else float("nan")
    return {"pairs": pairs, "median": median, "to_first": d[0, 1:k], "twin": d[0, k]}


def _twin(results: dict) -> tuple[bool, bool, str]:
    """Is the twin its event's function; does alignment put it back on it; the numbers."""
    twin, raw, al = results["twin_check"], *(_event_distances(results, a) for a in (False, True))
    same = twin["max_abs_output_difference"] < SAME and twin["same_predictions"]
    text = (f"largest output difference {sci(twin['max_abs_output_difference'])}; L2 distance "
            f"{raw['twin']:.2f} as trained, {sci(al['twin'])} aligned")  # fmt: skip
    return same, al["twin"] < SAME * raw["twin"], text


def notes(results: dict) -> Notes:
    runs, k, t = results["runs"], len(results["events"][:-1]), len(results["snapshot_epochs"])
    lost = diverged_lines(runs, "are left out of the projections, distances and statistics")
    m = results["model"]
    tables = [("Model", [{**m, "widths": "-".join(map(str, m["widths"]))}]),
              ("Data", [results["dataset"]])]  # fmt: skip
    if k < 1:
        line = f"Every one of the {len(runs)} events diverged: there is no trajectory to project."
        return Notes({"events that diverged": len(runs)}, [line, *lost], tables, fidelity(results))
    last, first, events = results["snapshot_epochs"][-1], results["events"][0], results["events"]
    final = [r for r in select(results["snapshots"], epoch=last) if r["event"] in events[:-1]]
    train, test = [r["train_accuracy"] for r in final], [r["test_accuracy"] for r in final]
    before, after = _event_distances(results, False), _event_distances(results, True)
    evr = {(view, aligned): float(sum(explained_variance(results, view, "pca", aligned)[:2]))
           for view in ("whole model", "first layer") for aligned in (False, True)}  # fmt: skip
    check = results["alignment_check"]
    max_change = max(r["max_abs_output_difference"] for r in check)
    kept = sum(r["same_predictions"] for r in check)
    summary = {
        "final train accuracy, mean over events": float(np.mean(train)),
        "final test accuracy, mean over events": float(np.mean(test)),
        **{f"PCA variance in 2 components, {view}: as trained / aligned": [
            evr[(view, False)], evr[(view, True)]] for view in ("whole model", "first layer")},
        "median L2 distance between events: as trained / aligned": [
            before["median"], after["median"]],
        "twin's L2 distance to its event: as trained / aligned": [before["twin"], after["twin"]],
        "max |output change| from alignment": max_change,
    }  # fmt: skip
    which = f"{k} of the {len(runs)} events that did not diverge" if lost else f"{k} events"
    whole, layer = evr[("whole model", False)], evr[("first layer", False)]
    lines = [
        f"After {last} epochs the {which} reach training accuracy {min(train):.3f}-"
        f"{max(train):.3f} (test {min(test):.3f}-{max(test):.3f}).",
        f"One PCA basis fitted on all {(k + 1) * t} snapshots ({k} events and the twin, {t} "
        f"each): 2 components explain {100 * whole:.1f}% of the variance of the whole model and "
        f"{100 * layer:.1f}% of the first layer's, so "
        f"{variance_shown({'whole-model': whole, 'first-layer': layer})}.",
    ]
    if k > 1:
        med_b, med_a = np.median(before["to_first"]), np.median(after["to_first"])
        n, same = len(after["pairs"]), sum(d < 0.01 * before["median"] for d in after["pairs"])
        verdict = {0: "no two events are", n: "all events are"}.get(same, f"{same} pairs are")
        lines.append(
            f"As trained, the final weights of the {k} events are {min(before['pairs']):.2f}-"
            f"{max(before['pairs']):.2f} apart in L2 (median {before['median']:.2f} over {n} "
            f"pair(s)); aligning hidden units to {first} moves the others "
            f"{'closer' if med_a < med_b else 'no closer'}: median distance to it {med_b:.2f} -> "
            f"{med_a:.2f} ({100 * (med_a / med_b - 1):+.0f}%, {k - 1} event(s)). After alignment "
            f"{same} of the {n} pairs are closer than 1% of the median distance as trained: "
            f"{verdict} the same point up to a permutation of units."
        )
    same_fn, back, numbers = _twin(results)
    lines.append(
        f"The permuted twin of {first} "
        f"{'computes' if same_fn else 'does NOT compute'} the same function and "
        f"{'aligns back onto it' if back else 'is NOT put back on it by alignment'} ({numbers}"
        + (f"; median distance between events {before['median']:.2f})." if k > 1 else ").")
    )
    verdict = "changes no model's function" if max_change < SAME and kept == len(check) else (
        "CHANGED a model's function (a bug)")  # fmt: skip
    lines.append(
        f"Alignment {verdict}: the largest output change over {len(check)} final models is "
        f"{sci(max_change)}, and {kept} of {len(check)} predict the same classes."
    )
    return Notes(summary, lines + lost, tables, fidelity(results))


def fidelity(results: dict) -> list[dict]:
    """The SPEC's four points of this item, each checked on this run's results."""
    runs, k, epochs = results["runs"], len(results["events"][:-1]), results["snapshot_epochs"]
    every, n = (epochs[1] - epochs[0] if len(epochs) > 1 else 0), (k + 1) * len(epochs)
    fitted = [len(select(results["coords"], view=v, method="pca", aligned=False))
              for v in ("first layer", "whole model")]  # fmt: skip
    same_fn, back, numbers = _twin(results) if k >= 1 else (False, False, "every event diverged")
    return [
        fidelity_row("8 training events of one architecture", "8 seeds",
                     f"{k} of {len(runs)} events trained without diverging", k >= 8,
                     f"this run trains {len(runs)}, of which {len(runs) - k} diverged"),
        fidelity_row("weights collected every 3 epochs, with loss and accuracy", "every 3 epochs",
                     f"every {every} epochs, {len(epochs)} snapshots per event, each with its "
                     "accuracy", every == 3, f"this run keeps them every {every} epochs"),
        fidelity_row("one PCA basis for all events, for one layer and for the whole model",
                     "one PCA of all events' vectors", f"one PCA per view of {n} snapshots ({k} "
                     f"events + twin x {len(epochs)})", k >= 1 and fitted == [n, n],
                     "every event diverged" if k < 1 else "a view misses snapshots"),
        fidelity_row("a permuted twin is the same function elsewhere; aligning units finds it",
                     "exchanging hidden units gives an equivalent network", numbers,
                     same_fn and back, numbers if k < 1 else "the twin differs or is not put back"),
    ]  # fmt: skip


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
        "pca-first-layer-aligned": "the same after permuting every event's hidden units to "
        "match the first event's",
        "pca-whole-model": "all weights, one common PCA; dashed black: the first event with "
        "its hidden units permuted (its twin)",
        "pca-whole-model-aligned": "the same after aligning hidden units to the first event",
        "pca-tsne": "PCA to 10 dimensions then t-SNE of all whole-model snapshots; t-SNE keeps "
        "neighbourhoods, not distances",
        "final-distances": "L2 distance between the final weights of every pair of events, as "
        "trained and after alignment",
    },
    quick_minutes=0.2,
    full_differs="digits (8x8 images) with a 64-16-16-10 MLP instead of MNIST; full uses "
    "MNIST with a 784-16-16-10 MLP.",
)
