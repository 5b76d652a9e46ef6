"""sensitivity: headline numbers, observations and settings for the report."""

from __future__ import annotations

from dlprobe.experiments.classification import at_batch, batch_sweep_settings, batch_trend
from dlprobe.experiments.common import diverged_lines
from dlprobe.experiments.sensitivity.protocol import Config


def summarize(results: dict) -> dict:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    out = {"batch sizes": sizes}
    for metric in (
        "sensitivity_loss_gradient",
        "sensitivity_jacobian",
        "sharpness",
        "test_accuracy",
        "train_loss",
    ):
        out[f"{metric}: mean at batch {lo} / {hi}"] = [
            at_batch(results, metric, lo)[0],
            at_batch(results, metric, hi)[0],
        ]
    for metric in ("sensitivity_loss_gradient", "sensitivity_jacobian", "sharpness"):
        out[f"{metric}: Spearman r with log batch size"] = batch_trend(results, metric)[0]
    return out


def observations(results: dict) -> list[str]:
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    lo, hi = sizes[0], sizes[-1]
    k = len(results["seeds"])
    lines = [
        f"{len(sizes)} training approaches (batch sizes {', '.join(map(str, sizes))}), "
        f"{k} seeds each, trained for {min(r['steps'] for r in results['runs'])}-"
        f"{max(r['steps'] for r in results['runs'])} optimizer steps."
    ]
    for metric, name in (
        ("sensitivity_loss_gradient", "the homework's sensitivity (loss gradient)"),
        ("sensitivity_jacobian", "Novak et al.'s sensitivity (softmax Jacobian)"),
        ("sharpness", f"the {results['sharpness_method']} sharpness"),
    ):
        rho, n = batch_trend(results, metric)
        (m_lo, s_lo), (m_hi, s_hi) = at_batch(results, metric, lo), at_batch(results, metric, hi)
        direction = "falls" if rho < 0 else "rises"
        lines.append(
            f"As batch size grows, {name} {direction} (Spearman r = {rho:+.2f} with log batch "
            f"size over n = {n} runs): {m_lo:.3g} ± {s_lo:.2g} at batch {lo} vs "
            f"{m_hi:.3g} ± {s_hi:.2g} at batch {hi} (mean ± sd over {k} seeds)."
        )
    (a_lo, sa_lo), (a_hi, sa_hi) = (at_batch(results, "test_accuracy", b) for b in (lo, hi))
    (t_lo, _), (t_hi, _) = (at_batch(results, "train_accuracy", b) for b in (lo, hi))
    lines.append(
        f"Test accuracy is {a_lo:.3f} ± {sa_lo:.3f} at batch {lo} and {a_hi:.3f} ± {sa_hi:.3f} "
        f"at batch {hi} (training accuracy {t_lo:.3f} and {t_hi:.3f})."
    )
    rho, _ = batch_trend(results, "sensitivity_loss_gradient")
    agrees = rho < 0 and a_hi <= a_lo
    lines.append(
        "Reference (homework, MNIST): sensitivity falls from about 0.3-0.6 to near 0 as batch "
        "size grows while test accuracy drops slightly; here the sensitivity "
        f"{'falls' if rho < 0 else 'does not fall'} and test accuracy "
        f"{'drops' if a_hi <= a_lo else 'rises'} by {abs(a_lo - a_hi):.3f}, "
        f"{'the same pattern' if agrees else 'a different pattern'}."
    )
    if not agrees:
        (loss_lo, _), (loss_hi, _) = (at_batch(results, "test_loss", b) for b in (lo, hi))
        lines.append(
            "Two things to weigh against the reference: dividing the gradient of a batch-mean "
            "loss by the dataset size again (a pitfall of published solutions) makes "
            "sensitivity fall as 1/batch size by construction, whereas dlprobe measures it per "
            "example; and the loss-gradient sensitivity grows with the test loss, so it "
            f"follows how far each model overfits (test loss {loss_lo:.3g} at batch {lo} vs "
            f"{loss_hi:.3g} at batch {hi} here)."
        )
    return lines + diverged_lines(results["runs"])


def settings(cfg: Config, results: dict) -> list[tuple[str, str]]:
    return [
        *batch_sweep_settings(cfg, results),
        (
            "sensitivity",
            f"both definitions, per example, averaged over {results['sensitivity_examples']} "
            "test examples (never divided by the dataset size)",
        ),
        (
            "sharpness",
            f"{results['sharpness_method']}, ε = {results['epsilon']:g}, on "
            f"{results['sharpness_examples']} training examples, float64",
        ),
    ]
