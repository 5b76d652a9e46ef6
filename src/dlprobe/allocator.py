"""The C allocator's thresholds for dlprobe's commands: freed memory is kept for reuse.

A population allocates and frees tensors of a few hundred kB every step and of tens of
MB every evaluation (models x examples x width). glibc's malloc serves large blocks
with ``mmap`` and hands them back on ``free`` (or trims its heap), so the process keeps
page-faulting through freshly zeroed pages: on the 2-core CPU, training 64 MLPs for 100
steps with two evaluations took 476 ms, 302 ms with freed memory kept (each evaluation
about 1.5x faster, the steps too). The speed also depended on what ran before in the
process (the heap's state): the bench's ratios swung by 1.5x between runs of one code.

``keep_freed_memory`` raises glibc's mmap and trim thresholds (``mallopt``) to 1 GiB for
this process: blocks up to that size come from the heap and return to it, and up to
1 GiB of freed heap is kept instead of given back. The price is a resident size that
stays at its peak until the process ends. Nothing changes on a C library other than
glibc, or with ``DLPROBE_KEEP_FREED_MEMORY=0``. The ``dlprobe`` command and sweep trials
call it; a library user may, once, at the start of a script.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

THRESHOLD = 1 << 30  # bytes: blocks up to this size stay in the heap, as does this much free
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
OPT_OUT = "DLPROBE_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to ``THRESHOLD`` for this process; whether
    they were set (False on another C library or with ``DLPROBE_KEEP_FREED_MEMORY=0``)."""
    if os.environ.get(OPT_OUT, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return all(
        libc.mallopt(option, THRESHOLD) == 1 for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)
    )
