import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier
from torch import nn

from dlprobe import DlprobeError
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.measure.sharpness import sharpness
from dlprobe.models import CNN


def _cnn():
    torch.manual_seed(0)
    model = CNN([1, 8], [3, 4], num_classes=3, activation="relu")
    return model, torch.randn(10, 1, 8)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "maxout"])
@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("factor", [1e-2, 0.3, 7.0, 1e2])
def test_mlp_function_unchanged(activation, layer, factor):
    model, _, x, _ = tiny_classifier(activation, widths=(4, 8, 6, 3))
    rescaled = rescale_relu_layers(model, layer, factor)
    torch.testing.assert_close(rescaled(x), model(x), rtol=1e-5, atol=1e-6)
    first, second = model.linears[layer], model.linears[layer + 1]
    new_first, new_second = rescaled.linears[layer], rescaled.linears[layer + 1]
    torch.testing.assert_close(new_first.weight, factor * first.weight)
    torch.testing.assert_close(new_first.bias, factor * first.bias)
    torch.testing.assert_close(new_second.weight, second.weight / factor)
    assert torch.equal(new_second.bias, second.bias)


@pytest.mark.parametrize("layer", [0, 1])  # conv -> conv, conv -> (pool, flatten) linear
@pytest.mark.parametrize("factor", [1e-2, 1e2])
def test_cnn_function_unchanged(layer, factor):
    model, x = _cnn()
    rescaled = rescale_relu_layers(model, layer, factor)
    torch.testing.assert_close(rescaled(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factor", [1e-2, 1e2])
def test_hessian_sharpness_changes_by_a_large_factor(factor):
    model, loss_fn, x, y = tiny_classifier("relu", widths=(4, 8, 3))
    before = sharpness(model, loss_fn, x, y, method="hessian")
    after = sharpness(rescale_relu_layers(model, 0, factor), loss_fn, x, y, method="hessian")
    # Same function, same loss, yet the top Hessian eigenvalue grows by ~factor^(+-2).
    assert after.base_loss == pytest.approx(before.base_loss, rel=1e-6)
    assert after.value / before.value > 100


def test_model_untouched():
    model, loss_fn, x, y = tiny_classifier("relu")
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    rescaled = rescale_relu_layers(model, 0, 3.0)
    assert_untouched(model, before)
    assert rescaled is not model
    assert all(p.grad is None for p in rescaled.parameters())
    assert rescaled.training  # a copy, mode kept


def test_bad_input():
    model, _, _, _ = tiny_classifier("relu", widths=(4, 8, 6, 3))
    for factor in [0.0, -2.0, float("inf")]:
        with pytest.raises(DlprobeError, match="factor must be a finite number > 0"):
            rescale_relu_layers(model, 0, factor)
    with pytest.raises(DlprobeError, match=r"index 0\.\.1 .* not the last one; got 2"):
        rescale_relu_layers(model, 2, 2.0)
    with pytest.raises(DlprobeError, match="got -1"):
        rescale_relu_layers(model, -1, 2.0)
    tanh, _, _, _ = tiny_classifier("tanh")
    with pytest.raises(DlprobeError, match="Tanh between layers 0 and 1 is not positively"):
        rescale_relu_layers(tanh, 0, 2.0)
    with pytest.raises(DlprobeError, match="nn.Sequential"):
        rescale_relu_layers(nn.Linear(2, 2), 0, 2.0)
