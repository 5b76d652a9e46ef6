import pytest
import torch
from probe_util import assert_untouched, snapshot, tiny_classifier, tiny_regression

from dlprobe import DlprobeError
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.models import CNN


def _classifier64():
    model, loss_fn, x, y = tiny_classifier("tanh", n=13)
    return model.double(), loss_fn, x.double(), y


def _regression64():
    model, loss_fn, x, y = tiny_regression("tanh", n=11)
    return model.double(), loss_fn, x.double(), y.double()


def _cnn64():
    torch.manual_seed(0)
    model = CNN([2, 8], [3], num_classes=4, activation="tanh").double()
    x = torch.randn(9, 2, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (9,))
    return model, torch.nn.functional.cross_entropy, x, y


PROBLEMS = {"classifier": _classifier64, "regression": _regression64, "cnn": _cnn64}


def _loop_loss_gradient(model, loss_fn, x, y):
    """Brute force: one autograd Jacobian of the single-example loss per example."""
    out = []
    for x_i, y_i in zip(x, y, strict=True):
        g = torch.autograd.functional.jacobian(
            lambda xi, yi=y_i: loss_fn(model(xi.unsqueeze(0)), yi.unsqueeze(0)), x_i
        )
        out.append(g.norm())
    return torch.stack(out)


def _loop_jacobian(model, x):
    out = []
    for x_i in x:
        j = torch.autograd.functional.jacobian(
            lambda xi: torch.softmax(model(xi.unsqueeze(0))[0], dim=0), x_i
        )
        out.append(j.norm())
    return torch.stack(out)


@pytest.mark.parametrize("name", ["classifier", "regression", "cnn"])
def test_loss_gradient_matches_per_example_loop(name):
    model, loss_fn, x, y = PROBLEMS[name]()
    model.eval()
    s = sensitivity(model, x, y, loss_fn)
    expected = _loop_loss_gradient(model, loss_fn, x, y)
    assert s.definition == "loss-gradient"
    assert s.per_example.shape == (x.shape[0],)
    torch.testing.assert_close(s.per_example, expected, rtol=1e-10, atol=1e-12)
    assert s.mean == pytest.approx(expected.mean().item(), rel=1e-10)


@pytest.mark.parametrize("name", ["classifier", "cnn"])
def test_jacobian_matches_per_example_loop(name):
    model, _, x, _ = PROBLEMS[name]()
    model.eval()
    s = sensitivity(model, x, definition="jacobian")
    torch.testing.assert_close(s.per_example, _loop_jacobian(model, x), rtol=1e-10, atol=1e-12)


def test_does_not_shrink_with_dataset_size():
    # The SPEC pitfall: an example's sensitivity must not depend on how many others share
    # the batch (dividing a batch-mean gradient by n would make it fall as 1/n).
    model, loss_fn, x, y = _classifier64()
    full = sensitivity(model, x, y, loss_fn).per_example
    few = sensitivity(model, x[:3], y[:3], loss_fn).per_example
    torch.testing.assert_close(few, full[:3], rtol=1e-12, atol=0)


@pytest.mark.parametrize("definition", ["loss-gradient", "jacobian"])
@pytest.mark.parametrize("batch_size", [1, 7, 13])
def test_invariant_to_batch_size(definition, batch_size):
    model, loss_fn, x, y = _classifier64()
    whole = sensitivity(model, x, y, loss_fn, definition=definition)
    chunked = sensitivity(model, x, y, loss_fn, definition=definition, batch_size=batch_size)
    torch.testing.assert_close(chunked.per_example, whole.per_example, rtol=1e-12, atol=0)


def test_model_untouched():
    model, loss_fn, x, y = tiny_classifier("relu")
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = snapshot(model)
    sensitivity(model, x, y, loss_fn)
    sensitivity(model, x, definition="jacobian", batch_size=5)
    assert_untouched(model, before)


def test_bad_input():
    model, loss_fn, x, y = tiny_classifier()
    with pytest.raises(DlprobeError, match="valid: loss-gradient, jacobian"):
        sensitivity(model, x, y, loss_fn, definition="hessian")
    with pytest.raises(DlprobeError, match="needs both y and loss_fn"):
        sensitivity(model, x, loss_fn=loss_fn)
    with pytest.raises(DlprobeError, match="needs both y and loss_fn"):
        sensitivity(model, x, y)
    with pytest.raises(DlprobeError, match="same number of examples"):
        sensitivity(model, x, y[:-1], loss_fn)
    with pytest.raises(DlprobeError, match="batch_size"):
        sensitivity(model, x, y, loss_fn, batch_size=0)
    with pytest.raises(DlprobeError, match="floating point"):
        sensitivity(model, x.long(), y, loss_fn)
