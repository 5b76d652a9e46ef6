"""``dlprobe bench``: population training against one-by-one training and the torch.func
recipe, the step time of a tiny population, and Hessian speed.

Trains K identical small MLPs on mnist1d for the same number of optimizer steps in four
ways: one after another in a plain PyTorch loop (``train_plain``); with the torch.func
model-ensembling recipe an informed user would write (``stack_module_state``, a vmapped
``functional_call``, autograd on the summed losses, fused Adam over the stacked
parameters); and as one dlprobe population on its reference road and on its default road
(``train_population(reference=...)``). Every way draws each model's own minibatch order
and ends by evaluating every model on the training and test sets; the ways are timed in
turn, seven rounds after a warm-up. It prints model-steps per second (from each way's
best time), the ratios (the median over rounds of the ratio of two timings of one round:
a drift of the machine's speed cancels), and the population's FLOP/s against a matmul
peak measured in the same run; then the step time of 3 tiny MLPs trained full batch
(simulate-function's setting) on both roads.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.func import functional_call, stack_module_state, vmap

from dlprobe import DlprobeError
from dlprobe.data import function_dataset, load_dataset
from dlprobe.models import MLP, count_params
from dlprobe.runs import environment, resolve_device, write_json
from dlprobe.train import (
    Population,
    TrainConfig,
    make_optimizer,
    train_plain,
    train_population,
)

WIDTHS = [40, 32, 32, 10]  # the benchmarked model: MLP 40-32-32-10 (about 2.7k parameters)
BATCH = 32
TINY_WIDTHS = [1, 10, 18, 15, 4, 1]  # simulate-function's 571-parameter relu MLP
TINY_MODELS, TINY_POINTS = 3, 256  # full batch: one step per epoch


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


def torch_func_recipe(data, cfg: TrainConfig, seeds: list[int], device) -> list[list[float]]:
    """K models trained with the torch.func ensembling recipe; their final metrics.

    What an informed user writes: the K models stacked by ``stack_module_state``, one
    vmapped ``functional_call`` forward on per-model minibatches (each model's own order,
    drawn as dlprobe draws it), autograd on the sum of the K losses, fused Adam over the
    stacked parameters (the same optimizer dlprobe uses); then cross-entropy and accuracy
    of every model on the training and test sets. (``vmap(grad(...))`` instead of
    autograd on the sum measured slower here.)
    """
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(MLP(WIDTHS).to(device))
    params, buffers = stack_module_state(models)  # (K, ...) leaves
    base = copy.deepcopy(models[0]).to("meta")

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    optimizer = make_optimizer(list(params.values()), cfg)  # fused Adam, as dlprobe's
    n = data.n_train
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # (K, n)
    for s in range(cfg.steps_per_epoch(n)):
        idx = order[:, s * BATCH : (s + 1) * BATCH]  # (K, B)
        out = vmap(forward)(params, buffers, data.x_train[idx])  # (K, B, 10)
        losses = F.cross_entropy(out.flatten(0, 1), data.y_train[idx].flatten(), reduction="none")
        optimizer.zero_grad()
        losses.view(len(seeds), -1).mean(1).sum().backward()
        optimizer.step()
    metrics = []
    with torch.no_grad():
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
            out = vmap(forward, in_dims=(0, 0, None))(params, buffers, x)  # (K, n, 10)
            loss = F.cross_entropy(out.flatten(0, 1), y.repeat(len(seeds)), reduction="none")
            metrics += [loss.view(len(seeds), -1).mean(1), (out.argmax(-1) == y).float().mean(1)]
    return torch.stack(metrics, 1).tolist()  # (K, 4)


def _alternating(ways: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """``repeats`` wall times (s) of each way (a callable), the ways run in turn in every
    round so that all see the same moments of a shared machine."""
    times = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            _sync(device)
            t0 = time.perf_counter()
            way()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def round_ratio(times: dict[str, list[float]], slower: str, faster: str) -> float:
    """The median over rounds of ``slower``'s time over ``faster``'s in the same round: two
    timings taken one after the other see the same machine, so a drift of its speed (other
    jobs, the CPU's clock) cancels, and the median drops a round a spike hit."""
    return statistics.median(a / b for a, b in zip(times[slower], times[faster], strict=True))


def bench_training(
    sizes: list[int], steps: int, device: torch.device, repeats: int = 7
) -> list[dict]:
    """``repeats`` alternating timings of K plain trainings, the torch.func recipe, and one
    population of K on its reference and default roads: rates from each way's best time,
    ratios as ``round_ratio``."""
    data = load_dataset("mnist1d", device=device).subset_train(steps * BATCH, seed=0)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=BATCH)
    params = count_params(MLP(WIDTHS))

    def one_by_one(seeds: list[int]) -> None:
        for seed in seeds:
            torch.manual_seed(seed)
            model = MLP(WIDTHS).to(device)
            train_plain(model, data, cfg, seed)
            evaluate_plain(model, data)  # what the population's history records at the end

    def population(seeds: list[int], reference: bool) -> None:
        pop = Population(lambda: MLP(WIDTHS), seeds, device=device)
        train_population(pop, data, cfg, reference=reference)  # ends evaluating all models

    def ways(seeds: list[int]) -> dict:
        return {
            "one_by_one": lambda: one_by_one(seeds),
            "torch_func": lambda: torch_func_recipe(data, cfg, seeds, device),
            "population_reference": lambda: population(seeds, True),
            "population": lambda: population(seeds, False),
        }

    _alternating(ways([0, 1]), 1, device)  # warm-up: first calls pay for lazy set-up
    rows = []
    for k in sizes:
        times = _alternating(ways(list(range(k))), repeats, device)
        rate = {name: k * steps / min(ts) for name, ts in times.items()}  # model-steps per s
        rows.append(
            {
                "K": k,
                "steps": steps,
                "rounds": repeats,
                "one_by_one_model_steps_per_s": rate["one_by_one"],
                "torch_func_model_steps_per_s": rate["torch_func"],
                "population_reference_model_steps_per_s": rate["population_reference"],
                "population_model_steps_per_s": rate["population"],
                "speedup": round_ratio(times, "one_by_one", "population"),
                "speedup_vs_torch_func": round_ratio(times, "torch_func", "population"),
                "speedup_vs_reference": round_ratio(times, "population_reference", "population"),
                "population_flops": rate["population"] * flops_per_model_step(params, BATCH),
                "seconds": times,  # every round's wall time of each way
            }
        )
    return rows


def bench_tiny(steps: int, device: torch.device, repeats: int = 7) -> dict:
    """Milliseconds per step of 3 tiny MLPs trained full batch on sinc, as
    simulate-function trains them (Adam, an evaluation every 10 epochs), on the reference
    road and the default road: the training loop's time (``History.seconds``, after the
    population is built and first evaluated), best of ``repeats`` alternating runs; the
    speed-up as ``round_ratio``."""
    data = function_dataset("sinc", TINY_POINTS).to(device)
    cfg = TrainConfig(lr=3e-3, epochs=steps, batch_size=0, eval_every_epochs=10)

    def seconds(reference: bool) -> float:
        pop = Population(lambda: MLP(TINY_WIDTHS, "relu"), range(TINY_MODELS), device=device)
        return train_population(pop, data, cfg, reference=reference).seconds

    roads = {"reference": True, "default": False}
    times = {name: [] for name in roads}
    for _ in range(1 + repeats):  # the first round is a warm-up
        for name, reference in roads.items():
            times[name].append(seconds(reference))
    times = {name: ts[1:] for name, ts in times.items()}
    ms = {name: 1e3 * min(ts) / steps for name, ts in times.items()}
    return {
        "models": TINY_MODELS,
        "widths": TINY_WIDTHS,
        "points": TINY_POINTS,
        "steps": steps,
        "rounds": repeats,
        "reference_ms_per_step": ms["reference"],
        "default_ms_per_step": ms["default"],
        "speedup": round_ratio(times, "reference", "default"),
        "seconds": times,  # every round's loop time on each road
    }


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


def run_bench(
    sizes: list[int], steps: int, out: Path, device: str = "auto", threads: int = 0
) -> dict:
    """Run every measurement, print the tables and write them as JSON to ``out``;
    ``threads`` > 0 sets torch's CPU threads (0: torch's default)."""
    if not sizes or any(k < 1 for k in sizes):
        raise DlprobeError(f"--sizes must be population sizes >= 1, got {sizes}")
    if steps < 1:
        raise DlprobeError(f"--steps must be >= 1, got {steps}")
    if threads < 0:
        raise DlprobeError(f"--threads must be >= 1, or 0 for torch's default, got {threads}")
    dev = resolve_device(device)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        return _run(sizes, steps, out, dev)
    finally:
        torch.set_num_threads(default_threads)


def _run(sizes: list[int], steps: int, out: Path, dev: torch.device) -> dict:
    console = Console(width=max(Console().width, 120))  # the 9-column table, uncut
    console.print(
        f"dlprobe bench on {dev}: MLP {'-'.join(map(str, WIDTHS))}, batch {BATCH}, "
        f"{steps} Adam steps per model, torch threads {torch.get_num_threads()}"
    )
    peak = matmul_peak_flops(dev)
    rows = bench_training(sizes, steps, dev)
    tiny = bench_tiny(steps, dev)
    hess = bench_hessians(dev)
    console.print(_training_table(rows, peak))
    console.print(f"matmul peak (float32, measured now): {peak / 1e9:.1f} GFLOP/s")
    console.print(
        f"{tiny['models']} tiny MLPs {'-'.join(map(str, tiny['widths']))}, full batch of "
        f"{tiny['points']} points, {tiny['steps']} Adam steps: "
        f"{tiny['reference_ms_per_step']:.2f} ms a step on the reference road, "
        f"{tiny['default_ms_per_step']:.2f} ms on the default road ({tiny['speedup']:.2f}x, "
        f"median over {tiny['rounds']} rounds)"
    )
    console.print(
        f"exact Hessians + eigenvalues, {hess['models']} models x "
        f"{hess['parameters']} parameters: {hess['seconds']:.2f} s"
    )
    result = {
        "training": rows,
        "tiny_full_batch": tiny,
        "matmul_peak_flops": peak,
        "hessians": hess,
        "model": WIDTHS,
        "batch": BATCH,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "environment": environment(),
    }
    write_json(out, result)
    console.print(f"written: {out}")
    return json.loads(Path(out).read_text())


def _training_table(rows: list[dict], peak: float) -> Table:
    table = Table(
        title="model-steps/s (best of the rounds), same steps per model; ratios: population "
        "(default road) to each, median over rounds"
    )
    for col in (
        "K",
        "one by one",
        "torch.func",
        "reference road",
        "population",
        "x one by one",
        "x torch.func",
        "x reference",
        "GFLOP/s (% of peak)",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["K"]),
            f"{r['one_by_one_model_steps_per_s']:.0f}",
            f"{r['torch_func_model_steps_per_s']:.0f}",
            f"{r['population_reference_model_steps_per_s']:.0f}",
            f"{r['population_model_steps_per_s']:.0f}",
            f"{r['speedup']:.2f}x",
            f"{r['speedup_vs_torch_func']:.2f}x",
            f"{r['speedup_vs_reference']:.2f}x",
            f"{r['population_flops'] / 1e9:.2f} ({100 * r['population_flops'] / peak:.1f}%)",
        )
    return table
