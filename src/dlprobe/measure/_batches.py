"""The data of a probe: one in-memory batch ``(x, y)`` or an iterable of batches.

Every loss-based probe measures the loss averaged over all N examples. Over several
batches it is accumulated as ``sum_b w_b loss_b`` with ``w_b = n_b / N`` for a loss that
averages over its batch (``reduction="mean"``, or any plain function such as
``F.cross_entropy``), and ``w_b = 1`` for ``reduction="sum"``; either way the result is
that of one concatenated batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from dlprobe import DlprobeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a stateless model."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (default dtype if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def loss_reduction(loss_fn: object) -> str:
    """``"mean"`` or ``"sum"``: how ``loss_fn`` reduces over its batch; rejects the rest.

    A plain function is taken to average over its batch, as ``F.mse_loss`` and
    ``F.cross_entropy`` do by default; an ``nn.Module`` loss says so in ``.reduction``.
    """
    if isinstance(loss_fn, type):
        raise DlprobeError(
            f"loss_fn must be a loss function or an instance such as {loss_fn.__name__}(), "
            f"not the class {loss_fn.__name__}"
        )
    if not callable(loss_fn):
        raise DlprobeError(
            f"loss_fn must be callable as loss_fn(output, target), got {type(loss_fn).__name__}"
        )
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction == "none":
        raise DlprobeError(
            "loss_fn has reduction='none' and returns one loss per example; probes need the "
            "scalar mean over the batch: use reduction='mean'"
        )
    if reduction not in ("mean", "sum"):
        raise DlprobeError(
            f"loss_fn.reduction must be 'mean' or 'sum' (the loss over a batch), got {reduction!r}"
        )
    return reduction


def check_scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise DlprobeError(
            f"loss_fn must return a scalar (the mean loss over the batch), got {shape}; "
            "a loss with reduction='none' must be averaged first"
        )
    return loss


class Batches:
    """Re-iterable ``(x, y)`` batches on one device and in one floating dtype.

    Attributes:
        n: total number of examples over all batches.
        device, dtype: where and in what precision the batches are yielded (integer
            targets keep their dtype).
    """

    def __init__(self, source: Sequence | Iterable, device: torch.device, dtype: torch.dtype):
        self._source = source
        self.device, self.dtype = device, dtype
        self.n = self._count()
        if self.n == 0:
            raise DlprobeError("the data holds no examples")

    @property
    def single(self) -> bool:
        """Whether the data is one in-memory batch."""
        return isinstance(self._source, (list, tuple)) and len(self._source) == 1

    def _count(self) -> int:
        if isinstance(self._source, (list, tuple)):
            return sum(int(x.shape[0]) for x, _ in self._raw())
        # A DataLoader with a batch size knows its length without loading anything.
        batch_size = getattr(self._source, "batch_size", None)
        sampler = getattr(self._source, "sampler", None)
        n = _length(sampler) if isinstance(batch_size, int) else None
        if n is not None:
            drop_last = getattr(self._source, "drop_last", False)
            return len(self._source) * batch_size if drop_last else n
        return sum(int(x.shape[0]) for x, _ in self._raw())  # an iterable-style dataset

    def _raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(self._source):
            if not (
                isinstance(batch, (list, tuple))
                and len(batch) == 2
                and all(isinstance(t, torch.Tensor) for t in batch)
            ):
                raise DlprobeError(
                    f"batch {i} must be a pair (x, y) of tensors, got {type(batch).__name__}"
                )
            x, y = batch
            if x.ndim < 1 or x.shape[0] == 0 or y.ndim < 1 or y.shape[0] != x.shape[0]:
                raise DlprobeError(
                    f"batch {i} must hold n >= 1 examples in x and y alike, got shapes "
                    f"{tuple(x.shape)} and {tuple(y.shape)}"
                )
            yield x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self._raw():
            yield self._cast(x), self._cast(y)

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype if t.is_floating_point() else t.dtype
        return t.to(device=self.device, dtype=dtype, non_blocking=True)

    def weight(self, n_batch: int, reduction: str) -> float:
        """Factor of a batch's loss in the mean over all examples (see module docstring)."""
        return n_batch / self.n if reduction == "mean" else 1.0


def as_batches(
    model: nn.Module,
    x: torch.Tensor | Iterable,
    y: torch.Tensor | None,
    dtype: torch.dtype | None = None,
) -> Batches:
    """Check a probe's data and return it as :class:`Batches` for ``model``.

    Args:
        model: the model; the batches are put on its device.
        x, y: either two tensors (n, ...) of inputs and targets on the model's device;
            or ``x`` an iterable of ``(x, y)`` batches (a list, a ``DataLoader``: anything
            that can be iterated more than once) and ``y`` None. Batches from an iterable
            are moved to the model's device.
        dtype: precision of the computation: floating inputs and targets are cast to it.
            ``None``: the model's own dtype, and floating inputs of another dtype are an
            error rather than a silent cast.
    """
    device = model_device(model)
    if isinstance(x, torch.Tensor):
        if y is None:
            raise DlprobeError("y is missing: pass targets y with inputs x, or x as batches")
        check_data(model, x, y)
        source: Sequence | Iterable = [(x, y)]
    elif y is not None:
        raise DlprobeError(
            f"x must be a torch.Tensor when y is given, got {type(x).__name__}; to pass batches, "
            "give them as x and leave y out"
        )
    elif (
        isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(t, torch.Tensor) for t in x)
    ):
        check_data(model, x[0], x[1])
        source = [tuple(x)]
    elif isinstance(x, Iterable):
        if iter(x) is x:
            raise DlprobeError(
                "the batches are a one-shot iterator (a generator?); probes read the data "
                "several times: pass a list of (x, y) batches or a DataLoader"
            )
        source = x
    else:
        raise DlprobeError(
            f"x must be a tensor of inputs or an iterable of (x, y) batches, got {type(x).__name__}"
        )
    own = model_dtype(model)
    batches = Batches(source, device, own if dtype is None else dtype)
    if dtype is None:
        x0, _ = next(batches._raw())
        if x0.is_floating_point() and x0.dtype != own:
            raise DlprobeError(
                f"the inputs are {x0.dtype} but the model's parameters are {own}; cast one of "
                "them (or pass dtype= to compute in one precision)"
            )
    return batches


def check_data(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Reject in-memory inputs a probe cannot use, with a message saying what was expected."""
    if not isinstance(x, torch.Tensor):
        raise DlprobeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise DlprobeError(f"x must be a non-empty batch (n, ...), got shape {tuple(x.shape)}")
    if y is not None:
        if not isinstance(y, torch.Tensor):
            raise DlprobeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise DlprobeError(
                f"x and y must have the same number of examples, got {x.shape[0]} and "
                f"{y.shape[0] if y.ndim else 'a scalar'}"
            )
    p = next(iter((*model.parameters(), *model.buffers())), None)
    for name, t in (("x", x), ("y", y)):
        if p is not None and t is not None and p.device != t.device:
            raise DlprobeError(
                f"model is on {p.device} but {name} is on {t.device}; move one of them"
            )


def _length(sampler) -> int | None:
    """The sampler's length; None when it has none (an iterable-style dataset's)."""
    try:
        return len(sampler)
    except TypeError:
        return None
