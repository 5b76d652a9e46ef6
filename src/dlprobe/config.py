"""Typed, commented settings: constraints in annotations, strict overrides, one validator.

A config is a frozen dataclass. Every field has a comment (what it is, in what unit) and,
where a value can be wrong, a constraint in its annotation::

    @dataclass(frozen=True)
    class Config:
        seeds: PosInt = 3  # models, trained as one population
        lr: PosFloat = 1e-3  # learning rate
        activation: Activation = "relu"  # hidden activation

``validate(config)`` checks every field (type, constraint, finite number), recursing into
nested configs, then calls the config's own ``check()`` for rules that span fields.
``override(config, {"lr": 0.1, "train.epochs": 3})`` and ``parse_args(config, argv)``
(``--lr 0.1 --epochs 3``) are strict: an unknown name or a value of the wrong type is a
``DlprobeError`` that says what is allowed. ``dlprobe.config_help`` reads the comments
back for help texts and settings tables.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from dlprobe import DlprobeError

# -- constraints -----------------------------------------------------------------------


def require(condition: bool, message: str) -> None:
    """Raise a one-line DlprobeError unless ``condition`` (for a config's ``check()``)."""
    if not condition:
        raise DlprobeError(message)


@dataclass(frozen=True)
class Bound:
    """A numeric range; ``None`` ends are open. Applies to each element of a tuple."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, name: str, v) -> None:
        for op, bound, ok in (
            (">=", self.ge, lambda b: v >= b),
            (">", self.gt, lambda b: v > b),
            ("<=", self.le, lambda b: v <= b),
            ("<", self.lt, lambda b: v < b),
        ):
            if bound is not None and not ok(bound):
                raise DlprobeError(
                    f"{name} must be {op} {bound:,}".replace(",", " ") + f", got {v:g}"
                )


@dataclass(frozen=True)
class OneOf:
    """A name from a fixed collection (a tuple, or the keys of a registry dict)."""

    names: tuple[str, ...]
    what: str = "name"

    def check(self, name: str, v) -> None:
        if v not in self.names:
            where = "" if name.split(".")[-1] in (self.what, f"{self.what}s") else f" for {name}"
            raise DlprobeError(
                f"unknown {self.what} {v!r}{where}; valid names: {', '.join(self.names)}"
            )


def one_of(names: Iterable[str], what: str = "name") -> Any:
    """The annotation of a string field that must be one of ``names``."""
    return Annotated[str, OneOf(tuple(names), what)]


Seed = Annotated[int, Bound(ge=0, le=2**31 - 1)]  # what numpy and torch both accept
PosInt = Annotated[int, Bound(ge=1)]
NonNegInt = Annotated[int, Bound(ge=0)]
PosFloat = Annotated[float, Bound(gt=0)]
NonNegFloat = Annotated[float, Bound(ge=0)]
Fraction = Annotated[float, Bound(ge=0, le=1)]

# -- reading annotations ---------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _unwrap(tp) -> tuple[Any, list]:
    """(bare type, constraints) of an annotation."""
    constraints = []
    while typing.get_origin(tp) is Annotated:
        tp, *meta = typing.get_args(tp)
        constraints += [m for m in meta if isinstance(m, Bound | OneOf)]
    return tp, constraints


def _optional(tp) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def describe_type(tp) -> str:
    tp, _ = _unwrap(tp)
    inner = _optional(tp)
    if inner is not None:
        return f"{describe_type(inner)} or none"
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{describe_type(args[0])}s"
        return " ".join(describe_type(a) for a in args)
    return {int: "integer", float: "number", bool: "true/false", str: "text"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def is_config(obj) -> bool:
    return dataclasses.is_dataclass(obj)


# -- values: coercion and validation ---------------------------------------------------


def coerce(value, tp, name: str):
    """``value`` (from JSON, a dict or command-line text) as the annotated type ``tp``."""
    tp, _ = _unwrap(tp)
    inner = _optional(tp)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, inner, name)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=f"{name}.")
        raise DlprobeError(f"{name} must be a group of settings, got {value!r}")
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, list | tuple):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], name) for v in value)
        if len(value) != len(args):
            raise DlprobeError(f"{name} takes {len(args)} values, got {len(value)}: {value}")
        return tuple(coerce(v, a, name) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise DlprobeError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number != int(number) or isinstance(value, bool):
            raise DlprobeError(f"{name} must be an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise DlprobeError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DlprobeError(f"{name} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise DlprobeError(f"{name} must be text, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} of {name}")


def _check_value(value, tp, name: str) -> None:
    bare, constraints = _unwrap(tp)
    inner = _optional(bare)
    if inner is not None:
        if value is not None:
            _check_value(value, inner, name)
        return
    if dataclasses.is_dataclass(bare):
        validate(value, prefix=f"{name}.")
        return
    if typing.get_origin(bare) is tuple:
        args = typing.get_args(bare)
        elems = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        for v, a in zip(value, elems, strict=True):
            _check_value(v, a, name)
        for c in constraints:
            for v in value:
                c.check(name, v)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise DlprobeError(f"{name} must be a finite number, got {value}")
    for c in constraints:
        c.check(name, value)


def validate(config, prefix: str = "") -> None:
    """Check every field of ``config`` (and nested configs), then its ``check()``."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        name = prefix + f.name
        value = getattr(config, f.name)
        nan = isinstance(value, float) and math.isnan(value)  # NaN != NaN; refused below
        if not nan and coerce(value, hints[f.name], name) != value:
            raise DlprobeError(f"{name} has the wrong type: {value!r}")
        _check_value(value, hints[f.name], name)
    check = getattr(type(config), "check", None)
    if check is not None:
        check(config)


def from_dict(cls: type, values: dict, prefix: str = ""):
    """A config of class ``cls`` from a JSON-like dict; unknown keys are errors."""
    if not isinstance(values, dict):
        raise DlprobeError(f"{prefix or 'config'} must be a JSON object, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise DlprobeError(
            f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
            f"valid: {', '.join(sorted(prefix + n for n in names))}"
        )
    hints = _hints(cls)
    return cls(**{k: coerce(v, hints[k], prefix + k) for k, v in values.items()})


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


# -- names and overrides ---------------------------------------------------------------


def field_paths(config, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted name, annotation, value) of every leaf setting, nested ones flattened."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from field_paths(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, hints[f.name], value


def resolve_name(config, name: str) -> str:
    """The dotted setting a user's name means: exact, or the one nested field so named."""
    name = name.replace("-", "_")
    paths = [p for p, _, _ in field_paths(config)]
    if name in paths:
        return name
    matches = [p for p in paths if p.split(".")[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise DlprobeError(f"{name} is ambiguous; say which: {', '.join(matches)}")
    raise DlprobeError(f"unknown setting {name}; valid: {', '.join(short_names(config))}")


def short_names(config) -> list[str]:
    """Every setting by its shortest unambiguous name (nested ones without their group)."""
    paths = [p for p, _, _ in field_paths(config)]
    leaves = [p.split(".")[-1] for p in paths]
    return [leaf if leaves.count(leaf) == 1 else p for p, leaf in zip(paths, leaves, strict=True)]


def override(config, changes: dict):
    """``config`` with ``changes`` applied; keys are setting names, dotted or short."""
    grouped: dict[str, Any] = {}
    for key, value in changes.items():
        path = resolve_name(config, key)
        grouped[path] = value
    return _apply(config, grouped)


def _apply(config, changes: dict[str, Any], prefix: str = ""):
    hints = _hints(type(config))
    updates = {}
    for f in dataclasses.fields(config):
        full = prefix + f.name
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            nested = {k: v for k, v in changes.items() if k.startswith(full + ".")}
            if nested:
                updates[f.name] = _apply(value, nested, full + ".")
        elif full in changes:
            updates[f.name] = coerce(changes[full], hints[f.name], full)
    return dataclasses.replace(config, **updates)


def parse_args(config, argv: list[str]):
    """``config`` with ``--name value [value ...]`` pairs applied (tuples take several)."""
    changes: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise DlprobeError(f"expected a setting like --lr 0.01, got {token!r}")
        key, _, inline = token[2:].partition("=")
        path = resolve_name(config, key)
        values = [inline] if inline else []
        i += 1
        while not inline and i < len(argv) and not _is_flag(argv[i]):
            values.append(argv[i])
            i += 1
        if not values:
            raise DlprobeError(f"--{key} needs a value")
        changes[path] = values if len(values) > 1 else values[0]
    return override(config, changes)


def _is_flag(token: str) -> bool:
    """``--name`` starts a new setting; ``-1`` or ``-1e-3`` is a negative number."""
    if not token.startswith("-"):
        return False
    try:
        float(token)
        return False
    except ValueError:
        return True
