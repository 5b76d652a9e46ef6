"""Run an experiment end to end into a run folder.

``plan_run`` decides everything before anything is written: the config (a profile, an
earlier run's config.json, command-line settings), the folder, and whether this resumes a
run. ``run_experiment`` then trains and measures through a ``RunContext``, saves
``results.json`` and writes the report (dlprobe.report.run). A new folder that a failed
run leaves with nothing computed in it is removed again, so a retry with the same
``--out`` works.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from dlprobe import DlprobeError
from dlprobe.config import from_dict, parse_args, to_dict, validate
from dlprobe.experiments.kit import Experiment, Notes, RunContext
from dlprobe.report.run import write_run_report
from dlprobe.runs import check_writable, environment, new_run_path, read_json, write_json


@dataclass(frozen=True)
class RunPlan:
    exp: Experiment
    config: object
    profile: str
    path: Path
    resume: bool


@dataclass(frozen=True)
class RunOutcome:
    path: Path
    notes: Notes
    seconds: float


def newest_run(root: Path, name: str) -> Path:
    """The most recent ``root/NAME-*`` folder, for ``--resume`` without ``--out``."""
    runs = sorted(Path(root).glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DlprobeError(f"--resume: no {Path(root) / name}-* folder to resume; give --out DIR")
    return runs[-1]


def check_new_folder(path: Path) -> None:
    """A new run needs a folder that does not exist yet, or an empty one."""
    path = Path(path)
    if str(path) in ("", "."):
        raise DlprobeError("--out needs a folder name")
    if path.exists() and not path.is_dir():
        raise DlprobeError(f"--out {path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()):
        raise DlprobeError(
            f"{path} already exists and is not empty; choose another --out, or add --resume "
            "to continue that run"
        )
    check_writable(path, "the run folder")


def saved_config(exp: Experiment, path: Path) -> tuple[object, str]:
    """(config, profile) from a run's config.json, checked to be a run of ``exp``."""
    info = read_json(path, what="config.json")
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise DlprobeError(f'{path} is not a dlprobe config.json (no "config" object in it)')
    if info.get("experiment") != exp.id:
        raise DlprobeError(f"{path} is a config of {info.get('experiment')}, not of {exp.id}")
    config = from_dict(exp.config, info["config"])
    validate(config)
    return config, info.get("profile", "quick")


def plan_run(
    exp: Experiment,
    profile: str | None = None,
    settings: list[str] | None = None,
    config_file: Path | None = None,
    out: Path | None = None,
    resume: bool = False,
    runs_root: Path = Path("runs"),
) -> RunPlan:
    """Everything a run needs, checked; nothing is written."""
    settings = settings or []
    if resume:
        given = [f for f, v in (("--profile", profile), ("--config", config_file)) if v]
        if given or settings:
            raise DlprobeError(
                "--resume continues a run with the settings saved in its folder; drop "
                f"{' '.join(given + settings)}"
            )
        path = Path(out) if out is not None else newest_run(runs_root, exp.id)
        if not (path / "config.json").is_file():
            raise DlprobeError(f"cannot resume {path}: it has no config.json (not a run folder)")
        config, saved_profile = saved_config(exp, path / "config.json")
        return RunPlan(exp, config, saved_profile, path, resume=True)
    if config_file is not None:
        base, saved_profile = saved_config(exp, Path(config_file))
        profile = profile or saved_profile
        if profile != saved_profile:
            raise DlprobeError(
                f"--config gives the {saved_profile} profile's settings; drop --profile "
                "(change single settings with --NAME VALUE instead)"
            )
    else:
        profile = profile or "quick"
        base = exp.make_config(profile)
    config = parse_args(base, settings)
    validate(config)
    path = Path(out) if out is not None else new_run_path(runs_root, exp.id)
    check_new_folder(path)
    return RunPlan(exp, config, profile, path, resume=False)


def run_experiment(
    plan: RunPlan, device: torch.device, data_dir: Path | None = None, quiet: bool = False
) -> RunOutcome:
    """Train, measure, save results, draw figures and write the report of one run."""
    exp, path = plan.exp, Path(plan.path)
    fresh = not path.exists()
    ctx = RunContext(path, device, data_dir=data_dir, quiet=quiet)
    try:
        if not plan.resume:
            write_json(
                path / "config.json",
                {
                    "experiment": exp.id,
                    "profile": plan.profile,
                    "config": to_dict(plan.config),
                    "device": str(device),
                    "environment": environment(),
                    "command": sys.argv,
                    "created": datetime.now().isoformat(timespec="seconds"),
                },
            )
        ctx.log(f"{exp.id} ({plan.profile} profile) on {device} -> {path}")
        t0 = time.perf_counter()
        with ctx.progress():
            results = exp.run(plan.config, ctx)
        seconds = time.perf_counter() - t0
    except DlprobeError:
        if fresh and not any(ctx.checkpoints.glob("*.done.pt")):
            shutil.rmtree(path, ignore_errors=True)  # nothing computed: leave no folder
        raise
    write_json(
        path / "results.json", {"experiment": exp.id, "results": results, "run_seconds": seconds}
    )
    notes = write_run_report(path)
    ctx.log(f"finished in {seconds:.1f} s; report: {path / 'report.html'}")
    return RunOutcome(path, notes, seconds)
