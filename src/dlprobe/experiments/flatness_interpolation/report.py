"""flatness-interpolation: headline numbers, observations and settings for the report."""

from __future__ import annotations

from dlprobe.experiments.classification import data_setting
from dlprobe.experiments.common import diverged_lines, group_rows, mean_std
from dlprobe.experiments.flatness_interpolation.protocol import Config
from dlprobe.models import describe_model


def _value_at(results: dict, pair: str, metric: str, alpha: float) -> tuple[float, float]:
    return mean_std(
        r[metric] for r in results["curves"] if r["pair"] == pair and r["alpha"] == alpha
    )


def barriers(results: dict, pair: str) -> list[dict]:
    """Per pair of models: the largest drop of the test (and training) accuracy below the
    straight line between the endpoints' accuracies for alpha in [0, 1] (and where), and the
    largest rise of the training loss above the line between the endpoints' losses."""
    out = []
    by_seed = group_rows([r for r in results["curves"] if r["pair"] == pair], "seed")
    for seed, rows in by_seed.items():
        inside = [r for r in rows if 0 <= r["alpha"] <= 1]
        a0, a1 = inside[0], inside[-1]

        def line(metric, a, a0=a0, a1=a1):
            return (1 - a) * a0[metric] + a * a1[metric]

        acc = max(inside, key=lambda r: line("test_accuracy", r["alpha"]) - r["test_accuracy"])
        train = max(inside, key=lambda r: line("train_accuracy", r["alpha"]) - r["train_accuracy"])
        loss = max(inside, key=lambda r: r["train_loss"] - line("train_loss", r["alpha"]))
        out.append(
            {
                "seed": seed,
                "accuracy_barrier": line("test_accuracy", acc["alpha"]) - acc["test_accuracy"],
                "accuracy_barrier_alpha": acc["alpha"],
                "train_accuracy_barrier": line("train_accuracy", train["alpha"])
                - train["train_accuracy"],
                "loss_barrier": loss["train_loss"] - line("train_loss", loss["alpha"]),
                "loss_barrier_alpha": loss["alpha"],
            }
        )
    return out


def summarize(results: dict) -> dict:
    out = {}
    for p in results["pairs"]:
        name = p["pair"]
        for metric in ("train_loss", "test_accuracy"):
            out[f"{name}: {metric} at α = 0 / 0.5 / 1"] = [
                _value_at(results, name, metric, a)[0] for a in (0.0, 0.5, 1.0)
            ]
        b = barriers(results, name)
        out[f"{name}: test-accuracy barrier"] = mean_std(r["accuracy_barrier"] for r in b)[0]
        out[f"{name}: training-accuracy barrier"] = mean_std(
            r["train_accuracy_barrier"] for r in b
        )[0]
        out[f"{name}: training-loss barrier"] = mean_std(r["loss_barrier"] for r in b)[0]
    return out


def observations(results: dict) -> list[str]:
    lines = []
    n = len(results["seeds"])
    alphas = sorted({r["alpha"] for r in results["curves"]})
    for p in results["pairs"]:
        name = p["pair"]

        def at(metric, a, name=name):
            return _value_at(results, name, metric, a)[0]

        b = barriers(results, name)
        acc_b, acc_sd = mean_std(r["accuracy_barrier"] for r in b)
        where = mean_std(r["accuracy_barrier_alpha"] for r in b)[0]
        train_b, train_sd = mean_std(r["train_accuracy_barrier"] for r in b)
        loss_b, loss_sd = mean_std(r["loss_barrier"] for r in b)
        lines.append(
            f"{p['label']} (m1 = {p['m1']} at α=0, m2 = {p['m2']} at α=1; n = {n} pairs): "
            f"training loss {at('train_loss', 0.0):.3g} / {at('train_loss', 0.5):.3g} / "
            f"{at('train_loss', 1.0):.3g} and test accuracy {at('test_accuracy', 0.0):.3f} / "
            f"{at('test_accuracy', 0.5):.3f} / {at('test_accuracy', 1.0):.3f} at α = 0 / 0.5 / 1. "
            f"The test-accuracy barrier (largest drop below the straight line between the "
            f"endpoints) is {acc_b:.3f} ± {acc_sd:.3f} at α ≈ {where:.2f} (training accuracy: "
            f"{train_b:.3f} ± {train_sd:.3f}); the training loss "
            f"rises up to {loss_b:.3g} ± {loss_sd:.2g} above its straight line."
        )
        # Equal distances from each endpoint along the line: which valley is flatter here.
        d = min(0.5, -alphas[0], alphas[-1] - 1)
        if d > 0:
            left = at("train_loss", round(-d, 10)) - at("train_loss", 0.0)
            right = at("train_loss", round(1 + d, 10)) - at("train_loss", 1.0)
            flatter = "m1" if left < right else "m2"
            lines.append(
                f"{p['label']}: stepping {d:g}·‖θ2 − θ1‖ beyond each endpoint raises the "
                f"training loss by {left:.3g} beyond m1 (α = {-d:g}) and by {right:.3g} beyond "
                f"m2 (α = {1 + d:g}): along this line {flatter} sits in the flatter valley."
            )
    return lines + diverged_lines(results["trained"], "were frozen")


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    m, d = results["model"], results["data"]
    trained = group_rows(results["trained"], "setting")
    return [
        (
            "model",
            f"{describe_model(m)} ({results['model_params']} params)",
        ),
        ("data", data_setting(cfg, d)),
        ("pairs", "; ".join(p["label"] for p in results["pairs"])),
        (
            "training",
            f"{cfg.optimizer}, constant lr, about {cfg.steps} steps per model: "
            + ", ".join(
                f"{key}: {rs[0]['steps']} steps = {rs[0]['epochs']} epochs"
                for (key,), rs in trained.items()
            ),
        ),
        (
            "seeds",
            f"{len(results['seeds'])} pairs per comparison; m1 and m2 of pair k share the "
            f"initialization of seed {cfg.seed}+k",
        ),
        (
            "alphas",
            f"{len(cfg.alphas())} values from {cfg.alpha_min:g} to {cfg.alpha_max:g}; "
            "each θ(α) evaluated as is, never trained",
        ),
    ]
