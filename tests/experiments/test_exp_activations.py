import copy
import json
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import from_dict
from dlprobe.data import load_dataset
from dlprobe.experiments.activations import EXPERIMENT, Config, _probe, notes
from dlprobe.experiments.kit import probe_examples
from dlprobe.models import MLP
from dlprobe.train import History, Population
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("activations")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("activations")
    cfg = from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, load_results(run), cfg


def _models(cfg: Config, results: dict, act: str, run=None) -> list[torch.nn.Module]:
    """The initial models of ``act`` (rebuilt from their seeds) or, with ``run``, the
    trained ones (from the training stage's saved parameters)."""
    pop = Population(partial(MLP, results["widths"], act, init=cfg.init), results["seeds"])
    if run is not None:
        pop.load_state(load_checkpoint_file(run / "checkpoints" / f"{act}.done.pt")["population"])
    return pop.models_list()


def test_gradient_per_layer_at_init_is_each_models_own_backward(smoke_run):
    """The figure's points: RMS gradient per weight of every linear layer of every model,
    against a plain backward of the mean loss on the same probe examples."""
    _, results, cfg = smoke_run
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    x, y = probe_examples(data, cfg.probe_examples, cfg.seed)
    for act in cfg.activations:
        for seed, model in zip(results["seeds"], _models(cfg, results, act), strict=True):
            F.cross_entropy(model(x), y).backward()
            expected = [m.weight.grad.pow(2).mean().sqrt().item() for m in model.linears]
            rows = [r for r in results["layers"]
                    if (r["activation"], r["seed"], r["epoch"]) == (act, seed, 0)]  # fmt: skip
            assert [r["layer"] for r in rows] == list(range(1, cfg.depth + 2))
            got = [r["grad_rms"] for r in rows]
            assert got == pytest.approx(expected, rel=1e-4), (act, seed)


def test_weight_change_at_the_end_is_measured_from_the_initial_to_the_trained_weights(smoke_run):
    run, results, cfg = smoke_run
    last = cfg.train.epochs
    for act in cfg.activations:
        pairs = zip(_models(cfg, results, act), _models(cfg, results, act, run), strict=True)
        for seed, (start, end) in zip(results["seeds"], pairs, strict=True):
            expected = [((b.weight - a.weight).norm() / a.weight.norm()).item()
                        for a, b in zip(start.linears, end.linears, strict=True)]  # fmt: skip
            got = [r["weight_change"] for r in results["layers"]
                   if (r["activation"], r["seed"], r["epoch"]) == (act, seed, last)]  # fmt: skip
            assert got == pytest.approx(expected, rel=1e-4)
            assert max(expected) > 0  # it trained


def test_a_diverged_model_is_probed_before_training_and_not_after_its_divergence():
    widths = [4, 5, 5, 3]
    pop = Population(lambda: MLP(widths, "tanh"), [0, 1])
    start = pop.flat_params()
    hist = History(seeds=[0, 1], diverged_at_epoch=[None, 2], snapshot_epochs=[0, 2, 4])
    hist.snapshots = [start, start + 0.1, start + 0.2]
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    rows = _probe(pop, hist, x, y, "tanh")
    for r in rows:
        probed = r["seed"] == 0 or r["epoch"] == 0
        assert math.isfinite(r["grad_rms"]) == probed, r
        assert math.isfinite(r["weight_change"]) == probed, r
    at_4 = [r["weight_change"] for r in rows if (r["seed"], r["epoch"]) == (0, 4)]
    assert len(at_4) == len(widths) - 1 and all(v > 0 for v in at_4)


def test_verdicts_follow_the_numbers(smoke_run):
    """The same results with the sigmoid ratio made tiny or large flip its verdict."""
    _, results, _ = smoke_run

    def verdict(scale_layer_1: float) -> str:
        changed = copy.deepcopy(results)
        for r in changed["layers"]:
            if (r["activation"], r["epoch"], r["layer"]) == ("sigmoid", 0, 1):
                r["grad_rms"] = scale_layer_1
        rows = notes(changed).fidelity
        return next(r["verdict"] for r in rows if r["claim"].startswith("sigmoid: gradients"))

    assert verdict(1e-12) == "reproduced"
    assert verdict(1e3).startswith("differs because")


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"activations": ("relu", "relu")}, "distinct activations"),
        ({"depth": 1}, "depth"),
        ({"train.snapshot_every_epochs": 3}, "multiple of snapshot_every_epochs"),
        ({"train_subset": 10**6}, "train_subset must be <="),
    ],
)
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(DlprobeError, match=message):
        EXPERIMENT.make_config("smoke", changes)
