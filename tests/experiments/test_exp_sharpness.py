import math

import pytest
import torch
from exp_util import load_results, trained_model

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.sharpness import EXPERIMENT, MEASURES
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
        assert r["hessian_norm"] > 0


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
