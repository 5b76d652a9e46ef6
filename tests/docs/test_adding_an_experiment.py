"""docs/adding-an-experiment.md: its example is one file that needs nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import dlprobe.experiments
from dlprobe.cli import main
from dlprobe.experiments.kit import experiment as kit_experiment

DOC = Path(__file__).parents[2] / "docs" / "adding-an-experiment.md"


@pytest.fixture
def example_installed(tmp_path, monkeypatch):
    """The doc's code block as a module of dlprobe.experiments, and nothing else changed."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "width_sweep.py").write_text(code)
    monkeypatch.setattr(
        dlprobe.experiments, "__path__", [*dlprobe.experiments.__path__, str(folder)]
    )
    kit_experiment.registry.cache_clear()
    yield
    kit_experiment.registry.cache_clear()


def test_the_example_is_listed_and_runs_from_its_file_alone(example_installed, tmp_path, capsys):
    assert main(["list"]) == 0
    assert "width-sweep" in capsys.readouterr().out
    out = tmp_path / "run"
    args = ["run", "width-sweep", "--profile", "smoke", "--device", "cpu", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"] == ["loss-by-width"]
    assert (out / "figures" / "loss-by-width.png").stat().st_size > 2000
    (line,) = summary["observations"]
    assert "widest model (8 units)" in line
    html = (out / "report.html").read_text()
    assert "hidden units of each model" in html  # the settings table comes from the comments
    assert main(["run", "width-sweep", "--widths", "4", "--out", str(tmp_path / "x")]) == 2
    assert "at least two widths" in capsys.readouterr().err
