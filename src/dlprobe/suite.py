"""Suites: every experiment of a homework into one folder with one report.

``dlprobe run hw1`` runs the HW1 experiments in the homework's order into
``runs/hw1-TIMESTAMP/`` (one normal run folder per experiment) and writes one
``report.html`` at the top. A failing experiment does not stop the others; the report
shows the failure and the exit code is 1. ``--resume`` skips finished experiments and
resumes an interrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from datetime import datetime
from pathlib import Path

from dlprobe import DlprobeError, Interrupted
from dlprobe.experiments.base import get_experiment
from dlprobe.lab import environment_table, prepare_run_dir, run_experiment, run_section
from dlprobe.report.html import esc, page, table
from dlprobe.runs import (
    environment,
    new_run_path,
    read_json,
    resolve_device,
    write_bytes,
    write_json,
)

# Parts of each suite in the homework's order: (anchor, heading, experiment ids).
SUITES = {
    "hw1": [
        ("hw1-1", "HW1-1 Deep vs shallow", ["simulate-function", "actual-task"]),
        (
            "hw1-2",
            "HW1-2 Optimization",
            ["optimization-trajectory", "gradient-norm", "minimal-ratio"],
        ),
        (
            "hw1-3",
            "HW1-3 Generalization",
            ["random-labels", "params-vs-generalization", "flatness-interpolation", "sensitivity"],
        ),
        ("bonus", "Bonus", ["error-surface", "sharpness"]),
    ],
    "lecture-indicators": [
        (
            "indicators",
            "Indicators of generalization (lecture)",
            ["sensitivity-manifold", "linear-regions"],
        ),
    ],
}
TITLES = {
    "hw1": "HW1: deep vs shallow, optimization, generalization",
    "lecture-indicators": "Lecture: indicators of generalization",
}


def suite_ids(name: str) -> list[str]:
    return [eid for _, _, ids in SUITES[name] for eid in ids]


def _suite_config(exp, profile: str, dataset: str | None, seed: int | None):
    cfg = exp.config(profile)
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    if dataset is not None and "dataset" in names:
        changes["dataset"] = dataset
    if seed is not None and "seed" in names:
        changes["seed"] = seed
    cfg = dataclasses.replace(cfg, **changes)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def suite_help(name: str) -> str:
    parts = "\n".join(f"  {heading}: {', '.join(ids)}" for _, heading, ids in SUITES[name])
    return f"""usage: dlprobe run {name} [--profile smoke|quick|full] [--dataset NAME] [--device D]
                       [--seed N] [--out DIR] [--resume] [--data-dir DIR] [--quiet]

{TITLES[name]}.
Runs every experiment below, each into its own sub-folder (a normal run folder), and
writes one report.html at the top, in the homework's order:
{parts}

options:
  --profile {{smoke,quick,full}}  scale of every experiment (default: quick)
  --dataset NAME                replaces the dataset of every experiment that takes one
  --device {{auto,cpu,cuda}}      where to compute (default: auto)
  --seed N                      base seed of every experiment (default: each one's own)
  --out DIR                     suite folder (default: runs/{name}-YYYYmmdd-HHMMSS)
  --resume                      skip finished experiments and resume an interrupted one,
                                in --out or the newest runs/{name}-*
  --data-dir DIR                where downloadable datasets live
  --quiet                       print only the progress lines and the final summary

A failing experiment does not stop the others; the report shows its error and the exit
code is 1. To change one experiment's settings, run it alone: dlprobe run ID --help."""


def run_suite(ns, rest: list[str], wants_help: bool) -> int:
    """``dlprobe run hw1|lecture-indicators``; returns the exit code."""
    name = ns.id
    if wants_help:
        print(suite_help(name))
        return 0
    if rest:
        raise DlprobeError(
            f"dlprobe run {name} takes no experiment settings ({' '.join(rest)}); "
            "run an experiment by its id to change them"
        )
    if ns.config:
        raise DlprobeError(
            f"dlprobe run {name} takes no --config; repeat one experiment with "
            f"`dlprobe run ID --config DIR/ID/config.json`, or a whole suite with --resume"
        )
    if ns.data_dir:
        os.environ["DLPROBE_DATA_DIR"] = str(ns.data_dir)
    device = resolve_device(ns.device)
    if ns.resume:
        path = ns.out or _newest(name)
        state = read_json(path / "suite.json")
        profile, dataset, seed = state["profile"], state["dataset"], state["seed"]
    else:
        profile, dataset, seed = ns.profile or "quick", ns.dataset, ns.seed
        path = ns.out or new_run_path(Path("runs"), name)
        prepare_run_dir(path, resume=False)
        exps = [get_experiment(eid) for eid in suite_ids(name)]
        for exp in exps:  # every config is checked before anything is trained
            _suite_config(exp, profile, dataset, seed)
        state = {
            "suite": name,
            "profile": profile,
            "dataset": dataset,
            "seed": seed,
            "device": str(device),
            "environment": environment(),
            "created": datetime.now().isoformat(timespec="seconds"),
            "experiments": {eid: {"status": "pending"} for eid in suite_ids(name)},
        }
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "suite.json", state)
    t_suite = time.perf_counter()
    for i, eid in enumerate(suite_ids(name), 1):
        entry = state["experiments"][eid]
        sub = path / eid
        if entry.get("status") == "done" and (sub / "results.json").exists():
            print(f"[{i}/{len(state['experiments'])}] {eid}: finished earlier, skipped")
            continue
        exp = get_experiment(eid)
        print(f"[{i}/{len(state['experiments'])}] {eid} ({exp.homework}): {exp.title}", flush=True)
        t0 = time.perf_counter()
        try:
            resume = (sub / "config.json").exists()
            cfg = _suite_config(exp, profile, dataset, seed)
            run_experiment(exp, cfg, sub, device, profile, resume=resume, quiet=ns.quiet)
            # wall time of the whole experiment: training, measurements, figures, report
            entry.update(status="done", seconds=time.perf_counter() - t0)
        except KeyboardInterrupt as err:
            entry.update(status="interrupted")
            write_json(path / "suite.json", state)
            raise Interrupted(f"dlprobe run {name} --resume --out {path}") from err
        except Exception as err:  # one failing experiment must not lose the others
            entry.update(
                status="failed",
                seconds=time.perf_counter() - t0,
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
            )
            print(f"  {eid} FAILED: {type(err).__name__}: {err}", flush=True)
        write_json(path / "suite.json", state)
    state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - t_suite
    write_json(path / "suite.json", state)
    report = write_suite_report(path)
    failed = [e for e, v in state["experiments"].items() if v["status"] != "done"]
    total = sum(v.get("seconds", 0.0) for v in state["experiments"].values())
    print(
        f"{name}: {len(state['experiments']) - len(failed)} experiment(s) done"
        f"{', FAILED: ' + ', '.join(failed) if failed else ''}; experiment time {total:.0f} s"
    )
    print(f"report: {report.resolve()}")
    return 1 if failed else 0


def _newest(name: str) -> Path:
    runs = sorted(Path("runs").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DlprobeError(f"--resume: no runs/{name}-* folder to resume; give --out DIR")
    return runs[-1]


def _base_seed(run: Path) -> str:
    try:
        return str(json.loads((run / "config.json").read_text())["config"]["seed"])
    except (OSError, ValueError, KeyError):
        return "-"


def write_suite_report(path: Path) -> Path:
    """One self-contained report.html for the whole suite, from the run folders."""
    path = Path(path)
    state = read_json(path / "suite.json")
    name = state["suite"]
    toc, body = [], []
    for anchor, heading, ids in SUITES[name]:
        toc.append(f"<li><a href='#{anchor}'>{esc(heading)}</a><ul>")
        body.append(f"<h2 id='{anchor}'>{esc(heading)}</h2>")
        for eid in ids:
            exp = get_experiment(eid)
            entry = state["experiments"].get(eid, {"status": "missing"})
            toc.append(
                f"<li><a href='#{eid}'>{esc(exp.title)}</a> "
                f"<span class='muted'>({esc(entry['status'])})</span></li>"
            )
            body.append("<section class='experiment'>")
            if entry["status"] == "done":
                body.append(run_section(path / eid, heading="h3", link_prefix=f"{eid}/"))
            else:
                body.append(
                    f"<h3 id='{eid}'>{esc(exp.homework)} · {esc(exp.title)}</h3>"
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
        {
            **state,
            "command": [f"dlprobe run {name} --profile {state['profile']}"],
            "environment": state["environment"],
        },
        {"run_seconds": state.get("seconds")},
    )
    html = (
        f"<h1>dlprobe · {esc(TITLES[name])}</h1>"
        f"<p>Every figure and number below was produced by <code>dlprobe run {esc(name)} "
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
    write_bytes(out, page(f"dlprobe {name}", html).encode())
    return out
