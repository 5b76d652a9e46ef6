"""The disk fills up or turns read-only in the middle of a run: one line, exit 1, the
command that continues, no temporary file left, and --resume (once the disk is fixed)
ends with the same results as a run that was never disturbed.

These need a small tmpfs, so they run as root where ``mount`` works and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["run", "simulate-function", "--profile", "smoke", "--device", "cpu", "--quiet"]


def _dlprobe(*args: str) -> subprocess.Popen:
    env = {**os.environ, "DLPROBE_NO_PROGRESS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dlprobe.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _mount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A folder on its own tmpfs (unmounted afterwards); skipped where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount for a small tmpfs")
    try:
        _mount(folder, "size=4m")
    except subprocess.CalledProcessError:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = _dlprobe(*ARGS, "--epochs", "300", "--eval-every-epochs", "50", "--out", str(out))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return _results(out)


def _fails_then_resumes(tmpfs: Path, break_disk, what: str, reference: dict) -> None:
    run = tmpfs / "run"
    proc = _dlprobe(*ARGS, "--epochs", "300", "--eval-every-epochs", "50", "--out", str(run))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any((run / "checkpoints").glob("*.pt")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the disk could be broken"
    proc.send_signal(signal.SIGSTOP)  # break the disk while the run holds still
    break_disk(tmpfs)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    err = err.strip()
    assert proc.returncode == 1, err
    assert "\n" not in err and "Traceback" not in err, err
    assert what in err and f"--resume --out {run}" in err, err
    assert not list(run.rglob("*.tmp")), "a failed write must not leave temporary files"
    _remount(tmpfs, "rw,size=64m")  # the user frees space / fixes the disk
    resumed = _dlprobe("run", "simulate-function", "--resume", "--out", str(run))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _results(run) == reference


def test_disk_full_mid_run_is_one_line_and_resume_loses_nothing(tmpfs, reference):
    def fill(folder: Path) -> None:
        with open(folder / "filler", "wb") as f:  # take every free byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    _fails_then_resumes(tmpfs, fill, "the disk is full", reference)


def test_read_only_disk_mid_run_is_one_line_and_resume_loses_nothing(tmpfs, reference):
    _fails_then_resumes(tmpfs, lambda f: _remount(f, "ro"), "read-only", reference)
