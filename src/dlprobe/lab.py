"""Run an experiment end to end into a run folder, and redraw a run folder from its results."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from dlprobe import DlprobeError
from dlprobe.experiments.base import Experiment, config_from_dict, get_experiment
from dlprobe.experiments.plotting import close_all
from dlprobe.report.html import esc, figure_png, page, table
from dlprobe.report.section import experiment_section
from dlprobe.runs import RunDir, environment, read_json, write_bytes, write_json


@dataclass(frozen=True)
class RunOutcome:
    path: Path
    summary: dict
    observations: list[str]
    seconds: float


def prepare_run_dir(path: Path, resume: bool) -> None:
    """A new run never overwrites an existing folder; ``resume`` needs one with a config."""
    path = Path(path)
    if resume:
        if not (path / "config.json").exists():
            raise DlprobeError(f"cannot resume {path}: it has no config.json (not a run folder)")
        return
    if path.exists() and any(path.iterdir()):
        raise DlprobeError(
            f"{path} already exists and is not empty; choose another --out, or add --resume "
            "to continue that run"
        )


def run_experiment(
    exp: Experiment,
    config,
    path: Path,
    device: torch.device,
    profile: str,
    resume: bool = False,
    quiet: bool = False,
) -> RunOutcome:
    """Train, measure, save results, draw figures and write the report of one run."""
    prepare_run_dir(path, resume)
    if resume:
        saved = read_json(Path(path) / "config.json")
        if saved["experiment"] != exp.id:
            raise DlprobeError(f"{path} is a run of {saved['experiment']}, not of {exp.id}")
        config = config_from_dict(exp.config_cls, saved["config"])
        profile = saved["profile"]
    run = RunDir(path, device, quiet=quiet)
    info = {
        "experiment": exp.id,
        "profile": profile,
        "config": dataclasses.asdict(config),
        "device": str(device),
        "environment": environment(),
        "command": sys.argv,
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    if not resume:
        write_json(run.path / "config.json", info)
    run.log(f"{exp.id} ({profile} profile) on {device} -> {run.path}")
    t0 = time.perf_counter()
    with run.progress():
        results = exp.run(config, run)
    seconds = time.perf_counter() - t0
    write_json(
        run.path / "results.json",
        {"experiment": exp.id, "results": results, "run_seconds": seconds},
    )
    summary, observations = finalize(run.path)
    run.log(f"finished in {seconds:.1f} s; report: {run.path / 'report.html'}")
    return RunOutcome(run.path, summary, observations, seconds)


def load_run(path: Path) -> tuple[Experiment, dict, dict]:
    path = Path(path)
    for name in ("config.json", "results.json"):
        if not (path / name).exists():
            raise DlprobeError(f"{path} has no {name}: not a finished dlprobe run folder")
    info = read_json(path / "config.json")
    saved = read_json(path / "results.json")
    return get_experiment(info["experiment"]), info, saved


def finalize(path: Path) -> tuple[dict, list[str]]:
    """From results.json alone: figures/*.png, summary.json and report.html."""
    path = Path(path)
    exp, info, saved = load_run(path)
    t0 = time.perf_counter()
    pngs = {name: figure_png(fig) for name, fig in exp.figures(saved["results"]).items()}
    close_all()
    for old in (path / "figures").glob("*.png"):
        if old.stem not in pngs:
            old.unlink()
    for name, png in pngs.items():
        write_bytes(path / "figures" / f"{name}.png", png)
    summary = exp.summarize(saved["results"])
    observations = exp.observations(saved["results"])
    timings = {"run_seconds": saved.get("run_seconds"), "figure_seconds": time.perf_counter() - t0}
    write_json(
        path / "summary.json",
        {
            "experiment": exp.id,
            "profile": info["profile"],
            "summary": summary,
            "observations": observations,
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
    return summary, observations


def run_section(path: Path, heading: str = "h2", link_prefix: str = "") -> str:
    """The report section of a finished run folder, from its saved files and figures."""
    path = Path(path)
    exp, info, saved = load_run(path)
    summary = read_json(path / "summary.json")
    config = config_from_dict(exp.config_cls, info["config"])
    pngs = {name: (path / "figures" / f"{name}.png").read_bytes() for name in summary["figures"]}
    return experiment_section(
        exp,
        info,
        summary["summary"],
        summary["observations"],
        pngs,
        exp.settings(config, saved["results"]),
        heading=heading,
        results_link=f"{link_prefix}results.json",
    )


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
