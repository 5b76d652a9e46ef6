"""Tensors laid out one after another in one buffer, so one kernel call covers them all.

A population's stacked parameters (and, on the default road, their gradients and fused
Adam's state) live in one flat buffer each: every tensor is a contiguous slice of it,
starting at a multiple of ``ALIGN`` elements. An element-wise kernel (fused Adam's) then
runs once over the buffer instead of once per tensor: on a CPU each call opens a parallel
region, which costs little on an idle machine and milliseconds on a loaded one. Each
slice starts 64-byte aligned, like a tensor of its own, so matrix products read the same
data at the same alignment and give the same numbers; the padding between slices holds
zeros, which stay zeros under every element-wise update that maps 0 to 0 (fused Adam's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

ALIGN = 16  # elements: 64 bytes of float32, the alignment of torch's CPU allocations


def _layout(tensors: Sequence[torch.Tensor]) -> tuple[list[int], int]:
    """Offsets (in elements) of each tensor in the buffer, and the buffer's length."""
    offsets, end = [], 0
    for t in tensors:
        offsets.append(end)
        end += -(-t.numel() // ALIGN) * ALIGN
    return offsets, end


@torch.no_grad()
def move_to_flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Move ``tensors`` (one dtype and device) into one zero-padded buffer, in place: each
    keeps its values, shape and identity (a parameter stays a leaf) and becomes a slice of
    the returned buffer (1-D)."""
    offsets, length = _layout(tensors)
    buffer = torch.zeros(length, dtype=tensors[0].dtype, device=tensors[0].device)
    for t, offset in zip(tensors, offsets, strict=True):
        part = buffer[offset : offset + t.numel()].view(t.shape)
        part.copy_(t)
        t.data = part
    return buffer


def flat_buffer(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The buffer ``move_to_flat`` put ``tensors`` in, if they are still laid out in it
    exactly (same storage, contiguous, at the layout's offsets), else None."""
    if not tensors:
        return None
    storage = tensors[0].untyped_storage()
    offsets, length = _layout(tensors)
    for t, offset in zip(tensors, offsets, strict=True):
        if (
            t.untyped_storage().data_ptr() != storage.data_ptr()
            or t.storage_offset() != offset
            or not t.is_contiguous()
        ):
            return None
    if storage.nbytes() != length * tensors[0].element_size():
        return None
    return tensors[0].new_empty(0).set_(storage, 0, (length,))
