"""BatchNorm statistics recomputed from data (what eval mode then normalizes with)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running mean and variance of ``model`` to those of the inputs
    ``x`` (one pass in training mode; PyTorch keeps the unbiased variance), and return it
    in eval mode, which then normalizes with them. A model without BatchNorm is only put in
    eval mode. Changes ``model`` in place: pass a copy to keep the original.

    The running averages a training leaves lag behind the weights (at a large learning rate,
    far behind); these are the statistics of the weights as they are.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch gives that batch's statistics
    if norms:
        model.train()
        model(x)
    return model.eval()
