"""K models of one architecture trained in lockstep.

Parameters of the K models are stacked along a leading axis and the forward pass is one
``vmap`` over models (``torch.func.functional_call``). A plain ``nn.Sequential`` of
``Flatten``, ``Linear`` and element-wise activations (every ``dlprobe`` MLP without
BatchNorm or maxout) takes a shorter road to the same numbers: one batched matrix product
per layer, which skips vmap's per-call overhead (about twice as fast for small models). The training objective is the SUM
of the K per-model losses, so each stacked slice receives exactly its own model's
gradient, and element-wise optimizers over the stacked tensors are K independent
optimizers. The stacked parameters lie in one flat buffer (``dlprobe.train.flat``), so an
element-wise optimizer kernel can step them in one call; each is still its own leaf
tensor. Models with BatchNorm running statistics cannot be vmapped; they are kept as K
separate modules behind the same interface.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dlprobe import DlprobeError
from dlprobe.models.activations import Cos
from dlprobe.train.flat import move_to_flat

# Modules that act element-wise and hold no parameters: applying one to a (K, B, H)
# tensor is applying it to each model's (B, H) slice.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Identity, Cos)
# In-place twins of element-wise modules: the same kernel writing into its input.
IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}


def _sequential_plan(model: nn.Module) -> list[tuple[str, str, nn.Module]] | None:
    """The layers of a plain Sequential of Flatten/Linear/element-wise modules, else None."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None
    plan = []
    for name, m in model.named_children():
        if type(m) is nn.Linear:
            plan.append(("linear", name, m))
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            plan.append(("flatten", name, m))
        elif type(m) in _ELEMENTWISE:
            plan.append(("elementwise", name, m))
        else:
            return None
    return plan


def _needs_loop(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in model.modules()
    )


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """``torch.manual_seed(seed)`` for the CPU generator and ``device``'s, undone on exit.

    Seeds only the generators it restores: ``torch.manual_seed`` would also reseed every
    other CUDA device (lazily, if CUDA is not initialized yet) and leave them changed.
    """
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


class Population:
    """K models built by ``factory`` under ``torch.manual_seed(seed)`` for each seed.

    Model k is the model ``torch.manual_seed(seeds[k]); factory()`` would build; the
    caller's random state (CPU, and the population's CUDA device) is left as it was.
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise DlprobeError("a population needs at least one seed")
        device = torch.device(device)
        models = []
        for seed in seeds:
            with seeded(seed, device):
                model = factory()
            tensors = itertools.chain(model.parameters(), model.buffers())
            if any(t.device != device for t in tensors):  # Module.to costs more than a check
                model = model.to(device)
            models.append(model)
        self._init_from_models(models, seeds)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module], seeds: Sequence[int] | None = None):
        """A population holding copies of existing models of one architecture."""
        pop = cls.__new__(cls)
        seeds = list(range(len(models))) if seeds is None else [int(s) for s in seeds]
        pop._init_from_models([copy.deepcopy(m) for m in models], seeds)
        return pop

    def _init_from_models(self, models: list[nn.Module], seeds: list[int]) -> None:
        shapes = [tuple((n, p.shape) for n, p in m.named_parameters()) for m in models]
        if any(s != shapes[0] for s in shapes):
            raise DlprobeError("all models of a population must have the same architecture")
        self.seeds = seeds
        self.batched = not _needs_loop(models[0])
        self.template = copy.deepcopy(models[0])  # rebuilds standalone models
        if self.batched:
            params, buffers = stack_module_state(models)  # new tensors: none shares memory
            self.params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            if len({(p.dtype, p.device) for p in self.params.values()}) == 1:
                move_to_flat(list(self.params.values()))  # one kernel call steps them all
            self.buffers = {n: b.detach() for n, b in buffers.items()}
            self.base = copy.deepcopy(models[0]).to("meta")
            self._plan = _sequential_plan(self.base)
        else:
            self.models = models

    @property
    def size(self) -> int:
        return len(self.seeds)

    @property
    def device(self) -> torch.device:
        return self.parameters()[0].device

    def parameters(self) -> list[torch.Tensor]:
        if self.batched:
            return list(self.params.values())
        return [p for m in self.models for p in m.parameters()]

    def per_model_parameters(self) -> list[list[torch.Tensor]]:
        """For each model, views of its parameter tensors (slices of the stacked ones)."""
        if self.batched:
            return [[p[k] for p in self.params.values()] for k in range(self.size)]
        return [list(m.parameters()) for m in self.models]

    def train(self, mode: bool = True) -> None:
        if self.batched and self._plan is not None:
            # Linear, Flatten and element-wise layers act alike in both modes: only the
            # flag changes (an evaluation sets it twice; nn.Module.train walks every layer)
            self.base.training = mode
            return
        for m in [self.base] if self.batched else self.models:
            m.train(mode)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Outputs (K, B, out) for inputs (K, B, ...) or, with ``shared``, (B, ...)."""
        if self.batched and self._plan is not None:
            return self._sequential_forward(x, shared)
        if self.batched:

            def f(params, buffers, xb):
                return functional_call(self.base, (params, buffers), (xb,))

            in_x = None if shared else 0
            return vmap(f, in_dims=(0, 0, in_x), randomness="different")(
                self.params, self.buffers, x
            )
        return torch.stack([m(x if shared else x[k]) for k, m in enumerate(self.models)])

    def _sequential_forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """The vmapped forward of a plain Sequential, written as batched matrix products.

        Without autograd (an evaluation), the bias and the activations ReLU, tanh and
        sigmoid act in place on the product's output: the same kernels, so the same
        numbers, with a third of the allocations (each a page-faulted mmap when large)."""
        per_model = not shared  # whether x already carries the model axis
        in_place = not torch.is_grad_enabled()
        owned = False  # whether x is this forward's own tensor (never the caller's input)
        for kind, name, module in self._plan:
            if kind == "flatten":
                x = x.flatten(2 if per_model else 1)
            elif kind == "linear":
                if not per_model:
                    x, per_model = x.unsqueeze(0), True  # broadcasts against the K weights
                w, b = self.params[f"{name}.weight"], self.params.get(f"{name}.bias")
                ones = [1] * (x.dim() - 3)  # x is (K or 1, B, ..., in): Linear acts on in
                x = torch.matmul(x, w.transpose(1, 2).reshape(w.shape[0], *ones, *w.shape[2:0:-1]))
                owned = in_place
                if b is not None:
                    b = b.reshape(b.shape[0], 1, *ones, b.shape[1])
                    x = x.add_(b) if owned else x + b
            elif owned and type(module) in IN_PLACE:
                x = IN_PLACE[type(module)](x)
            else:  # owned stays: a module may return its input (Identity) or a view of it
                x = module(x)
        if not per_model:  # no Linear at all: every model computes the same function
            x = x.unsqueeze(0).expand(self.size, *x.shape)
        return x

    @torch.no_grad()
    def flat_params(self) -> torch.Tensor:
        """(K, P) all trainable parameters of every model, in ``named_parameters`` order."""
        return torch.stack(
            [torch.cat([p.reshape(-1) for p in ps]) for ps in self.per_model_parameters()]
        )

    @torch.no_grad()
    def load_flat_params(self, flat: torch.Tensor) -> None:
        """Set every model's parameters from ``flat`` (K, P), the inverse of ``flat_params``."""
        per_model = self.per_model_parameters()
        sizes = [p.numel() for p in per_model[0]]
        if tuple(flat.shape) != (self.size, sum(sizes)):
            raise DlprobeError(
                f"flat parameters must be ({self.size}, {sum(sizes)}), got {tuple(flat.shape)}"
            )
        for ps, row in zip(per_model, flat, strict=True):
            for p, part in zip(ps, torch.split(row, sizes), strict=True):
                p.copy_(part.reshape(p.shape))

    def per_model_grads(self) -> list[list[torch.Tensor]]:
        """For each model, views of the ``.grad`` of its parameters (missing ones skipped)."""
        if self.batched:
            grads = [p.grad for p in self.params.values() if p.grad is not None]
            return [[g[k] for g in grads] for k in range(self.size)]
        return [[p.grad for p in m.parameters() if p.grad is not None] for m in self.models]

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """(K,) 2-norm of each model's current ``.grad`` over all its parameters."""
        if self.batched:
            sq = torch.zeros(self.size, device=self.device)
            for p in self.params.values():
                if p.grad is not None:
                    sq += (p.grad.reshape(self.size, -1) ** 2).sum(1)
            return sq.sqrt()
        zero = torch.zeros((), device=self.device)
        return torch.stack(
            [sum(((g**2).sum() for g in gs), zero) for gs in self.per_model_grads()]
        ).sqrt()

    def model(self, k: int) -> nn.Module:
        """A standalone copy of model k (a normal nn.Module, safe to modify)."""
        if not 0 <= k < self.size:
            raise DlprobeError(f"model index must be in [0, {self.size}), got {k}")
        if not self.batched:
            return copy.deepcopy(self.models[k])
        m = copy.deepcopy(self.template)
        state = {n: p[k].detach().clone() for n, p in self.params.items()}
        state.update({n: b[k].clone() for n, b in self.buffers.items()})
        m.load_state_dict(state)
        return m

    def models_list(self) -> list[nn.Module]:
        return [self.model(k) for k in range(self.size)]

    def state(self) -> dict:
        if self.batched:
            return {
                "params": {n: p.detach().clone() for n, p in self.params.items()},
                "buffers": {n: b.clone() for n, b in self.buffers.items()},
            }
        return {"models": [copy.deepcopy(m.state_dict()) for m in self.models]}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        if self.batched:
            for n, p in self.params.items():
                p.copy_(state["params"][n])
            for n, b in self.buffers.items():
                b.copy_(state["buffers"][n])
        else:
            for m, s in zip(self.models, state["models"], strict=True):
                m.load_state_dict(s)
