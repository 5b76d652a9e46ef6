"""The sentences and tables of a batch-size comparison's report, every one computed from
the runs: what was held equal, what each batch size reached, who was left out, trends."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlprobe.models import describe_model

from ..experiment import fidelity_row
from ..stats import column, finite, group_rows, mean_std
from .protocol import PROTOCOL_NAMES
from .select import (
    NO_TREND,
    P_TREND,
    at_batch,
    batch_sizes_of,
    counted,
    direction,
    left_out,
    main_runs,
    protocols_of,
    span,
    spearman_p,
    trend,
    trend_text,
    value_range,
)


def protocol_label(protocol: str, budget: dict) -> str:
    """A protocol with its numbers, e.g. "equal steps (1000 per model)"."""
    return {
        "converged": f"converged ({budget['target']}, at most {budget['max_epochs']} epochs)",
        "epochs": f"equal epochs ({budget['epochs']} per model)",
        "steps": f"equal steps ({budget['steps']} per model)",
    }[protocol]


def held_equal_lines(results: dict) -> list[str]:
    """What each protocol that ran holds equal, and what it lets vary (computed ranges)."""
    budget, runs = results["budget"], results["runs"]
    lines = []
    for protocol in protocols_of(runs):
        rs = [r for r in runs if r["protocol"] == protocol]
        e, s = column(rs, "epochs"), column(rs, "steps")
        loss = column([r for r in rs if r["status"] != "diverged"], "train_loss")
        held = {
            "converged": f"the training loss reached ({budget['target']}, checked after every "
            f"epoch, at most {budget['max_epochs']} epochs)",
            "epochs": f"the passes over the data ({budget['epochs']} epochs)",
            "steps": f"the optimizer steps ({budget['steps']}, rounded to whole epochs)",
        }[protocol]
        reached = (
            f"reached training losses {value_range(loss, '.2g')}"
            if finite(loss).size
            else "no model reached a finite training loss"
        )
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()} holds equal {held}; it used {span(e)} "
            f"epochs and {span(s)} optimizer steps and {reached}; "
            f"{sum(r['status'] == 'fine' for r in rs)} of {len(rs)} models met the target."
        )
        rho, p, n = trend(counted(runs, protocol), "train_loss")
        if protocol == "converged" and n:  # what the target leaves unequal
            lines[-1] += (
                f" The loss at the stop {direction(rho, p)} with batch size (ρ = {rho:+.2f}, "
                f"p = {p:.2g}, n = {n})"
                + (
                    ": checked once per epoch, small batches take many steps between checks "
                    "and stop further below the target."
                    if direction(rho, p) == "rises"
                    else "."
                )
            )
    return lines


def left_out_lines(runs: Sequence[dict], key: str = "batch_size") -> list[str]:
    """One sentence per protocol naming the runs that missed the target or failed, grouped
    by ``key`` and status, with their seeds and what they reached, and saying whether they
    are left out of the protocol's statistics (see ``counts``)."""
    lines = []
    for protocol in protocols_of(runs):
        out = [r for r in left_out(runs) if r["protocol"] == protocol]
        if not out:
            continue
        named = "; ".join(
            f"{key.replace('_', ' ')} {value} {status}: seed(s) "
            f"{', '.join(str(r['seed']) for r in rs)} ("
            + (
                ""
                if status == "diverged"  # its final metrics are not numbers
                else f"training loss {value_range(column(rs, 'train_loss'), '.3g')}, accuracy "
                f"{value_range(column(rs, 'train_accuracy'), '.3f')}, "
            )
            + f"{span(column(rs, 'epochs'))} epochs, {span(column(rs, 'steps'))} steps)"
            for (value, status), rs in group_rows(out, key, "status").items()
        )
        missed = sum(r["status"] == "not converged" for r in out)
        failed = f"{len(out) - missed} diverged or collapsed are left out"
        what = (
            "all are left out of its statistics"
            if protocol == "converged"
            else failed
            if not missed
            else f"the {missed} not converged are counted, as that protocol would"
            + f"; {failed}" * (missed < len(out))
        )
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()}: {len(out)} of "
            f"{sum(r['protocol'] == protocol for r in runs)} models missed the target or "
            f"failed ({what}): {named}."
        )
    return lines


def reached_table(runs: Sequence[dict], *by: str) -> tuple[str, list[dict]]:
    """The Notes table of what every protocol and batch size (or ``by``) reached, as means
    over the seeds that did not diverge; the gradient norm where runs have one."""
    rows, by = [], by or ("batch_size",)
    for key, rs in group_rows(runs, "protocol", *by).items():
        ok = [r for r in rs if r["status"] != "diverged"]
        rows.append(
            {
                "protocol": PROTOCOL_NAMES[key[0]],
                **{k.replace("_", " "): v for k, v in zip(by, key[1:], strict=True)},
                "met target": f"{sum(r['status'] == 'fine' for r in rs)}/{len(rs)}",
                "epochs": span(column(rs, "epochs")),
                "optimizer steps": span(column(rs, "steps")),
                "train loss": mean_std(r["train_loss"] for r in ok)[0],
                "train accuracy": mean_std(r["train_accuracy"] for r in ok)[0],
                "test accuracy": mean_std(r["test_accuracy"] for r in ok)[0],
            }
        )
        if "grad_norm" in rs[0]:
            rows[-1]["gradient norm"] = mean_std(r["grad_norm"] for r in ok)[0]
    grad = "; gradient norm where the sharpness was measured" * ("gradient norm" in rows[0])
    return f"What each {by[-1].replace('_', ' ')} reached (mean over seeds{grad})", rows


def protocol_lines(runs: Sequence[dict], metrics: dict) -> list[str]:
    """Per metric (field -> name): its trend with log batch size under every protocol that
    ran and, when they disagree, a sentence that says so and what the others follow."""
    protocols, lines = protocols_of(runs), []
    if len(protocols) < 2:
        return [f"Only {PROTOCOL_NAMES[protocols[0]]} ran: `--protocol all` adds the others."]
    for metric, name in metrics.items():
        said = {}
        for protocol in protocols:
            rs = counted(runs, protocol)
            rho, p, _ = trend(rs, metric)
            said[protocol] = direction(rho, p)
        parts = [
            f"under {PROTOCOL_NAMES[p]} it {said[p]} ({trend_text(counted(runs, p), metric)})"
            for p in protocols
        ]
        agree = len(set(said.values())) == 1
        line = f"With batch size, {name}: {'; '.join(parts)}."
        if not agree:
            line += " The protocols disagree. " + " ".join(
                _follows(runs, p, metric) for p in protocols if p != "converged"
            )
        else:
            line += f" The protocols agree: it {said[protocols[0]]} under each."
        lines.append(line)
    return lines


def _follows(runs: Sequence[dict], protocol: str, metric: str) -> str:
    """Whether the trend under ``protocol`` follows what that protocol lets vary: the
    training length of each batch size and the training loss the models reached."""
    rs = counted(runs, protocol)
    length = "epochs" if protocol == "steps" else "steps"
    rho_len, _, _ = trend(rs, length)
    rho_loss, p_loss, _ = trend(rs, "train_loss")
    rho_m, p_m, n = spearman_p(column(rs, "train_loss"), column(rs, metric))
    follows = p_loss < P_TREND and p_m < P_TREND
    return (
        f"Under {PROTOCOL_NAMES[protocol]} the {length} trained change with batch size "
        f"(ρ = {rho_len:+.2f}), the training loss reached {direction(rho_loss, p_loss)} "
        f"with it (ρ = {rho_loss:+.2f}, p = {p_loss:.2g}) and the measure tracks that loss "
        f"(ρ = {rho_m:+.2f}, p = {p_m:.2g}, n = {n}): "
        + (
            "its trend there follows training length."
            if follows
            else "the loss reached does not account for its trend there."
        )
    )


def main_label(results: dict) -> str:
    """The main protocol in a few words, for figure titles."""
    protocol = protocols_of(results["runs"])[0]
    if protocol == "converged":
        return f"converged ({results['budget']['target']})"
    return PROTOCOL_NAMES[protocol]


def critical_point_line(runs: list[dict], epsilon: float, slopes: dict | None = None) -> str:
    """The gradient norm where the Hessian was measured, against the curvature term, and
    how far the maxima in ``slopes`` (field -> name) follow that gradient norm."""
    g, h = column(runs, "grad_norm"), column(runs, "hessian_norm")
    ratio = 2 * g / (h * epsilon)  # first-order rise ‖g‖ε over second-order ½‖H‖ε²
    line = (
        f"The sharpness was measured at gradient norms {value_range(g, '.2g')} (median "
        f"{np.nanmedian(g):.2g})"
    )
    if np.isfinite(h).any():
        line += (
            f"; in the ε = {epsilon:g} ball the first-order loss rise ‖g‖ε is "
            f"{np.nanmedian(ratio):.3g} times (median) the second-order ½‖H‖ε² that the Hessian "
            "estimate keeps: "
            + (
                "these are not critical points at that scale, so the Hessian sharpness is the "
                "curvature there, not the loss rise"
                if np.nanmedian(ratio) > 1
                else "the points are close enough to critical for the estimate"
            )
        )
    said = {name: spearman_p(g, column(runs, m)) for m, name in (slopes or {}).items()}
    if said:
        line += "; " + ", ".join(
            f"{name} tracks the gradient norm at ρ = {r:+.2f} (p = {p:.2g})"
            for name, (r, p, _) in said.items()
        )
        follows = any(direction(r, p) == "rises" for r, p, _ in said.values())
        line += (
            ": at this ε these maxima measure mostly the slope (the first-order term), not "
            "the curvature"
            if follows
            else ": the maxima do not follow the slope here"
        )
    return line + "."


def intro_lines(results: dict, what: str) -> list[str]:
    """The report's first lines: batch sizes, seeds, ``what`` was trained, the main
    protocol's n, what each protocol holds equal, and the runs that missed the target."""
    runs, k = results["runs"], len(results["seeds"])
    sizes, main = batch_sizes_of(runs), protocols_of(runs)[0]
    return [
        f"{len(sizes)} batch sizes ({', '.join(map(str, sizes))}), {k} seed(s) each; {what} on "
        f"{results['dataset']['name']}; statistics under {PROTOCOL_NAMES[main]} use n = "
        f"{len(main_runs(runs))} models.",
        *held_equal_lines(results),
        *left_out_lines(runs),
    ]


def main_trend_lines(runs: Sequence[dict], names: dict, protocol: str) -> list[str]:
    """Per measure (field -> name): its trend with log batch size over ``runs`` (counted
    runs of ``protocol``) and its mean ± sd at the smallest and largest batch size."""
    lo, hi = batch_sizes_of(runs)[0], batch_sizes_of(runs)[-1]
    lines = []
    for metric, name in names.items():
        (m_lo, s_lo), (m_hi, s_hi) = at_batch(runs, metric, lo), at_batch(runs, metric, hi)
        lines.append(
            f"{PROTOCOL_NAMES[protocol].capitalize()}: as batch size grows, {name} "
            f"{direction(*trend(runs, metric)[:2])} ({trend_text(runs, metric)}): {m_lo:.3g} "
            f"± {s_lo:.2g} at batch {lo} vs {m_hi:.3g} ± {s_hi:.2g} at batch {hi} (mean ± sd)"
        )
        if protocol == "converged":  # the loss at the stop is the target's residual confound
            rho, p, _ = spearman_p(column(runs, "train_loss"), column(runs, metric))
            lines[-1] += f"; against the training loss at the stop ρ = {rho:+.2f} (p = {p:.2g})"
        lines[-1] += "."
    return lines


def trend_row(
    results: dict, metric: str, claim: str, reference: str, expected: str, extra: str = ""
) -> dict:
    """The fidelity row of a reference trend with batch size (``expected``: "rises" or
    "falls"), measured under the main protocol (``extra`` is appended to the measurement);
    when it differs, which protocols show it."""
    all_runs = results["runs"]
    runs = main_runs(all_runs)
    rho, p, n = trend(runs, metric)
    said = direction(rho, p)
    others = [
        PROTOCOL_NAMES[q]
        for q in protocols_of(all_runs)[1:]
        if direction(*trend(counted(all_runs, q), metric)[:2]) == expected
    ]
    lo, hi = batch_sizes_of(runs)[0], batch_sizes_of(runs)[-1]
    (m_lo, _), (m_hi, _) = at_batch(runs, metric, lo), at_batch(runs, metric, hi)
    return fidelity_row(
        claim,
        reference,
        f"{m_lo:.3g} at batch {lo} → {m_hi:.3g} at batch {hi}; ρ = {rho:+.2f} (p = {p:.2g}, "
        f"n = {n}){extra}",
        said == expected,
        f"under {main_label(results)} on {results['dataset']['name']} it {said}; "
        + (
            f"it {expected} under {' and '.join(others)}, where batch sizes trained unequally"
            if others
            else f"no protocol run here shows it {expected}"
        ),
    )


def gap_line(runs: Sequence[dict], metric: str, name: str) -> str:
    """How ``metric`` tracks the generalization gap (test minus training loss) across the
    runs, and whether batch size, which moves both, confounds it."""
    gap = column(runs, "test_loss") - column(runs, "train_loss")  # (n_runs,)
    rho, p, n = spearman_p(column(runs, metric), gap)
    rho_b, p_b, _ = spearman_p(np.log(column(runs, "batch_size")), gap)
    rho_m, p_m, _ = trend(runs, metric)
    both = direction(rho_b, p_b) != NO_TREND and direction(rho_m, p_m) != NO_TREND
    return (
        f"Across these n = {n} models {name} tracks the generalization gap (test minus "
        f"training loss) at ρ = {rho:+.2f} (p = {p:.2g}); "
        + (
            f"confound: both vary with batch size (gap ρ = {rho_b:+.2f}, measure ρ = "
            f"{rho_m:+.2f}), so this does not separate the measure from batch size."
            if both
            else f"batch size does not move both (gap ρ = {rho_b:+.2f}, p = {p_b:.2g}; "
            f"measure ρ = {rho_m:+.2f}, p = {p_m:.2g})."
        )
    )


def protocol_caption(measures: str) -> str:
    """The caption of ``protocol_figure`` for these measures (in words)."""
    return (
        f"one column per budget protocol that ran: {measures} and the training loss each "
        "model reached, against batch size; line and band: counted models; crosses: models "
        "that missed the target (left out under converged, counted under equal epochs or "
        "steps); dashed: the target"
    )


def standin_row(results: dict, runs: Sequence[dict]) -> dict:
    """The fidelity row of the data set: do clean-label models generalize as on MNIST?"""
    acc = finite(r["test_accuracy"] for r in runs)
    return fidelity_row(
        "the stand-in is in the homework's regime (clean labels generalize)",
        "MNIST MLPs: about 0.97-0.98 test accuracy",
        f"{results['dataset']['name']}: test accuracy {acc.min():.3f}-{acc.max():.3f} over "
        f"{acc.size} models"
        if acc.size
        else "no model counted",
        bool(acc.size and acc.min() >= 0.9),
        "some models stay below 0.9 test accuracy" if acc.size else "no model met the target",
    )


def model_and_data_table(results: dict) -> tuple[str, list[dict]]:
    """The Notes table of the model and the data, from ``model_and_data`` entries."""
    d = results["dataset"]
    return (
        "Model and data",
        [
            {
                "model": describe_model(results["model"]),
                "parameters": results["model_params"],
                "dataset": d["name"],
                "training examples": d["n_train"],
                "test examples": d["n_test"],
            }
        ],
    )
