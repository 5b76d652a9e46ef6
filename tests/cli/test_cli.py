"""The command line as a user meets it: listings, bad input, run folders, resume."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlprobe.cli import main


def dlprobe(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "DLPROBE_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dlprobe.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        **kw,
    )


def test_list_shows_every_experiment_with_its_homework_item(capsys):
    from dlprobe.experiments.kit import registry

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for exp in registry().values():
        assert exp.id in out and exp.item in out


def test_datasets_lists_embedded_and_downloadable(capsys, tmp_path):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("mnist1d", "digits", "mnist", "fashion-mnist", "cifar10", "sinc"):
        assert name in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "no-such-experiment"], "valid ids: simulate-function"),
        (["run", "simulate-function", "--functions", "nope"], "valid names: sinc"),
        (["run", "simulate-function", "--activation", "swish"], "valid names: relu"),
        (["run", "simulate-function", "--optimizer", "adamx"], "valid names: sgd"),
        (["run", "simulate-function", "--epochs", "0"], "epochs must be >= 1"),
        (["run", "simulate-function", "--batch-size", "5000"], "batch_size must be <= n_points"),
        (["run", "simulate-function", "--depths", "30", "--param-budget", "40"], "too small"),
        (["run", "simulate-function", "--device", "tpu"], "valid: auto, cpu, cuda"),
        (["run", "simulate-function", "--dataset", "mnist"], "unknown setting dataset"),
        (["report", "/nonexistent/run"], "not a finished dlprobe run folder"),
        (["bench", "--sizes", "4", "0"], "population sizes >= 1"),
        (["run", "hw1", "--config", "config.json"], "takes no --config"),
        (["run", "hw1", "--epochs", "3"], "takes no experiment settings"),
        (["bench", "--steps", "0"], "--steps must be >= 1"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path):
    result = dlprobe(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists(), "nothing may be trained or written"


def test_bench_measures_every_way_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--sizes", "1", "3", "--steps", "4", "--device", "cpu", "--threads", "1"]
    threads = torch.get_num_threads()
    assert main([*args, "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # --threads holds for the bench only
    printed = capsys.readouterr().out
    assert "torch.func" in printed and "reference" in printed and "tiny MLPs" in printed
    result = json.loads(out.read_text())
    assert [r["K"] for r in result["training"]] == [1, 3]
    assert result["torch_threads"] == 1
    for r in result["training"]:
        rates = {
            way: r[f"{way}_model_steps_per_s"]
            for way in ("one_by_one", "torch_func", "population_reference", "population")
        }
        assert all(rate > 0 for rate in rates.values())
        seconds = r["seconds"]
        assert all(len(ts) == r["rounds"] == 7 for ts in seconds.values())
        assert rates["population"] == pytest.approx(r["K"] * 4 / min(seconds["population"]))
        for key, way in (("speedup", "one_by_one"), ("speedup_vs_torch_func", "torch_func"),
                         ("speedup_vs_reference", "population_reference")):  # fmt: skip
            per_round = [a / b for a, b in zip(seconds[way], seconds["population"], strict=True)]
            assert r[key] == pytest.approx(statistics.median(per_round))
    tiny = result["tiny_full_batch"]
    assert tiny["models"] == 3 and tiny["reference_ms_per_step"] > 0
    per_round = [a / b for a, b in zip(*tiny["seconds"].values(), strict=True)]
    assert tiny["speedup"] == pytest.approx(statistics.median(per_round))
    assert result["matmul_peak_flops"] > 1e8
    assert result["hessians"] == {**result["hessians"], "models": 100, "parameters": 141}
    assert result["device"] == "cpu"


def test_bench_ratios_are_medians_of_same_round_ratios():
    """The machine ran 1.25x faster while round 3 timed the slow way only: the ratio of the
    best times says 1.6, the rounds say 2, 2 and 1.6, so the median is 2."""
    from dlprobe.bench import round_ratio

    times = {"slow": [2.0, 2.0, 1.6], "fast": [1.0, 1.0, 1.0]}
    assert round_ratio(times, "slow", "fast") == 2.0
    assert min(times["slow"]) / min(times["fast"]) == 1.6


def test_suite_help_lists_its_experiments_and_options(capsys):
    from dlprobe.experiments.kit import get_suite, suite_ids

    assert main(["run", "hw1", "--help"]) == 0
    out = capsys.readouterr().out
    for eid in suite_ids(get_suite("hw1")):
        assert eid in out
    for option in ("--profile", "--dataset", "--device", "--seed", "--out", "--resume"):
        assert option in out


def test_unknown_config_field_is_rejected(tmp_path):
    result = dlprobe("run", "simulate-function", "--epochz", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert "epochz" in result.stderr and "Traceback" not in result.stderr


def test_run_help_lists_config_fields_with_their_comments(capsys):
    assert main(["run", "simulate-function", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--param-budget" in out and "matched within 2%" in out and "--profile" in out


def test_existing_run_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = dlprobe("run", "simulate-function", "--profile", "smoke", "--out", str(out))
    assert result.returncode == 2 and "--resume" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["results"]


def test_killed_run_resumes_to_the_same_results(tmp_path):
    """A real `dlprobe run` is killed after its first checkpoint, resumed, and compared."""
    args = [
        "run",
        "simulate-function",
        "--profile",
        "smoke",
        "--epochs",
        "1500",
        "--eval-every-epochs",
        "50",
        "--device",
        "cpu",
    ]
    reference = tmp_path / "reference"
    assert dlprobe(*args, "--out", str(reference)).returncode == 0

    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "DLPROBE_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlprobe.cli", *args, "--out", str(interrupted)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        partial = [p for p in (interrupted / "checkpoints").glob("*.pt") if ".done" not in p.name]
        if partial:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (interrupted / "results.json").exists()

    resumed = dlprobe("run", "simulate-function", "--resume", "--out", str(interrupted))
    assert resumed.returncode == 0, resumed.stderr
    assert _results(interrupted) == _results(reference)
    config = json.loads((interrupted / "config.json").read_text())
    assert config["config"]["train"]["epochs"] == 1500


def test_ctrl_c_exits_130_and_prints_the_resume_command(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "DLPROBE_NO_PROGRESS": "1"}
    args = ["run", "simulate-function", "--profile", "smoke", "--epochs", "3000", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlprobe.cli", *args, "--eval-every-epochs", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("*.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"dlprobe run simulate-function --resume --out {out}" in stderr
    assert "Traceback" not in stderr
