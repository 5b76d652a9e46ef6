"""Running an experiment's smoke profile through the CLI, and checking its run folder."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from dlprobe.cli import main
from dlprobe.models import MLP, build_model
from dlprobe.train.checkpoint import load_checkpoint_file

PINS = Path(__file__).parent / "pins" / "smoke-summaries.json"


def machine_key() -> str:
    """What the pinned smoke numbers depend on besides the code: torch's version, the
    vector instructions its CPU kernels use, and the processor. Some smoke numbers (a rank
    correlation of eleven points, the largest rounding change of an output) move with the
    rounding of another CPU's kernels, so pins hold for the machine they were made on."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {model}"


def run_smoke(experiment_id: str, tmp_path: Path, *extra: str) -> Path:
    """``dlprobe run ID --profile smoke`` in-process; returns the run folder."""
    out = tmp_path / experiment_id
    rc = main(
        [
            "run",
            experiment_id,
            "--profile",
            "smoke",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ]
    )
    assert rc == 0, f"dlprobe run {experiment_id} exited {rc}"
    return out


def load_results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["results"]


def assert_complete_run(run: Path, figures: list[str]) -> None:
    """The run folder holds every promised file, figure and report entry."""
    for name in ("config.json", "results.json", "summary.json", "report.html", "log.txt"):
        assert (run / name).is_file(), f"missing {name}"
    for name in figures:
        png = run / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 2000, f"figure {name} missing or empty"
    html = (run / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') >= len(figures)
    config = json.loads((run / "config.json").read_text())
    assert {"experiment", "profile", "config", "device", "environment"} <= set(config)


def assert_redraws(run: Path) -> None:
    """`dlprobe report RUN` rebuilds figures and report from results.json alone.

    Works on a copy, so the run's checkpoints stay for other tests of the same run.
    """
    copy = run.with_name(f"{run.name}-redrawn")
    shutil.rmtree(copy, ignore_errors=True)
    run = Path(shutil.copytree(run, copy))
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    for p in (run / "figures").glob("*.png"):
        p.unlink()
    (run / "report.html").unlink()
    for p in (run / "checkpoints").glob("*"):  # no training state may be needed
        p.unlink()
    assert main(["report", str(run)]) == 0
    assert sorted(p.name for p in (run / "figures").glob("*.png")) == figures
    assert (run / "report.html").is_file()


def trained_model(run: Path, spec: dict, stage: str, k: int) -> torch.nn.Module:
    """Model k of a training stage, rebuilt from the final parameters in its checkpoint."""
    saved = load_checkpoint_file(run / "checkpoints" / f"{stage}.done.pt")
    model = build_model(spec)
    model.load_state_dict({n: p[k] for n, p in saved["population"]["params"].items()})
    return model


def float64_mse(run: Path, stage: str, k: int, widths, activation: str, data):
    """(L(flat), θ): the float64 mean squared error on ``data``'s training set of model k
    of a training stage (an MLP of ``widths``), as a function of its flat parameters, and
    its trained flat parameters θ."""
    saved = load_checkpoint_file(run / "checkpoints" / f"{stage}.done.pt")["population"]
    net = MLP(list(widths), activation).double()
    net.load_state_dict({n: p[k].double() for n, p in saved["params"].items()})
    theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    shapes = [(n, p.shape) for n, p in net.named_parameters()]
    x, y = data.x_train.double(), data.y_train.double()

    def loss(flat):
        params, i = {}, 0
        for name, shape in shapes:
            params[name] = flat[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        return F.mse_loss(torch.func.functional_call(net, params, (x,)), y)

    return loss, theta
