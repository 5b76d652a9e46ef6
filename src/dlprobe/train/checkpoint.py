"""Atomic checkpoint files, so an interrupted training resumes where it stopped."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from dlprobe import DlprobeError


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint_file(path: Path) -> dict:
    """A checkpoint's content, loaded with ``weights_only=True`` (no code can run)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise DlprobeError(
            f"{path} is not a dlprobe checkpoint, or was altered ({str(err).splitlines()[0]}); "
            "delete that file (or the checkpoints/ folder) to compute it again"
        ) from None


@dataclass(frozen=True)
class Checkpoint:
    """Where a training saves its state, and how often (in epochs)."""

    path: Path
    every_epochs: int = 1

    def load(self) -> dict | None:
        if not Path(self.path).exists():
            return None
        return load_checkpoint_file(self.path)

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.path)
