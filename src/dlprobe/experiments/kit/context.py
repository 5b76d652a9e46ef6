"""What a running experiment gets: device, data, log, progress, cached stages, training.

``RunContext`` is the only thing ``run(cfg, ctx)`` touches besides the library. Every
stage it computes is kept in ``checkpoints/STAGE.done.pt`` (an unfinished training in
``checkpoints/STAGE.pt``), so ``--resume`` redoes no finished work. Checkpoints hold only
tensors and plain containers and are loaded with ``weights_only=True``: a shared run
folder cannot run code on the machine that resumes it.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from dlprobe.data import Dataset, function_dataset, load_dataset
from dlprobe.train import Checkpoint, History, PerModel, Population, TrainConfig, train_population
from dlprobe.train.checkpoint import atomic_torch_save, load_checkpoint_file
from dlprobe.train.population import seeded


@dataclass
class RunContext:
    """One run's folder, device, data directory, log and progress display."""

    path: Path
    device: torch.device
    data_dir: Path | None = None  # where downloadable datasets live (None: the default)
    quiet: bool = False  # print nothing but errors
    _progress: object = field(default=None, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    # -- data ------------------------------------------------------------------------
    def dataset(self, name: str, train_subset: int = 0, seed: int = 0) -> Dataset:
        """A classification dataset on this run's device; a seeded training subset if asked."""
        data = load_dataset(name, data_dir=self.data_dir, device=self.device)
        return data.subset_train(train_subset, seed=seed) if train_subset else data

    def function(self, name: str, n_points: int) -> Dataset:
        """A 1-D regression target sampled at ``n_points`` evenly spaced points."""
        return function_dataset(name, n_points).to(self.device)

    # -- logging and progress --------------------------------------------------------
    def log(self, message: str) -> None:
        line = f"[{datetime.now().strftime('%H:%M:%S')}] {message}"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "log.txt", "a") as f:
            f.write(line + "\n")
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)
        else:
            print(line, flush=True)

    @contextmanager
    def progress(self) -> Iterator[None]:
        """Progress bars for the trainings inside this block (on a terminal only)."""
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

    # -- cached stages ---------------------------------------------------------------
    def stage(self, key: str, compute: Callable[[Checkpoint], dict]) -> dict:
        """Run ``compute`` once; its result (tensors and plain containers) is kept on disk.

        ``compute`` receives the stage's partial checkpoint, for trainings that can resume.
        """
        done = self.checkpoints / f"{key}.done.pt"
        if done.exists():
            return load_checkpoint_file(done)
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
        per_model: PerModel | None = None,
    ) -> History:
        """Train ``pop`` as stage ``key`` (resumable), leaving it at its final parameters.

        ``per_model``: each model's own learning rate, weight decay, label noise or training
        subset (``dlprobe.train.PerModel``), so that a sweep over them is one population.
        """
        every = checkpoint_every_epochs or max(1, cfg.epochs // 20)

        def compute(ckpt: Checkpoint) -> dict:
            ckpt = Checkpoint(ckpt.path, every_epochs=every)
            t0 = time.perf_counter()
            self.log(f"training {key}: {pop.size} model(s), up to {cfg.epochs} epochs")
            # what draws from the global generator while training (dropout masks) starts
            # from the stage's own seed, whatever ran before it in this process
            seed = zlib.crc32(f"{key}/{pop.seeds[0]}".encode())
            with self._tracker(key, cfg) as progress, seeded(seed, pop.device):
                hist = train_population(
                    pop,
                    data,
                    cfg,
                    loss_fn=loss_fn,
                    checkpoint=ckpt,
                    progress=progress,
                    per_model=per_model,
                )
            for k in hist.diverged:
                self.log(
                    f"  {key}: model {k} (seed {pop.seeds[k]}) diverged after "
                    f"{hist.diverged_at_epoch[k]} epoch(s) ({hist.diverged_reason[k]}); frozen"
                )
            self.log(f"  {key} done in {time.perf_counter() - t0:.1f} s")
            return {"history": hist.state(), "population": pop.state()}

        result = self.stage(key, compute)
        pop.load_state(result["population"])
        return History.from_state(result["history"])

    @contextmanager
    def _tracker(self, key: str, cfg: TrainConfig) -> Iterator:
        """A progress callback for one training (None off a terminal); its bar goes at the
        end, also when every model stopped before the epoch cap."""
        if self._progress is None:
            yield None
            return
        bar = self._progress
        task = bar.add_task(key, total=cfg.epochs, metrics="")

        def update(done: int, total: int, metrics: dict) -> None:
            text = "  ".join(f"{k} {v:.3g}" for k, v in metrics.items())
            bar.update(task, completed=done, metrics=text)

        try:
            yield update
        finally:
            bar.remove_task(task)
