"""Convolutional networks for 1-D signals (mnist1d) and images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dlprobe import DlprobeError
from dlprobe.models.activations import check_activation, make_activation, units_before
from dlprobe.models.init import initialize


class CNN(nn.Sequential):
    """Conv blocks then one linear classifier; 1-D or 2-D from ``input_shape``.

    Each block is ``Conv(k, padding k//2), act``, followed by a max-pool of 2 while the
    spatial size stays >= 4. ``input_shape`` is ``(channels, length)`` or
    ``(channels, height, width)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        kernel_size: int = 3,
        init: str = "default",
    ):
        input_shape = [int(s) for s in input_shape]
        channels = [int(c) for c in channels]
        if len(input_shape) not in (2, 3):
            raise DlprobeError(f"CNN input must be (C, L) or (C, H, W), got {input_shape}")
        if not channels or min(channels) < 1:
            raise DlprobeError(f"CNN needs >= 1 conv layer of >= 1 channel, got {channels}")
        check_activation(activation)
        dims = len(input_shape) - 1
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        layers: list[nn.Module] = []
        c_in, size = input_shape[0], input_shape[1:]
        for c_out in channels:
            layers.append(
                conv(c_in, units_before(activation, c_out), kernel_size, padding=kernel_size // 2)
            )
            layers.append(make_activation(activation))
            if min(size) >= 4:
                layers.append(pool(2))
                size = [s // 2 for s in size]
            c_in = c_out
        flat = c_in
        for s in size:
            flat *= s
        layers += [nn.Flatten(), nn.Linear(flat, num_classes)]
        super().__init__(*layers)
        initialize(self, init, activation)
        self.input_shape = input_shape
        self.channels = channels
        self.activation = activation

    def extra_repr(self) -> str:
        return f"channels={'-'.join(map(str, self.channels))}, activation={self.activation}"
