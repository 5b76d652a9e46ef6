"""``dlprobe bench --curvature``: the curvature probes against plain torch.func and PyHessian.

On a 101,770-parameter MLP (784-128-10, 256 MNIST-sized random examples) and on
ResNet-18 (``torchvision.models.resnet18(num_classes=10)``, random weights, 8 random
CIFAR-sized images), all in float32, it times

- one Hessian-vector product: the probes' (a fresh operator: forward, backward and the
  product, as every multi-batch product costs) and the probes' with the gradient graph
  reused (as every product after the first on one batch), against a plain ``torch.func``
  forward-over-reverse HVP (``jvp`` of ``jacrev``) and PyHessian's product;
- the top eigenvalue (``top_hessian_eigenvalues``, Lanczos) against PyHessian's power
  iteration, each with its default tolerance, and the relative difference of the two;
- the trace (Hutchinson) and the spectral density (stochastic Lanczos quadrature)
  with the same number of Hessian-vector products on both sides;

alternating the two sides of every comparison, and the peak memory of each measurement
above what the process held before it: ``torch.cuda.max_memory_allocated`` on CUDA, the
process's peak resident set (Linux ``VmHWM``, reset before each measurement) on the CPU.
PyHessian is optional (``pip install pyhessian``); without it those columns stay empty.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp

from dlprobe import DlprobeError, measure
from dlprobe.benchmarks.counting import counting_products, counting_pyhessian_products
from dlprobe.benchmarks.memory import PeakMemory, sync
from dlprobe.measure._functional import Objective, eval_mode

MODELS = ("mlp", "resnet18")


def _problem(name: str, device: torch.device, mlp_widths: Sequence[int], n_mlp: int, n_images: int):
    gen = torch.Generator().manual_seed(0)
    if name == "mlp":
        from dlprobe.models import MLP

        torch.manual_seed(0)
        model = MLP(list(mlp_widths), "relu")
        x = torch.randn(n_mlp, mlp_widths[0], generator=gen)
        y = torch.randint(0, mlp_widths[-1], (n_mlp,), generator=gen)
        label = f"MLP {'-'.join(map(str, mlp_widths))}, {n_mlp} examples"
    elif name == "resnet18":
        from torchvision.models import resnet18

        torch.manual_seed(0)
        model = resnet18(num_classes=10)
        x = torch.randn(n_images, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (n_images,), generator=gen)
        label = f"ResNet-18, {n_images} images 3x32x32"
    else:
        raise DlprobeError(f"unknown benchmark model {name!r}; valid: {', '.join(MODELS)}")
    return model.to(device), x.to(device), y.to(device), label


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(seconds, peak MiB, result) of one call."""
    with PeakMemory(device) as mem:
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        seconds = time.perf_counter() - start
    return seconds, mem.mib, result


def _alternate(sides: dict[str, Callable[[], object]], repeats: int, device: torch.device):
    """Each side called ``repeats`` times, in turn; {side: {seconds, peak_mib, result}}
    with the median time and the largest peak."""
    runs: dict[str, list] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            runs[name].append(_timed(fn, device))
    return {
        name: {
            "seconds": statistics.median(t for t, _, _ in r),
            "peak_mib": max(m for _, m, _ in r),
            "result": r[-1][2],
        }
        for name, r in runs.items()
    }


def _pyhessian():
    try:
        from pyhessian import hessian
    except ImportError:
        return None

    def build(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor):
        """PyHessian on a copy (its constructor sets eval mode and .grad with a graph)."""
        with warnings.catch_warnings():  # its backward(create_graph=True) warns of a cycle
            warnings.simplefilter("ignore", UserWarning)
            return hessian(copy.deepcopy(model), loss_fn, data=(x, y), cuda=x.is_cuda)

    return build


def _bench_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    repeats: int,
    trace_samples: int,
    density_steps: int,
) -> list[dict]:
    loss_fn = F.cross_entropy
    pyhessian = _pyhessian()
    rows = []
    with eval_mode(model):
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = {n: b.detach() for n, b in model.named_buffers()}
        gen = torch.Generator().manual_seed(1)
        v = {n: torch.randn(p.shape, generator=gen).to(p) for n, p in params.items()}
        v_flat = torch.cat([t.reshape(-1) for t in v.values()])

        def loss(ps):
            return loss_fn(functional_call(model, (ps, buffers), (x,)), y)

        def plain_hvp():
            return jvp(jacrev(loss), (params,), (v,))[1]

        def fresh_hvp():
            return Objective(model, loss_fn, x, y).hessian_operator() @ v_flat

        reused = Objective(model, loss_fn, x, y).hessian_operator()
        sides = {
            "plain": plain_hvp,
            "ours": fresh_hvp,
            "ours, graph reused": lambda: reused @ v_flat,
        }
        if pyhessian is not None:
            ph = pyhessian(model, loss_fn, x, y)
            v_list = list(v.values())
            from pyhessian.utils import hessian_vector_product

            sides["pyhessian, graph reused"] = lambda: hessian_vector_product(
                ph.gradsH, ph.params, v_list
            )
        for fn in sides.values():
            fn()  # warm-up: first-call costs (kernels, autograd) out of the timings
        hvp = _alternate(sides, repeats, device)
        ours_flat = hvp["ours"]["result"]
        plain_flat = torch.cat([t.reshape(-1) for t in hvp["plain"]["result"].values()])
        rows.append(
            _row(
                "one HVP",
                hvp["ours"],
                hvp["plain"],
                "torch.func jvp(jacrev)",
                agreement=_rel(ours_flat, plain_flat),
            )
        )
        rows.append(
            _row(
                "one HVP, graph reused",
                hvp["ours, graph reused"],
                hvp.get("pyhessian, graph reused"),
                "PyHessian (graph reused)",
            )
        )
        plain_seconds = hvp["plain"]["seconds"]

        def top(tol):
            return lambda: float(
                measure.top_hessian_eigenvalues(model, loss_fn, x, y, tol=tol, dtype=torch.float32)[
                    0
                ]
            )

        probes = {  # name: (ours, PyHessian's, HVPs of both)
            "top eigenvalue": (top(None), lambda h: h.eigenvalues(top_n=1)[0][0], None),
            "top eigenvalue, tol=1e-2": (top(1e-2), None, None),
            f"trace, {trace_samples} HVPs": (
                lambda: (
                    measure.hessian_trace(
                        model, loss_fn, x, y, n_samples=trace_samples, dtype=torch.float32
                    ).estimate
                ),
                # tol=-inf: its stopping test divides by the running estimate, so with a
                # negative trace any tol >= 0 stops it after two products
                lambda h: sum(h.trace(maxIter=trace_samples, tol=-math.inf)) / trace_samples,
                trace_samples,
            ),
            f"density, {density_steps} Lanczos steps": (
                lambda: measure.hessian_spectral_density(
                    model,
                    loss_fn,
                    x,
                    y,
                    n_probes=1,
                    lanczos_steps=density_steps,
                    dtype=torch.float32,
                ),
                lambda h: h.density(iter=density_steps, n_v=1),
                density_steps,
            ),
        }
        reference_top = None
        for name, (ours, reference, n_hvps) in probes.items():
            sides = {"ours": counting_products(ours)}
            if pyhessian is not None and reference is not None:
                sides["pyhessian"] = counting_pyhessian_products(
                    lambda reference=reference: reference(pyhessian(model, loss_fn, x, y))
                )
            result = _alternate(sides, 1, device)
            failed = None
            if isinstance(result.get("pyhessian", {}).get("result", (None,))[0], RuntimeError):
                reason = str(result.pop("pyhessian")["result"][0]).splitlines()[0][:48]
                failed = f"PyHessian: fails ({reason})"
            ref = result.get("pyhessian")
            if name == "top eigenvalue":
                reference_top = ref  # PyHessian's top eigenvalue, compared twice
            elif name.startswith("top eigenvalue"):
                ref = reference_top
            row = _row(name, result["ours"], ref, failed or "PyHessian")
            row["hvps"] = result["ours"]["result"][1]
            row["reference_hvps"] = None if ref is None else ref["result"][1]
            if n_hvps:  # the same number of plain HVPs, for scale
                row["plain_hvps_seconds"] = n_hvps * plain_seconds
            if name.startswith("top eigenvalue"):
                row["eigenvalue"] = result["ours"]["result"][0]
                if ref is not None:
                    row["reference_eigenvalue"] = float(ref["result"][0])
            rows.append(row)
        # errors against the tightest estimate, ours at the default tolerance
        tight = rows[-4]["eigenvalue"]
        for row in rows[-4:-2]:
            row["relative_error"] = abs(row["eigenvalue"] - tight) / abs(tight)
            if row.get("reference_eigenvalue") is not None:
                row["reference_relative_error"] = abs(row["reference_eigenvalue"] - tight) / abs(
                    tight
                )
    return rows


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _row(name: str, ours: dict, reference: dict | None, reference_name: str, agreement=None):
    row = {
        "measure": name,
        "seconds": ours["seconds"],
        "peak_mib": ours["peak_mib"],
        "reference": reference_name,
        "reference_seconds": None if reference is None else reference["seconds"],
        "reference_peak_mib": None if reference is None else reference["peak_mib"],
        "ratio": None if reference is None else ours["seconds"] / reference["seconds"],
    }
    if agreement is not None:
        row["relative_difference"] = agreement
    return row


def run_curvature_bench(
    out: Path,
    device: str = "auto",
    models: Sequence[str] = MODELS,
    repeats: int = 3,
    trace_samples: int = 10,
    density_steps: int = 10,
    mlp_widths: Sequence[int] = (784, 128, 10),
    mlp_examples: int = 256,
    images: int = 8,
) -> dict:
    """Time the curvature probes against plain ``torch.func`` and PyHessian; print a table
    and write the results as JSON.

    Args:
        out: JSON file to write.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        models: which of ``"mlp"`` and ``"resnet18"`` to run.
        repeats: alternating timings of each HVP (the median is kept); the eigenvalue,
            trace and density are timed once per side.
        trace_samples, density_steps: HVPs of the trace and the density (both sides).
        mlp_widths, mlp_examples: the MLP and its number of examples.
        images: ResNet-18 batch size.

    Returns:
        The results written to ``out``.
    """
    for name, value in (("repeats", repeats), ("trace_samples", trace_samples)):
        if not isinstance(value, int) or value < 1 + (name == "trace_samples"):
            raise DlprobeError(f"{name} must be an int >= {1 + (name == 'trace_samples')}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DlprobeError("--device cuda, but no CUDA device is available")
    dev = torch.device(device)
    memory = PeakMemory(dev).method
    results = {
        "device": str(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "memory": memory,
        "pyhessian": _pyhessian() is not None,
        "models": [],
    }
    for name in models:
        model, x, y, label = _problem(name, dev, mlp_widths, mlp_examples, images)
        n_params = sum(p.numel() for p in model.parameters())
        rows = _bench_model(model, x, y, dev, repeats, trace_samples, density_steps)
        results["models"].append({"model": label, "params": n_params, "rows": rows})
    _print_table(results)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    return results


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    for model in results["models"]:
        table = Table(
            title=f"{model['model']} ({model['params']:,} parameters), {results['device']}"
        )
        columns = ("measure", "ours s", "HVPs", "MiB", "reference", "ref. s", "HVPs", "MiB")
        for col in (*columns, "ratio", "plain HVPs s", "rel. error"):
            table.add_column(col, justify="left" if col in ("measure", "reference") else "right")
        for r in model["rows"]:
            error = r.get("relative_error")
            errors = (
                None
                if error is None
                else f"{error:.1e} / {_fmt(r.get('reference_relative_error'), '.1e')}"
            )
            table.add_row(
                r["measure"],
                _fmt(r["seconds"], ".3f"),
                _fmt(r.get("hvps"), "d"),
                _fmt(r["peak_mib"], ".0f"),
                r["reference"],
                _fmt(r["reference_seconds"], ".3f"),
                _fmt(r.get("reference_hvps"), "d"),
                _fmt(r["reference_peak_mib"], ".0f"),
                _fmt(r["ratio"], ".2f"),
                _fmt(r.get("plain_hvps_seconds"), ".3f"),
                errors or "-",
            )
        console.print(table)
    console.print(
        "ratio = ours / reference time (below 1: ours faster); HVPs: Hessian-vector "
        "products made; plain HVPs s: as many torch.func HVPs; rel. error of the top "
        "eigenvalue (ours / PyHessian's) against ours at the default tolerance. Peak memory above the "
        f"start of each measurement: {results['memory']}. "
        f"PyHessian {'installed' if results['pyhessian'] else 'not installed'}."
    )
