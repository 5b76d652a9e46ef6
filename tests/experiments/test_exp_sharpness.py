import copy
import math

import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results, trained_model

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.kit import probe_examples
from dlprobe.experiments.sharpness import EXPERIMENT, MEASURES, figures, notes
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.interpolate import classification_metrics
from dlprobe.measure.rescale import rescale_relu_layers
from dlprobe.models import build_model, mlp_param_count

pytestmark = pytest.mark.xdist_group("sharpness")


@pytest.fixture
def smoke_run(smoke):
    run = smoke("sharpness")
    cfg = EXPERIMENT.make_config("smoke")
    data = load_dataset(cfg.dataset).subset_train(cfg.train_subset, seed=cfg.seed)
    return run, load_results(run), data


def test_converged_every_batch_size_reaches_its_target(smoke_run):
    _, results, _ = smoke_run
    cfg = EXPERIMENT.make_config("smoke")
    assert cfg.budget.protocols == ("converged",)
    assert {r["batch_size"] for r in results["runs"]} == {
        b or cfg.train_subset for b in cfg.batch_sizes
    }
    for r in results["runs"]:
        assert r["reached_target"] and r["status"] == "fine", r
        assert r["train_loss"] < cfg.budget.train_loss and r["epochs"] < r["epoch_cap"]


def test_gradient_norm_is_measured_on_the_hessians_examples(smoke_run):
    run, results, data = smoke_run
    cfg = EXPERIMENT.make_config("smoke")
    x, y = probe_examples(data, cfg.sharpness_examples, cfg.seed)
    for r in results["runs"][:: len(results["runs"]) - 1]:  # the smallest and largest batch
        model = trained_model(run, results["model"], r["stage"], 0)
        assert r["grad_norm"] == pytest.approx(gradient_norm(model, F.cross_entropy, x, y))
        assert r["grad_norm"] > 0


def _all_protocols(results: dict) -> dict:
    """The smoke results as if all three protocols ran: under equal steps Keskar's
    sharpness rises with batch size, under converged and equal epochs it falls."""
    out = copy.deepcopy(results)
    out["budget"]["protocols"] = ["converged", "epochs", "steps"]
    extra = []
    for protocol, sign in (("epochs", -1), ("steps", 1)):
        for r in results["runs"]:
            extra.append({**r, "protocol": protocol, "keskar": sign * math.log(r["batch_size"])})
    for r in out["runs"]:
        r["keskar"] = -math.log(r["batch_size"])
    out["runs"] += extra
    return out


def test_figures_and_report_compare_the_protocols(smoke_run):
    _, results, _ = smoke_run
    both = _all_protocols(results)
    fig = figures(both)["budget-protocols"]
    assert len(fig.axes) == 3 * 3  # Keskar, Hessian, training loss x three protocols
    said = notes(both)
    line = next(o for o in said.observations if o.startswith("With batch size, Keskar"))
    assert "under converged it falls" in line and "under equal steps it rises" in line
    assert "The protocols disagree." in line
    # one protocol only: the figure has one column and the report says how to get the others
    assert len(figures(results)["budget-protocols"].axes) == 3
    assert any("`--protocol all`" in o for o in notes(results).observations)


def test_the_dinh_conclusion_follows_the_numbers(smoke_run):
    _, results, _ = smoke_run
    holds = notes(results)
    dinh = next(o for o in holds.observations if o.startswith("Dinh et al."))
    assert "the same function can be made sharp or flat" in dinh
    row = next(r for r in holds.fidelity if "Dinh" in r["claim"])
    assert row["verdict"] == "reproduced"
    broken = copy.deepcopy(results)
    broken["dinh"][0]["max_output_change"] = 1.0  # a rescaling that changed the function
    said = notes(broken)
    dinh = next(o for o in said.observations if o.startswith("Dinh et al."))
    assert "does not keep the function" in dinh and "made sharp or flat" not in dinh
    row = next(r for r in said.fidelity if "Dinh" in r["claim"])
    assert row["verdict"].startswith("differs because")


def test_at_least_ten_batch_sizes(smoke_run):
    _, results, _ = smoke_run
    assert len({r["batch_size"] for r in results["runs"]}) >= 10
    for profile in ("quick", "full"):
        cfg = EXPERIMENT.make_config(profile)
        assert len(set(cfg.batch_sizes)) >= 10 and cfg.epsilon == 1e-4
        assert cfg.sharpness_examples == 500
    full = EXPERIMENT.make_config("full")
    assert full.dataset == "mnist"
    assert 20_000 <= mlp_param_count([784, *full.hidden, 10], full.activation) <= 30_000


def test_the_rescaling_needs_a_positively_homogeneous_activation():
    with pytest.raises(DlprobeError, match="positively homogeneous activation 'tanh'"):
        EXPERIMENT.make_config("smoke", {"activation": "tanh"})


def test_sharpness_values_are_positive_and_finite(smoke_run):
    _, results, _ = smoke_run
    for r in results["runs"] + results["dinh"]:
        for metric in MEASURES:
            assert r[metric] is not None and 0 < r[metric] < math.inf, (metric, r)
        assert r["hessian_norm"] > 0 and 0 < r["grad_norm"] < math.inf


def test_rescaling_keeps_loss_and_changes_sharpness(smoke_run):
    _, results, _ = smoke_run
    dinh = results["dinh"]
    assert len(dinh) >= 3 and {1.0} <= {r["factor"] for r in dinh}
    for metric in ("train_loss", "test_loss"):
        values = [r[metric] for r in dinh]
        assert max(values) - min(values) <= 1e-5
    assert len({r["test_accuracy"] for r in dinh}) == 1
    hessian = [r["hessian"] for r in dinh]
    assert max(hessian) / min(hessian) > 10


def test_rescaled_models_compute_the_same_function(smoke_run):
    run, results, data = smoke_run
    src = results["dinh_source"]
    model = trained_model(run, results["model"], src["stage"], results["seeds"].index(src["seed"]))
    # the checkpoint holds the model whose rescalings were measured
    ref = next(r for r in results["dinh"] if r["factor"] == 1.0)
    assert classification_metrics(model, data.x_test, data.y_test)["loss"] == pytest.approx(
        ref["test_loss"], rel=1e-6
    )
    x = data.x_test
    double = build_model(results["model"]).double()
    double.load_state_dict({n: p.double() for n, p in model.state_dict().items()})
    with torch.no_grad():
        out, out64 = model(x), double(x.double())
        for a in (0.1, 0.3, 3.0, 10.0):
            rescaled = rescale_relu_layers(model, src["layer"], a)
            assert not torch.equal(rescaled[1].weight, model[1].weight)
            torch.testing.assert_close(rescaled(x), out, rtol=1e-5, atol=1e-5)
            rescaled64 = rescale_relu_layers(double, src["layer"], a)
            torch.testing.assert_close(rescaled64(x.double()), out64, rtol=1e-10, atol=1e-10)
