"""The curvature benchmark at toy size: every row measured, ours agrees with torch.func."""

import json
from pathlib import Path

import pytest

from dlprobe.benchmarks import curvature
from dlprobe.cli import main

ROWS = {
    "one HVP",
    "one HVP, graph reused",
    "top eigenvalue",
    "top eigenvalue, tol=1e-2",
    "trace, 2 HVPs",
    "density, 3 Lanczos steps",
}


def test_curvature_bench_at_toy_size(tmp_path, capsys):
    out = tmp_path / "curvature.json"
    results = curvature.run_curvature_bench(
        out,
        device="cpu",
        models=("mlp",),
        repeats=1,
        trace_samples=2,
        density_steps=3,
        mlp_widths=(8, 6, 3),
        mlp_examples=16,
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["device"] == "cpu" and saved["memory"]
    (model,) = saved["models"]
    assert model["params"] == 8 * 6 + 6 + 6 * 3 + 3
    rows = {r["measure"]: r for r in model["rows"]}
    assert set(rows) == ROWS
    hvp = rows["one HVP"]
    assert hvp["relative_difference"] < 1e-5  # our HVP equals torch.func's
    assert hvp["ratio"] == pytest.approx(hvp["seconds"] / hvp["reference_seconds"])
    for r in rows.values():
        assert r["seconds"] > 0 and r["peak_mib"] >= 0
    assert rows["trace, 2 HVPs"]["plain_hvps_seconds"] == pytest.approx(
        2 * hvp["reference_seconds"]
    )
    assert rows["trace, 2 HVPs"]["hvps"] == 2  # the products are counted
    assert rows["density, 3 Lanczos steps"]["hvps"] == 3
    top, loose = rows["top eigenvalue"], rows["top eigenvalue, tol=1e-2"]
    assert loose["hvps"] <= top["hvps"] and loose["relative_error"] <= 1e-2
    if saved["pyhessian"]:  # power iteration at its default tolerance: roughly the same
        assert top["reference_relative_error"] < 0.05
        assert rows["trace, 2 HVPs"]["reference_hvps"] == 2
    printed = capsys.readouterr().out
    assert "MLP 8-6-3" in printed and "ratio" in printed


def test_cli_flag_runs_the_curvature_bench(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(curvature, "run_curvature_bench", lambda **kw: calls.append(kw))
    assert main(["bench", "--curvature", "--device", "cpu"]) == 0
    assert main(["bench", "--curvature", "--out", str(tmp_path / "c.json")]) == 0
    assert calls == [
        {"out": Path("bench-curvature.json"), "device": "cpu"},
        {"out": tmp_path / "c.json", "device": "auto"},
    ]
