"""Run folders: config, results, figures, report, log and checkpoints of one run.

Layout (ARCHITECTURE.md): ``config.json``, ``results.json``, ``summary.json``,
``figures/*.png``, ``report.html``, ``log.txt``, ``checkpoints/``. Every file is written
atomically; a finished training stage is kept in ``checkpoints/STAGE.done.pt`` and an
unfinished one in ``checkpoints/STAGE.pt``, so ``--resume`` redoes no finished work.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from dlprobe import DlprobeError, __version__
from dlprobe.data.dataset import Dataset
from dlprobe.train import Checkpoint, History, Population, TrainConfig, train_population
from dlprobe.train.checkpoint import atomic_torch_save


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DlprobeError("--device cuda was asked for but no CUDA GPU is available")
        return torch.device("cuda")
    raise DlprobeError(f"unknown device {name!r}; valid: auto, cpu, cuda")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj) -> None:
    """Atomic JSON write (NaN as null, infinities as strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def environment() -> dict:
    """Versions and machine, recorded in every config.json."""
    import matplotlib
    import scipy
    import sklearn

    return {
        "dlprobe": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def new_run_path(root: Path, experiment_id: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{experiment_id}-{stamp}"
    i = 2
    while path.exists():
        path = Path(root) / f"{experiment_id}-{stamp}-{i}"
        i += 1
    return path


class RunDir:
    """One run's folder, its device, its log and its progress display."""

    def __init__(self, path: Path, device: torch.device, quiet: bool = False):
        self.path = Path(path)
        self.device = device
        self.quiet = quiet
        self.checkpoints = self.path / "checkpoints"
        self.figures = self.path / "figures"
        self.path.mkdir(parents=True, exist_ok=True)
        self._progress = None

    # -- logging and progress ------------------------------------------------
    def log(self, message: str) -> None:
        line = f"[{datetime.now().strftime('%H:%M:%S')}] {message}"
        with open(self.path / "log.txt", "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            if self._progress is not None:
                self._progress.console.print(line, highlight=False)
            else:
                print(line, flush=True)

    @contextmanager
    def progress(self) -> Iterator[None]:
        """Show progress bars for the trainings inside this block (TTY only)."""
        show = sys.stdout.isatty() and not self.quiet and not os.environ.get("DLPROBE_NO_PROGRESS")
        if not show:
            yield
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} epochs"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            transient=True,
        ) as bar:
            self._progress = bar
            try:
                yield
            finally:
                self._progress = None

    # -- cached stages ---------------------------------------------------------
    def stage(self, key: str, compute: Callable[[Checkpoint], dict]) -> dict:
        """Run ``compute`` once: its result is kept in ``checkpoints/KEY.done.pt``.

        ``compute`` receives the stage's partial checkpoint, for trainings that can resume.
        """
        done = self.checkpoints / f"{key}.done.pt"
        if done.exists():
            return torch.load(done, map_location="cpu", weights_only=False)
        partial = Checkpoint(self.checkpoints / f"{key}.pt", every_epochs=1)
        result = compute(partial)
        atomic_torch_save(result, done)
        Path(partial.path).unlink(missing_ok=True)
        return result

    def train(
        self,
        key: str,
        pop: Population,
        data: Dataset,
        cfg: TrainConfig,
        loss_fn=None,
        checkpoint_every_epochs: int | None = None,
    ) -> History:
        """Train ``pop`` as stage ``key`` (resumable), leaving it at its final parameters."""
        every = checkpoint_every_epochs or max(1, cfg.epochs // 20)

        def compute(ckpt: Checkpoint) -> dict:
            ckpt = Checkpoint(ckpt.path, every_epochs=every)
            t0 = time.perf_counter()
            self.log(f"training {key}: {pop.size} model(s), {cfg.epochs} epochs")
            hist = train_population(
                pop, data, cfg, loss_fn=loss_fn, checkpoint=ckpt, progress=self._tracker(key, cfg)
            )
            if hist.diverged:
                self.log(f"  {key}: models {hist.diverged} diverged (NaN/inf loss) and were frozen")
            self.log(f"  {key} done in {time.perf_counter() - t0:.1f} s")
            return {"history": hist.state(), "population": pop.state()}

        result = self.stage(key, compute)
        pop.load_state(result["population"])
        return History.from_state(result["history"])

    def _tracker(self, key: str, cfg: TrainConfig):
        if self._progress is None:
            return None
        task = self._progress.add_task(key, total=cfg.epochs, metrics="")

        def update(done: int, total: int, metrics: dict) -> None:
            text = "  ".join(f"{k} {v:.3g}" for k, v in metrics.items())
            self._progress.update(task, completed=done, metrics=text)
            if done >= total:
                self._progress.remove_task(task)

        return update
