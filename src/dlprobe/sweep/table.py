"""A sweep's tidy table (results.csv) and its report.html, from sweep.json and the trial
folders alone, so both can be written again at any time.

results.csv has one row per trial: ``trial``, the swept settings (one column each, named
by their dotted setting), ``status``, ``seconds``, ``error``, then the numbers of the
trial's summary.json: a number is one column, a list of numbers one column per entry
(``NAME [1]``, ``NAME [2]``, ...); text and nested lists are left to the trial's report.
An empty cell is a missing number (pandas reads it as NaN).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from dlprobe.report.html import esc, figure_png, img_tag, page, table
from dlprobe.runs import write_bytes

from .axes import Axis, is_number_axis

SHOWN_SUMMARY_COLUMNS = 6  # the report's table; results.csv holds all of them


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def flat_summary(summary: dict) -> dict:
    """The numbers of a summary.json ``summary``: scalars, and lists of scalars by entry."""
    flat = {}
    for key, value in summary.items():
        if value is None or _is_number(value):
            flat[key] = value
        elif isinstance(value, list) and value and all(v is None or _is_number(v) for v in value):
            flat.update({f"{key} [{i}]": v for i, v in enumerate(value, 1)})
    return flat


def trial_rows(state: dict, summaries: dict[str, dict]) -> list[dict]:
    """One record per trial; ``summaries`` maps a trial's name to its summary.json."""
    rows = []
    for trial in state["trials"]:
        settings = {
            k: _label(v) if isinstance(v, list) else v for k, v in trial["settings"].items()
        }
        summary = summaries.get(trial["name"], {}).get("summary", {})
        rows.append(
            {
                "trial": trial["name"],
                **settings,
                "status": trial["status"],
                "seconds": trial.get("seconds"),
                "error": trial.get("error", ""),
                **flat_summary(summary),
            }
        )
    return rows


def _columns(rows: list[dict]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def write_results_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV; missing cells empty; floats at full precision."""
    columns = _columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    write_bytes(path, buf.getvalue().encode())


def headline_columns(rows: list[dict], first_summary_column: int) -> list[str]:
    """Two summary columns to draw: the first ones whose finite values differ between
    finished trials, else the first ones with a finite value."""
    varying, constant = [], []
    for c in _columns(rows)[first_summary_column:]:
        values = {r.get(c) for r in rows if r["status"] == "done"}
        finite = {v for v in values if _is_number(v) and math.isfinite(v)}
        (varying if len(finite) > 1 else constant if finite else []).append(c)
    return (varying + constant)[:2]


def _n_per_value(counts: list[int]) -> str:
    low, high = min(counts, default=0), max(counts, default=0)
    n = f"{low}" if low == high else f"{low}-{high}"
    return f"n = {n} trial{'s' if high != 1 else ''} per value"


def axis_figure(axis: Axis, rows: list[dict], headlines: list[str]):
    """Each headline number of the finished trials against one swept setting: every trial
    a dot, and where a value has several trials, their mean a line."""
    from dlprobe.experiments.kit import new_figure

    done = [r for r in rows if r["status"] == "done"]
    fig, axes = new_figure(
        ncols=len(headlines), width=5.0, height=3.6, layout="constrained", squeeze=False
    )
    labels = sorted({str(r[axis.name]) for r in done}, key=lambda s: _sort_key(axis, s))
    for ax, column in zip(axes[0], headlines, strict=True):
        pairs = [
            (r[axis.name], r[column])
            for r in done
            if _is_number(r.get(column)) and math.isfinite(r[column])
        ]
        if is_number_axis(axis):
            xs = np.array([x for x, _ in pairs], dtype=float)
        else:
            xs = np.array([labels.index(str(x)) for x, _ in pairs], dtype=float)
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        ys = np.array([y for _, y in pairs], dtype=float)
        ax.scatter(xs, ys, s=18, color="tab:blue", alpha=0.7, label="a trial")
        ux = np.unique(xs)
        counts = [int((xs == u).sum()) for u in ux]
        if max(counts, default=0) > 1:
            means = [ys[xs == u].mean() for u in ux]
            ax.plot(ux, means, color="tab:orange", label="mean over the other settings")
        if axis.scale == "log" or (is_number_axis(axis) and _spans_decade(ux)):
            ax.set_xscale("log")
        ax.set(xlabel=axis.name, ylabel=_wrap(column, 32))
        ax.set_title(_n_per_value(counts))
        ax.legend(fontsize=8)
    return fig


def _label(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _sort_key(axis: Axis, label: str):
    values = [_label(v) for v in axis.values]
    return (values.index(label), "") if label in values else (len(values), label)


def _spans_decade(xs) -> bool:
    return len(xs) >= 2 and xs.min() > 0 and xs.max() >= 10 * xs.min()


def _wrap(text: str, width: int = 40) -> str:
    words, lines = text.split(), [""]
    for w in words:
        lines[-1] += (" " if lines[-1] else "") + w
        if len(lines[-1]) > width:
            lines.append("")
    return "\n".join(line for line in lines if line)


def _figures(axes: list[Axis], rows: list[dict], headlines: list[str]) -> list[str]:
    """A figure per swept setting with two or more values among the finished trials."""
    from dlprobe.experiments.kit import style

    figures = []
    for axis in axes:
        n_values = len({str(r[axis.name]) for r in rows if r["status"] == "done"})
        if n_values < 2 or not headlines:
            continue
        with style():
            png = figure_png(axis_figure(axis, rows, headlines))
        caption = (
            f"{', '.join(headlines)} against {axis.name} ({n_values} values; finished trials only)."
        )
        figures.append(
            f"<figure>{img_tag(png, axis.name)}<figcaption>{esc(caption)}</figcaption></figure>"
        )
    return figures


def sweep_report_html(state: dict, rows: list[dict], axes: list[Axis]) -> str:
    """The page: what was swept, the outcome, failures by name, figures and the table."""
    statuses = [t["status"] for t in state["trials"]]
    counts = {s: statuses.count(s) for s in ("done", "failed", "pending")}
    first_summary = 1 + len(axes) + 3  # trial, settings, status, seconds, error
    headlines = headline_columns(rows, first_summary)
    figures = _figures(axes, rows, headlines)
    failed = [t for t in state["trials"] if t["status"] == "failed"]
    failures = "".join(
        f"<li><code>{esc(t['name'])}</code>: {esc(t.get('error', ''))}</li>" for t in failed
    )
    shown = _columns(rows)[: first_summary + SHOWN_SUMMARY_COLUMNS]
    shown = [c for c in shown if c != "error"]
    axes_rows = [(a.name, a.describe()) for a in axes]
    return page(
        f"dlprobe sweep {state['experiment']}",
        f"<h1>dlprobe sweep · {esc(state['experiment'])} ({esc(state['profile'])} profile)</h1>"
        f"<p>{len(statuses)} trials: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['pending']} pending. Each trial is a run folder under <code>trials/</code> "
        f"with its own report; every number below is read from those folders.</p>"
        f"<p class='muted'>command: <code>{esc(' '.join(state.get('command', [])))}</code></p>"
        f"<h2>Axes</h2>{table(axes_rows, ['setting', 'values'])}"
        + (
            f"<p class='muted'>{state['samples']} draws of the random axes per grid point, "
            f"sweep seed {state['sweep_seed']}; drawn floats are rounded to 4 significant "
            "digits.</p>"
            if any(a.kind == "random" for a in axes)
            else ""
        )
        + (f"<h2>Failed trials</h2><div class='fail'><ul>{failures}</ul></div>" if failed else "")
        + (f"<h2>Against each swept setting</h2>{''.join(figures)}" if figures else "")
        + f"<h2>Trials</h2>{table([{c: r.get(c) for c in shown} for r in rows], shown)}"
        f"<p class='muted'>All {len(_columns(rows))} columns, with every summary number, "
        f"are in results.csv.</p>",
    )


def write_sweep_report(path: Path, state: dict, rows: list[dict], axes: list[Axis]) -> Path:
    out = Path(path) / "report.html"
    write_bytes(out, sweep_report_html(state, rows, axes).encode())
    return out
