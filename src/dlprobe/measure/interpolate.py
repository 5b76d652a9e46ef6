"""Linear interpolation between two models: theta(alpha) = (1 - alpha) theta_a + alpha theta_b.

Each interpolated model is a fresh copy evaluated as it is: no training in between (a
pitfall of published solutions, which fine-tuned the interpolated weights and so measured
something else). Used for the flatness-interpolation experiment (alpha from -1 to 2).

BatchNorm running statistics are not parameters: the mean and variance of the
interpolated network's activations are not the interpolated means and variances.
By default they are re-estimated at every alpha on training inputs, as after
``torch.optim.swa_utils.update_bn``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dlprobe import DlprobeError
from dlprobe.measure._batches import model_device
from dlprobe.measure._functional import LossFn, check_data, eval_mode


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    alphas: Iterable[float],
    evaluate: Callable[[nn.Module], Mapping[str, float]],
    *,
    batchnorm_data: torch.Tensor | Iterable | None = None,
    recompute_batchnorm: bool = True,
) -> list[dict]:
    """Evaluate the models on the line through two models' parameters.

    Floating parameters are interpolated; integer buffers (e.g. ``num_batches_tracked``)
    are taken from the nearer endpoint. BatchNorm running statistics are re-estimated on
    ``batchnorm_data`` at every alpha (``recompute_batchnorm``): the statistics are
    reset, the BatchNorm layers alone switched to training mode with ``momentum=None``
    (a cumulative average over the batches) and the inputs passed through once. With
    ``recompute_batchnorm=False`` they are interpolated like parameters, and
    ``alpha = 0`` and ``alpha = 1`` reproduce ``model_a`` and ``model_b`` exactly.

    Args:
        model_a, model_b: models of the same architecture (same state-dict names and shapes).
        alphas: interpolation coefficients; values outside [0, 1] extrapolate.
        evaluate: ``evaluate(model) -> {metric: value}``, e.g. train/test loss and accuracy
            (see ``classification_metrics``); it receives a fresh copy per alpha.
        batchnorm_data: training inputs for the statistics: a tensor (n, ...) passed as one
            batch, or an iterable of batches (a list, a ``DataLoader``), each a tensor of
            inputs or a tuple whose first element is the inputs; moved to the model's
            device. Needed when the models have BatchNorm layers with running statistics
            and ``recompute_batchnorm`` is on.
        recompute_batchnorm: re-estimate the BatchNorm statistics (see above).

    Returns:
        One record ``{"alpha": alpha, **metrics}`` per alpha, in order.
    """
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    _check_same_architecture(state_a, state_b)
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise DlprobeError("alphas must contain at least one value")
    recompute = recompute_batchnorm and bool(_running_norms(model_a))
    if recompute:
        batchnorm_data = _check_batchnorm_data(batchnorm_data)
    records = []
    for alpha in alphas:
        model = copy.deepcopy(model_a)
        for p in model.parameters():
            p.grad = None
        model.load_state_dict(_interpolated_state(state_a, state_b, alpha))
        if recompute:
            _recompute_batchnorm_statistics(model, batchnorm_data)
        metrics = evaluate(model)
        if not isinstance(metrics, Mapping):
            raise DlprobeError(
                f"evaluate must return a dict of metrics, got {type(metrics).__name__}"
            )
        if "alpha" in metrics:
            raise DlprobeError("evaluate must not return a metric named 'alpha'")
        records.append({"alpha": alpha, **metrics})
    return records


def _running_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _check_batchnorm_data(data: object) -> torch.Tensor | Iterable:
    if data is None:
        raise DlprobeError(
            "the models have BatchNorm layers, whose running statistics are re-estimated at "
            "every alpha: pass batchnorm_data= (training inputs), or "
            "recompute_batchnorm=False to interpolate the statistics instead"
        )
    if isinstance(data, torch.Tensor):
        if data.ndim < 1 or data.shape[0] == 0:
            raise DlprobeError("batchnorm_data must hold at least one input")
        return data
    if not isinstance(data, Iterable) or iter(data) is data:
        raise DlprobeError(
            "batchnorm_data must be a tensor of inputs or a re-iterable collection of "
            f"batches (a list, a DataLoader), got {type(data).__name__}"
        )
    return data


def _recompute_batchnorm_statistics(model: nn.Module, data: torch.Tensor | Iterable) -> None:
    """Re-estimate the running statistics of ``model``'s BatchNorm layers on ``data`` (in
    place): reset, then one pass in training mode with ``momentum=None`` (a cumulative
    average over batches); every other module stays in eval mode (no dropout), and the
    modes and momenta are restored afterwards. ``data`` as ``batchnorm_data`` of
    :func:`interpolate`.
    """
    norms = _running_norms(model)
    device = model_device(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    batches = [data] if isinstance(data, torch.Tensor) else data
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            seen = 0
            for batch in batches:
                inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                if not isinstance(inputs, torch.Tensor):
                    raise DlprobeError(
                        "each batch of batchnorm_data must be a tensor of inputs or a tuple "
                        f"starting with one, got {type(inputs).__name__}"
                    )
                model(inputs.to(device))
                seen += 1
            if seen == 0:
                raise DlprobeError("batchnorm_data holds no batch")
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes:
            m.train(training)


def _check_same_architecture(state_a: dict, state_b: dict) -> None:
    only_a, only_b = state_a.keys() - state_b.keys(), state_b.keys() - state_a.keys()
    if only_a or only_b:
        raise DlprobeError(
            "models differ in architecture: entries only in model_a: "
            f"{sorted(only_a) or 'none'}; only in model_b: {sorted(only_b) or 'none'}"
        )
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise DlprobeError(
                f"models differ in architecture: {name!r} has shape {tuple(a.shape)} in "
                f"model_a and {tuple(b.shape)} in model_b"
            )


def _interpolated_state(state_a: dict, state_b: dict, alpha: float) -> dict:
    state = {}
    for name, a in state_a.items():
        b = state_b[name].to(a.device)
        if a.is_floating_point():
            # (1 - alpha) a + alpha b rather than a + alpha (b - a): exact at both endpoints.
            state[name] = (1 - alpha) * a + alpha * b.to(a.dtype)
        else:
            state[name] = (a if alpha < 0.5 else b).clone()
    return state


def classification_metrics(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean loss and accuracy of a classifier (eval mode, no grad, in batches).

    Args:
        model: maps inputs (b, ...) to class logits (b, C).
        x, y: inputs (n, ...) and integer labels (n,).
        loss_fn: ``loss_fn(logits, labels) -> mean over the batch`` (default cross-entropy).
        batch_size: examples per forward pass (memory only).

    Returns:
        ``{"loss": mean loss over the n examples, "accuracy": fraction correct}``.
    """
    check_data(model, x, y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DlprobeError(f"batch_size must be a positive int, got {batch_size!r}")
    n = x.shape[0]
    loss_sum, correct = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for start in range(0, n, batch_size):
            logits = model(x[start : start + batch_size])  # (b, C)
            labels = y[start : start + batch_size]  # (b,)
            # Batch means weighted by batch size give the mean over all n examples.
            loss_sum += loss_fn(logits, labels).item() * labels.shape[0]
            correct += (logits.argmax(dim=1) == labels).sum().item()
    return {"loss": loss_sum / n, "accuracy": correct / n}
