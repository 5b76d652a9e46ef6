"""Kaiming initialisation keeps the signal's scale through depth, for each activation it
has a gain for (a wrong gain grows or shrinks it geometrically with depth)."""

import pytest
import torch
from torch import nn

from dlprobe.models import MLP


@pytest.mark.parametrize("activation", ["relu", "maxout", "selu", "leaky_relu"])
def test_kaiming_keeps_the_pre_activation_scale_through_eight_layers(activation):
    torch.manual_seed(0)
    model = MLP([256] + [256] * 8 + [10], activation, init="kaiming")
    h = torch.randn(512, 256)
    rms = []
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            rms.append(h.pow(2).mean().sqrt().item())
    # 7 layers with a gain off by sqrt(2) (maxout's old one) change it about 11-fold
    assert 0.7 < rms[-2] / rms[0] < 1.4, rms
