"""A sweep decided before anything runs: the experiment, the axes, every trial's settings
(each trial's config checked by the experiment's own rules) and the sweep folder, with
its sweep.json state. Resuming reads that state back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dlprobe import DlprobeError
from dlprobe.experiments.kit import Experiment, get_experiment
from dlprobe.lab import check_new_folder, newest_run
from dlprobe.runs import environment, new_run_path, read_json

from .axes import (
    Axis,
    axis_from_json,
    expand,
    jsonable_settings,
    parse_grid,
    parse_random,
    trial_names,
)

DEFAULT_SAMPLES = 10  # draws per grid point when --random is given without --samples


@dataclass
class SweepPlan:
    exp: Experiment
    axes: list[Axis]
    path: Path  # the sweep folder
    state: dict  # what sweep.json holds: settings, axes, every trial with its status

    @property
    def trials(self) -> list[dict]:
        return self.state["trials"]

    def trial_dir(self, trial: dict) -> Path:
        return self.path / "trials" / trial["name"]


def sweep_root_name(experiment_id: str) -> str:
    return f"{experiment_id}-sweep"


def trial_config(exp: Experiment, profile: str, trial: dict):
    """A trial's config: the profile's with the trial's settings, validated."""
    try:
        return exp.make_config(profile, trial["settings"])
    except DlprobeError as err:
        raise DlprobeError(f"trial {trial['name']}: {err}") from None


def new_sweep(
    exp: Experiment,
    profile: str,
    grids: list[str],
    randoms: list[str],
    samples: int | None,
    sweep_seed: int,
    out: Path | None,
    command: list[str],
    runs_root: Path = Path("runs"),
) -> SweepPlan:
    """Parse the axes, expand and check every trial, and choose a new folder; nothing is
    written."""
    base = exp.make_config(profile)
    axes = [parse_grid(base, g) for g in grids] + [parse_random(base, r) for r in randoms]
    if not axes:
        raise DlprobeError(
            "give at least one axis: --grid NAME=V1,V2,... or --random NAME=LOW..HIGH"
        )
    if samples is not None and not randoms:
        raise DlprobeError("--samples sets the draws of --random axes; give one, or drop it")
    if samples is not None and samples < 1:
        raise DlprobeError(f"--samples must be >= 1, got {samples}")
    samples = samples or (DEFAULT_SAMPLES if randoms else 1)
    if not 0 <= sweep_seed <= 2**32 - 1:
        raise DlprobeError(f"--sweep-seed must be in 0..{2**32 - 1}, got {sweep_seed}")
    settings = expand(axes, samples, sweep_seed)
    trials = [
        {"name": name, "settings": jsonable_settings(s), "status": "pending"}
        for name, s in zip(trial_names(settings), settings, strict=True)
    ]
    for trial in trials:  # every trial's config is checked before anything is written
        trial_config(exp, profile, trial)
    path = Path(out) if out is not None else new_run_path(runs_root, sweep_root_name(exp.id))
    check_new_folder(path)
    state = {
        "experiment": exp.id,
        "profile": profile,
        "axes": [a.to_json() for a in axes],
        "samples": samples,
        "sweep_seed": sweep_seed,
        "command": command,
        "created": datetime.now().isoformat(timespec="seconds"),
        "environment": environment(),
        "trials": trials,
    }
    return SweepPlan(exp, axes, path, state)


def read_sweep_state(path: Path) -> dict:
    """A sweep folder's sweep.json, checked."""
    state = read_json(Path(path) / "sweep.json", what="sweep.json")
    ok = isinstance(state, dict) and isinstance(state.get("trials"), list)
    if not ok or not all(isinstance(t, dict) and "settings" in t for t in state["trials"]):
        raise DlprobeError(f"{Path(path) / 'sweep.json'} is not a dlprobe sweep.json")
    return state


def resume_sweep(
    experiment_id: str | None, out: Path | None, runs_root: Path = Path("runs")
) -> SweepPlan:
    """The sweep in ``out`` (or the newest ``runs/ID-sweep-*``), to continue."""
    if out is None:
        if experiment_id is None:
            raise DlprobeError("--resume needs --out DIR (the sweep folder) or an experiment id")
        get_experiment(experiment_id)
        out = newest_run(runs_root, sweep_root_name(experiment_id))
    path = Path(out)
    if not (path / "sweep.json").is_file():
        raise DlprobeError(f"cannot resume {path}: it has no sweep.json (not a sweep folder)")
    state = read_sweep_state(path)
    exp = get_experiment(state.get("experiment", ""))
    if experiment_id is not None and experiment_id != exp.id:
        raise DlprobeError(f"{path} is a sweep of {exp.id}, not of {experiment_id}")
    base = exp.make_config(state["profile"])
    axes = [axis_from_json(base, a) for a in state["axes"]]
    return SweepPlan(exp, axes, path, state)
