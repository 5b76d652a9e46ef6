import itertools

import pytest
import torch
from probe_util import assert_untouched, snapshot
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure._functional import flat_params
from dlprobe.measure.alignment import align_hidden_units, permute_hidden_units
from dlprobe.models import MLP


def mlp(widths, seed, activation="relu", batch_norm=False):
    torch.manual_seed(seed)
    model = MLP(widths, activation, batch_norm=batch_norm)
    if batch_norm:  # give the running statistics values that a wrong permutation would expose
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(32, widths[0]) * 2 + 1)
        model.eval()
    return model


def random_perms(model, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(lin.out_features, generator=g) for lin in model.linears[:-1]]


def distance(a, b):
    return (flat_params(a) - flat_params(b)).norm().item()


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_permuted_twin_aligns_to_zero_distance(activation, batch_norm):
    ref = mlp([3, 6, 5, 4, 2], 0, activation, batch_norm)
    perms = random_perms(ref, seed=1)
    twin = permute_hidden_units(ref, perms)
    x = torch.randn(10, 3)
    torch.testing.assert_close(twin(x), ref(x), atol=1e-6, rtol=1e-6)
    assert distance(twin, ref) > 0.1

    aligned, found = align_hidden_units(ref, twin)
    assert distance(aligned, ref) == 0.0
    for a, b in zip(aligned.buffers(), ref.buffers(), strict=True):
        assert torch.equal(a, b)
    # The found permutation undoes the random one: twin unit k is reference unit perms[k].
    for p, q in zip(perms, found, strict=True):
        assert torch.equal(p[q], torch.arange(len(p)))
    torch.testing.assert_close(aligned(x), twin(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_independent_models_same_function_and_closer(batch_norm):
    ref = mlp([4, 16, 16, 3], 0, batch_norm=batch_norm)
    model = mlp([4, 16, 16, 3], 1, batch_norm=batch_norm)
    aligned, perms = align_hidden_units(ref, model)
    x = torch.randn(20, 4)
    torch.testing.assert_close(aligned(x), model(x), atol=1e-6, rtol=1e-6)
    assert distance(aligned, ref) <= distance(model, ref)
    again = permute_hidden_units(model, perms)
    assert torch.equal(flat_params(again), flat_params(aligned))


def unit_cost(ref_lin, lin, perm, in_perm):
    """Squared distance of incoming weights and bias, by explicit loops."""
    total = 0.0
    for j, k in enumerate(perm):
        for c in range(ref_lin.in_features):
            src = c if in_perm is None else in_perm[c]
            total += (ref_lin.weight[j, c].item() - lin.weight[k, src].item()) ** 2
        total += (ref_lin.bias[j].item() - lin.bias[k].item()) ** 2
    return total


def test_matches_brute_force_over_all_permutations():
    # Layer by layer: the best of all 4! permutations of layer 1, then of layer 2 given it.
    ref, model = mlp([2, 4, 4, 1], 0), mlp([2, 4, 4, 1], 5)
    _, found = align_hidden_units(ref, model)
    in_perm = None
    for i in range(2):
        ref_lin, lin = ref.linears[i], model.linears[i]
        costs = {p: unit_cost(ref_lin, lin, p, in_perm) for p in itertools.permutations(range(4))}
        best = min(costs, key=costs.get)
        assert tuple(found[i].tolist()) == best
        in_perm = best


def test_inputs_untouched():
    ref, model = mlp([3, 5, 2], 0), mlp([3, 5, 2], 1)
    for m in (ref, model):
        m.train()
        for p in m.parameters():
            p.grad = torch.ones_like(p)
    before_ref, before_model = snapshot(ref), snapshot(model)
    aligned, perms = align_hidden_units(ref, model)
    permute_hidden_units(model, perms)
    assert_untouched(ref, before_ref)
    assert_untouched(model, before_model)
    assert all(p.grad is None for p in aligned.parameters())
    assert aligned is not model


def test_bad_input():
    ref = mlp([3, 5, 2], 0)
    with pytest.raises(DlprobeError, match="same parameter shapes; '1.weight'"):
        align_hidden_units(ref, mlp([3, 6, 2], 0))
    with pytest.raises(DlprobeError, match="same modules"):
        align_hidden_units(ref, mlp([3, 5, 5, 2], 0))
    with pytest.raises(DlprobeError, match="module 2 is Maxout"):
        align_hidden_units(mlp([3, 5, 2], 0, "maxout"), mlp([3, 5, 2], 1, "maxout"))
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(DlprobeError, match="module 0 is Conv1d"):
        permute_hidden_units(conv, [])
    with pytest.raises(DlprobeError, match="nn.Sequential"):
        permute_hidden_units(nn.Linear(2, 2), [])
    with pytest.raises(DlprobeError, match="one permutation per hidden layer \\(1\\), got 2"):
        permute_hidden_units(ref, [torch.arange(5), torch.arange(5)])
    with pytest.raises(DlprobeError, match="must be a permutation of 0..4"):
        permute_hidden_units(ref, [torch.tensor([0, 0, 1, 2, 3])])
