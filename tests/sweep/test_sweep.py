"""``dlprobe sweep`` end to end: bad input refused before Ray, then real sweeps on one shared
local Ray instance (2 CPUs) over gradient-norm's smoke profile on the digits data: a 2x2
grid equal to plain runs, a failing trial, a killed trial and ``--resume``."""

from __future__ import annotations

import _thread
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from dlprobe.cli import main

GN = ["gradient-norm", "--profile", "smoke", "--device", "cpu"]


def sweep(*argv) -> int:
    return main(["sweep", *map(str, argv)])


def results(run: Path) -> dict:
    return json.loads((Path(run) / "results.json").read_text())["results"]


def plain_run(out: Path, *settings) -> dict:
    """``dlprobe run gradient-norm`` with these settings, in this process."""
    assert main(["run", *GN, "--quiet", "--out", str(out), *map(str, settings)]) == 0
    return results(out)


# -- refused before Ray starts or anything is written -----------------------------------


@pytest.fixture
def no_ray(monkeypatch):
    """Bad input must be refused before the sweep reaches Ray."""

    def refuse(*_a, **_k):
        raise AssertionError("Ray was reached")

    monkeypatch.setattr("dlprobe.sweep.runner.run_sweep", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope", "--grid", "seed=0..1"], "unknown experiment 'nope'"),
        ([*GN], "give at least one axis"),
        ([*GN, "--grid", "nope=1,2"], "unknown setting nope"),
        ([*GN, "--grid", "seed=a"], "seed must be an integer, got 'a'"),
        ([*GN, "--grid", "seed=3..1"], "the range 3..1 is empty"),
        ([*GN, "--grid", "seed"], "expected NAME=VALUES"),
        ([*GN, "--grid", "seeds=0,1"], "trial 000-seeds=0: seeds must be >= 1, got 0"),
        ([*GN, "--grid", "dataset-train.batch-size=100,5000"], "trial 001-batch_size=5000"),
        ([*GN, "--random", "function-train.lr=1..0.1"], "LOW < HIGH"),
        ([*GN, "--grid", "seed=0,1", "--samples", "3"], "--samples sets the draws"),
        ([*GN, "--random", "seed=0..3", "--samples", "0"], "--samples must be >= 1"),
        ([*GN, "--grid", "seed=0,1", "--cpus", "0"], "--cpus must be >= 1"),
        ([*GN, "--grid", "seed=0,1", "--profile", "huge"], "invalid choice: 'huge'"),
        (["--resume"], "--resume needs --out DIR"),
        (["--resume", "--out", "missing"], "cannot resume missing: it has no sweep.json"),
        (["--resume", "--out", "x", "--grid", "seed=1"], "drop --grid"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    argv, message, tmp_path, monkeypatch, capsys, no_ray
):
    monkeypatch.chdir(tmp_path)
    out = [] if "--out" in argv or argv == ["--resume"] else ["--out", "sweep"]
    assert sweep(*argv, *out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_without_ray_one_line_says_how_to_install_it(tmp_path, monkeypatch, capsys, no_ray):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    assert sweep(*GN, "--grid", "seed=0,1", "--out", tmp_path / "s") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'dlprobe[sweep]'" in err
    assert not (tmp_path / "s").exists()


def test_help_names_the_axes_and_the_experiment_settings(capsys):
    assert sweep("gradient-norm", "--help") == 0
    out = capsys.readouterr().out
    assert "log-uniform for a float setting" in out and "--function-train.lr NUMBER" in out


class FakeRay:
    """What the sweep asks of the ``ray`` module when it connects: the calls, recorded."""

    def __init__(self, gpus: int = 0, refuse: bool = False):
        self.calls, self.gpus, self.refuse = [], gpus, refuse

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        if self.refuse:
            raise ConnectionError("could not find any running Ray instance")
        self.calls.append(kwargs)

    def cluster_resources(self) -> dict:
        return {"CPU": 2.0, **({"GPU": float(self.gpus)} if self.gpus else {})}


def test_ray_is_started_locally_or_joined_at_an_address(monkeypatch):
    from dlprobe import DlprobeError
    from dlprobe.sweep import runner
    from dlprobe.sweep.runner import _connect, _trial_device

    monkeypatch.setattr(runner, "check_reachable", lambda address: None)  # no head here

    local = FakeRay()
    assert _connect(local, None, 3) is True
    assert local.calls == [
        {"num_cpus": 3, "include_dashboard": False, "logging_level": logging.ERROR,
         "log_to_driver": False}
    ]  # fmt: skip
    cluster = FakeRay()
    assert _connect(cluster, "ray://head:10001", None) is True
    assert cluster.calls == [
        {"address": "ray://head:10001", "logging_level": logging.ERROR, "log_to_driver": False}
    ]
    with pytest.raises(DlprobeError, match="cannot join the Ray cluster at auto: could not"):
        _connect(FakeRay(refuse=True), "auto", None)
    assert _trial_device(FakeRay(), "auto") == "cpu"
    assert _trial_device(FakeRay(gpus=2), "auto") == "cuda"
    assert _trial_device(FakeRay(gpus=2), "cpu") == "cpu"
    with pytest.raises(DlprobeError, match="the Ray cluster has no GPU"):
        _trial_device(FakeRay(), "cuda")


def test_an_address_nobody_answers_at_fails_at_once_with_one_line():
    from dlprobe import DlprobeError
    from dlprobe.sweep.runner import check_reachable

    with socket.socket() as listening:  # a port that answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    start = time.perf_counter()  # the same port, closed: refused at once
    with pytest.raises(DlprobeError, match=rf"cannot join the Ray cluster at 127.0.0.1:{port}: "
                       rf"nothing answers at 127.0.0.1:{port} within 10 s"):  # fmt: skip
        check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - start < 10
    check_reachable("auto")  # Ray resolves these itself
    check_reachable("local")


def test_importing_dlprobe_does_not_import_ray():
    code = "import sys, dlprobe.cli, dlprobe.sweep; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


# -- real sweeps on one local Ray instance ------------------------------------------------


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """One local Ray instance with 2 CPUs for every sweep below; its workers (and their
    imports) are reused from sweep to sweep."""
    ray = pytest.importorskip("ray")
    env = {"DLPROBE_DATA_DIR": str(tmp_path_factory.mktemp("ray-data")), "DLPROBE_NO_PROGRESS": "1"}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield ray
    ray.shutdown()


def state_of(path: Path) -> dict:
    return {t["name"]: t for t in json.loads((path / "sweep.json").read_text())["trials"]}


@pytest.mark.xdist_group("ray")
def test_grid_sweep_writes_runs_table_and_report_equal_to_plain_runs(ray_session, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = ["--grid", "function-train.lr=1e-3,1e-2", "--grid", "seed=0..1"]
    assert sweep(*GN, *grid, "--grid", "dataset=digits", "--out", out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") and ": done in " in line for line in lines) == 4
    names = sorted(p.name for p in (out / "trials").iterdir())
    assert names == [
        "000-lr=0.001-seed=0-dataset=digits",
        "001-lr=0.001-seed=1-dataset=digits",
        "002-lr=0.01-seed=0-dataset=digits",
        "003-lr=0.01-seed=1-dataset=digits",
    ]
    assert {t["status"] for t in state_of(out).values()} == {"done"}
    table = pd.read_csv(out / "results.csv")
    assert list(table["trial"]) == names and list(table["status"]) == ["done"] * 4
    assert table["function_train.lr"].dtype == "float64" and table["seed"].dtype == "int64"
    key = "function (sinc): fraction of iterations with a loss increase"
    assert table[key].dtype == "float64" and table[key].notna().all()
    report = (out / "report.html").read_text()
    assert report.count("<img") == 2 and "4 trials: 4 done, 0 failed" in report
    csv = (out / "results.csv").read_bytes()
    (out / "results.csv").unlink()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0  # from sweep.json and the trial folders alone
    assert (out / "results.csv").read_bytes() == csv and (out / "report.html").is_file()
    for (lr, seed), name in zip([(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)], names, strict=True):
        trial = out / "trials" / name
        summary = json.loads((trial / "summary.json").read_text())["summary"]
        assert table.set_index("trial").loc[name, key] == summary[key]
        settings = ["--function-train.lr", lr, "--seed", seed, "--dataset", "digits"]
        assert results(trial) == plain_run(tmp_path / f"plain-{name}", *settings)


def _corrupt_mnist(data_dir: Path) -> None:
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        (raw / f"{name}-idx{3 if 'images' in name else 1}-ubyte").write_bytes(b"not mnist")


@pytest.mark.xdist_group("ray")
def test_a_failing_trial_is_recorded_and_the_others_finish(ray_session, tmp_path, capsys):
    data = tmp_path / "data"
    _corrupt_mnist(data)  # present, so nothing is downloaded, but unreadable
    out = tmp_path / "sweep"
    assert sweep(*GN, "--grid", "dataset=digits,mnist", "--data-dir", data, "--out", out) == 1
    printed = capsys.readouterr().out
    state = state_of(out)
    ok, bad = state["000-dataset=digits"], state["001-dataset=mnist"]
    assert ok["status"] == "done" and (out / "trials" / ok["name"] / "results.json").is_file()
    assert bad["status"] == "failed"
    assert bad["error"].startswith("DlprobeError: mnist is not in") and "\n" not in bad["error"]
    assert f"{bad['name']}: failed" in printed and "FAILED: 001-dataset=mnist" in printed
    table = pd.read_csv(out / "results.csv")
    assert list(table["status"]) == ["done", "failed"]
    assert table["function (sinc): Spearman r(grad norm, loss)"].isna().tolist() == [False, True]
    report = (out / "report.html").read_text()
    assert "Failed trials" in report and "001-dataset=mnist" in report


def _kill_when(trial: Path, ready: Path, name: str, killed: list) -> None:
    """SIGKILL the Ray worker running trial ``name`` once ``ready`` exists (its first
    stage is done) and before the trial finished."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ready.exists():
        time.sleep(0.01)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith(f"ray::trial {name}") and not (trial / "results.json").exists():
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))


@pytest.mark.xdist_group("ray")
def test_a_killed_trial_is_failed_then_resume_finishes_it_as_if_never_killed(
    ray_session, tmp_path, capsys
):
    out = tmp_path / "sweep"
    victim, other = "000-seed=0-dataset=digits", "001-seed=1-dataset=digits"
    trial = out / "trials" / victim
    first_stage = trial / "checkpoints" / "function.done.pt"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when, args=(trial, first_stage, victim, killed))
    killer.start()
    assert sweep(*GN, "--grid", "seed=0..1", "--grid", "dataset=digits", "--out", out) == 1
    killer.join()
    assert len(killed) == 1, "the trial finished before it could be killed"
    state = state_of(out)
    assert state[victim]["status"] == "failed" and "died" in state[victim]["error"]
    assert state[other]["status"] == "done"
    assert not (trial / "results.json").exists() and first_stage.exists()
    kept = {p: p.stat().st_mtime_ns for p in (first_stage, out / "trials" / other / "results.json")}
    capsys.readouterr()

    assert sweep("--resume", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "2 trials, 1 finished earlier" in printed and f"[2/2] {victim}: done" in printed
    assert {t["status"] for t in state_of(out).values()} == {"done"}
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # neither redone nor rerun
    expected = plain_run(tmp_path / "plain", "--seed", 0, "--dataset", "digits")
    assert results(trial) == expected
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["done", "done"]


@pytest.mark.xdist_group("ray")
def test_ctrl_c_records_the_state_prints_the_resume_command_and_exits_130(
    ray_session, tmp_path, capsys
):
    out = tmp_path / "sweep"
    trial = out / "trials" / "000-seed=0-dataset=digits"
    started = trial / "config.json"  # the trial has begun; its trainings and report remain

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not started.exists():
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c).start()
    assert sweep(*GN, "--grid", "seed=0", "--grid", "dataset=digits", "--out", out) == 130
    err = capsys.readouterr().err
    assert err.strip().endswith(f"continue with: dlprobe sweep --resume --out {out}")
    status = [t["status"] for t in state_of(out).values()]
    assert pd.read_csv(out / "results.csv")["status"].tolist() == status
    # on a fast machine the short trial can finish before the cancel reaches it: it is then
    # recorded as done (with its report); otherwise it stopped in the middle, pending
    assert status == ["done"] if (trial / "report.html").exists() else status == ["pending"]
    assert started.exists()
    assert sweep("--resume", "--out", out) == 0
    assert [t["status"] for t in state_of(out).values()] == ["done"]
