"""Trials on Ray: each trial is a Ray task that runs the code of ``dlprobe run`` in its
worker process, into its own run folder, resuming from the folder's checkpoints when it
has them. A trial that raises is recorded as failed with its one-line error, and so is a
trial whose worker died (killed, out of memory); the others go on. Ray is imported here
only, so ``import dlprobe`` never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path

from dlprobe import DlprobeError, Interrupted
from dlprobe.runs import read_json, resolve_device, write_json

from .axes import setting_args
from .plan import SweepPlan
from .table import trial_rows, write_results_csv, write_sweep_report

CONNECT_TIMEOUT_S = 10.0  # how long --address may take to answer before the sweep gives up


def run_trial(
    experiment_id: str, profile: str, settings: dict, path: str, device: str, data_dir
) -> dict:
    """One trial, in a Ray worker: ``dlprobe run`` into ``path`` (resumed when it holds a
    run). Returns its status, seconds and, when it failed, the one-line error."""
    from dlprobe.allocator import keep_freed_memory
    from dlprobe.experiments.kit import get_experiment
    from dlprobe.lab import RunPlan, plan_run, run_experiment

    from .plan import trial_config

    keep_freed_memory()  # as the dlprobe command does
    t0 = time.perf_counter()
    argv = sys.argv
    # config.json records the command that repeats this trial as a plain run
    sys.argv = ["dlprobe", "run", experiment_id, "--profile", profile, "--out", path]
    sys.argv += setting_args(settings)
    try:
        exp, folder = get_experiment(experiment_id), Path(path)
        if (folder / "config.json").is_file():
            plan = plan_run(exp, out=folder, resume=True)
        else:
            config = trial_config(exp, profile, {"name": folder.name, "settings": settings})
            plan = RunPlan(exp, config, profile, folder, resume=False)
        run_experiment(plan, resolve_device(device), data_dir, quiet=True)
        return {"status": "done", "seconds": time.perf_counter() - t0}
    except Exception as err:  # recorded in sweep.json; the sweep goes on
        return {
            "status": "failed",
            "seconds": time.perf_counter() - t0,
            "error": f"{type(err).__name__}: {err}".replace("\n", " "),
            "traceback": traceback.format_exc(),
        }
    finally:
        sys.argv = argv


def _connect(ray, address: str | None, cpus: int | None) -> bool:
    """Start or join Ray; True when this call started it (and so shuts it down)."""
    if ray.is_initialized():  # a notebook or a test that set Ray up itself
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is not None:
        check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise DlprobeError(f"cannot join the Ray cluster at {address}: {err}") from None
        return True
    ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return True


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when nothing answers at a ``host:port`` or ``ray://host:port`` address
    (Ray itself retries for minutes); other forms ("auto", "local") are Ray's to resolve."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]")  # an IPv6 literal
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise DlprobeError(
            f"cannot join the Ray cluster at {address}: nothing answers at {host}:{port} "
            f"within {timeout:g} s ({err.strerror or type(err).__name__})"
        ) from None


def _trial_device(ray, device: str) -> str:
    """cpu or cuda for every trial: ``auto`` is cuda when the cluster has a GPU."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and gpus < 1:
        raise DlprobeError("--device cuda was asked for but the Ray cluster has no GPU")
    return "cuda" if device == "cuda" or (device == "auto" and gpus >= 1) else "cpu"


def _outcome(ray, ref) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died: killed, out of memory, ...
        line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return {"status": "failed", "seconds": None, "error": f"{type(err).__name__}: {line}"}


def _progress(done: int, total: int, trial: dict) -> str:
    took = "" if trial.get("seconds") is None else f" in {trial['seconds']:.1f} s"
    why = f": {trial['error']}" if trial["status"] == "failed" else ""
    return f"[{done}/{total}] {trial['name']}: {trial['status']}{took}{why}"


def _finished(plan: SweepPlan, trial: dict) -> bool:
    return trial["status"] == "done" and (plan.trial_dir(trial) / "results.json").is_file()


def _submit(ray, plan: SweepPlan, device: str, data_dir: Path | None) -> dict:
    """One Ray task per unfinished trial; returns {task: trial index}."""
    gpus = 1 if device == "cuda" else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_trial)
    refs = {}
    for i, trial in enumerate(plan.trials):
        if _finished(plan, trial):
            continue
        trial.update(status="pending", seconds=None)
        trial.pop("error", None)
        trial.pop("traceback", None)
        folder = str(plan.trial_dir(trial).resolve())
        args = (plan.exp.id, plan.state["profile"], trial["settings"], folder, device)
        data = str(Path(data_dir).resolve()) if data_dir is not None else None
        refs[task.options(name=f"trial {trial['name']}").remote(*args, data)] = i
    return refs


def write_tables(plan: SweepPlan) -> list[dict]:
    """results.csv from sweep.json and each finished trial's summary.json."""
    summaries = {
        t["name"]: read_json(plan.trial_dir(t) / "summary.json")
        for t in plan.trials
        if _finished(plan, t) and (plan.trial_dir(t) / "summary.json").is_file()
    }
    rows = trial_rows(plan.state, summaries)
    write_results_csv(plan.path / "results.csv", rows)
    return rows


def _collect(ray, plan: SweepPlan, refs: dict, done: int) -> None:
    """Record each trial as it ends (sweep.json and a progress line); on Ctrl-C stop the
    others, record the state and raise Interrupted with the command that resumes."""
    try:
        while refs:
            # every trial that ended in the last half second, so a Ctrl-C is seen at once
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.5)
            for ref in ready:
                trial = plan.trials[refs.pop(ref)]
                trial.update(_outcome(ray, ref))
                done += 1
                write_json(plan.path / "sweep.json", plan.state)
                print(_progress(done, len(plan.trials), trial), flush=True)
    except KeyboardInterrupt as err:
        for ref in refs:  # a running trial gets a KeyboardInterrupt and keeps its checkpoints
            ray.cancel(ref)
        stopped, _ = ray.wait(list(refs), num_returns=len(refs), timeout=30.0)
        for ref in stopped:  # one that finished before the cancel reached it counts as done
            outcome = _outcome(ray, ref)
            if outcome["status"] == "done":
                plan.trials[refs[ref]].update(outcome)
        write_json(plan.path / "sweep.json", plan.state)
        write_tables(plan)
        raise Interrupted(f"dlprobe sweep --resume --out {plan.path}") from err


def write_outputs(plan: SweepPlan) -> Path:
    """results.csv and report.html of the sweep, from its folder; returns the report."""
    return write_sweep_report(plan.path, plan.state, write_tables(plan), plan.axes)


def run_sweep(
    plan: SweepPlan,
    address: str | None = None,
    cpus: int | None = None,
    device: str = "auto",
    data_dir: Path | None = None,
) -> int:
    """Run every unfinished trial of ``plan`` on Ray, then write results.csv and
    report.html. Returns the exit code: 1 if a trial failed, else 0."""
    import ray

    started = _connect(ray, address, cpus)
    try:
        plan.state["device"] = _trial_device(ray, device)
        refs = _submit(ray, plan, plan.state["device"], data_dir)
        write_json(plan.path / "sweep.json", plan.state)
        total = len(plan.trials)
        done = total - len(refs)
        cores = int(ray.cluster_resources().get("CPU", 0))
        head = f"sweep {plan.exp.id}: {total} trials, {done} finished earlier"
        print(f"{head}; on Ray with {cores} CPUs -> {plan.path}", flush=True)
        t0 = time.perf_counter()
        _collect(ray, plan, refs, done)
        plan.state["seconds"] = plan.state.get("seconds", 0.0) + time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    write_json(plan.path / "sweep.json", plan.state)
    report = write_outputs(plan)
    failed = [t["name"] for t in plan.trials if t["status"] != "done"]
    failures = f"; FAILED: {', '.join(failed)}" if failed else ""
    print(f"sweep {plan.exp.id}: {total - len(failed)} of {total} trials done{failures}")
    print(f"table: {(plan.path / 'results.csv').resolve()}")
    print(f"report: {report.resolve()}")
    return 1 if failed else 0
