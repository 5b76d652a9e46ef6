"""Atomic checkpoint files, so an interrupted training resumes where it stopped.

A checkpoint holds only tensors, numbers, strings, None, lists, tuples and dicts, and is
read back with ``torch.load(..., weights_only=True)``: a file that holds any other
pickled object is refused instead of run (unpickling an arbitrary object runs its code).
"""

from __future__ import annotations

import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dlprobe import DlprobeError


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``; the
    temporary file is removed when the write fails (e.g. the disk is full)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # in memory first: torch.save reports a full disk obscurely
    try:
        tmp.write_bytes(buffer.getbuffer())  # a full disk raises OSError(ENOSPC) here
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_file(path: Path | str) -> dict:
    """The dict saved in ``path``, loaded onto the CPU without unpickling arbitrary objects.

    Raises:
        DlprobeError: the file holds something other than tensors, numbers, strings,
            None, lists, tuples and dicts, cannot be read as a torch file, or is not a
            dict; the message names the file and says how to retrain without it.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # missing or unreadable file: its own message names it
        raise
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):  # e.g. "invalid load key": not pickle
            raise _refused(path, f"it cannot be read: {e}") from e
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"the object {found.group(1)}" if found else "pickled data"
        raise _refused(path, f"it holds {what}, which only an unsafe load would run") from e
    except Exception as e:  # not a torch file, truncated, ...: torch raises many types
        raise _refused(path, f"it cannot be read: {type(e).__name__}") from e
    if not isinstance(state, dict):
        raise _refused(path, f"it holds a {type(state).__name__}, not a dict")
    return state


def _refused(path: Path, why: str) -> DlprobeError:
    return DlprobeError(
        f"{path} is not a dlprobe checkpoint or was tampered with ({why}), so it was not "
        f"loaded. Delete it, or the run's checkpoints/ folder ({path.parent}), to retrain "
        "from scratch."
    )


@dataclass(frozen=True)
class Checkpoint:
    """Where a training saves its state, and how often (in epochs)."""

    path: Path
    every_epochs: int = 1

    def load(self) -> dict | None:
        """The saved state, or None when there is no file yet (see ``load_checkpoint_file``)."""
        if not Path(self.path).exists():
            return None
        return load_checkpoint_file(self.path)

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.path)
