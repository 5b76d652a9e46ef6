"""optimization-trajectory: protocol (config, profiles, run) and helpers that read its results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlprobe.data import DATASETS, load_dataset
from dlprobe.experiments.common import check_common, model_seeds, require
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


def select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def explained_variance(results: dict, view: str, method: str, aligned: bool) -> list[float]:
    row = select(results["explained_variance"], view=view, method=method, aligned=aligned)[0]
    return row["explained_variance_ratio"]


def distance_matrix(results: dict, aligned: bool) -> np.ndarray:
    names = results["events"]
    index = {n: i for i, n in enumerate(names)}
    d = np.zeros((len(names), len(names)))
    for r in select(results["distances"], aligned=aligned):
        d[index[r["a"]], index[r["b"]]] = r["distance"]
    return d
