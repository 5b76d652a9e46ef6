"""What every experiment provides, and the registry of experiment ids.

An experiment is one module (or, when it grows, a package of ``protocol``, ``figures``
and ``report`` modules) with a frozen ``Config`` dataclass (a comment on every field),
three profiles (``smoke`` for tests, ``quick`` the default, ``full`` the homework's
scale), ``run(config, run_dir) -> results`` (JSON-able tidy tables),
``figures(results) -> {name: Figure}``, ``summarize(results) -> headline numbers`` and
``observations(results) -> sentences`` computed from the results. It registers itself
by defining ``EXPERIMENT = Experiment(...)`` in the module or the package's
``__init__``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from dlprobe import DlprobeError

PROFILES = ("smoke", "quick", "full")

# Experiment ids in the homework's order (the order of `dlprobe list` and of reports).
EXPERIMENT_ORDER = [
    "simulate-function",
    "actual-task",
    "optimization-trajectory",
    "gradient-norm",
    "minimal-ratio",
    "error-surface",
    "random-labels",
    "params-vs-generalization",
    "flatness-interpolation",
    "sensitivity",
    "sharpness",
    "sensitivity-manifold",
    "linear-regions",
]


@dataclass(frozen=True)
class Experiment:
    id: str  # the name of `dlprobe run ID`
    homework: str  # item of the homework or lecture, e.g. "HW1-1"
    title: str
    question: str  # the question of the homework this answers
    config_cls: type
    profiles: dict  # profile name -> Config instance
    run: Callable  # (config, run_dir) -> results dict
    figures: Callable  # (results) -> {name: matplotlib Figure}
    summarize: Callable  # (results) -> {headline: number}
    observations: Callable  # (results) -> [sentence, ...]
    settings: Callable  # (config, results) -> [(setting, value), ...] for the report
    captions: dict = field(default_factory=dict)  # figure name -> caption
    quick_minutes: float = 1.0  # measured wall time of the quick profile on a 2-core CPU
    full_differs: str = ""  # how the quick profile differs from the homework's settings

    @property
    def default_dataset(self) -> str:
        cfg = self.profiles["quick"]
        return (
            getattr(cfg, "dataset", None)
            or getattr(cfg, "function", None)
            or getattr(cfg, "functions", ("-",))[0]
        )

    def config(self, profile: str = "quick", **overrides):
        """The profile's config with ``overrides`` (unknown names are errors)."""
        if profile not in PROFILES:
            raise DlprobeError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        return override(self.profiles[profile], overrides)


def override(config, overrides: dict):
    """``dataclasses.replace`` that names the valid fields when a key is unknown."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise DlprobeError(
            f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(config, **overrides)


def config_from_dict(cls: type, values: dict):
    """Rebuild a config from its saved JSON form (lists back to tuples)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = _tuplify(v) if isinstance(v, list) else v
    return override(cls(), kwargs)


def _tuplify(v):
    return tuple(_tuplify(x) if isinstance(x, list) else x for x in v)


def registry() -> dict[str, Experiment]:
    """All experiments by id, in the homework's order."""
    import dlprobe.experiments as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"dlprobe.experiments.{info.name}")
        exp = getattr(module, "EXPERIMENT", None)
        if isinstance(exp, Experiment):
            found[exp.id] = exp
    rank = {e: i for i, e in enumerate(EXPERIMENT_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def get_experiment(experiment_id: str) -> Experiment:
    exps = registry()
    if experiment_id not in exps:
        raise DlprobeError(f"unknown experiment {experiment_id!r}; valid ids: {', '.join(exps)}")
    return exps[experiment_id]
