"""Bad input, as a user types it: one line naming the problem, exit 2, nothing written.

Each case runs ``dlprobe`` in-process in an empty working folder prepared by a setup
(a corrupt config, a file where a folder is expected, ...). Whatever the case, stderr is
one line without a traceback, and the folder holds exactly what the setup put there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlprobe.cli import main

CONFIG = {
    "experiment": "simulate-function",
    "profile": "smoke",
    "config": {},
    "device": "cpu",
    "environment": {},
    "created": "2026-01-01T00:00:00",
}


def _write(name: str, text: str):
    def setup(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    return setup


def _folder(name: str):
    return lambda root: (root / name).mkdir()


def _run_folder(results: str, experiment: str = "simulate-function"):
    def setup(root: Path) -> None:
        (root / "run").mkdir()
        (root / "run" / "config.json").write_text(json.dumps({**CONFIG, "experiment": experiment}))
        (root / "run" / "results.json").write_text(results)

    return setup


def _config(**fields):
    return _write("cfg.json", json.dumps({**CONFIG, **fields}))


SF = ["run", "simulate-function", "--profile", "smoke", "--device", "cpu"]
CASES = [
    # run: settings of one experiment
    (["run", "nope"], None, "unknown experiment 'nope'"),
    ([*SF, "--functions", "nope"], None, "unknown function 'nope'"),
    ([*SF, "--activation", "swish"], None, "unknown activation 'swish'"),
    ([*SF, "--optimizer", "adamx"], None, "unknown optimizer 'adamx'"),
    ([*SF, "--schedule", "linear"], None, "unknown schedule 'linear'"),
    ([*SF, "--epochs", "0"], None, "epochs must be >= 1"),
    ([*SF, "--epochs", "1.5"], None, "epochs must be an integer"),
    ([*SF, "--lr", "inf"], None, "lr must be a finite number"),
    ([*SF, "--lr", "nan"], None, "lr must be a finite number"),
    ([*SF, "--lr", "-1"], None, "lr must be > 0"),
    ([*SF, "--lr", "abc"], None, "lr must be a number"),
    ([*SF, "--batch-size", "5000"], None, "batch_size must be <= n_points"),
    ([*SF, "--batch-size", "-1"], None, "batch_size must be >= 0"),
    ([*SF, "--eval-every-epochs", "0"], None, "eval_every_epochs must be >= 1"),
    ([*SF, "--seed", "-1"], None, "seed must be >= 0"),
    ([*SF, "--seed", "1e30"], None, "seed must be <= 2 147 483 647"),
    ([*SF, "--seeds", "0"], None, "seeds must be >= 1"),
    ([*SF, "--n-points", "1"], None, "n_points must be >= 2"),
    ([*SF, "--depths", "30", "--param-budget", "40"], None, "too small"),
    ([*SF, "--models", "1-1000000000-1"], None, "GiB for weights"),
    ([*SF, "--models", "1-x-1"], None, "model widths must look like 1-190-1"),
    ([*SF, "--epochz", "3"], None, "unknown setting epochz"),
    ([*SF, "--dataset", "mnist"], None, "unknown setting dataset"),
    ([*SF, "--lr"], None, "--lr needs a value"),
    ([*SF, "--record-steps", "maybe"], None, "record_steps must be true or false"),
    ([*SF, "--stop-at-train-accuracy", "2"], None, "stop_at_train_accuracy must be <= 1"),
    ([*SF, "--momentum", "1"], None, "momentum must be < 1"),
    ([*SF, "--blowup-loss-factor", "0.5"], None, "blowup_loss_factor must be > 1"),
    (["run", "sensitivity-manifold", "--n-points", "100"], None, "multiple of 3"),
    (["run", "linear-regions", "--activation", "tanh"], None, "valid names: relu, leaky_relu"),
    (["run", "actual-task", "--dataset", "nope"], None, "unknown dataset 'nope'"),
    # run: common options
    ([*SF, "--device", "tpu"], None, "unknown device 'tpu'"),
    (["run", "simulate-function", "--profile", "huge"], None, "unknown profile 'huge'"),
    ([*SF, "--out", ""], None, "--out needs a path"),
    ([*SF, "--out", "afile"], _write("afile", "x"), "is a file; give a folder"),
    ([*SF, "--out", "afile/run"], _write("afile", "x"), "afile is a file, not a folder"),
    ([*SF, "--out", "full"], _write("full/keep.txt", "x"), "already exists and is not empty"),
    ([*SF, "--data-dir", "afile"], _write("afile", "x"), "--data-dir afile is a file"),
    # run --config FILE
    ([*SF, "--config", "missing.json"], None, "missing.json does not exist"),
    ([*SF, "--config", "cfg.json"], _write("cfg.json", "{not json"), "is not valid JSON"),
    ([*SF, "--config", "cfg.json"], _write("cfg.json", ""), "is not valid JSON"),
    ([*SF, "--config", "cfg.json"], _write("cfg.json", "[1, 2]"), "not a dlprobe config.json"),
    ([*SF, "--config", "cfgdir"], _folder("cfgdir"), "is a folder, not a config.json"),
    (
        [*SF, "--config", "cfg.json"],
        _write("cfg.json", '{"experiment": "simulate-function"}'),
        "not a dlprobe config.json",
    ),
    ([*SF, "--config", "cfg.json"], _config(config={"seeds": "three"}), "seeds must be an integer"),
    ([*SF, "--config", "cfg.json"], _config(config={"nope": 1}), "unknown setting(s) nope"),
    ([*SF, "--config", "cfg.json"], _config(experiment="actual-task"), "config of actual-task"),
    # run --resume
    (["run", "simulate-function", "--resume", "--epochs", "3"], None, "--resume continues a run"),
    (
        ["run", "simulate-function", "--resume", "--out", "empty"],
        _folder("empty"),
        "no config.json",
    ),
    (["run", "simulate-function", "--resume"], None, "no runs/simulate-function-* folder"),
    # report
    (["report", "nonexistent"], None, "not a finished dlprobe run folder"),
    (["report", "run"], _run_folder("{broken"), "is not valid JSON"),
    (["report", "run"], _run_folder('{"experiment": "simulate-function", "resu'), "not valid JSON"),
    (["report", "run"], _run_folder("{}"), "holds no results"),
    (["report", "run"], _run_folder('{"results": {}}'), "does not hold the results"),
    (["report", "run"], _run_folder('{"results": {}}', "gone"), "unknown experiment 'gone'"),
    # suites
    (["run", "hw1", "--resume", "--out", "notsuite"], _folder("notsuite"), "suite.json does not"),
    (["run", "hw1", "--resume", "--out", "s"], _write("s/suite.json", "{"), "is not valid JSON"),
    (["run", "hw1", "--config", "x.json"], None, "takes no --config"),
    (["run", "hw1", "--epochs", "3"], None, "takes no experiment settings"),
    (["run", "hw1", "--seed", "abc"], None, "--seed must be an integer"),
    (["run", "hw1", "--dataset", "nope", "--profile", "smoke"], None, "unknown dataset 'nope'"),
    (["run", "hw1", "--out", "afile"], _write("afile", "x"), "is a file; give a folder"),
    (["run", "hw1", "--resume", "--profile", "smoke"], None, "--resume continues a suite"),
    # bench and the other commands
    (["bench", "--sizes", "4", "0"], None, "population sizes >= 1"),
    (["bench", "--steps", "0"], None, "--steps must be >= 1"),
    (["bench", "--threads", "-1"], None, "--threads must be >= 1, or 0 for torch's default"),
    (["bench", "--out", "afile/b.json"], _write("afile", "x"), "afile is a file, not a folder"),
    (["bench", "--device", "tpu"], None, "invalid choice: 'tpu'"),
    (["bench", "--sizes", "x"], None, "invalid int value: 'x'"),
    (["datasets", "--data-dir"], None, "expected one argument"),
    (["frobnicate"], None, "invalid choice: 'frobnicate'"),
]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("args,setup,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args, setup, message, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    if setup:
        setup(tmp_path)
    before = _tree(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert err.startswith("dlprobe: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before, "nothing may be written"


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
