import pytest
import torch

from dlprobe import DlprobeError
from dlprobe.models import MLP
from dlprobe.train import Population


@pytest.mark.parametrize("batch_norm", [False, True])  # stacked tensors and separate modules
def test_load_flat_params_is_the_inverse_of_flat_params(batch_norm):
    def factory():
        return MLP([3, 5, 4, 2], "tanh", batch_norm=batch_norm)

    source, target = Population(factory, [0, 1, 2]), Population(factory, [5, 6, 7])
    flat = source.flat_params()
    assert not torch.equal(target.flat_params(), flat)
    target.load_flat_params(flat)
    assert torch.equal(target.flat_params(), flat)
    x = torch.randn(6, 3)
    target.train(False)
    source.train(False)
    if not batch_norm:  # same parameters, same function (BatchNorm buffers are not parameters)
        torch.testing.assert_close(target.forward(x, shared=True), source.forward(x, shared=True))
    for k in range(3):  # each model got its own row, in named_parameters order
        got = torch.cat([p.reshape(-1) for p in target.model(k).parameters()])
        assert torch.equal(got, flat[k])
    with pytest.raises(DlprobeError, match=r"flat parameters must be \(3, "):
        target.load_flat_params(flat[:2])
