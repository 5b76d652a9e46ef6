"""K optimizers in one, each model with its own learning rate, weight decay and momentum.

``torch.optim`` takes one learning rate per parameter group, so over stacked tensors it
gives every model the same one. ``PerModelOptimizer`` applies torch.optim's update rules
(with ``make_optimizer``'s settings) with hyperparameters that are (K,) tensors, viewed as
(K, 1, ..., 1) against each stacked parameter: a learning-rate or weight-decay sweep is
one population stepped by a few tensor operations, not K trainings. Model k is updated
exactly as ``make_optimizer`` with its own values would update it alone (to float
rounding; tests compare every optimizer with separate trainings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dlprobe import DlprobeError
from dlprobe.train.flat import ALIGN, flat_buffer, move_to_flat

# torch.optim's defaults, as make_optimizer uses them
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_RMSPROP_ALPHA, _RMSPROP_EPS = 0.99, 1e-8
_ADAGRAD_EPS = 1e-10
_NADAM_MOMENTUM_DECAY = 4e-3

_STATE = {  # per-parameter state tensors of each optimizer
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
    "rmsprop": ("square_avg",),
    "adagrad": ("sum",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "nadam": ("exp_avg", "exp_avg_sq"),
    "adamax": ("exp_avg", "exp_inf"),
}


class PerModelOptimizer:
    """One update rule of ``dlprobe.train.OPTIMIZERS`` for K models at once.

    Args:
        name: the optimizer (``TrainConfig.optimizer``).
        params: the parameter tensors to update.
        models: for each tensor, None when it is stacked (leading axis: the K models), or
            the index k of the model it belongs to alone (a population trained one by one).
        lr, weight_decay, momentum: (K,) values, one per model; momentum is used by
            ``momentum`` and ``nesterov`` only.

    ``lr_factor`` multiplies every model's learning rate (the schedule); set it before a
    ``step``. The state (``state_dict``) holds only tensors and numbers.
    """

    def __init__(
        self,
        name: str,
        params: Sequence[torch.Tensor],
        models: Sequence[int | None],
        lr: Sequence[float],
        weight_decay: Sequence[float],
        momentum: Sequence[float],
    ):
        if name not in _STATE:
            raise DlprobeError(f"unknown optimizer {name!r}; valid names: {', '.join(_STATE)}")
        self.name = name
        self.params, self.models = list(params), list(models)
        device = self.params[0].device
        self.lr = torch.tensor(lr, dtype=torch.float32, device=device)  # (K,)
        self.weight_decay = torch.tensor(weight_decay, dtype=torch.float32, device=device)
        self.momentum = torch.tensor(momentum, dtype=torch.float32, device=device)
        self.decays = bool((self.weight_decay != 0).any())
        self.lr_factor = 1.0
        self.steps = 0
        self.state = [{n: torch.zeros_like(p) for n in _STATE[name]} for p in self.params]
        self.mu_product = 1.0  # nadam's product of momentum coefficients

    def _view(self, values: torch.Tensor, i: int) -> torch.Tensor:
        """(K,) values as they broadcast against ``params[i]``: (K, 1, ...) or model k's."""
        k = self.models[i]
        if k is not None:
            return values[k]
        return values.view(-1, *[1] * (self.params[i].dim() - 1))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        lr = self.lr * self.lr_factor  # (K,)
        update = getattr(self, f"_{self.name}")
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if self.decays and self.name != "adamw":  # L2 penalty, added to the gradient
                grad = grad + self._view(self.weight_decay, i) * p
            update(i, p, grad, self._view(lr, i), self.state[i])

    def _sgd(self, i, p, grad, lr, state):
        p.sub_(lr * grad)

    def _momentum(self, i, p, grad, lr, state, nesterov=False):
        buf, mu = state["momentum_buffer"], self._view(self.momentum, i)
        if self.steps == 1:
            buf.copy_(grad)
        else:
            buf.mul_(mu).add_(grad)
        p.sub_(lr * (grad + mu * buf if nesterov else buf))

    def _nesterov(self, i, p, grad, lr, state):
        self._momentum(i, p, grad, lr, state, nesterov=True)

    def _rmsprop(self, i, p, grad, lr, state):
        square_avg = state["square_avg"]
        square_avg.mul_(_RMSPROP_ALPHA).addcmul_(grad, grad, value=1 - _RMSPROP_ALPHA)
        p.sub_(lr * grad / square_avg.sqrt().add_(_RMSPROP_EPS))

    def _adagrad(self, i, p, grad, lr, state):
        state["sum"].addcmul_(grad, grad, value=1)
        p.sub_(lr * grad / state["sum"].sqrt().add_(_ADAGRAD_EPS))

    def _adam(self, i, p, grad, lr, state):
        beta1, beta2 = _BETAS
        if self.name == "adamw" and self.decays:  # decoupled weight decay
            p.mul_(1 - lr * self._view(self.weight_decay, i))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(_ADAM_EPS)
        p.sub_(lr / bias_correction1 * exp_avg / denom)

    _adamw = _adam

    def _nadam(self, i, p, grad, lr, state):
        beta1, beta2 = _BETAS
        t, decay = self.steps, _NADAM_MOMENTUM_DECAY
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
        if i == 0:  # one product for all tensors, advanced once a step
            self.mu_product *= mu
        mu_product = self.mu_product
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.div(1 - beta2**t).sqrt().add_(_ADAM_EPS)
        p.sub_(lr * (1.0 - mu) / (1.0 - mu_product) * grad / denom)
        p.sub_(lr * mu_next / (1.0 - mu_product * mu_next) * exp_avg / denom)

    def _adamax(self, i, p, grad, lr, state):
        beta1, beta2 = _BETAS
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        exp_avg.lerp_(grad, 1 - beta1)
        torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(_ADAM_EPS), out=exp_inf)
        p.sub_(lr / (1 - beta1**self.steps) * exp_avg / exp_inf)

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "steps": self.steps,
            "mu_product": self.mu_product,
            "state": [{n: t.clone() for n, t in s.items()} for s in self.state],
        }

    def load_state_dict(self, saved: dict) -> None:
        """Take a ``state_dict()`` (its tensors may be on the CPU)."""
        if saved.get("name") != self.name or len(saved["state"]) != len(self.state):
            raise DlprobeError("the saved optimizer state is not this optimizer's")
        self.steps, self.mu_product = saved["steps"], saved["mu_product"]
        for mine, theirs in zip(self.state, saved["state"], strict=True):
            for n, t in mine.items():
                t.copy_(theirs[n])


class FusedAdamStep:
    """A ``torch.optim.Adam`` or ``AdamW`` built with ``fused=True``, stepped with less overhead.

    ``step`` calls the kernel that torch's own ``step`` calls (``torch._fused_adam_`` or
    ``_fused_adamw_``) with the same settings, so the parameters and state are bitwise
    torch's; it skips the per-call work around the kernel (hooks, profiling records,
    regrouping the tensors by device), about 0.4 ms of a 3-model tiny step on a 2-core CPU.
    Where the parameters and their gradients each lie in one flat buffer
    (``dlprobe.train.flat``: a population's stacked parameters, the written-out backward
    pass's gradients), the state is laid out the same way and one kernel call steps every
    tensor, provided every tensor's length is a multiple of ``ALIGN`` (16): the CPU kernel
    runs each thread's range in vectors and its last ``length % 8`` (or 16) elements in a
    scalar loop, which can round differently; with such lengths no element falls in a
    scalar tail, over the flat buffer or tensor by tensor, so the bits are torch's (tests
    check). While every parameter of a group steps together, their step counts are one
    tensor, incremented once a step (torch's ``_foreach_add_`` on a CPU adds to each
    scalar in its own call); ``state_dict`` hands out a copy per parameter, as torch's has.
    The state lives in the wrapped optimizer: ``param_groups`` are torch's.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        group = optimizer.defaults
        if not isinstance(optimizer, torch.optim.Adam) or not group.get("fused"):
            raise DlprobeError("FusedAdamStep wraps a torch.optim.Adam or AdamW with fused=True")
        if group["amsgrad"] or group["maximize"] or group["capturable"]:
            raise DlprobeError("FusedAdamStep covers Adam without amsgrad, maximize, capturable")
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.kernel = (
            torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
        )
        self.flat_steps = 0  # steps taken with one kernel call over flat buffers (for tests)
        self.uneven = False  # whether some parameter has stepped without the others
        self._flat_cache: tuple[list, list | None] = ([], None)  # tensors, their buffers
        # per group, the last flat step's (params, grads, flat tensors, step count): the
        # next step with the same parameters and gradient tensors repeats it as it is
        self._repeat: dict[int, tuple] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """torch's state dict, each parameter's step count a tensor of its own."""
        saved = self.optimizer.state_dict()  # its per-parameter dicts are the live state
        saved["state"] = {
            i: {**s, "step": s["step"].clone()} if "step" in s else dict(s)
            for i, s in saved["state"].items()
        }
        return saved

    def load_state_dict(self, saved: dict) -> None:
        self.optimizer.load_state_dict(saved)
        self._flat_cache, self._repeat = ([], None), {}
        state = self.optimizer.state
        for group in self.param_groups:
            params = [p for p in group["params"] if state[p]]
            steps = {float(state[p]["step"]) for p in params}
            some = 0 < len(params) < len(group["params"])
            self.uneven = self.uneven or len(steps) > 1 or some
            if params and not self.uneven:
                for p in params[1:]:  # one count for all again (they are equal)
                    state[p]["step"] = state[params[0]]["step"]
                if flat_buffer(params) is not None:
                    for kind in ("exp_avg", "exp_avg_sq"):
                        move_to_flat([state[p][kind] for p in params])

    @torch.no_grad()
    def step(self) -> None:
        state = self.optimizer.state
        for i, group in enumerate(self.param_groups):
            if self._repeated(i, group):
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if len(params) != len(group["params"]):
                self.uneven = True  # their step counts differ from now on: one each
                self._repeat = {}
                self._own_counts(group)
            new = [p for p in params if not state[p]]
            if new:  # torch.optim.Adam's lazy initialisation for fused=True
                self._init_state(new, shared_step=not self.uneven)
            steps = [state[p]["step"] for p in params]
            counts = list({id(t): t for t in steps}.values())  # each tensor once
            for count in counts:
                count.add_(1)
            tensors = (
                params,
                [p.grad for p in params],
                [state[p]["exp_avg"] for p in params],
                [state[p]["exp_avg_sq"] for p in params],
            )
            flat = self._flat(group, tensors, steps)
            if flat is not None:
                self.flat_steps += 1
                tensors, steps = flat
                grads = [p.grad for p in group["params"]]
                self._repeat[i] = (group, list(group["params"]), grads, tensors, steps, counts)
            self._kernel(group, tensors, steps)

    def _repeated(self, i: int, group: dict) -> bool:
        """Step ``group`` as its last flat step did, if its parameters and their gradient
        tensors are the same ones (the state then is too: only making or loading state
        changes it, and both forget the last step); False if they are not."""
        last = self._repeat.get(i)
        if last is None or last[0] is not group or len(last[1]) != len(group["params"]):
            return False
        _, params, grads, tensors, steps, counts = last
        if any(
            p is not q or p.grad is not g
            for p, q, g in zip(group["params"], params, grads, strict=True)
        ):
            return False
        for count in counts:  # one, shared by all, unless loaded state gave each its own
            count.add_(1)
        self.flat_steps += 1
        self._kernel(group, tensors, steps)
        return True

    def _kernel(self, group: dict, tensors, steps: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        self.kernel(
            *tensors,
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=float(beta1),
            beta2=float(beta2),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def _own_counts(self, group: dict) -> None:
        """Give every parameter of ``group`` a step count of its own (a copy where it
        shares one), as the parameters may now step apart."""
        seen = set()
        for p in group["params"]:
            count = self.optimizer.state[p].get("step")
            if count is None:
                continue
            if id(count) in seen:
                self.optimizer.state[p]["step"] = count.clone()
            seen.add(id(count))

    def _init_state(self, params: list[torch.Tensor], shared_step: bool) -> None:
        """Zero state for ``params``, as torch.optim.Adam makes it (with ``shared_step``,
        one step count for all); one flat buffer per kind when the parameters lie in one
        (then all are made at once)."""
        state = self.optimizer.state
        self._flat_cache, self._repeat = ([], None), {}
        shared_step = shared_step and len({p.device for p in params}) == 1
        count = torch.zeros((), dtype=torch.float32, device=params[0].device)
        for p in params:
            state[p]["step"] = count if shared_step else torch.zeros_like(count, device=p.device)
            state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if flat_buffer(params) is not None:
            for kind in ("exp_avg", "exp_avg_sq"):
                move_to_flat([state[p][kind] for p in params])

    def _flat(self, group: dict, tensors: tuple, steps: list[torch.Tensor]):
        """([params], [grads], [exp_avg], [exp_avg_sq]) as one flat buffer each and one step
        tensor, when every parameter of ``group`` steps and all four lie in flat buffers;
        else None (the kernel then steps tensor by tensor)."""
        if self.uneven:
            return None
        # the layout is checked once for the same tensors (the list holds them, so no new
        # tensor can take an old one's place); loading or making state checks anew
        same = [t for ts in tensors for t in ts]
        cached, flat = self._flat_cache
        if len(same) != len(cached) or any(a is not b for a, b in zip(same, cached, strict=False)):
            buffers = [flat_buffer(ts) for ts in tensors]
            flat = [[b] for b in buffers]
            if any(b is None for b in buffers) or any(p.numel() % ALIGN for p in tensors[0]):
                flat = None  # see the class docstring
            self._flat_cache = same, flat
        return None if flat is None else (flat, steps[:1])  # every step count is the same
