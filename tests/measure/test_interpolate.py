import copy

import pytest
import torch
import torch.nn.functional as F
from probe_util import assert_untouched, snapshot

from dlprobe import DlprobeError
from dlprobe.measure.interpolate import classification_metrics, interpolate
from dlprobe.models import MLP


def _pair(batch_norm=False):
    torch.manual_seed(0)
    a = MLP([4, 8, 3], "relu", batch_norm=batch_norm)
    b = MLP([4, 8, 3], "relu", batch_norm=batch_norm)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    if batch_norm:  # give the two models different running statistics
        a.train()(x)
        b.train()(2 * x + 1)
    return a, b, x, y


def _evaluate(x, y):
    return lambda model: classification_metrics(model, x, y, batch_size=7)


def test_endpoints_reproduce_the_models_exactly():
    a, b, x, y = _pair(batch_norm=True)
    evaluate = _evaluate(x, y)
    records = interpolate(a, b, [0.0, 1.0], evaluate, recompute_batchnorm=False)
    assert records[0] == {"alpha": 0.0, **evaluate(a)}
    assert records[1] == {"alpha": 1.0, **evaluate(b)}


@pytest.mark.parametrize("batch_norm", [False, True])
def test_midpoint_equals_hand_averaged_model(batch_norm):
    a, b, x, y = _pair(batch_norm)
    seen = {}

    def evaluate(model):
        seen["state"] = copy.deepcopy(model.state_dict())
        return classification_metrics(model, x, y)

    (record,) = interpolate(a, b, [0.5], evaluate, recompute_batchnorm=False)
    by_hand = copy.deepcopy(a)
    with torch.no_grad():
        for p_h, p_a, p_b in zip(by_hand.parameters(), a.parameters(), b.parameters(), strict=True):
            p_h.copy_((p_a + p_b) / 2)
        for b_h, b_a, b_b in zip(by_hand.buffers(), a.buffers(), b.buffers(), strict=True):
            if b_h.is_floating_point():
                b_h.copy_((b_a + b_b) / 2)
    for name, value in by_hand.state_dict().items():
        torch.testing.assert_close(seen["state"][name], value, rtol=1e-6, atol=1e-7)
    expected = classification_metrics(by_hand, x, y)
    assert record["alpha"] == 0.5
    assert record["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert record["accuracy"] == expected["accuracy"]


def test_extrapolation_and_order():
    a, b, x, y = _pair()
    alphas = [-1.0, 0.25, 2.0]
    records = interpolate(a, b, alphas, lambda m: {"w": m[1].weight[0, 0].item()})
    w_a, w_b = a[1].weight[0, 0].item(), b[1].weight[0, 0].item()
    assert [r["alpha"] for r in records] == alphas
    for r, alpha in zip(records, alphas, strict=True):
        assert r["w"] == pytest.approx((1 - alpha) * w_a + alpha * w_b, rel=1e-5)


def test_classification_metrics_brute_force():
    a, _, x, y = _pair()
    a.eval()
    logits = a(x)
    m = classification_metrics(a, x, y, batch_size=4)
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert m["accuracy"] == (logits.argmax(1) == y).sum().item() / len(y)


def test_models_untouched():
    a, b, x, y = _pair(batch_norm=True)  # train mode, so a probe's eval() would show
    for p in [*a.parameters(), *b.parameters()]:
        p.grad = torch.ones_like(p)
    before_a, before_b = snapshot(a), snapshot(b)
    interpolate(a, b, [0.0, 0.3, 1.0], _evaluate(x, y), batchnorm_data=x)
    interpolate(a, b, [0.3], _evaluate(x, y), recompute_batchnorm=False)
    classification_metrics(a, x, y)
    assert_untouched(a, before_a)
    assert_untouched(b, before_b)


def test_bad_input():
    a, b, x, y = _pair()
    wider = MLP([4, 9, 3], "relu")
    with pytest.raises(
        DlprobeError, match=r"'1.weight' has shape \(8, 4\) in model_a and \(9, 4\)"
    ):
        interpolate(a, wider, [0.5], _evaluate(x, y))
    deeper = MLP([4, 8, 8, 3], "relu")
    with pytest.raises(DlprobeError, match=r"only in model_b: \['5.bias', '5.weight'\]"):
        interpolate(a, deeper, [0.5], _evaluate(x, y))
    with pytest.raises(DlprobeError, match="at least one value"):
        interpolate(a, b, [], _evaluate(x, y))
    with pytest.raises(DlprobeError, match="must return a dict"):
        interpolate(a, b, [0.5], lambda m: 1.0)
    a_bn, b_bn, _, _ = _pair(batch_norm=True)
    with pytest.raises(DlprobeError, match="pass batchnorm_data="):
        interpolate(a_bn, b_bn, [0.5], _evaluate(x, y))
    with pytest.raises(DlprobeError, match="re-iterable"):
        interpolate(a_bn, b_bn, [0.5], _evaluate(x, y), batchnorm_data=iter([x]))
    with pytest.raises(DlprobeError, match="same number of examples"):
        classification_metrics(a, x, y[:3])
    with pytest.raises(DlprobeError, match="batch_size"):
        classification_metrics(a, x, y, batch_size=0)


def _manual_batchnorm_statistics(model, batches):
    """Running statistics a cumulative average gives, computed layer by layer by hand:
    per batch, each BatchNorm normalizes with the batch mean and biased variance and
    records the mean and unbiased variance; the running values average them over batches."""
    layers = list(model)
    stats = {}  # BatchNorm index -> list of (mean, unbiased var) per batch
    for xb in batches:
        h = xb
        for i, layer in enumerate(layers):
            if isinstance(layer, torch.nn.BatchNorm1d):
                mean, var = h.mean(0), h.var(0, unbiased=False)
                stats.setdefault(i, []).append((mean, h.var(0, unbiased=True)))
                h = layer.weight * (h - mean) / torch.sqrt(var + layer.eps) + layer.bias
            else:
                h = layer(h)
    return {
        i: (torch.stack([m for m, _ in s]).mean(0), torch.stack([v for _, v in s]).mean(0))
        for i, s in stats.items()
    }


@pytest.mark.parametrize("n_batches", [1, 3])
def test_batchnorm_statistics_recomputed_on_training_data(n_batches):
    torch.manual_seed(0)
    a = MLP([4, 8, 6, 3], "relu", batch_norm=True)
    b = MLP([4, 8, 6, 3], "relu", batch_norm=True)
    x_train = 1.5 * torch.randn(45, 4) + 0.3
    a.train()(x_train)  # endpoint statistics that interpolation must not use
    b.train()(-x_train)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    batches = list(x_train.chunk(n_batches)) if n_batches > 1 else x_train
    batches_as_pairs = [(xb, torch.zeros(len(xb))) for xb in x_train.chunk(n_batches)]
    seen = []

    def evaluate(model):
        seen.append(copy.deepcopy(model))
        return classification_metrics(model, x, y)

    alphas = [0.0, 0.4, 1.3]
    records = interpolate(a, b, alphas, evaluate, batchnorm_data=batches)
    again = interpolate(
        a, b, alphas, lambda m: classification_metrics(m, x, y), batchnorm_data=batches_as_pairs
    )  # DataLoader-style (x, y) batches
    assert again == records
    for alpha, record, model in zip(alphas, records, seen, strict=True):
        by_hand = copy.deepcopy(a)
        with torch.no_grad():
            for p_h, p_a, p_b in zip(
                by_hand.parameters(), a.parameters(), b.parameters(), strict=True
            ):
                p_h.copy_((1 - alpha) * p_a + alpha * p_b)
            expected = _manual_batchnorm_statistics(by_hand, x_train.chunk(n_batches))
        for i, (mean, var) in expected.items():
            torch.testing.assert_close(model[i].running_mean, mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(model[i].running_var, var, rtol=1e-5, atol=1e-6)
            by_hand[i].running_mean.copy_(mean)
            by_hand[i].running_var.copy_(var)
        assert model.training  # modes of model_a restored after the statistics pass
        assert [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)] == [
            0.1,
            0.1,
        ]
        metrics = classification_metrics(by_hand, x, y)
        assert record["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
        assert record["accuracy"] == metrics["accuracy"]
    # Interpolated statistics give other numbers: the option changes the measurement.
    plain = interpolate(
        a, b, [0.4], lambda m: classification_metrics(m, x, y), recompute_batchnorm=False
    )
    assert plain[0]["loss"] != pytest.approx(records[1]["loss"], rel=1e-3)
