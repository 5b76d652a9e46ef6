"""Suites: every experiment of a homework or lecture into one folder with one report.

``dlprobe run hw1`` runs the HW1 experiments in the homework's order into
``runs/hw1-TIMESTAMP/`` (one normal run folder per experiment) and writes one
``report.html`` at the top. Every experiment's config is checked before anything runs. A
failing experiment does not stop the others; the report shows the failure and the exit
code is 1. ``--resume`` skips finished experiments and resumes an interrupted one.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime
from pathlib import Path

import torch

from dlprobe import DlprobeError, Interrupted
from dlprobe.config import field_paths
from dlprobe.experiments.kit import Suite, get_experiment, suite_ids, suite_parts
from dlprobe.lab import RunPlan, check_new_folder, newest_run, run_experiment
from dlprobe.report.suite import read_suite_state, write_suite_report
from dlprobe.runs import environment, new_run_path, write_json


def suite_help(suite: Suite) -> str:
    parts = "\n".join(
        f"  {part.heading}: {', '.join(e.id for e in exps)}" for part, exps in suite_parts(suite)
    )
    return f"""usage: dlprobe run {suite.id} [--profile smoke|quick|full] [--dataset NAME] [--device D]
                       [--seed N] [--out DIR] [--resume] [--data-dir DIR] [--quiet]

{suite.title}.
Runs every experiment below, each into its own sub-folder (a normal run folder), and
writes one report.html at the top:
{parts}

options:
  --profile {{smoke,quick,full}}  scale of every experiment (default: quick)
  --dataset NAME                replaces the dataset of every experiment that takes one
  --device {{auto,cpu,cuda}}      where to compute (default: auto)
  --seed N                      base seed of every experiment (default: each one's own)
  --out DIR                     suite folder (default: runs/{suite.id}-YYYYmmdd-HHMMSS)
  --resume                      skip finished experiments and resume an interrupted one,
                                in --out or the newest runs/{suite.id}-*
  --data-dir DIR                where downloadable datasets live
  --quiet                       print only the progress lines and the final summary

A failing experiment does not stop the others; the report shows its error and the exit
code is 1. To change one experiment's settings, run it alone: dlprobe run ID --help."""


def suite_config(eid: str, profile: str, dataset: str | None, seed: int | None):
    """An experiment's config in a suite: its profile, with the suite's dataset and seed."""
    exp = get_experiment(eid)
    cfg = exp.make_config(profile)
    names = {p for p, _, _ in field_paths(cfg)}
    changes = {}
    if dataset is not None and "dataset" in names:
        changes["dataset"] = dataset
    if seed is not None and "seed" in names:
        changes["seed"] = seed
    return exp.make_config(profile, changes)


def run_suite(
    suite: Suite,
    device: torch.device,
    profile: str | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    out: Path | None = None,
    resume: bool = False,
    data_dir: Path | None = None,
    quiet: bool = False,
    runs_root: Path = Path("runs"),
) -> int:
    """Run every experiment of ``suite``; returns the exit code (1 if any failed)."""
    if resume:
        if profile or dataset is not None or seed is not None:
            raise DlprobeError(
                "--resume continues a suite with the settings saved in its folder; drop "
                "--profile, --dataset and --seed"
            )
        path = Path(out) if out is not None else newest_run(runs_root, suite.id)
        state = read_suite_state(path)
        if state["suite"] != suite.id:
            raise DlprobeError(f"{path} is a run of the {state['suite']} suite, not {suite.id}")
    else:
        profile = profile or "quick"
        path = Path(out) if out is not None else new_run_path(runs_root, suite.id)
        check_new_folder(path)
        for eid in suite_ids(suite):  # every config is checked before anything is trained
            suite_config(eid, profile, dataset, seed)
        state = {
            "suite": suite.id,
            "profile": profile,
            "dataset": dataset,
            "seed": seed,
            "device": str(device),
            "environment": environment(),
            "created": datetime.now().isoformat(timespec="seconds"),
            "experiments": {eid: {"status": "pending"} for eid in suite_ids(suite)},
        }
    write_json(path / "suite.json", state)
    t_suite = time.perf_counter()
    n = len(state["experiments"])
    for i, eid in enumerate(state["experiments"], 1):
        entry, sub = state["experiments"][eid], path / eid
        if entry.get("status") == "done" and (sub / "results.json").exists():
            print(f"[{i}/{n}] {eid}: finished earlier, skipped")
            continue
        exp = get_experiment(eid)
        print(f"[{i}/{n}] {eid} ({exp.item}): {exp.title}", flush=True)
        t0 = time.perf_counter()
        try:
            cfg = suite_config(eid, state["profile"], state["dataset"], state["seed"])
            plan = RunPlan(exp, cfg, state["profile"], sub, (sub / "config.json").exists())
            run_experiment(plan, device, data_dir=data_dir, quiet=quiet)
            # wall time of the whole experiment: training, measurements, figures, report
            entry.update(status="done", seconds=time.perf_counter() - t0)
        except KeyboardInterrupt as err:
            entry.update(status="interrupted")
            write_json(path / "suite.json", state)
            raise Interrupted(f"dlprobe run {suite.id} --resume --out {path}") from err
        except OSError:  # disk full, permissions: the environment, not this experiment
            write_json(path / "suite.json", state)
            raise
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
        f"{suite.id}: {n - len(failed)} experiment(s) done"
        f"{', FAILED: ' + ', '.join(failed) if failed else ''}; experiment time {total:.0f} s"
    )
    print(f"report: {report.resolve()}")
    return 1 if failed else 0
