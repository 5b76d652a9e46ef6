"""The ``dlprobe`` command: thin parsing on top of experiments, runs and reports."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from dlprobe import DlprobeError, Interrupted, __version__

COMMON_HELP = """common options of `dlprobe run ID`:
  --profile {smoke,quick,full}  scale of the run (default: quick)
  --dataset NAME                dataset, for experiments that take one (see `dlprobe datasets`)
  --device {auto,cpu,cuda}      where to compute (default: auto)
  --seed N                      base seed; model i uses seed N+i
  --out DIR                     run folder (default: runs/ID-YYYYmmdd-HHMMSS)
  --resume                      continue the run in --out (or the newest runs/ID-*)
  --config FILE                 take the config of an earlier run's config.json
  --data-dir DIR                where downloadable datasets live
  --quiet                       print only the final summary
"""


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlprobe run", add_help=False)
    p.add_argument("id")
    p.add_argument("--profile", default=None, choices=["smoke", "quick", "full"])
    p.add_argument("--dataset")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--config", type=Path)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--quiet", action="store_true")
    return p


def _console():
    """A rich console; wide when the output is a pipe or a file, so tables do not fold."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def cmd_list(_args) -> int:
    from rich.table import Table

    from dlprobe.experiments.base import registry

    t = Table(title="dlprobe experiments")
    for col in ("id", "item", "title", "default data", "quick (min)"):
        t.add_column(col, no_wrap=col != "title")
    for exp in registry().values():
        t.add_row(exp.id, exp.homework, exp.title, exp.default_dataset, f"{exp.quick_minutes:g}")
    _console().print(t)
    print("Run one with `dlprobe run ID`; `dlprobe run ID --help` lists its settings.")
    return 0


def cmd_datasets(args) -> int:
    from rich.table import Table

    from dlprobe.data import FUNCTIONS, dataset_status

    t = Table(title=f"datasets (data dir: {args.data_dir or 'default'})")
    for col in ("name", "embedded", "present", "where", "description"):
        t.add_column(col)
    for r in dataset_status(args.data_dir):
        t.add_row(
            r["name"],
            "yes" if r["embedded"] else "no",
            "yes" if r["present"] else "no",
            r["where"],
            r["description"],
        )
    _console().print(t)
    print("1-D functions:", ", ".join(f"{n} ({f.formula})" for n, f in FUNCTIONS.items()))
    return 0


def _resolve_config(exp, ns, rest: list[str]):
    import tyro

    from dlprobe.experiments.base import config_from_dict, override
    from dlprobe.runs import read_json

    profile = ns.profile or "quick"
    if ns.config:
        saved = read_json(ns.config)
        if saved.get("experiment") != exp.id:
            raise DlprobeError(
                f"{ns.config} is a config of {saved.get('experiment')}, not {exp.id}"
            )
        base = config_from_dict(exp.config_cls, saved["config"])
        profile = ns.profile or saved.get("profile", "quick")
    else:
        base = exp.config(profile)
    fields = {f.name for f in dataclasses.fields(base)}
    if ns.dataset is not None:
        if "dataset" not in fields:
            raise DlprobeError(f"experiment {exp.id} takes no --dataset")
        base = override(base, {"dataset": ns.dataset})
    if ns.seed is not None:
        base = override(base, {"seed": ns.seed})
    config = tyro.cli(
        exp.config_cls,
        default=base,
        args=rest,
        prog=f"dlprobe run {exp.id}",
        config=(tyro.conf.FlagConversionOff,),
    )
    if hasattr(config, "validate"):
        config.validate()
    return config, profile


def _newest_run(exp_id: str) -> Path:
    runs = sorted(Path("runs").glob(f"{exp_id}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DlprobeError(f"--resume: no runs/{exp_id}-* folder to resume; give --out DIR")
    return runs[-1]


def cmd_run(argv: list[str]) -> int:
    from dlprobe.experiments.base import get_experiment
    from dlprobe.lab import run_experiment
    from dlprobe.runs import new_run_path, resolve_device

    wants_help = any(a in ("-h", "--help") for a in argv)
    argv = [a for a in argv if a not in ("-h", "--help")]
    if not argv or argv[0].startswith("-"):
        print("usage: dlprobe run ID [options] [--FIELD VALUE ...]\n")
        print(COMMON_HELP)
        print("IDs: see `dlprobe list`.")
        return 0 if wants_help else 2
    ns, rest = _run_parser().parse_known_args(argv)
    if ns.id in SUITE_IDS:
        from dlprobe.suite import run_suite

        return run_suite(ns, rest, wants_help)
    exp = get_experiment(ns.id)
    if wants_help:
        print(f"{exp.id} ({exp.homework}): {exp.title}\n{exp.question}\n")
        print(COMMON_HELP)
        print("settings of this experiment (defaults of the chosen profile):")
        with contextlib.suppress(SystemExit):  # tyro exits after printing the help
            _resolve_config(exp, ns, [*rest, "--help"])
        return 0
    if ns.data_dir:
        import os

        os.environ["DLPROBE_DATA_DIR"] = str(ns.data_dir)
    device = resolve_device(ns.device)
    if ns.resume:
        path = ns.out or _newest_run(exp.id)
        config, profile = exp.config("quick"), "quick"  # replaced by the folder's config.json
    else:
        config, profile = _resolve_config(exp, ns, rest)
        path = ns.out or new_run_path(Path("runs"), exp.id)
    try:
        outcome = run_experiment(
            exp, config, path, device, profile, resume=ns.resume, quiet=ns.quiet
        )
    except KeyboardInterrupt as err:
        raise Interrupted(f"dlprobe run {exp.id} --resume --out {path}") from err
    _print_outcome(exp.title, outcome)
    return 0


def _print_outcome(title: str, outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    from dlprobe.report.html import fmt

    console = Console()
    t = Table(title=f"{title}: summary", show_header=False)
    for k, v in outcome.summary.items():
        t.add_row(k, fmt(v))
    console.print(t)
    for line in outcome.observations:
        console.print(f"• {line}", highlight=False)
    console.print(f"time: {outcome.seconds:.1f} s")
    console.print(
        f"report: {(outcome.path / 'report.html').resolve()}", highlight=False, soft_wrap=True
    )


def cmd_report(args) -> int:
    from dlprobe.lab import finalize

    path = Path(args.run_dir)
    if (path / "suite.json").exists():
        from dlprobe.suite import write_suite_report

        write_suite_report(path)
    else:
        finalize(path)
    print(f"report: {(path / 'report.html').resolve()}")
    return 0


def cmd_bench(args) -> int:
    if args.curvature:
        from dlprobe.benchmarks.curvature import run_curvature_bench

        out = Path("bench-curvature.json") if args.out == Path("bench-results.json") else args.out
        run_curvature_bench(out=out, device=args.device)
        return 0
    from dlprobe.bench import run_bench

    run_bench(sizes=args.sizes, steps=args.steps, out=args.out, device=args.device)
    return 0


SUITE_IDS = ("hw1", "lecture-indicators")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="dlprobe",
        description="Experiments of a deep-learning-theory course, with probes for any model.",
    )
    parser.add_argument("--version", action="version", version=f"dlprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="experiments with their homework item and quick time")
    sub.add_parser(
        "run", help="run an experiment: dlprobe run ID [options] (see run --help)", add_help=False
    )
    rep = sub.add_parser("report", help="redraw figures and report.html of a run folder")
    rep.add_argument("run_dir")
    ds = sub.add_parser("datasets", help="datasets: embedded or not, present or not, where")
    ds.add_argument("--data-dir", type=Path)
    b = sub.add_parser("bench", help="population vs one-by-one training speed, Hessian timing")
    b.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 4, 16, 64], help="population sizes K"
    )
    b.add_argument("--steps", type=int, default=100, help="optimizer steps per model")
    b.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON output")
    b.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train"
    )
    b.add_argument(
        "--curvature",
        action="store_true",
        help="time HVP, top eigenvalue, trace, density on a 100k MLP and ResNet-18 against "
        "torch.func and PyHessian (JSON to bench-curvature.json unless --out)",
    )
    try:
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        args = parser.parse_args(argv)
        handlers = {
            "list": cmd_list,
            "datasets": cmd_datasets,
            "report": cmd_report,
            "bench": cmd_bench,
        }
        if args.command is None:
            parser.print_help()
            return 0
        return handlers[args.command](args)
    except DlprobeError as err:
        print(f"dlprobe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        how = f": {err.resume}" if isinstance(err, Interrupted) else " --resume"
        print(
            f"\ndlprobe: interrupted; finished stages are kept, continue with{how}", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
