"""Lecture: which indicators of generalization predict the generalization gap (Jiang et al.
2019, "Fantastic generalization measures and where to find them"), at population scale.

Protocol: one population per (width, depth, dropout, batch size) group, its models varied
by learning rate, weight decay and label noise (``PerModel``), every model from the same
seed; all train with the same optimizer to a common target, training cross-entropy below
``train.stop_below_train_loss`` on their own labels, within an epoch cap. Models that
diverged, collapsed or missed the target are named and left out. For every other model
every indicator of ``dlprobe.measure`` is computed on the same training examples, each
model's with the labels it trained on (noisy ones for a noisy-label model), and its
Kendall tau with the gap (test error - training error) is given with a bootstrap interval,
next to the granulated tau per hyperparameter axis and their mean Psi. A Dinh et al.
rescaling of a few models says which indicators change while the function does not.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Annotated

from dlprobe.config import Bound, Fraction, NonNegFloat, NonNegInt, PosFloat, PosInt, Seed
from dlprobe.data import Dataset, corrupt_labels
from dlprobe.experiments.kit import (
    DatasetName,
    Experiment,
    Notes,
    RunContext,
    check_batch_sizes,
    check_classifier_fits,
    data_record,
    fidelity_row,
    n_train_of,
    probe_examples,
    require,
)
from dlprobe.experiments.kit import generalization_figures as draw
from dlprobe.experiments.kit.indicators import INDICATORS, SHARPNESS, Probe, dinh_audit, indicators
from dlprobe.experiments.kit.outcomes import (
    FINE,
    collapse_probe,
    excluded_lines,
    outcome,
    outcome_table,
)
from dlprobe.experiments.kit.stats import diverged_lines
from dlprobe.models import MLP
from dlprobe.train import (
    PerModel,
    Population,
    TrainConfig,
)

Dropout = Annotated[float, Bound(ge=0, lt=1)]


@dataclass(frozen=True)
class Config:
    dataset: DatasetName = "digits"  # digits: clean-label MLPs reach >= 0.9 test accuracy
    train_subset: NonNegInt = 300  # training examples, a seeded subset (0: the whole set)
    # one population per (width, depth, dropout, batch size): the group axes
    widths: tuple[PosInt, ...] = (32, 64)  # hidden units of every hidden layer
    depths: tuple[PosInt, ...] = (1, 2)  # hidden layers
    dropouts: tuple[Dropout, ...] = (0.0, 0.1)  # probability a hidden unit is zeroed
    batch_sizes: tuple[NonNegInt, ...] = (32, 100)  # examples per step; 0 = full batch
    # per model inside each population (lr factor x weight decay x label noise)
    lr_factors: tuple[PosFloat, ...] = (0.5, 2.0)  # learning rate = factor x train.lr
    weight_decays: tuple[NonNegFloat, ...] = (0.0, 3e-4)  # L2 penalty
    label_noises: tuple[Fraction, ...] = (0.0, 0.1)  # share of training labels replaced
    group: NonNegInt = 0  # train only this group (1-based, in the order above); 0: all
    seed: Seed = 0  # seed of every model, the subset, the probes and the bootstrap
    probe_examples: PosInt = 100  # training examples every probe measures on
    epsilon: PosFloat = 1e-3  # Keskar box / ball radius / Hessian estimate's neighbourhood
    search_steps: PosInt = 5  # L-BFGS-B, ball ascent and critical-sample steps
    valley_height: PosFloat = 0.1  # cross-entropy rise at the valley's edge
    valley_directions: PosInt = 2  # random directions the valley width is averaged over
    critical_radius: PosFloat = 0.3  # L-inf radius of the critical-sample search (input std)
    region_resolution: PosInt = 40  # grid points per axis of the plane through 3 inputs
    pac_rise: PosFloat = 0.1  # training-error rise allowed under weight noise (Jiang: 0.1)
    pac_samples: PosInt = 8  # Monte Carlo draws of the weight noise per scale
    bootstrap: PosInt = 500  # resamples of the models for the tau intervals
    dinh_models: NonNegInt = 3  # fine models audited under the Dinh rescaling
    dinh_factor: PosFloat = 5.0  # the rescaling a (layer 0 x a, layer 1 x 1/a)
    dinh_tolerance: PosFloat = 1e-3  # relative change above which an indicator "changes"
    # optimizer, base lr, epoch cap and the common target (batch size: batch_sizes)
    train: TrainConfig = TrainConfig(
        lr=4e-3, epochs=150, stop_below_train_loss=0.01, eval_every_epochs=5
    )

    def check(self) -> None:
        models = len(self.lr_factors) * len(self.weight_decays) * len(self.label_noises)
        for w, d in itertools.product(self.widths, self.depths):
            check_classifier_fits(self.dataset, [w] * d, "relu", models)
        n_train = n_train_of(self.dataset, self.train_subset)
        check_batch_sizes(self.batch_sizes, n_train)
        require(self.probe_examples >= 3, "probe_examples must be >= 3 (the regions' plane)")
        require(
            self.group <= len(groups(self)),
            f"group must be in [0, {len(groups(self))}] (0: all groups), got {self.group}",
        )
        require(self.train.stop_below_train_loss > 0, "set train.stop_below_train_loss")


PROFILES = {
    "smoke": {
        "train_subset": 120,
        "widths": (8,),
        "depths": (1, 2),
        "dropouts": (0.0,),
        "batch_sizes": (60,),
        "weight_decays": (0.0,),
        "label_noises": (0.0, 0.2),
        "probe_examples": 20,
        "search_steps": 2,
        "valley_directions": 1,
        "region_resolution": 12,
        "pac_samples": 2,
        "bootstrap": 50,
        "dinh_models": 1,
        "train.lr": 0.02,
        "train.epochs": 40,
        "train.stop_below_train_loss": 0.3,
    },
    "full": {
        "train_subset": 0,
        "widths": (32, 64, 128),
        "depths": (1, 2, 3),
        "dropouts": (0.0, 0.1, 0.2),
        "batch_sizes": (32, 128, 512),
        "lr_factors": (0.5, 1.0, 2.0),
        "weight_decays": (0.0, 1e-4, 3e-4),
        "label_noises": (0.0, 0.1, 0.2),
        "probe_examples": 500,
        "search_steps": 20,
        "valley_directions": 5,
        "pac_samples": 32,
        "bootstrap": 2000,
        "dinh_models": 10,
        "train.epochs": 1000,
    },
}


def groups(cfg: Config) -> list[tuple]:
    """(width, depth, dropout, batch size) of every population, in order."""
    return list(itertools.product(cfg.widths, cfg.depths, cfg.dropouts, cfg.batch_sizes))


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    x, y = probe_examples(data, cfg.probe_examples, probe_seed(cfg))
    probe = Probe(x, y, data.n_train, cfg.epsilon, cfg.search_steps, cfg.valley_height,
                  cfg.valley_directions, cfg.critical_radius, cfg.region_resolution,
                  cfg.pac_rise, cfg.pac_samples, cfg.seed)  # fmt: skip
    probes = own_label_probes(data, probe, cfg)
    relabelled = {str(p): (q.y != y).float().mean().item() for p, q in probes.items()}
    chosen = groups(cfg) if cfg.group == 0 else [groups(cfg)[cfg.group - 1]]
    rows, dinh, t0 = [], [], time.perf_counter()
    for group in chosen:
        rows += _population(ctx, cfg, data, probes, group, dinh)
    ctx.log(f"  {len(rows)} models trained and probed in {time.perf_counter() - t0:.1f} s")
    return {"dataset": data_record(data), "target": cfg.train.stop_below_train_loss,
            "epochs": cfg.train.epochs, "probe_examples": int(x.shape[0]), "runs": rows,
            "probe_relabelled": relabelled,
            "dinh": dinh, "dinh_factor": cfg.dinh_factor, "tolerance": cfg.dinh_tolerance,
            **draw.ranking(rows, cfg.bootstrap, cfg.seed)}  # fmt: skip


def probe_seed(cfg: Config) -> int:
    """The seed of the probe examples' draw: one apart from the label corruption's
    (``cfg.seed``), whose seeded permutation would otherwise pick the corrupted examples
    first, so that a noisy-label model would be probed only on labels it memorised."""
    return cfg.seed + 1


def own_label_probes(data: Dataset, probe: Probe, cfg: Config) -> dict[float, Probe]:
    """Per label-noise level, the probe on the same examples with the labels the models of
    that level trained on: ``corrupt_labels`` with the seed and mode ``PerModel`` gives
    them (every model has seed ``cfg.seed``), then the same ``probe_examples`` draw."""
    probes = {}
    for noise in cfg.label_noises:
        noisy = corrupt_labels(data, noise, cfg.seed, PerModel.label_noise_mode)
        y = probe_examples(noisy, cfg.probe_examples, probe_seed(cfg))[1]
        probes[noise] = replace(probe, y=y)
    return probes


def _population(ctx, cfg: Config, data, probes: dict, group: tuple, dinh: list) -> list:
    """Train one group's population, probe every model, audit fine ones (into ``dinh``)."""
    width, depth, dropout, batch = group
    settings = list(itertools.product(cfg.lr_factors, cfg.weight_decays, cfg.label_noises))
    key = f"w{width}-d{depth}-p{dropout:g}-b{batch}"
    widths = [data.input_dim, *[width] * depth, data.output_dim]
    pop = Population(lambda: MLP(widths, "relu", dropout=dropout), [cfg.seed] * len(settings),
                     ctx.device)  # fmt: skip
    initial = pop.flat_params().clone()  # (K, P) the prior's centres, before training
    per_model = PerModel(
        lr=[f * cfg.train.lr for f, _, _ in settings],
        weight_decay=[wd for _, wd, _ in settings],
        label_noise=[p for _, _, p in settings],
    )
    hist = ctx.train(key, pop, data, replace(cfg.train, batch_size=batch), per_model=per_model)
    spread = collapse_probe(pop, data.x_train, data.y_train)
    rows, finals = [], hist.final_records()
    for k, (f, wd, noise) in enumerate(settings):
        row = {"group": key, "width": width, "depth": depth, "dropout": dropout,
               "batch_size": batch, "lr": f * cfg.train.lr, "weight_decay": wd,
               "label_noise": noise, **finals[k], **spread[k],
               "stopped_at_epoch": hist.stopped_at_epoch[k], "steps": hist.steps_taken[k]}  # fmt: skip
        row["outcome"] = outcome(row, bool(hist.reached_target[k]))
        row["gap"] = row["train_accuracy"] - row["test_accuracy"]  # test - train error
        model, w0, probe = pop.model(k), initial[k], probes[noise]
        values = ctx.stage(f"{key}-m{k}", lambda _c, m=model, w0=w0, p=probe, r=row: _probe(
            m, w0, p, r))  # fmt: skip
        rows.append({**row, **values})
        if row["outcome"] == FINE and len(dinh) < cfg.dinh_models:
            audit = ctx.stage(f"{key}-m{k}-dinh", lambda _c, m=model, w0=w0, p=probe: dinh_audit(
                m, w0, p, data, cfg.dinh_factor))  # fmt: skip
            dinh.append({"group": key, "model": k, **audit})
    return rows


def _probe(model, initial, probe: Probe, row: dict) -> dict:
    """Every indicator of a model; None for one that diverged (frozen mid-explosion)."""
    if row["diverged"]:
        return dict.fromkeys(INDICATORS)
    return indicators(model, initial, probe)


def figures(results: dict) -> dict:
    return {
        "indicator-ranking": draw.ranking_figure(results),
        "granulated-tau": draw.granulated_figure(results),
        "best-indicators-vs-gap": draw.scatter_figure(results),
        "dinh-audit": draw.dinh_figure(results),
    }


def _name(r: dict) -> str:
    return (f"{r['group']}, lr {r['lr']:g}, wd {r['weight_decay']:g}, noise "
            f"{r['label_noise']:g}")  # fmt: skip


def notes(results: dict) -> Notes:
    runs, ranked = results["runs"], results["ranking"]
    fine = [r for r in runs if r["outcome"] == FINE]
    target = f"training loss < {results['target']:g} within {results['epochs']} epochs"
    lines = [
        f"{len(runs)} models in {len({r['group'] for r in runs})} populations; {len(fine)} "
        f"fine models enter the ranking (gap = test error - training error, mean "
        f"{draw.mean_of(fine, 'gap'):.3f})."
    ]
    lines += _probe_label_lines(results)
    lines += excluded_lines(runs, _name, target)
    lines += diverged_lines(runs, "were left out of the ranking", ("group", "lr"))
    lines += draw.ranking_lines(results)
    lines += draw.setting_lines(results)
    changed, same = draw.dinh_verdicts(results)
    lines.append(draw.dinh_line(results, changed, same))
    summary = {"models": len(runs), "fine models": len(fine)}
    summary |= {f"tau: {r['label']}": r["tau"] for r in ranked}
    summary |= {f"Psi: {r['label']}": r["psi"] for r in ranked}
    tables = [
        ("Indicators ranked by tau with the gap", draw.ranking_table(results)),
        ("Outcomes per population", outcome_table(runs, "group")),
        ("Dinh et al. audit: largest relative change over audited models", draw.dinh_table(results)),
    ]  # fmt: skip
    return Notes(summary, lines, tables, _fidelity(results, changed, same))


def _probe_label_lines(results: dict) -> list[str]:
    shares = results.get("probe_relabelled")  # absent in runs that probed clean labels
    if not shares:
        return []
    per_level = ", ".join(f"{float(p):g}: {100 * v:.0f}%" for p, v in shares.items())
    return [
        f"Every model is probed on its own training labels ({results['probe_examples']} "
        f"examples); share of them whose label was replaced, per label-noise level: "
        f"{per_level}."
    ]


def _fidelity(results: dict, changed: list[str], same: list[str]) -> list[dict]:
    best = draw.best(results, "psi")
    sharp = [INDICATORS[m] for m in SHARPNESS]
    flat = [INDICATORS[m] for m in ("sensitivity", "jacobian", "regions")]
    top_sharp = draw.best(results, "psi", among=SHARPNESS)
    why = "no model trained to the target"
    if best:
        family = (
            f"the sharpness family's best is {top_sharp['label']} (Psi {top_sharp['psi']:.3f})"
            if top_sharp
            else "no sharpness measure has a value"
        )
        why = (f"at this scale ({len(results['runs'])} models, {results['dataset']['n_train']} "
               f"training examples, {results['probe_examples']} probe examples) "
               f"{best['label']} ranks first (Psi {best['psi']:.3f}) and {family}")  # fmt: skip
    return [
        fidelity_row(
            "the sharpness/PAC-Bayes family predicts the gap best (Jiang et al. 2019)",
            "highest granulated tau Psi: a sharpness or PAC-Bayes flatness measure",
            f"highest Psi: {best['label']} ({best['psi']:.3f})" if best else "no fine model",
            bool(best) and best["label"] in sharp,
            why,
        ),
        fidelity_row(
            "a function-preserving rescaling changes sharpness (Dinh et al. 2017)",
            "sharpness measures change; measures of the function do not",
            f"changed: {', '.join(changed) or 'none'}; unchanged: {', '.join(same) or 'none'}"
            if results["dinh"]
            else "not measured",
            bool(results["dinh"])
            and any(s in changed for s in sharp)
            and not any(f in changed for f in flat),
            "no fine model to rescale" if not results["dinh"] else "",
        ),
    ]


EXPERIMENT = Experiment(
    id="generalization-measures",
    item="lecture",
    part="indicators",
    rank=3,
    title="Which generalization measures predict the gap",
    question="Across a population of models varied in width, depth, batch size, learning "
    "rate, weight decay, dropout and label noise, trained to a common loss target, which "
    "indicator ranks the models by generalization gap (Kendall's tau, granulated tau)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "indicator-ranking": "Kendall's tau of each indicator with the gap, oriented so that "
        "positive = predicts it as expected (bars: 95% bootstrap interval over models), "
        "and the granulated tau Psi (diamonds); n = fine models",
        "granulated-tau": "granulated tau per hyperparameter axis: the mean tau within "
        "groups of models that differ only in that axis",
        "best-indicators-vs-gap": "the three indicators with the highest |tau| against the "
        "gap, one dot per fine model, coloured by label noise",
        "dinh-audit": "largest relative change of each indicator when layer 0 is scaled by "
        "a and layer 1 by 1/a (the same function); dashed: the tolerance",
    },
    # 122 s of run time on the idle 2-core CPU (2026-11-30, own-label probes)
    quick_minutes=2.5,
    full_differs="digits, 300 training examples, 16 populations of 8 models (2 values per "
    "axis) instead of 3 values per axis on the whole digits training set (2187 models).",
)
