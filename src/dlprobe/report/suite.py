"""One self-contained report.html for a whole suite, from its run folders."""

from __future__ import annotations

import json
from pathlib import Path

from dlprobe import DlprobeError
from dlprobe.experiments.kit import get_suite, suite_parts
from dlprobe.report.html import esc, page, table
from dlprobe.report.run import environment_table, run_section
from dlprobe.runs import read_json, write_bytes


def read_suite_state(path: Path) -> dict:
    """A suite folder's suite.json, checked."""
    state = read_json(Path(path) / "suite.json", what="suite.json")
    if not isinstance(state, dict) or not isinstance(state.get("experiments"), dict):
        raise DlprobeError(f"{Path(path) / 'suite.json'} is not a dlprobe suite.json")
    get_suite(state.get("suite", ""))
    return state


def _base_seed(run: Path) -> str:
    try:
        return str(json.loads((run / "config.json").read_text())["config"]["seed"])
    except (OSError, ValueError, KeyError):
        return "-"


def fidelity_table(path: Path, state: dict) -> str:
    """Every finished experiment's rows against the reference, in one table."""
    rows = []
    for eid, entry in state["experiments"].items():
        summary = Path(path) / eid / "summary.json"
        if entry["status"] == "done" and summary.is_file():
            rows += [{"experiment": eid, **r} for r in read_json(summary).get("fidelity", [])]
    if not rows:
        return ""
    n = {v: sum(r["verdict"].startswith(v) for r in rows) for v in ("reproduced", "differs", "not")}
    return (
        "<h2 id='fidelity'>Fidelity: this run against the homework's reference</h2>"
        f"<p>{n['reproduced']} of {len(rows)} reference results reproduced, {n['differs']} "
        f"differ for a stated reason, {n['not']} not reproduced (computed from each "
        "experiment's results.json; the references are in shared/SPEC.md).</p>"
        f"{table(rows)}"
    )


def write_suite_report(path: Path) -> Path:
    """The suite's report.html, in the suite's order, from the run folders."""
    path = Path(path)
    state = read_suite_state(path)
    suite = get_suite(state["suite"])
    fidelity = fidelity_table(path, state)
    toc = ["<li><a href='#fidelity'>Fidelity against the reference</a></li>"] if fidelity else []
    body = [fidelity]
    for part, exps in suite_parts(suite):
        toc.append(f"<li><a href='#{part.anchor}'>{esc(part.heading)}</a><ul>")
        body.append(f"<h2 id='{part.anchor}'>{esc(part.heading)}</h2>")
        for exp in exps:
            entry = state["experiments"].get(exp.id, {"status": "missing"})
            toc.append(
                f"<li><a href='#{exp.id}'>{esc(exp.title)}</a> "
                f"<span class='muted'>({esc(entry['status'])})</span></li>"
            )
            body.append("<section class='experiment'>")
            if entry["status"] == "done":
                body.append(run_section(path / exp.id, heading="h3", link_prefix=f"{exp.id}/"))
            else:
                body.append(
                    f"<h3 id='{exp.id}'>{esc(exp.item)} · {esc(exp.title)}</h3>"
                    f"<div class='fail'>This experiment did not finish "
                    f"(status: {esc(entry['status'])}). {esc(entry.get('error', ''))}</div>"
                )
            body.append("</section>")
        toc.append("</ul></li>")
    times = [
        (
            eid,
            v["status"],
            f"{v['seconds']:.1f} s" if "seconds" in v else "-",
            _base_seed(path / eid),
        )
        for eid, v in state["experiments"].items()
    ]
    env = environment_table(
        {**state, "command": [f"dlprobe run {suite.id} --profile {state['profile']}"]},
        {"run_seconds": state.get("seconds")},
    )
    html = (
        f"<h1>dlprobe · {esc(suite.title)}</h1>"
        f"<p>Every figure and number below was produced by <code>dlprobe run {esc(suite.id)} "
        f"--profile {esc(state['profile'])}</code>; observations are computed from the saved "
        f"results. Each experiment's data is linked from its section.</p>"
        f"<nav class='toc'><b>Contents</b><ul>{''.join(toc)}"
        f"<li><a href='#environment'>Environment and timings</a></li></ul></nav>"
        f"{''.join(body)}"
        f"<h2 id='environment'>Environment and timings</h2>{env}"
        f"{table(times, header=['experiment', 'status', 'time (wall, with figures)', 'base seed'])}"
        f"<p class='muted'>Each experiment derives its models' seeds from its base seed (see its "
        f"settings); its config.json records the whole configuration, so "
        f"<code>dlprobe run ID --config DIR/config.json</code> repeats it.</p>"
    )
    out = path / "report.html"
    write_bytes(out, page(f"dlprobe {suite.id}", html).encode())
    return out
