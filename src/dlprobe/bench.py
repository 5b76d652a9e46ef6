"""``dlprobe bench``: population training against one-by-one training, and Hessian speed.

Trains K identical small MLPs on mnist1d for the same number of optimizer steps, first
one after another in a plain PyTorch loop (``train_plain``), then as one population
(best of five alternating timings each, after a warm-up; both end by evaluating every model on the
training and test sets), and prints model-steps per second, the speedup, and the achieved FLOP/s against a
matmul peak measured on the same machine in the same run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.models import MLP, count_params
from dlprobe.runs import environment, resolve_device, write_json
from dlprobe.train import Population, TrainConfig, train_plain, train_population

WIDTHS = [40, 32, 32, 10]  # the benchmarked model: MLP 40-32-32-10 (about 2.7k parameters)
BATCH = 32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of float32 n x n matrix products on ``device`` (best of ``repeats``)."""
    if device.type == "cuda":
        n = 4096  # a 1024 product is too small to fill a GPU
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_model_step(params: int, batch: int) -> float:
    """Forward (2 per weight per example) plus backward (4): the usual 6·P·B estimate."""
    return 6.0 * params * batch


@torch.no_grad()
def evaluate_plain(model: torch.nn.Module, data) -> list[float]:
    """Cross-entropy and accuracy on the training and test sets, as a plain loop would."""
    model.eval()
    out = []
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        logits = model(x)
        out += [F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()]
    return out


def bench_training(
    sizes: list[int], steps: int, device: torch.device, repeats: int = 5
) -> list[dict]:
    """Best of ``repeats`` timings of K plain trainings and of one population of K."""
    data = load_dataset("mnist1d", device=device).subset_train(steps * BATCH, seed=0)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=BATCH)
    params = count_params(MLP(WIDTHS))

    def one_by_one(seeds: list[int]) -> None:
        for seed in seeds:
            torch.manual_seed(seed)
            model = MLP(WIDTHS).to(device)
            train_plain(model, data, cfg, seed)
            evaluate_plain(model, data)  # what the population's history records at the end

    def population(seeds: list[int]) -> None:
        pop = Population(lambda: MLP(WIDTHS), seeds, device=device)
        train_population(pop, data, cfg)  # includes one evaluation of all models

    def seconds(train, seeds: list[int]) -> float:
        _sync(device)
        t0 = time.perf_counter()
        train(seeds)
        _sync(device)
        return time.perf_counter() - t0

    one_by_one([0])  # warm-up: first calls pay for lazy initialisation
    population([0, 1])
    rows = []
    for k in sizes:
        seeds = list(range(k))
        # alternate the two so that both see the same moments of a shared machine; keep the best
        pairs = [(seconds(one_by_one, seeds), seconds(population, seeds)) for _ in range(repeats)]
        plain_s, pop_s = min(p for p, _ in pairs), min(q for _, q in pairs)
        model_steps = k * steps
        rows.append(
            {
                "K": k,
                "steps": steps,
                "one_by_one_model_steps_per_s": model_steps / plain_s,
                "population_model_steps_per_s": model_steps / pop_s,
                "speedup": plain_s / pop_s,
                "population_flops": model_steps * flops_per_model_step(params, BATCH) / pop_s,
            }
        )
    return rows


def bench_hessians(device: torch.device, n_models: int = 100) -> dict:
    """Exact Hessians and spectra of 100 MLPs 1-10-10-1 (141 parameters) on 64 points."""
    from dlprobe.data import function_dataset
    from dlprobe.measure.hessian import population_hessian_eigenvalues

    data = function_dataset("sine", 64).to(device)
    pop = Population(lambda: MLP([1, 10, 10, 1], "tanh"), range(n_models), device=device)
    _sync(device)
    t0 = time.perf_counter()
    eigs = population_hessian_eigenvalues(
        pop.base, pop.params, torch.nn.functional.mse_loss, data.x_train, data.y_train
    )
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"models": n_models, "parameters": int(eigs.shape[1]), "seconds": seconds}


def run_bench(sizes: list[int], steps: int, out: Path, device: str = "auto") -> dict:
    if not sizes or any(k < 1 for k in sizes):
        raise DlprobeError(f"--sizes must be population sizes >= 1, got {sizes}")
    if steps < 1:
        raise DlprobeError(f"--steps must be >= 1, got {steps}")
    dev = resolve_device(device)
    console = Console()
    console.print(
        f"dlprobe bench on {dev}: MLP {'-'.join(map(str, WIDTHS))}, batch {BATCH}, "
        f"{steps} Adam steps per model, torch threads {torch.get_num_threads()}"
    )
    peak = matmul_peak_flops(dev)
    rows = bench_training(sizes, steps, dev)
    hess = bench_hessians(dev)
    table = Table(title="population vs one-by-one (same steps per model)")
    for col in (
        "K",
        "one-by-one model-steps/s",
        "population model-steps/s",
        "speedup",
        "population GFLOP/s",
        "% of matmul peak",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["K"]),
            f"{r['one_by_one_model_steps_per_s']:.0f}",
            f"{r['population_model_steps_per_s']:.0f}",
            f"{r['speedup']:.1f}x",
            f"{r['population_flops'] / 1e9:.2f}",
            f"{100 * r['population_flops'] / peak:.1f}%",
        )
    console.print(table)
    console.print(f"matmul peak (float32, measured now): {peak / 1e9:.1f} GFLOP/s")
    console.print(
        f"exact Hessians + eigenvalues, {hess['models']} models x "
        f"{hess['parameters']} parameters: {hess['seconds']:.2f} s"
    )
    result = {
        "training": rows,
        "matmul_peak_flops": peak,
        "hessians": hess,
        "model": WIDTHS,
        "batch": BATCH,
        "device": str(dev),
        "environment": environment(),
    }
    write_json(out, result)
    console.print(f"written: {out}")
    return json.loads(Path(out).read_text())
