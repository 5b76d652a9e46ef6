"""``dlprobe sweep``: parse, check every trial, then hand the trials to Ray."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from dlprobe import DlprobeError

USAGE = """usage: dlprobe sweep ID [--profile P] [--grid NAME=V1,V2,...]... [--random NAME=RANGE]...
                     [--samples N] [--sweep-seed S] [--address ADDR] [--cpus N] [--out DIR]
                     [--device {auto,cpu,cuda}] [--data-dir DIR] [--debug]
       dlprobe sweep [ID] --resume --out DIR [--address ADDR] [--cpus N] [--device ...]

Runs experiment ID once per combination of settings, each trial a normal run folder
(trials/NNN-SETTINGS/), all in one sweep folder with sweep.json (the axes and every
trial's status), results.csv (one row per trial: its settings, status and summary
numbers) and report.html. Trials run as Ray tasks, one CPU each.

axes (NAME is a setting of `dlprobe run ID --help`: dotted, or its unique short name):
  --grid NAME=V1,V2,...    values, parsed by the setting's type; integer settings also
                           take ranges such as 0..9 (both ends included); several --grid
                           make the product. A tuple setting takes its values space-
                           separated: --grid "hidden=16,32 32"
  --random NAME=LOW..HIGH  a number drawn per trial: log-uniform for a float setting
                           whose range is positive and spans >= 10x (e.g. lr=1e-4..1e-1),
                           uniform otherwise (integers: both ends included); drawn floats
                           are rounded to 4 significant digits
  --random NAME=V1,V2,...  one of the values, picked per trial
  --samples N              draws of the --random axes per grid point (default: 10)
  --sweep-seed S           seed of the draws (default: 0): the same seed, the same trials

options:
  --profile {smoke,quick,full}  scale of every trial (default: quick)
  --out DIR                sweep folder (default: runs/ID-sweep-YYYYmmdd-HHMMSS)
  --resume                 run the failed and unfinished trials of the sweep in --out
                           (or the newest runs/ID-sweep-*) again, each from its
                           checkpoints; finished trials are kept as they are
  --address ADDR           join a running Ray cluster (e.g. ray://head:10001 or auto);
                           the sweep folder must be on a file system every node shares
  --cpus N                 cores of the local Ray instance (default: all of this machine's)
  --device {auto,cpu,cuda} where trials compute; cuda gives each trial one GPU, auto does
                           so when the Ray cluster has GPUs (default: auto)
  --data-dir DIR           where downloadable datasets live
  --debug                  show a traceback when something fails

Every trial's settings are checked before Ray starts. A failing trial is recorded and the
others go on (exit code 1); Ctrl-C stops the sweep and prints the command that resumes it.
`dlprobe report DIR` writes a sweep folder's results.csv and report.html again.
Needs Ray: pip install 'dlprobe[sweep]'."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise DlprobeError(f"dlprobe sweep: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dlprobe sweep", add_help=False)
    p.add_argument("experiment", nargs="?")
    p.add_argument("--profile", choices=["smoke", "quick", "full"])
    p.add_argument("--grid", action="append", default=[])
    p.add_argument("--random", action="append", default=[])
    p.add_argument("--samples", type=int)
    p.add_argument("--sweep-seed", type=int)
    p.add_argument("--address")
    p.add_argument("--cpus", type=int)
    p.add_argument("--out", type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--debug", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _check_options(args) -> None:
    if args.cpus is not None and args.cpus < 1:
        raise DlprobeError(f"--cpus must be >= 1, got {args.cpus}")
    if args.cpus is not None and args.address is not None:
        raise DlprobeError("--cpus sets the cores of a local Ray instance; a cluster given by "
                           "--address has its own: drop one of them")  # fmt: skip
    if args.address is None and args.device == "cuda":
        from dlprobe.runs import resolve_device

        resolve_device("cuda")  # refused here when this machine has no GPU
    if args.data_dir is not None:
        from dlprobe.runs import check_writable

        check_writable(args.data_dir, "--data-dir")
    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in ("profile", "samples", "sweep_seed")
                 if getattr(args, n) is not None] + (["--grid"] if args.grid else []) + (
                 ["--random"] if args.random else [])  # fmt: skip
        if given:
            raise DlprobeError("--resume continues a sweep with the axes saved in its "
                               f"sweep.json; drop {', '.join(given)}")  # fmt: skip
    elif args.experiment is None:
        raise DlprobeError("usage: dlprobe sweep ID --grid NAME=V1,V2 ...; see `dlprobe list`")


def _plan(args, argv: list[str]):
    from dlprobe.experiments.kit import get_experiment

    from .plan import new_sweep, resume_sweep

    if args.resume:
        return resume_sweep(args.experiment, args.out)
    return new_sweep(
        get_experiment(args.experiment),
        args.profile or "quick",
        args.grid,
        args.random,
        args.samples,
        args.sweep_seed if args.sweep_seed is not None else 0,
        args.out,
        ["dlprobe", "sweep", *argv],
    )


def report_sweep(path: Path) -> Path:
    """Write results.csv and report.html of the sweep folder ``path`` again (for
    ``dlprobe report``); returns the report's path."""
    from .plan import resume_sweep
    from .runner import write_outputs

    return write_outputs(resume_sweep(None, Path(path)))


def cmd_sweep(argv: list[str]) -> int:
    """``dlprobe sweep ARGS``: bad input is a DlprobeError before Ray starts or any folder
    is written; without Ray, one line says how to install it (exit 1)."""
    args = _parser().parse_args(argv)
    if args.help:
        print(USAGE)
        if args.experiment is not None:
            from dlprobe.config_help import help_text
            from dlprobe.experiments.kit import get_experiment

            exp = get_experiment(args.experiment)
            print(f"\nsettings of {exp.id} (defaults of the {args.profile or 'quick'} profile):")
            print(help_text(exp.make_config(args.profile or "quick")))
        return 0
    _check_options(args)
    plan = _plan(args, argv)
    if importlib.util.find_spec("ray") is None:
        print("dlprobe: error: dlprobe sweep needs Ray; install it with "
              "pip install 'dlprobe[sweep]' (or pip install 'ray>=2.9')", file=sys.stderr)  # fmt: skip
        return 1
    from .runner import run_sweep

    try:
        return run_sweep(plan, args.address, args.cpus, args.device, args.data_dir)
    except OSError as err:  # disk full, permissions: the finished trials are kept
        err.resume = f"dlprobe sweep --resume --out {plan.path}"
        raise
