"""What an experiment is, the suites it belongs to, and the registry built from the modules.

An experiment is one module of ``dlprobe.experiments`` that defines ``EXPERIMENT``. Adding
one touches only that file: its ``suite`` and ``rank`` place it in a suite's report and in
``dlprobe list``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from dlprobe import DlprobeError
from dlprobe.config import override, validate

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Part:
    anchor: str  # HTML anchor and the name experiments use to join it, e.g. "hw1-1"
    heading: str  # e.g. "HW1-1 Deep vs shallow"


@dataclass(frozen=True)
class Suite:
    id: str  # the name of `dlprobe run ID`
    title: str
    parts: tuple[Part, ...]


# Every suite, in the order of `dlprobe list`; an experiment joins a part by its anchor.
SUITES = (
    Suite(
        "hw1",
        "HW1: deep vs shallow, optimization, generalization",
        (
            Part("hw1-1", "HW1-1 Deep vs shallow"),
            Part("hw1-2", "HW1-2 Optimization"),
            Part("hw1-3", "HW1-3 Generalization"),
            Part("bonus", "Bonus"),
        ),
    ),
    Suite(
        "lecture-indicators",
        "Lecture: indicators of generalization",
        (Part("indicators", "Indicators of generalization (lecture)"),),
    ),
    Suite(
        "lectures",
        "Lectures on training: why it fails and what fixes it",
        (
            Part("critical", "When the gradient is small: local minima and saddle points"),
            Part("batch", "Batch size and momentum"),
            Part("adaptive", "Adaptive learning rates and schedules"),
            Part("loss", "Classification: MSE vs cross-entropy"),
            Part("normalization", "Batch normalization"),
            Part("tips", "Tips for deep learning: activations and regularization"),
            Part("escape", "Leaving bad critical points: annealing and gradient noise"),
        ),
    ),
)


@dataclass
class Notes:
    """What the report says about a run, computed from its results alone."""

    summary: dict = field(default_factory=dict)  # headline quantity -> number(s)
    observations: list[str] = field(default_factory=list)  # sentences
    tables: list[tuple[str, list[dict]]] = field(default_factory=list)  # (title, records)
    fidelity: list[dict] = field(default_factory=list)  # rows of `fidelity_row`


def fidelity_row(
    claim: str, reference: str, measured: str, reproduced: bool, why: str = ""
) -> dict:
    """One row of the fidelity table: the reference result (shared/SPEC.md), this run's
    number, and the verdict: "reproduced", "not reproduced", or "differs because WHY"."""
    verdict = (
        "reproduced" if reproduced else (f"differs because {why}" if why else "not reproduced")
    )
    return {"claim": claim, "reference": reference, "this run": measured, "verdict": verdict}


@dataclass(frozen=True)
class Experiment:
    id: str  # the name of `dlprobe run ID`
    item: str  # item of the homework or lecture, e.g. "HW1-1"
    title: str
    question: str  # the question of the homework this answers
    config: type  # frozen dataclass; its defaults are the quick profile
    run: Callable  # (config, RunContext) -> results: JSON-able tidy tables
    figures: Callable  # (results) -> {name: matplotlib Figure}
    notes: Callable  # (results) -> Notes
    part: str = ""  # anchor of the suite part it belongs to ("" = no suite)
    rank: float = 0.0  # order inside its part
    profiles: dict = field(default_factory=dict)  # "smoke" / "full" -> overrides of the defaults
    captions: dict = field(default_factory=dict)  # figure name -> caption
    quick_minutes: float = 1.0  # measured wall time of the quick profile on a 2-core CPU
    full_differs: str = ""  # how the quick profile differs from the homework's settings

    @property
    def default_dataset(self) -> str:
        cfg = self.config()
        return (
            getattr(cfg, "dataset", None)
            or getattr(cfg, "function", None)
            or getattr(cfg, "functions", ("-",))[0]
        )

    def make_config(self, profile: str = "quick", changes: dict | None = None):
        """The profile's config with ``changes``, validated (unknown names are errors)."""
        if profile not in PROFILES:
            raise DlprobeError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        cfg = override(self.config(), self.profiles.get(profile, {}))
        cfg = override(cfg, changes or {})
        validate(cfg)
        return cfg


def _suite_position(exp: Experiment) -> tuple:
    for i, suite in enumerate(SUITES):
        for j, part in enumerate(suite.parts):
            if part.anchor == exp.part:
                return (i, j, exp.rank, exp.id)
    return (len(SUITES), 0, exp.rank, exp.id)


@functools.cache
def registry() -> dict[str, Experiment]:
    """All experiments by id, in suite order (suite, part, rank)."""
    import dlprobe.experiments as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "kit":
            continue
        module = importlib.import_module(f"dlprobe.experiments.{info.name}")
        exp = getattr(module, "EXPERIMENT", None)
        if isinstance(exp, Experiment):
            found.append(exp)
    return {e.id: e for e in sorted(found, key=_suite_position)}


def get_experiment(experiment_id: str) -> Experiment:
    exps = registry()
    if experiment_id not in exps:
        raise DlprobeError(f"unknown experiment {experiment_id!r}; valid ids: {', '.join(exps)}")
    return exps[experiment_id]


def get_suite(suite_id: str) -> Suite:
    for s in SUITES:
        if s.id == suite_id:
            return s
    raise DlprobeError(f"unknown suite {suite_id!r}; valid: {', '.join(s.id for s in SUITES)}")


def suite_parts(suite: Suite) -> list[tuple[Part, list[Experiment]]]:
    """The suite's parts with their experiments, in order."""
    exps = registry().values()
    return [(p, [e for e in exps if e.part == p.anchor]) for p in suite.parts]


def suite_ids(suite: Suite) -> list[str]:
    return [e.id for _, exps in suite_parts(suite) for e in exps]
