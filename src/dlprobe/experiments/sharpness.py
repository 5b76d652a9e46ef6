"""Bonus: sharpness of the minima reached with different batch sizes, and why sharpness
alone cannot explain generalization (Dinh et al. 2017).

Protocol: for each of at least 10 batch sizes train a population of seeds under a common
budget (kit.batches; ``--protocol all`` adds equal epochs and equal steps), then measure on
500 training examples, in float64, next to the gradient norm there: Keskar et al.'s
sharpness (the largest relative loss rise in the box |z_i| <= ε (|θ_i| + 1)), its estimate
‖H‖₂ ε² / (2 (1 + L)), the largest loss rise in the ε-ball, and the valley's width at a
loss height along random directions. Then scale one trained ReLU model's layer by a and
the next by 1/a: the function stays the same while every sharpness changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F

from dlprobe.experiments.kit import (
    DatasetName,
    Experiment,
    NonNegInt,
    Notes,
    PosFloat,
    PosInt,
    RunContext,
    Seed,
    batches,
    check_classifier_fits,
    fidelity_row,
    finite,
    mlp_population,
    one_of,
    probe_examples,
    require,
    seeds_from,
)
from dlprobe.experiments.kit.rescaling import (
    rescaled_rows,
    rescaling_figure,
    rescaling_line,
    spread,
)
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.sharpness import sharpness, valley_width
from dlprobe.models import PIECEWISE_LINEAR
from dlprobe.train import TrainConfig

# Result field -> label; the valley width grows with flatness, the others with sharpness.
MEASURES = {
    "hessian": "Hessian estimate ‖H‖₂ε²/(2(1+L))",
    "keskar": "Keskar box maximum (L-BFGS-B)",
    "ball": "max loss rise in the ε-ball",
    "valley_width": "valley width (larger = flatter)",
}
SHORT = {"hessian": "Hessian sharpness", "keskar": "Keskar's", "ball": "the ball's"}
SHORT |= {"valley_width": "the valley width"}
HomogeneousActivation = one_of(PIECEWISE_LINEAR, "positively homogeneous activation")


@dataclass(frozen=True)
class Config:
    # classification dataset (see `dlprobe datasets`); digits: MLPs reach ~0.97 test
    # accuracy there, the homework's MNIST regime (mnist1d MLPs overfit to ~0.5)
    dataset: DatasetName = "digits"
    train_subset: NonNegInt = 0  # training examples, a seeded subset (0: the whole set)
    hidden: tuple[PosInt, ...] = (64, 64)  # hidden-layer widths of the MLP
    activation: HomogeneousActivation = "relu"  # hidden activation; positively homogeneous
    # examples per optimizer step, one population each; 0 = the whole training set
    batch_sizes: tuple[NonNegInt, ...] = (8, 16, 32, 64, 128, 192, 256, 512, 1024, 0)
    budget: batches.Budget = batches.Budget()  # how long every model trains
    seeds: PosInt = 2  # models per batch size, trained as one population
    seed: Seed = 0  # base seed: model i uses seed + i; also subsets and random directions
    epsilon: PosFloat = 1e-4  # neighbourhood size of the box, the ball and the Hessian estimate
    sharpness_examples: PosInt = 500  # training examples of the loss that is probed
    keskar_steps: PosInt = 20  # L-BFGS-B iterations of Keskar's box maximization
    ball_steps: PosInt = 20  # projected gradient-ascent steps in the ball
    valley_height: PosFloat = 0.01  # loss rise that defines the valley's edge
    valley_directions: PosInt = 3  # random unit directions the valley width is averaged over
    valley_max_distance: PosFloat = 20.0  # farthest distance searched along a direction
    rescale_factors: tuple[PosFloat, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # Dinh et al.'s a
    rescale_layer: NonNegInt = 0  # Linear layer scaled by a (the next one by 1/a)
    train: TrainConfig = TrainConfig()  # optimizer and lr; batch size, length, stop: the budget

    def check(self) -> None:
        require(len(self.hidden) >= 1, "hidden needs >= 1 width")
        models = self.seeds * len(self.budget.protocols)
        check_classifier_fits(self.dataset, self.hidden, self.activation, models)
        batches.check_sweep(self.batch_sizes, self.dataset, self.train_subset, self.train)
        require(len(self.rescale_factors) >= 2, "give at least two rescale_factors")
        require(
            self.rescale_layer < len(self.hidden),
            f"rescale_layer must be in [0, {len(self.hidden) - 1}] (a layer with a next one)",
        )


PROFILES = {
    "smoke": {
        "train_subset": 200,
        "hidden": (8,),
        "batch_sizes": (8, 12, 16, 24, 32, 48, 64, 96, 128, 0),
        "budget.train_loss": 0.1,
        "budget.max_epochs": 300,
        "train.lr": 1e-2,
        "seeds": 1,
        "sharpness_examples": 50,
        "keskar_steps": 3,
        "ball_steps": 3,
        "valley_directions": 1,
        "rescale_factors": (0.1, 10.0),
    },
    "full": {
        "dataset": "mnist",
        "hidden": (32, 32),  # 784-32-32-10: 26 506 parameters
        "batch_sizes": (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        "budget.max_epochs": 3000,
        "budget.steps": 10000,
        "seeds": 3,
        "keskar_steps": 100,
        "ball_steps": 100,
        "valley_directions": 10,
    },
}


def run(cfg: Config, ctx: RunContext) -> dict:
    data = ctx.dataset(cfg.dataset, cfg.train_subset, cfg.seed)
    x_probe, y_probe = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    setup = batches.model_and_data(data, cfg.hidden, cfg.activation)
    widths = setup["model"]["widths"]
    population = partial(mlp_population, widths, cfg.activation, cfg.seed, cfg.seeds, ctx.device)
    ordered = batches.batch_order(cfg.batch_sizes, data.n_train)
    dinh_batch = ordered[len(ordered) // 2] or data.n_train  # the rescaled model's batch size
    probe = partial(measure, cfg=cfg, x=x_probe, y=y_probe)
    rows = []
    for key, pop, records in batches.train_sweep(
        ctx, data, population, cfg.train, cfg.batch_sizes, cfg.budget, probe, PROBED
    ):
        rows += records
        main = records[0]["protocol"] == cfg.budget.protocols[0]
        if main and records[0]["batch_size"] == dinh_batch:  # its first model that trained
            k = next((k for k, r in enumerate(records) if not r["diverged"]), None)
            dinh_model = None if k is None else pop.model(k)
            seed = None if k is None else records[k]["seed"]
            src = dict(stage=key, batch_size=dinh_batch, seed=seed, layer=cfg.rescale_layer)
    dinh = ctx.stage(
        "rescaled",
        lambda _ckpt: {
            "rows": []
            if dinh_model is None
            else rescaled_rows(dinh_model, cfg.rescale_layer, cfg.rescale_factors, data, probe)
        },
    )["rows"]
    ctx.log(f"  Dinh et al. rescaling: {len(dinh)} factors measured")
    return {
        **setup,
        "budget": cfg.budget.record(),
        "sharpness_examples": int(x_probe.shape[0]),
        "epsilon": cfg.epsilon,
        "valley_height": cfg.valley_height,
        "seeds": seeds_from(cfg.seed, cfg.seeds),
        "runs": rows,
        "dinh_source": src,
        "dinh": dinh,
    }


PROBED = ("probe_loss", "hessian", "hessian_norm", "keskar", "ball", "valley_width")
PROBED += ("grad_norm",)  # the keys measure() returns


def measure(model, cfg: Config, x, y) -> dict:
    """Every sharpness measure of one model on (x, y)."""
    kw = {"epsilon": cfg.epsilon, "seed": cfg.seed}
    hess = sharpness(model, F.cross_entropy, x, y, method="hessian", **kw)
    keskar = sharpness(model, F.cross_entropy, x, y, method="keskar", steps=cfg.keskar_steps, **kw)
    ball = sharpness(model, F.cross_entropy, x, y, method="ball", steps=cfg.ball_steps, **kw)
    reach = {"n_directions": cfg.valley_directions, "max_distance": cfg.valley_max_distance}
    valley = valley_width(model, F.cross_entropy, x, y, cfg.valley_height, seed=cfg.seed, **reach)
    return {
        "probe_loss": hess.base_loss,
        "hessian": hess.value,
        "hessian_norm": hess.hessian_norm,
        "keskar": keskar.value,
        "ball": ball.value,
        # inf where a direction never reached the height within the search distance
        "valley_width": valley.mean if math.isfinite(valley.mean) else None,
        "grad_norm": gradient_norm(model, F.cross_entropy, x, y),
    }


def figures(results: dict) -> dict:
    valley = f"valley width at loss rise {results['valley_height']:g}"
    titles = {**MEASURES, "valley_width": valley}
    panels = [(t, {m: "mean, band min-max"}, m != "valley_width") for m, t in titles.items()]
    panels += [
        (f"training and test {label}", {f"{s}_{metric}": s for s in ("train", "test")}, log)
        for metric, label, log in (("accuracy", "accuracy", False), ("loss", "loss", True))
    ]
    title = (
        f"Sharpness (ε={results['epsilon']:g}, {results['sharpness_examples']} training "
        "examples) and accuracy vs batch size"
    )
    rows = {"keskar": ("Keskar sharpness", True), "hessian": ("Hessian estimate", True)}
    return {
        "sharpness-vs-batch-size": batches.batch_grid(results, panels, 3, title),
        "dinh-rescaling": rescaling_figure(results["dinh"], results["dinh_source"], MEASURES),
        "budget-protocols": batches.protocol_figure(results, rows, "Sharpness vs batch size"),
    }


def notes(results: dict) -> Notes:
    all_runs, main = results["runs"], batches.protocols_of(results["runs"])[0]
    runs, dinh_rows = batches.main_runs(all_runs), results["dinh"]
    summary = batches.batch_summary(all_runs, (*MEASURES, "test_accuracy"), MEASURES)
    summary |= {f"rescaled: max/min of {m} over a": spread(dinh_rows, m) for m in MEASURES}
    widths = "-".join(map(str, results["model"]["widths"]))
    lines = batches.intro_lines(results, f"MLP {widths} ({results['model_params']} params)")
    dinh, dinh_holds = rescaling_line(results["dinh"], results["dinh_source"], SHORT)
    tables = [batches.model_and_data_table(results), batches.reached_table(all_runs)]
    if not runs:
        return Notes(summary, [*lines, dinh], tables)
    lines += batches.main_trend_lines(runs, {**MEASURES, "test_accuracy": "test accuracy"}, main)
    lines.append(batches.gap_line(runs, "hessian", "the Hessian sharpness"))
    lines += batches.protocol_lines(all_runs, {m: MEASURES[m] for m in ("keskar", "hessian")})
    slopes = {"keskar": "Keskar's box maximum", "ball": "the ball's"}
    lines += [batches.critical_point_line(runs, results["epsilon"], slopes), dinh]
    return Notes(summary, lines, tables, _fidelity(results, runs, dinh_holds))


def _fidelity(results: dict, runs: list[dict], dinh_holds: bool) -> list[dict]:
    dinh = results["dinh"]
    return [
        batches.trend_row(
            results,
            "keskar",
            "large batches converge to sharper minima (Keskar et al. 2017)",
            "Keskar's sharpness rises with batch size",
            "rises",
            f"; Hessian estimate {batches.trend_text(runs, 'hessian')}",
        ),
        fidelity_row(
            "rescaling keeps the function but changes sharpness (Dinh et al. 2017)",
            "same outputs, different sharpness",
            f"outputs change ≤ {finite(r['max_output_change'] for r in dinh).max():.1e}; "
            f"Hessian sharpness varies {spread(dinh, 'hessian'):.1f}x"
            if dinh
            else "not measured",
            dinh_holds,
            "the rescaled outputs or sharpness did not behave as stated (see observations)"
            if dinh
            else "the model to rescale diverged",
        ),
        batches.standin_row(results, runs),
    ]


EXPERIMENT = Experiment(
    id="sharpness",
    item="bonus",
    part="bonus",
    rank=2,
    title="Sharpness vs batch size, and the rescaling counterpoint",
    question="Do large batches find sharper minima (Keskar et al.), and does sharpness by "
    "itself explain generalization when the same function can be made sharp or flat "
    "(Dinh et al.)?",
    config=Config,
    profiles=PROFILES,
    run=run,
    figures=figures,
    notes=notes,
    captions={
        "sharpness-vs-batch-size": "four sharpness measures (log scale; the valley width "
        "grows with flatness), training and test accuracy and loss against batch size; "
        "line = mean over seeds (geometric on log axes), band = min-max",
        "dinh-rescaling": "left: each measure of the rescaled model relative to the "
        "original (log-log); right: its training and test loss and accuracy",
        "budget-protocols": batches.protocol_caption("Keskar's sharpness, the Hessian estimate"),
    },
    quick_minutes=1.4,
    full_differs="scikit-learn digits, where MLPs reach MNIST's ~0.97 test accuracy (1347 "
    "examples; MLP 64-64-64-10, 8 970 params; 2 seeds) instead of MNIST and 26 506 params.",
)
