"""Sweep axes without Ray: parsing by the setting's type, expansion, draws, names, table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dlprobe import DlprobeError
from dlprobe.experiments.kit import get_experiment
from dlprobe.runs import write_json
from dlprobe.sweep.axes import (
    MAX_TRIALS,
    expand,
    parse_grid,
    parse_random,
    setting_args,
    trial_names,
)
from dlprobe.sweep.plan import new_sweep, resume_sweep
from dlprobe.sweep.table import (
    flat_summary,
    headline_columns,
    sweep_report_html,
    trial_rows,
    write_results_csv,
)

GN = get_experiment("gradient-norm").make_config("smoke")


def test_grid_values_take_the_type_of_their_setting():
    assert parse_grid(GN, "function_train.lr=1e-3,1e-2").values == (1e-3, 1e-2)
    assert parse_grid(GN, "seed=0..3,7").values == (0, 1, 2, 3, 7)
    assert parse_grid(GN, "seeds= 2 , 3").values == (2, 3)
    hidden = parse_grid(GN, "hidden=16,32 32")
    assert hidden.name == "hidden" and hidden.values == ((16,), (32, 32))
    assert hidden.describe() == "grid of 2: 16, 32 32"
    assert parse_grid(GN, "dataset-train.record-steps=true").values == (True,)
    assert parse_grid(GN, "function-train.lr=0.1").name == "function_train.lr"
    assert parse_grid(GN, "dataset=digits,mnist").values == ("digits", "mnist")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lr=0.1", "lr is ambiguous; say which: function_train.lr, dataset_train.lr"),
        ("nope=1", "unknown setting nope"),
        ("seed", "--grid 'seed': expected NAME=VALUES"),
        ("seed=", "--grid 'seed=': expected NAME=VALUES"),
        ("seed=1,,2", "an empty value between commas"),
        ("seed=a", "seed must be an integer, got 'a'"),
        ("seed=5..2", "the range 5..2 is empty"),
        ("seed=1,1", "lists 1 twice"),
        ("function_train.lr=1e-3..1e-1", "is not an integer setting"),
    ],
)
def test_bad_grids_are_refused_with_what_is_wrong(spec, message):
    with pytest.raises(DlprobeError, match=message.replace("(", r"\(")):
        parse_grid(GN, spec)


def test_random_axes_choose_log_uniform_or_pick():
    lr = parse_random(GN, "function_train.lr=1e-4..1e-1")
    assert (lr.scale, lr.low, lr.high) == ("log", 1e-4, 1e-1)
    assert lr.describe() == "drawn log-uniform in [0.0001, 0.1]"
    assert parse_random(GN, "function_train.momentum=0.5..0.99").scale == "uniform"
    assert parse_random(GN, "function_train.weight_decay=0..1").scale == "uniform"
    seed = parse_random(GN, "seed=0..9")
    assert (seed.scale, seed.low, seed.high) == ("uniform", 0, 9)
    pick = parse_random(GN, "activation=relu,tanh")
    assert (pick.scale, pick.values) == ("choice", ("relu", "tanh"))
    with pytest.raises(DlprobeError, match="LOW < HIGH"):
        parse_random(GN, "function_train.lr=0.1..0.01")
    with pytest.raises(DlprobeError, match="needs a number setting"):
        parse_random(GN, "function_model=0..1")


def test_expansion_is_the_grid_product_times_the_samples_and_reproducible():
    axes = [
        parse_grid(GN, "seed=0..1"),
        parse_grid(GN, "activation=relu,tanh"),
        parse_random(GN, "function_train.lr=1e-4..1e-1"),
        parse_random(GN, "seeds=1..3"),
    ]
    trials = expand(axes, samples=50, sweep_seed=3)
    assert len(trials) == 2 * 2 * 50
    assert [(t["seed"], t["activation"]) for t in trials[:4]] == [
        (0, "relu"), (0, "tanh"), (1, "relu"), (1, "tanh")
    ]  # fmt: skip
    assert list(trials[0]) == ["seed", "activation", "function_train.lr", "seeds"]
    lrs = [t["function_train.lr"] for t in trials]
    assert all(1e-4 <= v <= 1e-1 and float(f"{v:.4g}") == v for v in lrs)
    # log-uniform: about a third of the draws in each decade
    for low in (1e-4, 1e-3, 1e-2):
        share = sum(low <= v < 10 * low for v in lrs) / len(lrs)
        assert 0.2 < share < 0.47
    assert {t["seeds"] for t in trials} == {1, 2, 3}
    assert expand(axes, 50, 3) == trials
    assert expand(axes, 50, 4) != trials


def test_expansion_refuses_an_axis_twice_and_huge_sweeps():
    with pytest.raises(DlprobeError, match="seed is swept twice"):
        expand([parse_grid(GN, "seed=0..1"), parse_random(GN, "seed=0..3")], 1, 0)
    with pytest.raises(DlprobeError, match=f"at most {MAX_TRIALS}"):
        expand([parse_grid(GN, "seed=0..10000")], 1, 0)


def test_trial_names_are_numbered_short_and_safe():
    trials = [
        {"function_train.lr": 0.001, "hidden": (16, 16), "dataset": "digits"},
        {"function_train.lr": 0.01, "hidden": (32,), "dataset": "a/b c"},
    ]
    assert trial_names(trials) == [
        "000-lr=0.001-hidden=16x16-dataset=digits",
        "001-lr=0.01-hidden=32-dataset=a_b_c",
    ]
    both = [{"function_train.lr": 0.1, "dataset_train.lr": 0.2}]
    assert trial_names(both) == ["000-function_train.lr=0.1-dataset_train.lr=0.2"]
    assert setting_args({"function_train.lr": 0.1, "hidden": [16, 16]}) == [
        "--function-train.lr", "0.1", "--hidden", "16", "16"
    ]  # fmt: skip


def test_results_csv_reads_back_with_pandas_types(tmp_path):
    state = {
        "trials": [
            {"name": "000", "settings": {"lr": 0.1, "seed": 0, "hidden": [16, 16]},
             "status": "done", "seconds": 1.5},
            {"name": "001", "settings": {"lr": 0.01, "seed": 1, "hidden": [32]},
             "status": "failed", "seconds": None, "error": "DlprobeError: no data"},
        ]
    }  # fmt: skip
    summary = {"loss": 0.25, "start / end": [1.0, None], "fit": "2/2", "pairs": [[0.1, 2]]}
    assert flat_summary(summary) == {"loss": 0.25, "start / end [1]": 1.0, "start / end [2]": None}
    rows = trial_rows(state, {"000": {"summary": summary}})
    write_results_csv(tmp_path / "results.csv", rows)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns) == [
        "trial", "lr", "seed", "hidden", "status", "seconds", "error",
        "loss", "start / end [1]", "start / end [2]",
    ]  # fmt: skip
    assert table["lr"].dtype == "float64" and table["seed"].dtype == "int64"
    assert table["loss"].dtype == "float64" and table["seconds"].dtype == "float64"
    assert list(table["hidden"]) == ["16 16", "32"]
    assert table["loss"][0] == 0.25 and math.isnan(table["loss"][1])
    assert math.isnan(table["start / end [2]"][0]) and math.isnan(table["seconds"][1])
    assert list(table["error"].fillna("")) == ["", "DlprobeError: no data"]


def test_report_draws_each_axis_with_two_values_and_names_failures():
    axes = [parse_grid(GN, "activation=relu,tanh"), parse_grid(GN, "seed=0")]
    trials = [
        {"name": f"00{i}", "settings": {"activation": a, "seed": 0}, "status": s}
        for i, (a, s) in enumerate([("relu", "done"), ("tanh", "done"), ("tanh", "failed")])
    ]
    trials[2]["error"] = "RuntimeError: boom"
    state = {"experiment": "gradient-norm", "profile": "smoke", "samples": 1, "sweep_seed": 0}
    state["command"] = ["dlprobe", "sweep", "gradient-norm", "--grid", "activation=relu,tanh"]
    state["trials"] = trials
    summaries = {
        "000": {"summary": {"start": 1.0, "loss": 0.5, "gap": 0.1}},
        "001": {"summary": {"start": 1.0, "loss": 0.25, "gap": 0.2}},
    }
    rows = trial_rows(state, summaries)
    # numbers that differ between trials first: the starting value is the same in both
    assert headline_columns(rows, first_summary_column=1 + 2 + 3) == ["loss", "gap"]
    html = sweep_report_html(state, rows, axes)
    assert html.count("<img") == 1  # activation has two values, seed one
    assert "3 trials: 2 done, 1 failed, 0 pending" in html
    assert "<code>002</code>: RuntimeError: boom" in html
    assert "random" not in html and "grid of 2: relu, tanh" in html
    assert "<code>dlprobe sweep gradient-norm --grid activation=relu,tanh</code>" in html


def test_a_planned_sweep_reads_back_from_its_sweep_json(tmp_path):
    exp = get_experiment("gradient-norm")
    plan = new_sweep(
        exp,
        "smoke",
        grids=["seed=0..1"],
        randoms=["function-train.lr=1e-4..1e-1", "hidden=16,8 8"],
        samples=3,
        sweep_seed=5,
        out=tmp_path / "s",
        command=["dlprobe", "sweep"],
    )
    assert not (tmp_path / "s").exists()  # planning writes nothing
    assert [t["name"][:10] for t in plan.trials[:2]] == ["000-seed=0", "001-seed=1"]
    assert len(plan.trials) == 6 and {t["status"] for t in plan.trials} == {"pending"}
    write_json(tmp_path / "s" / "sweep.json", plan.state)
    again = resume_sweep(None, tmp_path / "s")
    assert again.exp is exp and again.axes == plan.axes and again.trials == plan.trials
    assert again.axes[2].values == ((16,), (8, 8))
    with pytest.raises(DlprobeError, match="is a sweep of gradient-norm, not of sharpness"):
        resume_sweep("sharpness", tmp_path / "s")
    runs = tmp_path / "runs"  # without --out: the newest runs/ID-sweep-* folder
    write_json(runs / "gradient-norm-sweep-20260101-000000" / "sweep.json", plan.state)
    newest = resume_sweep("gradient-norm", None, runs_root=runs)
    assert newest.path == runs / "gradient-norm-sweep-20260101-000000"
    with pytest.raises(DlprobeError, match="no .*sharpness-sweep-\\* folder to resume"):
        resume_sweep("sharpness", None, runs_root=runs)
