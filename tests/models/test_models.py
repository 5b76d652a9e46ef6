import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.models import (
    ACTIVATIONS,
    CNN,
    MLP,
    build_model,
    count_params,
    mlp_param_count,
    mlp_widths_for_budget,
)


def test_homework_trio_is_expressible_with_its_parameter_counts():
    counts = [
        count_params(MLP(w))
        for w in ([1, 5, 10, 10, 10, 10, 10, 5, 1], [1, 10, 18, 15, 4, 1], [1, 190, 1])
    ]
    assert counts == [571, 572, 571]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_runs_and_closed_form_count_matches(activation):
    widths = [3, 6, 5, 2]
    model = MLP(widths, activation)
    assert model(torch.randn(4, 3)).shape == (4, 2)
    assert count_params(model) == mlp_param_count(widths, activation)


@pytest.mark.parametrize("depth", [1, 2, 4, 7, 10])
@pytest.mark.parametrize("target", [571, 1000, 5000])
def test_budget_solver_matches_within_two_percent(depth, target):
    widths = mlp_widths_for_budget(1, 1, depth, target)
    assert len(widths) == depth + 2
    assert abs(count_params(MLP(widths)) - target) <= 0.02 * target


def test_budget_solver_rejects_impossible_budgets():
    with pytest.raises(DlprobeError, match="too small for 20 hidden layers"):
        mlp_widths_for_budget(1, 1, 20, 30)
    with pytest.raises(DlprobeError, match="depth"):
        mlp_widths_for_budget(1, 1, 0, 100)


def test_cnn_1d_and_2d_shapes_and_specs():
    c1 = build_model({"kind": "cnn", "input_shape": [1, 40], "channels": [8, 8], "num_classes": 10})
    assert c1(torch.randn(2, 1, 40)).shape == (2, 10)
    c2 = CNN([3, 32, 32], [4, 8, 8], 10, "relu")
    assert c2(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(DlprobeError, match="valid names"):
        MLP([1, 2, 1], "swish")
    with pytest.raises(DlprobeError, match="unknown model kind"):
        build_model({"kind": "rnn"})


@pytest.mark.parametrize("activation,gain", [("relu", 2**0.5), ("tanh", 5 / 3), ("selu", 1.0)])
def test_kaiming_init_draws_weights_with_the_activations_gain(activation, gain):
    torch.manual_seed(0)
    model = MLP([400, 400, 400, 3], activation, init="kaiming")
    for layer in model.linears:
        fan_in = layer.weight.shape[1]
        assert layer.weight.mean().abs() < 0.05 / fan_in**0.5
        assert layer.weight.std().item() == pytest.approx(gain / fan_in**0.5, rel=0.03)
        assert layer.bias.abs().max() <= 1 / fan_in**0.5  # PyTorch's bias draw is kept


def test_default_init_is_pytorchs_and_unknown_init_is_refused():
    torch.manual_seed(3)
    a = MLP([5, 7, 2])
    torch.manual_seed(3)
    b = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2)
    )
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(DlprobeError, match="valid names: default, kaiming"):
        MLP([5, 7, 2], init="xavier")
