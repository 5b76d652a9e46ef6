"""Peak memory of a benchmark block above what the process held when it started:
``torch.cuda.max_memory_allocated`` on CUDA, the process's peak resident set (Linux
``VmHWM``, reset before each measurement) on the CPU."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import resource
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for the device to finish its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a block above the memory held when it starts, in MiB."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else ("VmHWM (peak RSS, reset per measurement)" if _can_reset_rss() else "ru_maxrss")
        )

    def __enter__(self) -> PeakMemory:
        gc.collect()
        _release_freed_memory()  # else freed blocks still count in the starting RSS
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif _can_reset_rss():
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self._start = _status_kib("VmRSS") * 1024
        else:  # the lifetime peak: only growth past it shows
            self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif _can_reset_rss():
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.mib = max(0, peak - self._start) / 2**20


def _release_freed_memory() -> None:
    """Return the C allocator's free blocks to the system (glibc), so that the resident
    set at the start of a measurement is what is in use."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: free blocks count
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@functools.cache
def _can_reset_rss() -> bool:
    """Whether this Linux lets a process reset its peak RSS (asked once: the test resets it)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kib("VmHWM")
    except (OSError, KeyError):
        return False
    return True
