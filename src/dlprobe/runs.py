"""Run folders on disk: atomic writes, JSON, device choice, environment, new folder names.

Layout (ARCHITECTURE.md): ``config.json``, ``results.json``, ``summary.json``,
``figures/*.png``, ``report.html``, ``log.txt``, ``checkpoints/``. Every file is written
atomically (a temporary file, then a rename; the temporary file is removed when the write
fails). Non-finite numbers are written as JSON ``null``, which pandas reads as NaN; rows
that hold them say why (e.g. ``"diverged": true``).
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from dlprobe import DlprobeError, __version__


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
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj) -> None:
    """Atomic JSON write (NaN and infinities as null)."""
    write_bytes(path, json.dumps(_jsonable(obj), indent=1, allow_nan=False).encode())


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic write: a temporary file in the same folder, then a rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path, what: str = "file"):
    """A JSON file's content; a missing, unreadable or corrupt file is a one-line error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DlprobeError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DlprobeError(f"{path} is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DlprobeError(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise DlprobeError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


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


def check_writable(path: Path, what: str, folder: bool = True) -> None:
    """Refuse, before any work, a folder (or with ``folder=False`` a file) that cannot be
    created or written. ``path`` need not exist: its nearest existing ancestor must be a
    writable folder."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = ("a file, not a folder", "a folder, not a file")[path.is_dir()]
        raise DlprobeError(f"{what} {path} is {kind}")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise DlprobeError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DlprobeError(f"{what} {path} cannot be written: no write permission in {existing}")


def new_run_path(root: Path, experiment_id: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{experiment_id}-{stamp}"
    i = 2
    while path.exists():
        path = Path(root) / f"{experiment_id}-{stamp}-{i}"
        i += 1
    return path
