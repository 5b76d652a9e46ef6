"""Flat buffers: a population's parameters, the written-out road's gradients and fused
Adam's state each in one buffer, stepped by one kernel call, to torch's numbers bit for bit."""

import copy

import pytest
import torch

from dlprobe.data import load_dataset
from dlprobe.models import MLP
from dlprobe.train import Population, TrainConfig, train_population
from dlprobe.train.backprop import SequentialBackprop
from dlprobe.train.checkpoint import Checkpoint
from dlprobe.train.flat import ALIGN, flat_buffer, move_to_flat
from dlprobe.train.optim import FusedAdamStep


def test_move_to_flat_keeps_values_and_identity_and_aligns_every_slice():
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(s, generator=gen) for s in [(3, 5), (7,), (2, 2, 4)]]
    tensors[0].requires_grad_(True)
    before = [t.clone() for t in tensors]
    ids = [id(t) for t in tensors]
    buffer = move_to_flat(tensors)
    assert [id(t) for t in tensors] == ids and tensors[0].is_leaf and tensors[0].requires_grad
    assert all(torch.equal(t, b) for t, b in zip(tensors, before, strict=True))
    assert [t.storage_offset() for t in tensors] == [0, 16, 32]  # 15 and 7 padded to 16
    assert buffer.shape == (48,) and torch.equal(flat_buffer(tensors), buffer)
    assert not buffer[15] and not buffer[23:32].any()  # padding holds zeros
    with torch.no_grad():
        tensors[1][0] = 9.0  # writes reach the buffer
    assert buffer[16] == 9.0


def test_flat_buffer_is_none_unless_the_layout_is_intact():
    tensors = [torch.zeros(16), torch.zeros(4, 8)]
    assert flat_buffer(tensors) is None  # separate allocations
    move_to_flat(tensors)
    assert flat_buffer(tensors[::-1]) is None  # another order
    assert flat_buffer(tensors[:1]) is None  # part of the buffer
    assert flat_buffer([tensors[0], tensors[1].t()]) is None  # not contiguous
    assert flat_buffer([]) is None


def test_population_parameters_and_written_out_gradients_lie_in_flat_buffers():
    pop = Population(lambda: MLP([6, 5, 3]), range(4))
    params = pop.parameters()
    assert flat_buffer(params) is not None
    assert all(p.is_leaf and p.requires_grad for p in params)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 8, 6, generator=gen), torch.randint(0, 3, (4, 8), generator=gen)
    backprop = SequentialBackprop.for_training(pop, torch.nn.functional.cross_entropy, x[0], y[0])
    backprop.losses(x, y)
    backprop.backward(torch.ones(4))
    assert flat_buffer([p.grad for p in params]) is not None
    state = pop.state()  # a population's state and copies are plain tensors
    pop.load_state(state)
    assert flat_buffer(pop.parameters()) is not None


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("shapes", [[(4, 8, 6), (4, 8), (4, 2, 8)], [(3, 5, 6), (3, 5)]])
def test_fused_adam_over_flat_buffers_is_torchs_step_bitwise(name, shapes):
    """One kernel call over the buffers where every length is a multiple of ALIGN, else
    tensor by tensor; either way torch's parameters and state bit for bit."""
    gen = torch.Generator().manual_seed(0)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    ours = [torch.randn(s, generator=gen) for s in shapes]
    theirs = [p.clone() for p in ours]
    move_to_flat(ours)
    grads = [torch.empty_like(p) for p in ours]
    move_to_flat(grads)
    lean = FusedAdamStep(cls(ours, lr=1e-2, weight_decay=0.05, fused=True))
    torch_opt = cls(theirs, lr=1e-2, weight_decay=0.05, fused=True)
    steps = 40
    for step in range(steps):
        for p, q, g in zip(ours, theirs, grads, strict=True):
            g.copy_(torch.randn(p.shape, generator=gen) * 10 ** (step % 3 - 2))
            p.grad, q.grad = g, g.clone()
        lean.param_groups[0]["lr"] = torch_opt.param_groups[0]["lr"] = 1e-2 / (1 + step)
        lean.step()
        torch_opt.step()
        if step == 20:  # a checkpoint round trip: the state goes back into flat buffers
            lean.load_state_dict(copy.deepcopy(lean.state_dict()))
        if step == 30:  # the same tensors loaded back are laid out anew, and still stepped
            lean.load_state_dict(lean.state_dict())
    flat = all(p.numel() % ALIGN == 0 for p in ours)
    assert lean.flat_steps == (steps if flat else 0)
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
    saved, expected = lean.state_dict(), torch_opt.state_dict()
    for i in range(len(shapes)):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved["state"][i][key], expected["state"][i][key])


def test_the_flat_step_repeats_only_for_the_same_gradient_tensors():
    """New gradient tensors (outside the flat buffer) are stepped tensor by tensor, and
    the flat buffer's are stepped in one call again when they come back; each step is
    torch's, bit for bit."""
    gen = torch.Generator().manual_seed(1)
    ours = [torch.randn(2, 8, generator=gen), torch.randn(16, generator=gen)]
    theirs = [p.clone() for p in ours]
    move_to_flat(ours)
    flat_grads = [torch.empty_like(p) for p in ours]
    move_to_flat(flat_grads)
    lean = FusedAdamStep(torch.optim.Adam(ours, lr=1e-2, fused=True))
    torch_opt = torch.optim.Adam(theirs, lr=1e-2, fused=True)
    flat_steps = []
    for step in range(6):
        grads = [torch.empty_like(p) for p in ours] if step in (2, 3) else flat_grads
        for p, q, g in zip(ours, theirs, grads, strict=True):
            g.copy_(torch.randn(p.shape, generator=gen))
            p.grad, q.grad = g, g.clone()
        lean.step()
        torch_opt.step()
        flat_steps.append(lean.flat_steps)
    assert flat_steps == [1, 2, 2, 2, 3, 4]
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
    saved, expected_state = lean.state_dict()["state"], torch_opt.state_dict()["state"]
    for mine, expected in zip(saved.values(), expected_state.values(), strict=True):
        assert all(torch.equal(mine[key], expected[key]) for key in expected)


def test_a_parameter_stepping_alone_turns_the_flat_path_off():
    params = [torch.zeros(16), torch.zeros(16)]
    move_to_flat(params)
    grads = [torch.ones(16), torch.ones(16)]
    move_to_flat(grads)
    lean = FusedAdamStep(torch.optim.Adam(params, lr=0.1, fused=True))
    params[0].grad = grads[0]  # the second has no gradient: only the first steps
    lean.step()
    params[1].grad = grads[1]
    lean.step()
    assert lean.uneven and lean.flat_steps == 0
    state = lean.optimizer.state
    assert [float(state[p]["step"]) for p in params] == [2.0, 1.0]


def test_parameters_stepping_together_share_one_step_count_and_save_one_each():
    """One count tensor, added to once a step; the state dict has a copy per parameter
    (torch's Adam, loading it, adds to each); loading shares it again; a parameter that
    steps alone gives every parameter its own count."""
    params = [torch.zeros(3), torch.zeros(5), torch.zeros(2)]  # lengths off ALIGN: no flat path
    lean = FusedAdamStep(torch.optim.Adam(params, lr=0.1, fused=True))
    for p in params:
        p.grad = torch.ones_like(p)
    calls = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "_foreach_add_", lambda *a: calls.append(a))  # not used any more
        lean.step()
        lean.step()
    state = lean.optimizer.state
    counts = [state[p]["step"] for p in params]
    assert not calls and all(c is counts[0] for c in counts) and float(counts[0]) == 2.0
    saved = lean.state_dict()
    assert len({id(s["step"]) for s in saved["state"].values()}) == 3
    assert all(float(s["step"]) == 2.0 for s in saved["state"].values())
    torch_opt = torch.optim.Adam([p.clone() for p in params], lr=0.1, fused=True)
    torch_opt.load_state_dict(copy.deepcopy(saved))
    for q in torch_opt.param_groups[0]["params"]:
        q.grad = torch.ones_like(q)
    torch_opt.step()
    assert all(float(s["step"]) == 3.0 for s in torch_opt.state.values())
    lean.load_state_dict(saved)
    state = lean.optimizer.state  # loading makes a new one
    counts = [state[p]["step"] for p in params]
    assert all(c is counts[0] for c in counts)
    params[1].grad = None  # the others step alone from now on
    lean.step()
    assert [float(state[p]["step"]) for p in params] == [3.0, 2.0, 3.0]


def test_a_group_stepping_in_part_counts_each_parameter_after_another_group_did():
    """Two groups: once a parameter of the first steps alone, a parameter of the second
    that has no gradient must keep its count too (its group's count was shared)."""
    a, b = [torch.zeros(3), torch.zeros(3)], [torch.zeros(5), torch.zeros(5)]
    lean = FusedAdamStep(torch.optim.Adam([{"params": a}, {"params": b}], lr=0.1, fused=True))
    torch_opt = torch.optim.Adam(
        [{"params": [p.clone() for p in a]}, {"params": [p.clone() for p in b]}],
        lr=0.1,
        fused=True,
    )
    theirs = [p for g in torch_opt.param_groups for p in g["params"]]
    ours = [*a, *b]
    for with_grad in ([0, 1, 2, 3], [0, 2, 3], [0, 2]):  # a[1] alone, then b[1] alone
        for p, q, i in zip(ours, theirs, range(4), strict=True):
            p.grad = torch.ones_like(p) if i in with_grad else None
            q.grad = torch.ones_like(q) if i in with_grad else None
        lean.step()
        torch_opt.step()
    state = lean.optimizer.state
    assert [float(state[p]["step"]) for p in ours] == [3.0, 1.0, 3.0, 2.0]
    assert [float(torch_opt.state[q]["step"]) for q in theirs] == [3.0, 1.0, 3.0, 2.0]
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))


def test_training_on_the_flat_path_equals_the_reference_road_and_resumes(tmp_path):
    """A population whose tensors all have lengths divisible by 16 (4 models of
    40-16-16-12) is stepped by one kernel call a step; it trains to the reference road's
    numbers bit for bit, straight through and across a checkpoint."""
    data = load_dataset("mnist1d").subset_train(256, seed=0)
    cfg = TrainConfig(optimizer="adam", lr=3e-3, epochs=3, batch_size=50, record_steps=True)

    def train(reference, checkpoint=None, progress=None):
        pop = Population(lambda: MLP([40, 16, 16, 12]), [0, 1, 2, 3])
        hist = train_population(
            pop, data, cfg, checkpoint=checkpoint, progress=progress, reference=reference
        )
        return pop, hist

    flat_calls = []
    real = FusedAdamStep._flat

    def counted(self, *args):
        flat = real(self, *args)
        flat_calls.append(flat is not None)
        return flat

    with pytest.MonkeyPatch.context() as m:
        m.setattr(FusedAdamStep, "_flat", counted)
        fast, hist = train(reference=False)
    assert flat_calls and all(flat_calls)
    reference, expected = train(reference=True)
    assert torch.equal(fast.flat_params(), reference.flat_params())
    assert hist.step_loss == expected.step_loss and hist.train_loss == expected.train_loss

    ckpt = Checkpoint(tmp_path / "c.pt", every_epochs=1)

    def interrupt(done, total, metrics):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(False, ckpt, interrupt)
    assert ckpt.load()["epoch"] == 1
    resumed, resumed_hist = train(False, ckpt)
    assert torch.equal(resumed.flat_params(), reference.flat_params())
    assert resumed_hist.train_loss == expected.train_loss
