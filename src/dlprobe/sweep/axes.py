"""Sweep axes: what ``--grid`` and ``--random`` say, parsed by the swept setting's type,
and the trials they expand to. Nothing here imports Ray or writes a file.

``--grid NAME=V1,V2,...`` lists values (integer settings also take ranges ``0..9``, both
ends included); the trials are the product of every grid. ``--random NAME=LOW..HIGH``
draws a number per trial (log-uniformly when the setting is a float, ``LOW > 0`` and
``HIGH >= 10 LOW``, uniformly otherwise; integers uniformly, both ends included) and
``--random NAME=V1,V2,...`` picks one of the values; with ``--samples N`` every grid point
gets N independent draws, reproducible from ``--sweep-seed``. Drawn floats are rounded to
4 significant digits, so every trial can be repeated by hand with ``dlprobe run``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from dlprobe import DlprobeError
from dlprobe.config import _unwrap, coerce, field_paths, resolve_name
from dlprobe.config_help import format_value

MAX_TRIALS = 10_000  # a typo such as seed=0..1000000 is refused, not expanded
_RANGE = re.compile(r"^\s*([^.].*?)\.\.(.+?)\s*$")


@dataclass(frozen=True)
class Axis:
    name: str  # dotted setting, e.g. "train.lr"
    kind: str  # "grid" or "random"
    values: tuple = ()  # grid values, or the choices of a random pick
    low: float | None = None  # random range, both ends included
    high: float | None = None
    scale: str = ""  # random: "log", "uniform" or "choice"

    def describe(self) -> str:
        """The axis in words, for the report and the progress header."""
        values = ", ".join(_text(v) for v in self.values)
        if self.kind == "grid":
            return f"grid of {len(self.values)}: {values}"
        if self.scale == "choice":
            return f"random pick of {values}"
        how = "log-uniform" if self.scale == "log" else "uniform"
        return f"drawn {how} in [{self.low:g}, {self.high:g}]"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "values": [list(v) if isinstance(v, tuple) else v for v in self.values],
            "low": self.low,
            "high": self.high,
            "scale": self.scale,
        }


def _text(value) -> str:
    """A value as typed on the command line: a tuple's entries space-separated."""
    if isinstance(value, tuple | list):
        return " ".join(_text(v) for v in value)
    return format_value(value)


def axis_from_json(config, record: dict) -> Axis:
    """An axis saved in sweep.json, its values typed again by the setting's annotation."""
    tp = _annotation(config, record["name"])
    values = tuple(coerce(v, tp, record["name"]) for v in record["values"])
    return Axis(
        record["name"], record["kind"], values, record["low"], record["high"], record["scale"]
    )


def _annotation(config, path: str):
    return next(tp for p, tp, _ in field_paths(config) if p == path)


def _split_spec(spec: str, option: str, example: str) -> tuple[str, str]:
    name, eq, text = spec.partition("=")
    if not eq or not name.strip() or not text.strip():
        raise DlprobeError(f"{option} {spec!r}: expected NAME=VALUES, e.g. {option} {example}")
    return name.strip(), text.strip()


def _bare(tp):
    bare, _ = _unwrap(tp)
    return bare


def _int_range(item: str, tp, path: str, option: str) -> list[int] | None:
    """The integers of ``LOW..HIGH``, or None when ``item`` is not a range."""
    match = _RANGE.match(item)
    if match is None or not all(_is_number(v) for v in match.groups()):
        return None
    if _bare(tp) is not int:
        raise DlprobeError(
            f"{option} {path}: a range LOW..HIGH lists integers, and {path} is not an integer "
            f"setting; give its values one by one (or draw them with --random {path}=LOW..HIGH)"
        )
    low, high = (coerce(v.strip(), tp, path) for v in match.groups())
    if low > high:
        raise DlprobeError(f"{option} {path}: the range {item} is empty (LOW > HIGH)")
    return list(range(low, high + 1))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _values(text: str, tp, path: str, option: str) -> tuple:
    """Comma-separated values typed as ``tp``; integer ranges expanded."""
    values = []
    for item in text.split(","):
        if not item.strip():
            raise DlprobeError(f"{option} {path}={text}: an empty value between commas")
        expanded = _int_range(item, tp, path, option)
        values += expanded if expanded is not None else [coerce(item.strip(), tp, path)]
    seen = set()
    for v in values:
        if v in seen:
            raise DlprobeError(f"{option} {path} lists {_text(v)} twice")
        seen.add(v)
    return tuple(values)


def parse_grid(config, spec: str) -> Axis:
    """``NAME=V1,V2,...`` (integer ranges ``A..B`` allowed) as a grid axis of ``config``."""
    name, text = _split_spec(spec, "--grid", "lr=1e-3,1e-2")
    path = resolve_name(config, name)
    return Axis(path, "grid", _values(text, _annotation(config, path), path, "--grid"))


def parse_random(config, spec: str) -> Axis:
    """``NAME=LOW..HIGH`` (a number drawn per trial) or ``NAME=V1,V2,...`` (a pick)."""
    name, text = _split_spec(spec, "--random", "lr=1e-4..1e-1")
    path = resolve_name(config, name)
    tp = _annotation(config, path)
    bare = _bare(tp)
    match = _RANGE.match(text)
    if match is None or "," in text or not all(_is_number(v) for v in match.groups()):
        return Axis(path, "random", _values(text, tp, path, "--random"), scale="choice")
    if bare not in (int, float):
        raise DlprobeError(
            f"--random {path}: a range LOW..HIGH needs a number setting; list the values "
            f"of {path} instead (--random {path}=V1,V2)"
        )
    low, high = (coerce(v.strip(), tp, path) for v in match.groups())
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise DlprobeError(f"--random {path}={text}: give a range LOW..HIGH with LOW < HIGH")
    log = bare is float and low > 0 and high >= 10 * low
    return Axis(path, "random", low=low, high=high, scale="log" if log else "uniform")


def _draw(axis: Axis, rng: np.random.Generator):
    if axis.scale == "choice":
        return axis.values[int(rng.integers(len(axis.values)))]
    if isinstance(axis.low, int):
        return int(rng.integers(axis.low, axis.high + 1))
    if axis.scale == "log":
        value = math.exp(rng.uniform(math.log(axis.low), math.log(axis.high)))
    else:
        value = rng.uniform(axis.low, axis.high)
    return min(max(float(f"{value:.4g}"), axis.low), axis.high)


def expand(axes: list[Axis], samples: int, sweep_seed: int) -> list[dict]:
    """Every trial's settings: ``samples`` draws of the random axes at each grid point."""
    names = [a.name for a in axes]
    for name in names:
        if names.count(name) > 1:
            raise DlprobeError(f"{name} is swept twice; give each setting one --grid or --random")
    grids = [a for a in axes if a.kind == "grid"]
    randoms = [a for a in axes if a.kind == "random"]
    n = math.prod(len(a.values) for a in grids) * samples
    if n > MAX_TRIALS:
        raise DlprobeError(f"the sweep has {n} trials; at most {MAX_TRIALS} in one sweep")
    rng = np.random.default_rng(sweep_seed)
    trials = []
    for _ in range(samples):
        for point in itertools.product(*(a.values for a in grids)):
            settings = dict(zip((a.name for a in grids), point, strict=True))
            settings.update({a.name: _draw(a, rng) for a in randoms})
            trials.append({name: settings[name] for name in names})
    return trials


def _short(value) -> str:
    if isinstance(value, tuple | list):
        return "x".join(_short(v) for v in value)
    return format_value(value)


def trial_names(trials: list[dict]) -> list[str]:
    """``NNN-name=value-...`` folder names: leaf names where unique, safe characters only."""
    width = max(3, len(str(len(trials) - 1)))
    paths = list(trials[0]) if trials else []
    leaves = [p.split(".")[-1] for p in paths]
    short = {
        p: leaf if leaves.count(leaf) == 1 else p for p, leaf in zip(paths, leaves, strict=True)
    }
    names = []
    for i, settings in enumerate(trials):
        label = "-".join(f"{short[p]}={_short(v)}" for p, v in settings.items())
        names.append(f"{i:0{width}d}-" + re.sub(r"[^A-Za-z0-9._=+-]", "_", label)[:80])
    return names


def jsonable_settings(settings: dict) -> dict:
    """Settings with tuples as lists, as sweep.json keeps them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def setting_args(settings: dict) -> list[str]:
    """The ``--name value ...`` arguments of ``dlprobe run`` that give these settings."""
    args = []
    for path, value in settings.items():
        items = value if isinstance(value, tuple | list) else [value]
        args += [
            f"--{path.replace('_', '-')}",
            *(repr(v) if isinstance(v, float) else str(v) for v in items),
        ]
    return args


def is_number_axis(axis: Axis) -> bool:
    """Whether the axis' values are numbers (drawn on a numeric x-axis in the report)."""
    if axis.kind == "random" and axis.scale != "choice":
        return True
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis.values)
