"""Fully connected networks given by their layer widths."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dlprobe import DlprobeError
from dlprobe.models.activations import check_activation, make_activation, units_before
from dlprobe.models.init import initialize


class MLP(nn.Sequential):
    """``Flatten, Linear, act, Linear, act, ..., Linear`` for ``widths = [in, h1, ..., out]``.

    ``MLP([1, 190, 1], "relu")`` is the homework's shallow 571-parameter model. The linear
    layers are ``mlp.linears`` in order; hidden layer i is the output of ``linears[i]``.
    ``init`` is an initialization scheme of ``dlprobe.models.init``. ``dropout`` is the
    probability that a hidden unit is zeroed in training (``nn.Dropout`` after every hidden
    activation, which scales the kept units by 1 / (1 - dropout); none in eval mode). The
    loss is not part of the model.
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "relu",
        batch_norm: bool = False,
        init: str = "default",
        dropout: float = 0.0,
    ):
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise DlprobeError(f"MLP widths need >= 2 positive entries (in ... out), got {widths}")
        check_activation(activation)
        if not 0.0 <= dropout < 1.0:
            raise DlprobeError(f"dropout must be in [0, 1) (a probability), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == len(widths) - 2
            layers.append(nn.Linear(w_in, w_out if last else units_before(activation, w_out)))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(units_before(activation, w_out)))
                layers.append(make_activation(activation))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        super().__init__(*layers)
        initialize(self, init, activation)
        self.widths = widths
        self.activation = activation

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def extra_repr(self) -> str:
        return f"widths={'-'.join(map(str, self.widths))}, activation={self.activation}"
