"""Help texts and settings tables of a config, from the comments of its fields.

Every field of a config carries a comment (what it is, in what unit): ``field_docs`` reads
them back from the class source, ``help_text`` makes the ``--help`` of ``dlprobe run ID``
and ``settings_rows`` the settings table of a report.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import re
import textwrap
import tokenize

from dlprobe.config import describe_type, field_paths, short_names

# a comment (or the end of one) addressed to a tool, not to users: the directives of
# the formatter (fmt: skip), linters (noqa), type checkers (type: ignore) and coverage
# (pragma: no cover); never part of a description
TOOL_COMMENT = re.compile(r"\s*#\s*(?:fmt:|noqa|type:|pragma:)[^#]*")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment from the class source: the trailing one, or the lines above."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        text = TOOL_COMMENT.sub("", tok.string).lstrip("#").strip()
        if text:
            comments[tok.start[0]] = text
    lines = source.splitlines()
    docs = {}
    node = ast.parse(source).body[0]
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            own = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments]
            above, n = [], stmt.lineno - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                if n in comments:
                    above.insert(0, comments[n])
                n -= 1
            docs[stmt.target.id] = " ".join(above + own)
    return docs


def doc_of(config, path: str) -> str:
    """The comment of a dotted setting, after the comments of the groups it is in."""
    *groups, leaf = path.split(".")
    parts = []
    for g in groups:
        parts.append(field_docs(type(config)).get(g, ""))
        config = getattr(config, g)
    parts.append(field_docs(type(config)).get(leaf, ""))
    return ": ".join(p for p in parts if p)


def format_value(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(format_value(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_rows(config) -> list[tuple[str, str, str]]:
    """(name, value, comment) of every setting, for the report's settings table."""
    return [
        (path, format_value(value), doc_of(config, path)) for path, _, value in field_paths(config)
    ]


def help_text(config) -> str:
    """One line per setting: ``--name TYPE  comment (default: value)``."""
    rows = []
    for (path, tp, value), short in zip(field_paths(config), short_names(config), strict=True):
        flag = f"--{short.replace('_', '-')} {describe_type(tp).upper().replace(' ', '-')}"
        rows.append((flag, f"{doc_of(config, path)} (default: {format_value(value)})"))
    width = min(max(len(f) for f, _ in rows), 38)
    return "\n".join(
        f"  {flag:<{width}}  {text}" if len(flag) <= width else f"  {flag}\n  {'':<{width}}  {text}"
        for flag, text in rows
    )
