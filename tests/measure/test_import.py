"""Importing the probes is light and changes no global state; probes print no warnings.

One subprocess (a fresh interpreter, warnings turned into errors) checks both: what the
import loads, then that probes using forward-mode AD (which makes PyTorch warn about
``torch.jit.script`` on first use) stay quiet without a global filter.
"""

import subprocess
import sys

SCRIPT = """
import sys, time, warnings
import torch
filters = list(warnings.filters)
start = time.perf_counter()
import dlprobe.measure as measure
seconds = time.perf_counter() - start
heavy = ["sklearn", "curvlinops", "scipy.optimize", "scipy.sparse.linalg", "matplotlib",
         "torchvision", "dlprobe.experiments", "dlprobe.train"]
print(seconds, warnings.filters == filters, [m for m in heavy if m in sys.modules])

import torch.nn.functional as F
from torch.func import stack_module_state
from dlprobe.models import MLP
models = [MLP([2, 4, 1], "tanh") for _ in range(2)]
x, y = torch.randn(8, 2), torch.randn(8, 1)
measure.population_hessian_eigenvalues(models[0], stack_module_state(models)[0], F.mse_loss, x, y)
measure.top_hessian_eigenvalues(models[0], F.mse_loss, x, y, k=2)
measure.hessian_trace(models[0], F.mse_loss, x, y, n_samples=4, curvature="ggn")
print("quiet")
"""


def test_light_import_without_warning_filters_and_quiet_probes():
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    imported, quiet = done.stdout.strip().splitlines()
    seconds, same_filters, heavy = imported.split(" ", 2)
    assert same_filters == "True"  # no global filter installed at import
    assert heavy == "[]"  # scikit-learn, curvlinops, SciPy's solvers load on first use
    assert float(seconds) < 2.0  # on top of torch itself
    assert quiet == "quiet"
