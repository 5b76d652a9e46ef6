"""Help texts and settings tables come from the fields' comments, and only the comments
meant for users: formatter and linter directives are left out."""

from __future__ import annotations

from dataclasses import dataclass

from dlprobe.config import PosInt
from dlprobe.config_help import field_docs, help_text, settings_rows


@dataclass(frozen=True)
class Config:
    # models trained
    # as one population
    seeds: PosInt = 3
    lr: float = 1e-3  # peak learning rate  # fmt: skip
    # fmt: off
    widths: tuple[PosInt, ...] = (4, 4)  # hidden widths
    # fmt: on
    epochs: PosInt = 10  # noqa: E501


def test_comments_above_and_trailing_make_the_description():
    docs = field_docs(Config)
    assert docs["seeds"] == "models trained as one population"
    assert docs["widths"] == "hidden widths"


def test_tool_directives_are_not_descriptions():
    docs = field_docs(Config)
    assert "fmt" not in docs["lr"] and docs["lr"].startswith("peak learning rate")
    assert docs["epochs"] == ""
    text = help_text(Config())
    assert "fmt:" not in text and "noqa" not in text
    assert all("fmt:" not in meaning for _, _, meaning in settings_rows(Config()))
