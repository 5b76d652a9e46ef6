"""The report of one run folder, from its saved results alone: figures, notes, report.html.

``write_run_report(path)`` draws ``figures/*.png``, computes the notes into
``summary.json`` and writes ``report.html``; ``run_section(path)`` is that run's section
in a suite's report. Nothing here trains: a run can be redrawn from ``results.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

from dlprobe import DlprobeError
from dlprobe.config import from_dict
from dlprobe.config_help import settings_rows
from dlprobe.experiments.kit import Experiment, Notes, get_experiment, style
from dlprobe.report.html import esc, figure_png, fmt, img_tag, page, table
from dlprobe.runs import read_json, write_bytes, write_json


def load_run(path: Path) -> tuple[Experiment, dict, dict]:
    """(experiment, config.json content, results.json content) of a finished run folder."""
    path = Path(path)
    for name in ("config.json", "results.json"):
        if not (path / name).is_file():
            raise DlprobeError(f"{path} has no {name}: not a finished dlprobe run folder")
    info = read_json(path / "config.json")
    saved = read_json(path / "results.json")
    if not isinstance(info, dict) or "experiment" not in info or "config" not in info:
        raise DlprobeError(f"{path / 'config.json'} is not a dlprobe run's config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("results"), dict):
        raise DlprobeError(f"{path / 'results.json'} holds no results (a dlprobe run writes them)")
    return get_experiment(info["experiment"]), info, saved


def write_run_report(path: Path) -> Notes:
    """From results.json alone: figures/*.png, summary.json and report.html."""
    path = Path(path)
    exp, info, saved = load_run(path)
    results = saved["results"]
    t0 = time.perf_counter()
    try:
        with style():
            pngs = {name: figure_png(fig) for name, fig in exp.figures(results).items()}
        notes = exp.notes(results)
    except (KeyError, TypeError, IndexError) as err:
        raise DlprobeError(
            f"{path / 'results.json'} does not hold the results {exp.id} writes "
            f"({type(err).__name__}: {err}); rerun the experiment"
        ) from None
    for old in (path / "figures").glob("*.png"):
        if old.stem not in pngs:
            old.unlink()
    for name, png in pngs.items():
        write_bytes(path / "figures" / f"{name}.png", png)
    timings = {"run_seconds": saved.get("run_seconds"), "figure_seconds": time.perf_counter() - t0}
    write_json(
        path / "summary.json",
        {
            "experiment": exp.id,
            "profile": info["profile"],
            "summary": notes.summary,
            "observations": notes.observations,
            "tables": notes.tables,
            "fidelity": notes.fidelity,
            "figures": list(pngs),
            "timings": timings,
        },
    )
    body = (
        f"<h1>dlprobe · {esc(exp.title)}</h1>{run_section(path)}"
        f"<h2 id='environment'>Environment and timings</h2>{environment_table(info, timings)}"
        f"<p class='muted'>Reproduce with <code>dlprobe run {esc(exp.id)} --config "
        f"config.json</code>; redraw with <code>dlprobe report {esc(path.name)}</code>.</p>"
    )
    write_bytes(path / "report.html", page(f"dlprobe {exp.id}", body).encode())
    return notes


def run_section(path: Path, heading: str = "h2", link_prefix: str = "") -> str:
    """HTML of one finished run: question, settings, observations, tables, figures."""
    path = Path(path)
    exp, info, _ = load_run(path)
    summary = read_json(path / "summary.json")
    config = from_dict(exp.config, info["config"])
    sub = "h3" if heading == "h2" else "h4"
    parts = [
        f"<{heading} id='{esc(exp.id)}'>{esc(exp.item)} · {esc(exp.title)} "
        f"<span class='muted'>({esc(exp.id)})</span></{heading}>",
        f"<p><b>Question.</b> {esc(exp.question)}</p>",
    ]
    profile = info.get("profile", "")
    if profile != "full" and exp.full_differs:
        parts.append(
            f"<div class='note'>Profile <b>{esc(profile)}</b>: {esc(exp.full_differs)} "
            f"Run with <code>--profile full</code> for the homework's settings.</div>"
        )
    if summary["observations"]:
        parts.append(f"<{sub}>Observations (computed from the results)</{sub}>")
        parts.append(
            "<ul class='obs'>"
            + "".join(f"<li>{esc(o)}</li>" for o in summary["observations"])
            + "</ul>"
        )
    if summary.get("fidelity"):
        parts.append(f"<{sub}>Against the homework's reference (shared/SPEC.md)</{sub}>")
        parts.append(table(summary["fidelity"]))
    for title, records in summary.get("tables", []):
        parts.append(f"<{sub}>{esc(title)}</{sub}>{table(records)}")
    if summary["summary"]:
        parts.append(f"<{sub}>Summary</{sub}>")
        parts.append(
            table([(k, fmt(v)) for k, v in summary["summary"].items()], ["quantity", "value"])
        )
    parts.append(f"<{sub}>Figures</{sub}>")
    for name in summary["figures"]:
        png = (path / "figures" / f"{name}.png").read_bytes()
        caption = exp.captions.get(name, name)
        parts.append(
            f"<figure>{img_tag(png, caption)}<figcaption><b>{esc(name)}</b>: "
            f"{esc(caption)}</figcaption></figure>"
        )
    parts.append(f"<{sub}>Settings</{sub}>")
    parts.append(table(settings_rows(config), header=["setting", "value", "meaning"]))
    parts.append(
        f"<p class='muted'>Data behind every figure: <a href='{esc(link_prefix)}results.json'>"
        f"{esc(link_prefix)}results.json</a></p>"
    )
    return "\n".join(parts)


def environment_table(info: dict, timings: dict) -> str:
    rows = [
        ("profile", info["profile"]),
        ("device", info["device"]),
        ("run time", f"{timings['run_seconds']:.1f} s" if timings.get("run_seconds") else "-"),
        ("created", info["created"]),
        ("command", " ".join(info.get("command", []))),
        *info["environment"].items(),
    ]
    return table(rows, header=["environment", ""])
