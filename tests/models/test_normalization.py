import torch
from torch import nn

from dlprobe.models import MLP, recompute_batch_norm_statistics


def test_recomputed_statistics_are_those_of_the_data_and_eval_mode_uses_them():
    torch.manual_seed(0)
    model = MLP([5, 8, 3], "relu", batch_norm=True)
    x = torch.randn(64, 5) * 3 + 1
    model.train()
    model(torch.randn(16, 5))  # some other running statistics first
    recompute_batch_norm_statistics(model, x)
    assert not model.training
    norm = next(m for m in model if isinstance(m, nn.BatchNorm1d))
    z = model[1](x)  # (64, 8): what the BatchNorm sees
    torch.testing.assert_close(norm.running_mean, z.mean(0))
    torch.testing.assert_close(norm.running_var, z.var(0, unbiased=True))
    # eval mode on x now normalizes as training mode does on the whole batch x (up to the
    # unbiased/biased variance: n/(n-1) in the denominator)
    train_mode = model.train()(x)
    eval_mode = model.eval()(x)
    torch.testing.assert_close(eval_mode, train_mode, rtol=0.05, atol=0.05)


def test_a_model_without_batch_norm_is_only_put_in_eval_mode():
    model = MLP([3, 4, 2], "tanh", dropout=0.5)
    before = [p.clone() for p in model.parameters()]
    out = recompute_batch_norm_statistics(model, torch.randn(8, 3))
    assert out is model and not model.training
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
