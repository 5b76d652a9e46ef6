"""Keeping freed memory (dlprobe.allocator): a 26 MiB tensor, an evaluation's size, comes
from the heap and goes back to it instead of being mmap'd and unmapped; off on request.
Counted by glibc's ``mallinfo2`` in fresh processes (the setting is per process)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from dlprobe.allocator import OPT_OUT, keep_freed_memory

SCRIPT = """
import ctypes, json, sys
import torch
from dlprobe.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
before = libc.mallinfo2()
t = torch.empty(26 << 18)  # 26 MiB
alive = libc.mallinfo2()
del t
freed = libc.mallinfo2()
print(json.dumps({"kept": kept, "mmapped": alive.hblkhd - before.hblkhd,
                  "heap_free_after": freed.fordblks - before.fordblks}))
"""
MIB = 1 << 20
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")


def _malloc_counts(mode: str, env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT} | (env or {})
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_a_large_tensor_comes_from_the_heap_and_stays_there_when_freed_memory_is_kept():
    plain, kept = _malloc_counts("plain"), _malloc_counts("keep")
    assert not plain["kept"] and kept["kept"]
    # glibc's default: mmap'd, and unmapped when freed (nothing left in the heap)
    assert plain["mmapped"] >= 26 * MIB and plain["heap_free_after"] < MIB
    # kept: from the heap, and (nearly) its 26 MiB wait there for the next evaluation
    assert kept["mmapped"] < MIB and kept["heap_free_after"] >= 25 * MIB


@glibc
def test_the_opt_out_leaves_the_allocator_alone(monkeypatch):
    counts = _malloc_counts("keep", {OPT_OUT: "0"})
    assert counts["kept"] is False and counts["mmapped"] >= 26 * MIB
    monkeypatch.setenv(OPT_OUT, "0")
    assert keep_freed_memory() is False
