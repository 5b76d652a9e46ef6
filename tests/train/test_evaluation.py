"""Evaluation's cross-entropy and correct counts against torch's own, computed apart."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from dlprobe.data import load_dataset
from dlprobe.models import MLP
from dlprobe.train import Population, evaluate_population
from dlprobe.train.evaluation import _loss_and_hits


def _torch_loss_and_hits(out: torch.Tensor, y: torch.Tensor):
    """Model by model: F.cross_entropy (mean) and the count of argmax == label."""
    loss = torch.stack([F.cross_entropy(o, t) for o, t in zip(out, y, strict=True)])
    hits = torch.stack([(o.argmax(-1) == t).sum() for o, t in zip(out, y, strict=True)])
    return loss, hits.float()


@pytest.mark.parametrize("k,n,c", list(itertools.product((1, 3, 64), (1, 7, 3200), (2, 10))))
def test_cross_entropy_and_hits_equal_torch(k, n, c):
    gen = torch.Generator().manual_seed(k * n * c)
    out = torch.randn(k, n, c, generator=gen) * 4
    out[:, : n // 2] = out[:, : n // 2].round()  # ties for the first maximum to settle
    y = torch.randint(0, c, (n,), generator=gen).expand(k, n)  # shared labels, as evaluated
    loss, hits = _loss_and_hits(F.cross_entropy, out, y)
    expected_loss, expected_hits = _torch_loss_and_hits(out, y)
    assert torch.equal(hits, expected_hits)  # counts: exactly argmax's
    torch.testing.assert_close(loss, expected_loss, rtol=2e-6, atol=1e-7)  # rounding only


def test_constant_outputs_count_the_first_class_as_predicted():
    out = torch.zeros(2, 6, 3)  # every class ties: argmax says class 0
    y = torch.tensor([[0, 1, 2, 0, 1, 2], [0, 0, 0, 0, 0, 0]])
    loss, hits = _loss_and_hits(F.cross_entropy, out, y)
    assert hits.tolist() == [2.0, 6.0]
    torch.testing.assert_close(loss, torch.full((2,), torch.log(torch.tensor(3.0)).item()))


def test_non_finite_outputs_give_non_finite_losses_where_torch_does():
    out = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    out[0, 1, 2] = float("nan")
    out[1, 0] = float("inf")
    out[2, 0, 0] = out[2, 3, 4] = float("-inf")  # finite unless it is the label
    y = torch.tensor([[2, 2, 2, 2], [0, 1, 2, 3], [4, 0, 1, 4]])
    loss, hits = _loss_and_hits(F.cross_entropy, out, y)
    expected_loss, expected_hits = _torch_loss_and_hits(out, y)
    assert torch.equal(hits, expected_hits)  # NaN wins argmax, and max
    assert torch.equal(torch.isfinite(loss), torch.isfinite(expected_loss))
    assert torch.isfinite(loss).tolist() == [False, False, False]


def test_labels_out_of_range_fall_back_to_torch():
    out = torch.randn(2, 3, 4)
    with pytest.raises(IndexError, match="out of bounds"):  # torch's own error
        _loss_and_hits(F.cross_entropy, out, torch.tensor([[0, 1, 4], [0, 1, 2]]))
    ignored = torch.tensor([[0, -100, 3], [1, 2, 3]])  # torch's ignore_index: as before
    loss, _ = _loss_and_hits(F.cross_entropy, out, ignored)
    expected = F.cross_entropy(out.flatten(0, 1), ignored.flatten(), reduction="none")
    torch.testing.assert_close(loss, expected.view(2, 3).mean(1))


def test_other_losses_and_float_targets_take_torch_road():
    gen = torch.Generator().manual_seed(2)
    out, target = torch.randn(3, 5, 2, generator=gen), torch.randn(3, 5, 2, generator=gen)
    loss, hits = _loss_and_hits(F.mse_loss, out, target)
    assert hits is None
    assert torch.equal(loss, (out - target).square().mean((1, 2)))

    def margin(o, t):  # a user's loss on class labels: argmax counts still apply
        return F.nll_loss(o.log_softmax(-1), t) + 0.1 * o.square().mean()

    labels = torch.randint(0, 2, (3, 5), generator=gen)
    loss, hits = _loss_and_hits(margin, out, labels)
    torch.testing.assert_close(
        loss, torch.stack([margin(o, t) for o, t in zip(out, labels, strict=True)])
    )
    assert torch.equal(hits, _torch_loss_and_hits(out, labels)[1])


def test_evaluate_population_matches_a_plain_loop_over_the_models():
    data = load_dataset("mnist1d").subset_train(300, seed=0)
    pop = Population(lambda: MLP([40, 16, 10]), range(4))
    loss, accuracy = evaluate_population(pop, data.x_train, data.y_train, F.cross_entropy, 128)
    for k in range(4):
        with torch.no_grad():
            logits = pop.model(k)(data.x_train)
        torch.testing.assert_close(loss[k], F.cross_entropy(logits, data.y_train))
        assert accuracy[k] == (logits.argmax(-1) == data.y_train).float().mean()
