"""The ``dlprobe`` command: thin parsing on top of experiments, runs and reports.

Every failure is one line on stderr: bad input exits 2, a failure of the environment
(disk full, permissions) exits 1 and says that ``--resume`` continues, Ctrl-C exits 130
with the command that continues. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from dlprobe import DlprobeError, Interrupted, __version__
from dlprobe.allocator import keep_freed_memory

COMMON_HELP = """common options of `dlprobe run ID`:
  --profile {smoke,quick,full}  scale of the run (default: quick)
  --device {auto,cpu,cuda}      where to compute (default: auto)
  --out DIR                     run folder (default: runs/ID-YYYYmmdd-HHMMSS)
  --resume                      continue the run in --out (or the newest runs/ID-*)
  --config FILE                 start from the settings of an earlier run's config.json
  --data-dir DIR                where downloadable datasets live
  --quiet                       print only the final summary
  --debug                       show a traceback when something fails
"""

_VALUED = ("--profile", "--device", "--out", "--config", "--data-dir")
_FLAGS = ("--resume", "--quiet", "--debug", "--help", "-h")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one-line DlprobeErrors."""

    def error(self, message: str):
        raise DlprobeError(message)


def _split_run_args(argv: list[str]) -> tuple[str, dict, list[str]]:
    """(id, common options, the experiment's own settings) of ``dlprobe run``."""
    if not argv or argv[0].startswith("-"):
        raise DlprobeError(
            "usage: dlprobe run ID [options] [--SETTING VALUE ...]; see `dlprobe list`"
        )
    run_id, opts, settings = argv[0], {}, []
    i = 1
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if name in _VALUED:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise DlprobeError(f"{name} needs a value")
            opts[name[2:].replace("-", "_")] = value
        elif token in _FLAGS:
            opts["help" if token == "-h" else token[2:]] = True
        else:
            settings.append(token)
        i += 1
    if "profile" in opts and opts["profile"] not in ("smoke", "quick", "full"):
        raise DlprobeError(f"unknown profile {opts['profile']!r}; valid: smoke, quick, full")
    for key in ("out", "config", "data_dir"):
        if key in opts:
            if not opts[key]:
                raise DlprobeError(f"--{key.replace('_', '-')} needs a path")
            opts[key] = Path(opts[key])
    if "data_dir" in opts:
        from dlprobe.runs import check_writable

        check_writable(opts["data_dir"], "--data-dir")
    return run_id, opts, settings


def _console():
    """A rich console; wide when the output is a pipe or a file, so tables do not fold."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def cmd_list(_args) -> int:
    from rich.table import Table

    from dlprobe.experiments.kit import registry

    t = Table(title="dlprobe experiments")
    for col in ("id", "item", "title", "default data", "quick (min)"):
        t.add_column(col, no_wrap=col != "title")
    for exp in registry().values():
        t.add_row(exp.id, exp.item, exp.title, exp.default_dataset, f"{exp.quick_minutes:g}")
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


def cmd_run(argv: list[str]) -> int:
    from dlprobe.config_help import help_text
    from dlprobe.experiments.kit import SUITES, get_experiment
    from dlprobe.lab import plan_run, run_experiment
    from dlprobe.runs import resolve_device

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: dlprobe run ID [options] [--SETTING VALUE ...]\n")
        print(COMMON_HELP)
        print("IDs: see `dlprobe list`; suites: " + ", ".join(s.id for s in SUITES))
        return 0 if argv else 2
    run_id, opts, settings = _split_run_args(argv)
    suite = next((s for s in SUITES if s.id == run_id), None)
    if suite is not None:
        return _run_suite(suite, opts, settings)
    exp = get_experiment(run_id)
    if opts.get("help"):
        print(f"{exp.id} ({exp.item}): {exp.title}\n{exp.question}\n")
        print(COMMON_HELP)
        print(f"settings of {exp.id} (defaults of the {opts.get('profile', 'quick')} profile):")
        print(help_text(exp.make_config(opts.get("profile", "quick"))))
        return 0
    plan = plan_run(
        exp,
        profile=opts.get("profile"),
        settings=settings,
        config_file=opts.get("config"),
        out=opts.get("out"),
        resume=opts.get("resume", False),
    )
    device = resolve_device(opts.get("device", "auto"))
    try:
        outcome = run_experiment(plan, device, opts.get("data_dir"), quiet=opts.get("quiet", False))
    except KeyboardInterrupt as err:
        raise Interrupted(f"dlprobe run {exp.id} --resume --out {plan.path}") from err
    except OSError as err:
        err.resume = f"dlprobe run {exp.id} --resume --out {plan.path}"
        raise
    _print_outcome(exp.title, outcome)
    return 0


def _run_suite(suite, opts: dict, settings: list[str]) -> int:
    from dlprobe.runs import resolve_device
    from dlprobe.suite import run_suite, suite_help

    if opts.get("help"):
        print(suite_help(suite))
        return 0
    if opts.get("config"):
        raise DlprobeError(
            f"dlprobe run {suite.id} takes no --config; repeat one experiment with "
            f"`dlprobe run ID --config DIR/ID/config.json`, or a whole suite with --resume"
        )
    dataset = seed = None
    rest = list(settings)
    while rest:
        name = rest.pop(0)
        if name in ("--dataset", "--seed") and rest:
            value = rest.pop(0)
            if name == "--dataset":
                dataset = value
            else:
                try:
                    seed = int(value)
                except ValueError:
                    raise DlprobeError(f"--seed must be an integer, got {value!r}") from None
        else:
            raise DlprobeError(
                f"dlprobe run {suite.id} takes no experiment settings ({' '.join(settings)}); "
                "run an experiment by its id to change them"
            )
    out = opts.get("out")
    try:
        return run_suite(
            suite,
            resolve_device(opts.get("device", "auto")),
            profile=opts.get("profile"),
            dataset=dataset,
            seed=seed,
            out=out,
            resume=opts.get("resume", False),
            data_dir=opts.get("data_dir"),
            quiet=opts.get("quiet", False),
        )
    except OSError as err:
        err.resume = f"dlprobe run {suite.id} --resume" + (f" --out {out}" if out else "")
        raise


def _print_outcome(title: str, outcome) -> None:
    from rich.table import Table

    from dlprobe.report.html import fmt

    console = _console()
    t = Table(title=f"{title}: summary", show_header=False)
    for k, v in outcome.notes.summary.items():
        t.add_row(k, fmt(v))
    console.print(t)
    for line in outcome.notes.observations:
        console.print(f"• {line}", highlight=False)
    console.print(f"time: {outcome.seconds:.1f} s")
    console.print(
        f"report: {(outcome.path / 'report.html').resolve()}", highlight=False, soft_wrap=True
    )


def cmd_report(args) -> int:
    from dlprobe.report.run import write_run_report
    from dlprobe.report.suite import write_suite_report

    path = Path(args.run_dir)
    if (path / "suite.json").exists():
        write_suite_report(path)
    elif (path / "sweep.json").exists():
        from dlprobe.sweep import report_sweep

        report_sweep(path)
    else:
        write_run_report(path)
    print(f"report: {(path / 'report.html').resolve()}")
    return 0


def cmd_bench(args) -> int:
    from dlprobe.runs import check_writable

    out = args.out
    if args.curvature and out == Path("bench-results.json"):
        out = Path("bench-curvature.json")
    check_writable(out, "--out", folder=False)
    if args.curvature:
        from dlprobe.benchmarks.curvature import run_curvature_bench

        run_curvature_bench(out=out, device=args.device)
        return 0
    from dlprobe.bench import run_bench

    run_bench(sizes=args.sizes, steps=args.steps, out=out, device=args.device, threads=args.threads)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlprobe",
        description="Experiments of a deep-learning-theory course, with probes for any model.",
    )
    parser.add_argument("--version", action="version", version=f"dlprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="experiments with their homework item and quick time")
    sub.add_parser(
        "run", help="run an experiment or a suite: dlprobe run ID [options]", add_help=False
    )
    sub.add_parser(
        "sweep",
        help="an experiment over a grid or random draws of its settings, on Ray: "
        "dlprobe sweep ID --grid NAME=V1,V2 [options]",
        add_help=False,
    )
    rep = sub.add_parser("report", help="redraw figures and report.html of a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--debug", action="store_true", help="show a traceback on failure")
    ds = sub.add_parser("datasets", help="datasets: embedded or not, present or not, where")
    ds.add_argument("--data-dir", type=Path)
    b = sub.add_parser(
        "bench", help="population vs one-by-one and torch.func training speed, Hessian timing"
    )
    b.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 4, 16, 64], help="population sizes K"
    )
    b.add_argument("--steps", type=int, default=100, help="optimizer steps per model")
    b.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
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
    b.add_argument("--debug", action="store_true", help="show a traceback on failure")
    return parser


def _environment_failure(err: OSError) -> str:
    what = {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EDQUOT: "the disk quota is exceeded",
    }.get(err.errno, err.strerror or type(err).__name__)
    where = f" ({err.filename})" if err.filename else ""
    resume = getattr(err, "resume", None)
    after = f"; after fixing it, continue with: {resume}" if resume else ""
    return f"dlprobe: cannot write{where}: {what}{after}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    keep_freed_memory()  # see dlprobe.allocator: fewer page faults, steadier timings
    try:
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        if argv and argv[0] == "sweep":
            from dlprobe.sweep import cmd_sweep

            return cmd_sweep(argv[1:])
        args = _parser().parse_args(argv)
        handlers = {
            "list": cmd_list,
            "datasets": cmd_datasets,
            "report": cmd_report,
            "bench": cmd_bench,
        }
        if args.command is None:
            _parser().print_help()
            return 0
        return handlers[args.command](args)
    except DlprobeError as err:
        if debug:
            raise
        print(f"dlprobe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        how = f": {err.resume}" if isinstance(err, Interrupted) else " --resume"
        print(
            f"\ndlprobe: interrupted; finished stages are kept, continue with{how}", file=sys.stderr
        )
        return 130
    except OSError as err:
        if debug:
            raise
        print(_environment_failure(err), file=sys.stderr)
        return 1
    except Exception as err:
        if debug:
            raise
        print(
            f"dlprobe: failed: {type(err).__name__}: {err} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
