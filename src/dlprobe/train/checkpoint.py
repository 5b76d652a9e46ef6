"""Atomic checkpoint files, so an interrupted training resumes where it stopped."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Checkpoint:
    """Where a training saves its state, and how often (in epochs)."""

    path: Path
    every_epochs: int = 1

    def load(self) -> dict | None:
        if not Path(self.path).exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.path)
