"""Importing the probes is light and changes no global state; probes print no warnings."""

import subprocess
import sys

IMPORT = """
import sys, time, warnings
import torch
filters = list(warnings.filters)
start = time.perf_counter()
import dlprobe.measure
seconds = time.perf_counter() - start
heavy = ["sklearn", "curvlinops", "scipy.optimize", "scipy.sparse.linalg", "matplotlib",
         "torchvision", "dlprobe.experiments", "dlprobe.train"]
print(seconds, warnings.filters == filters, [m for m in heavy if m in sys.modules])
"""

PROBES = """
import torch, torch.nn.functional as F
from torch.func import stack_module_state
from dlprobe import measure
from dlprobe.models import MLP
models = [MLP([2, 4, 1], "tanh") for _ in range(2)]
x, y = torch.randn(8, 2), torch.randn(8, 1)
measure.population_hessian_eigenvalues(models[0], stack_module_state(models)[0], F.mse_loss, x, y)
measure.top_hessian_eigenvalues(models[0], F.mse_loss, x, y, k=2)
measure.hessian_trace(models[0], F.mse_loss, x, y, n_samples=4)
print("quiet")
"""


def _run(code: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_loads_no_lab_or_heavy_dependency_and_no_warning_filter():
    seconds, same_filters, heavy = _run(IMPORT).split(" ", 2)
    assert same_filters == "True"
    assert heavy.strip() == "[]"
    assert float(seconds) < 2.0  # on top of torch itself


def test_probes_print_no_warning():
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBES], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "quiet" and done.stderr == ""
