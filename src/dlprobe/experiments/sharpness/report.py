"""sharpness: headline numbers, observations and settings for the report."""

from __future__ import annotations

from scipy.stats import spearmanr

from dlprobe.experiments.classification import (
    at_batch,
    batch_sweep_settings,
    batch_trend,
)
from dlprobe.experiments.common import diverged_lines
from dlprobe.experiments.sharpness.protocol import MEASURES, Config


def _spread(rows: list[dict], metric: str) -> float:
    """max / min of ``metric`` over rows (missing values skipped)."""
    values = [r[metric] for r in rows if r[metric] is not None]
    return max(values) / min(values) if values else float("nan")


def summarize(results: dict) -> dict:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    out = {"batch sizes": sizes}
    for metric in (*MEASURES, "test_accuracy"):
        out[f"{metric}: mean at batch {lo} / {hi}"] = [
            at_batch(results, metric, lo)[0],
            at_batch(results, metric, hi)[0],
        ]
    for metric in MEASURES:
        out[f"{metric}: Spearman r with log batch size"] = batch_trend(results, metric)[0]
    for r in results["dinh"]:
        out[f"rescaled a={r['factor']:g}: train loss / test acc / hessian / keskar / ball"] = [
            r["train_loss"],
            r["test_accuracy"],
            r["hessian"],
            r["keskar"],
            r["ball"],
        ]
    for metric in MEASURES:
        out[f"rescaled: max/min of {metric} over a"] = _spread(results["dinh"], metric)
    return out


def observations(results: dict) -> list[str]:
    runs = results["runs"]
    sizes = sorted({r["batch_size"] for r in runs})
    lo, hi = sizes[0], sizes[-1]
    k = len(results["seeds"])
    lines = [
        f"{len(sizes)} batch sizes ({', '.join(map(str, sizes))}), {k} seed(s) each, "
        f"{min(r['steps'] for r in runs)}-{max(r['steps'] for r in runs)} optimizer steps; "
        f"model {'-'.join(map(str, results['model']['widths']))} "
        f"({results['model_params']} params)."
    ]
    for metric, label in MEASURES.items():
        rho, n = batch_trend(results, metric)
        (m_lo, _), (m_hi, _) = at_batch(results, metric, lo), at_batch(results, metric, hi)
        lines.append(
            f"{label}: {m_lo:.3g} at batch {lo} and {m_hi:.3g} at batch {hi} (mean of {k}); "
            f"Spearman r = {rho:+.2f} with log batch size over n = {n} runs."
        )
    (a_lo, _), (a_hi, _) = (at_batch(results, "test_accuracy", b) for b in (lo, hi))
    gap = [r["test_loss"] - r["train_loss"] for r in runs]
    rho_gap = float(spearmanr([r["hessian"] for r in runs], gap)[0])
    lines.append(
        f"Test accuracy is {a_lo:.3f} at batch {lo} and {a_hi:.3f} at batch {hi}; across all "
        f"n = {len(runs)} runs the Hessian sharpness correlates with the generalization gap "
        f"(test minus training loss) at Spearman r = {rho_gap:+.2f}."
    )
    dinh, src = results["dinh"], results["dinh_source"]
    a = [r["factor"] for r in dinh]
    loss_change = max(r["train_loss"] for r in dinh) - min(r["train_loss"] for r in dinh)
    acc_change = max(r["test_accuracy"] for r in dinh) - min(r["test_accuracy"] for r in dinh)
    lines.append(
        f"Dinh et al.: rescaling layer {src['layer']} by a and layer {src['layer'] + 1} by 1/a "
        f"(a from {min(a):g} to {max(a):g}, one model of batch size {src['batch_size']}) "
        f"changes the outputs by at most {max(r['max_output_change'] for r in dinh):.1e}, the "
        f"training loss by {loss_change:.1e} and the test accuracy by {acc_change:.3f}, while "
        f"the Hessian sharpness varies {_spread(dinh, 'hessian'):.1f}x, Keskar's "
        f"{_spread(dinh, 'keskar'):.1f}x, the ball's {_spread(dinh, 'ball'):.1f}x and the "
        f"valley width {_spread(dinh, 'valley_width'):.1f}x: the same function can be made "
        "sharp or flat."
    )
    return lines + diverged_lines(runs)


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    src = results["dinh_source"]
    return [
        *batch_sweep_settings(cfg, results),
        (
            "sharpness",
            f"ε = {cfg.epsilon:g} on {results['sharpness_examples']} training examples, "
            f"float64; Keskar: {cfg.keskar_steps} L-BFGS-B iterations; ball: {cfg.ball_steps} "
            f"ascent steps; Hessian: Lanczos; valley: height {cfg.valley_height:g}, "
            f"{cfg.valley_directions} random directions",
        ),
        (
            "rescaling",
            f"factors {', '.join(format(r['factor'], 'g') for r in results['dinh'])} on layer "
            f"{src['layer']} (next layer 1/a), model of batch size {src['batch_size']}, "
            f"seed {src['seed']}",
        ),
    ]
