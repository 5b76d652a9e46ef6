import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results, trained_model

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import epochs_for_steps, probe_examples
from dlprobe.experiments.kit.batches import (
    Budget,
    counted,
    counts,
    outcomes,
    protocol_lines,
    train_config_for,
    trend,
)
from dlprobe.experiments.sensitivity import EXPERIMENT, Config, figures, notes
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.sensitivity import sensitivity
from dlprobe.train import History, TrainConfig
from dlprobe.train.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("sensitivity")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("sensitivity")
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    return run, load_results(run), cfg, data


def _runs(results, protocol):
    return [r for r in results["runs"] if r["protocol"] == protocol]


def test_one_run_per_protocol_batch_size_and_seed(smoke_run):
    _, results, cfg, _ = smoke_run
    assert cfg.budget.protocols == ("converged", "epochs", "steps")  # the smoke runs all three
    for protocol in cfg.budget.protocols:
        assert len(_runs(results, protocol)) == len(cfg.batch_sizes) * cfg.seeds


def test_at_least_five_approaches_up_to_the_full_batch(smoke_run):
    _, results, _, data = smoke_run
    for cfg in (EXPERIMENT.make_config("quick"), EXPERIMENT.make_config("full"), Config()):
        assert len(set(cfg.batch_sizes)) >= 5 and min(b for b in cfg.batch_sizes if b) == 8
        assert 0 in cfg.batch_sizes  # the full training set is one of the approaches
    sizes = sorted({r["batch_size"] for r in results["runs"]})
    assert len(sizes) >= 5 and sizes[-1] == data.n_train


def test_quick_compares_converged_models_on_a_stand_in_where_mlps_generalize():
    """The default budget is a common training-loss target, and the quick data set is one
    on which the homework's regime holds (digits, not the overfitted mnist1d stand-in)."""
    cfg = EXPERIMENT.make_config("quick")
    assert cfg.budget.protocol == "converged" and cfg.budget.train_loss > 0
    assert cfg.dataset == "digits"


def test_converged_every_batch_size_reaches_its_target(smoke_run):
    """Under ``converged`` each model stopped at the first epoch where its training loss
    was below the target, well before the cap; the record is the trainer's own."""
    run, results, cfg, _ = smoke_run
    rows = _runs(results, "converged")
    assert {r["batch_size"] for r in rows} == {b or cfg.train_subset for b in cfg.batch_sizes}
    for r in rows:
        assert r["reached_target"] and r["status"] == "fine", r
        assert r["train_loss"] < cfg.budget.train_loss
        assert r["epochs"] < r["epoch_cap"] == cfg.budget.max_epochs
        saved = load_checkpoint_file(run / "checkpoints" / f"{r['stage']}.done.pt")
        hist = History.from_state(saved["history"])
        k = hist.seeds.index(r["seed"])
        assert hist.stopped_at_epoch[k] == r["epochs"] and hist.steps_taken[k] == r["steps"]
        assert hist.reached_target[k] is True
    # the trend statistics under converged use every one of them
    assert len(counted(results["runs"], "converged")) == len(rows)


def test_equal_epochs_and_equal_steps_hold_what_they_say(smoke_run):
    _, results, cfg, data = smoke_run
    for r in _runs(results, "epochs"):
        per_epoch = math.ceil(data.n_train / r["batch_size"])
        assert r["epochs"] == cfg.budget.epochs and r["steps"] == r["epochs"] * per_epoch
    for r in _runs(results, "steps"):
        per_epoch = math.ceil(data.n_train / r["batch_size"])
        assert r["epochs"] == epochs_for_steps(cfg.budget.steps, r["batch_size"], data.n_train)
        assert abs(r["steps"] - cfg.budget.steps) <= per_epoch / 2 or r["epochs"] == 1
        assert r["steps"] == r["epochs"] * per_epoch
        # the target is checked on what the model reached, as under converged
        assert r["reached_target"] == (r["train_loss"] < cfg.budget.train_loss)


@pytest.mark.parametrize(
    ("protocol", "epochs", "every", "stop"),
    [("converged", 7, 1, 0.05), ("epochs", 3, 3, 0.0), ("steps", 2, 2, 0.0)],
)
def test_a_budget_becomes_one_training_per_protocol(protocol, epochs, every, stop):
    budget = Budget(train_loss=0.05, max_epochs=7, epochs=3, steps=4)
    cfg = train_config_for(TrainConfig(lr=0.1), 25, 50, budget, protocol)  # 2 steps per epoch
    assert (cfg.batch_size, cfg.epochs, cfg.eval_every_epochs) == (25, epochs, every)
    assert cfg.stop_below_train_loss == stop and cfg.lr == 0.1
    assert cfg.has_stop_target == (protocol == "converged")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("budget.train_loss", 0.0, "budget needs a target"),
        ("budget.protocol", "longest", "unknown budget protocol 'longest'"),
        ("train.epochs", 3, "train.epochs is set for every model"),
        ("train.eval_every_epochs", 3, "train.eval_every_epochs is set for every model"),
        ("train.batch_size", 3, "train.batch_size is set for every model"),
        ("train.stop_below_train_loss", 0.1, "train.stop_below_train_loss is set for every"),
        ("train.stop_at_train_accuracy", 0.9, "train.stop_at_train_accuracy is set for every"),
    ],
)
def test_the_budget_owns_length_and_targets(setting, value, message):
    """A TrainConfig value the budget overrides would be silently ignored: it is refused."""
    with pytest.raises(DlprobeError, match=message):
        EXPERIMENT.make_config("smoke", {setting: value})


def test_a_model_that_misses_the_target_is_named_and_left_out(smoke_run):
    _, results, _, _ = smoke_run
    broken = copy.deepcopy(results)
    r = next(r for r in broken["runs"] if r["protocol"] == "converged" and r["batch_size"] == 8)
    r.update(status="not converged", reached_target=False, train_loss=0.2)
    before, after = notes(results), notes(broken)
    n_all = len(_runs(results, "converged"))
    assert before.summary["converged: runs counted / trained"] == [n_all, n_all]
    assert after.summary["converged: runs counted / trained"] == [n_all - 1, n_all]
    named = [o for o in after.observations if o.startswith("Converged: 1 of")]
    assert len(named) == 1 and f"batch size 8 not converged: seed(s) {r['seed']}" in named[0]
    assert "left out of its statistics" in named[0]
    assert trend(counted(broken["runs"], "converged"), "train_loss")[2] == n_all - 1


def _with_trend(results, protocol, sign):
    """Results whose homework sensitivity rises (sign +1) or falls (-1) with batch size
    under ``protocol``."""
    out = copy.deepcopy(results)
    for r in out["runs"]:
        if r["protocol"] == protocol:
            r["sensitivity_loss_gradient"] = math.log(r["batch_size"]) * sign + 0.01 * r["seed"]
    return out


def test_the_report_says_when_the_protocols_disagree(smoke_run):
    _, results, _, _ = smoke_run
    names = {"sensitivity_loss_gradient": "sensitivity"}
    agree = _with_trend(
        _with_trend(_with_trend(results, "converged", -1), "epochs", -1), "steps", -1
    )
    (line,) = protocol_lines(agree["runs"], names)
    assert "The protocols agree: it falls under each." in line
    disagree = _with_trend(agree, "steps", 1)
    (line,) = protocol_lines(disagree["runs"], names)
    assert "under converged it falls" in line and "under equal steps it rises" in line
    assert "The protocols disagree." in line and "Under equal steps the epochs trained" in line
    assert any("The protocols disagree." in o for o in notes(disagree).observations)


def test_the_protocol_figure_has_a_column_per_protocol(smoke_run):
    _, results, cfg, _ = smoke_run
    fig = figures(results)["budget-protocols"]
    assert len(fig.axes) == 3 * len(cfg.budget.protocols)  # sensitivity, test acc, train loss
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("equal steps: ρ =") for t in titles)


def test_the_report_shows_what_each_batch_size_reached(smoke_run):
    run, results, cfg, _ = smoke_run
    summary = json.loads((run / "summary.json").read_text())
    title, rows = next(t for t in summary["tables"] if t[0].startswith("What each batch size"))
    assert len(rows) == len(cfg.batch_sizes) * len(cfg.budget.protocols)
    keys = {"epochs", "optimizer steps", "train loss", "train accuracy", "gradient norm"}
    assert keys <= set(rows[0]) and "gradient norm where the sharpness" in title
    assert {r["verdict"].split(" ")[0] for r in summary["fidelity"]} <= {"reproduced", "differs"}
    assert len(summary["fidelity"]) == 4  # both sensitivities, test accuracy, the stand-in


def test_gradient_norm_is_where_the_sharpness_was_measured(smoke_run):
    run, results, cfg, data = smoke_run
    x, y = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    r = _runs(results, "converged")[0]
    model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
    assert r["grad_norm"] == pytest.approx(gradient_norm(model, F.cross_entropy, x, y), rel=1e-5)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    brute = torch.sqrt(sum((g**2).sum() for g in grads)).item()
    assert r["grad_norm"] == pytest.approx(brute, rel=1e-4)


def test_sensitivity_does_not_depend_on_the_evaluation_batch_size(smoke_run):
    run, results, _, data = smoke_run
    n = results["sensitivity_examples"]
    x, y = data.x_test[:n], data.y_test[:n]
    seen = set()
    for r in _runs(results, "converged"):
        if r["stage"] in seen:  # one seed per batch size
            continue
        seen.add(r["stage"])
        model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
        for definition, field in (
            ("loss-gradient", "sensitivity_loss_gradient"),
            ("jacobian", "sensitivity_jacobian"),
        ):
            values = [
                sensitivity(model, x, y, F.cross_entropy, definition, batch_size=b).mean
                for b in (7, x.shape[0])
            ]
            assert values[0] == pytest.approx(values[1], rel=1e-5)
            assert r[field] == pytest.approx(values[1], rel=1e-5)


def test_loss_gradient_sensitivity_is_per_example_not_divided_by_n(smoke_run):
    """Brute force: the gradient of the SUM of per-example losses by the inputs has the
    per-example gradients as rows; their mean norm is the saved sensitivity."""
    run, results, _, data = smoke_run
    r = _runs(results, "converged")[-1]
    model = trained_model(run, results["model"], r["stage"], results["seeds"].index(r["seed"]))
    n = results["sensitivity_examples"]
    x = data.x_test[:n].clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), data.y_test[:n], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    per_example = g.reshape(n, -1).norm(dim=1)
    assert r["sensitivity_loss_gradient"] == pytest.approx(per_example.mean().item(), rel=1e-5)
    assert r["sensitivity_loss_gradient"] > 10 * per_example.mean().item() / n


def test_measures_are_finite_and_sharpness_positive(smoke_run):
    _, results, _, _ = smoke_run
    for r in results["runs"]:
        assert r["sensitivity_loss_gradient"] > 0 and r["sensitivity_jacobian"] > 0
        assert 0 < r["sharpness"] < math.inf and 0 < r["grad_norm"] < math.inf


def test_outcomes_separate_the_failure_modes():
    """diverged, collapsed (training accuracy at most twice chance), not converged (missed
    the target), fine; epochs used are the stop, the divergence or the last evaluation."""
    nan = math.nan
    hist = History(
        seeds=[0, 1, 2, 3],
        epochs=[5, 9],
        train_loss=[[0.5, 2.3, 0.3, 0.004], [nan, 2.3, 0.2, 0.004]],
        test_loss=[[0.6, 2.3, 0.4, 0.1], [nan, 2.3, 0.3, 0.1]],
        train_accuracy=[[0.8, 0.1, 0.9, 1.0], [nan, 0.1, 0.95, 1.0]],
        test_accuracy=[[0.7, 0.1, 0.8, 0.97], [nan, 0.1, 0.85, 0.97]],
        diverged_at_epoch=[7, None, None, None],
        diverged_reason=["non-finite loss", None, None, None],
        stopped_at_epoch=[None, None, None, 5],
        reached_target=[False, False, False, True],
        steps_taken=[70, 90, 90, 50],
    )
    budget = Budget(train_loss=0.01)
    ends = outcomes(hist, budget, "converged", 10)
    assert [e["status"] for e in ends] == ["diverged", "collapsed", "not converged", "fine"]
    assert [e["epochs"] for e in ends] == [7, 9, 9, 5]
    assert [e["steps"] for e in ends] == [70, 90, 90, 50]
    # under equal epochs the same target is checked on the final metrics
    assert [e["reached_target"] for e in outcomes(hist, budget, "epochs", 10)] == [
        False, False, False, True,
    ]  # fmt: skip
    rows = [{"protocol": p, "status": e["status"]} for p in ("converged", "steps") for e in ends]
    assert [counts(r) for r in rows] == [False, False, False, True, False, False, True, True]
