import itertools
import math

import numpy as np
import pytest
import torch
from probe_util import assert_untouched, snapshot
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.norms import weight_norms
from dlprobe.models import MLP

W1 = [[1.0, -2.0], [3.0, 0.0], [-1.0, 1.0]]  # (3, 2)
B1 = [1.0, -1.0, 2.0]
W2 = [[2.0, -1.0, 1.0]]  # (1, 3)
B2 = [3.0]


def hand_set_net() -> nn.Module:
    model = MLP([2, 3, 1], "relu")
    with torch.no_grad():
        for lin, w, b in zip(model.linears, (W1, W2), (B1, B2), strict=True):
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
    return model


def brute_force_path_norm(weights: list[np.ndarray]) -> float:
    """Sum over every input-output path of the product of squared weights, by loops."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    total = 0.0
    for path in itertools.product(*(range(s) for s in sizes)):
        prod = 1.0
        for layer, w in enumerate(weights):
            prod *= w[path[layer + 1], path[layer]] ** 2
        total += prod
    return math.sqrt(total)


def test_hand_set_two_layer_net():
    norms = weight_norms(hand_set_net())
    first, second = norms.layers
    assert (first.name, second.name) == ("1", "3")
    assert first.l1 == 8.0 and second.l1 == 4.0
    assert first.l2 == pytest.approx(4.0, rel=1e-12)
    assert second.l2 == pytest.approx(math.sqrt(6.0), rel=1e-12)
    s1 = np.linalg.svd(np.array(W1), compute_uv=False)[0]
    s2 = np.linalg.svd(np.array(W2), compute_uv=False)[0]
    assert first.spectral == pytest.approx(s1, rel=1e-12)
    assert second.spectral == pytest.approx(s2, rel=1e-12)
    assert norms.spectral_product == pytest.approx(s1 * s2, rel=1e-12)
    # Totals include the biases: |b1|_1 = 4, |b2|_1 = 3; |b1|^2 = 6, |b2|^2 = 9.
    assert norms.l1_total == 19.0
    assert norms.l2_total == pytest.approx(math.sqrt(16 + 6 + 6 + 9), rel=1e-12)
    # By hand: sum_j W2[j]^2 * sum_i W1[j, i]^2 = 4 * 5 + 1 * 9 + 1 * 2 = 31.
    assert norms.path_norm == pytest.approx(math.sqrt(31.0), rel=1e-12)
    assert norms.path_norm == pytest.approx(
        brute_force_path_norm([np.array(W1), np.array(W2)]), rel=1e-12
    )
    d = norms.as_dict()
    assert d["l1.1"] == 8.0 and d["path_norm"] == norms.path_norm and d["l1_total"] == 19.0


def test_deeper_net_path_norm_by_brute_force_and_rescaling_invariance():
    torch.manual_seed(0)
    model = MLP([3, 4, 3, 2], "relu")
    weights = [lin.weight.detach().double().numpy() for lin in model.linears]
    norms = weight_norms(model)
    assert norms.path_norm == pytest.approx(brute_force_path_norm(weights), rel=1e-12)
    assert norms.spectral_product == pytest.approx(
        np.prod([np.linalg.norm(w, ord=2) for w in weights]), rel=1e-10
    )
    # Dinh et al.: layer 1 times a, layer 2 times 1/a keeps the path norm, not the L2 norm.
    with torch.no_grad():
        model.linears[0].weight.mul_(4.0)
        model.linears[1].weight.div_(4.0)
    rescaled = weight_norms(model)
    assert rescaled.path_norm == pytest.approx(norms.path_norm, rel=1e-6)
    assert rescaled.l2_total > 1.5 * norms.l2_total


def test_conv_weight_is_measured_as_a_reshaped_matrix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    norms = weight_norms(model)
    w = model[0].weight.detach().double().numpy().reshape(3, 6)
    assert norms.layers[0].spectral == pytest.approx(np.linalg.norm(w, ord=2), rel=1e-10)
    assert norms.layers[0].l2 == pytest.approx(np.linalg.norm(w), rel=1e-10)
    assert norms.path_norm is None
    assert weight_norms(MLP([2, 3, 1], "relu", batch_norm=True)).path_norm is None


def test_model_untouched():
    model = hand_set_net()
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    weight_norms(model)
    assert_untouched(model, before)


def test_bad_input():
    with pytest.raises(DlprobeError, match="no Linear or Conv layer to measure, got Sequential"):
        weight_norms(nn.Sequential(nn.ReLU()))
