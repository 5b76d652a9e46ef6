"""actual-task: headline numbers, observations and settings for the report."""

from __future__ import annotations

from dlprobe.experiments.actual_task.protocol import MAX_SPREAD, Config
from dlprobe.experiments.common import diverged_lines, group_rows, mean_std
from dlprobe.models import describe_model


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
