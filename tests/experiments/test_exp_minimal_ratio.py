import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import function_dataset
from dlprobe.experiments.minimal_ratio import EXPERIMENT, Config
from dlprobe.measure._functional import unflatten
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.hessian import hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.models import ACTIVATIONS, MLP, count_params

pytestmark = pytest.mark.xdist_group("minimal-ratio")


@pytest.fixture(scope="module")
def results(smoke):
    return load_results(smoke("minimal-ratio"))


def _rebuild(results: dict, k: int) -> MLP:
    """Run k's final model, from the parameter vector saved in results."""
    setup = results["setup"]
    model = MLP(setup["widths"], setup["activation"])
    flat = torch.tensor(results["final_params"][k]["params"], dtype=torch.float32)
    model.load_state_dict(unflatten(model, flat))
    return model


def _data(results: dict):
    setup = results["setup"]
    data = function_dataset(setup["function"], setup["n_points"])
    return data.x_train, data.y_train


def test_smoke_run_has_every_seed_spectrum_and_parameter_vector(results):
    cfg = EXPERIMENT.make_config("smoke")
    assert [r["seed"] for r in results["runs"]] == list(range(cfg.seeds))
    params = results["setup"]["params"]
    assert all(len(s["eigenvalues"]) == params for s in results["spectra"])
    assert all(len(p["params"]) == params for p in results["final_params"])


def test_gradient_norm_phase_lowers_the_median_gradient_norm(results):
    runs = results["runs"]
    before = np.median([r["grad_norm_after_loss_phase"] for r in runs])
    after = np.median([r["grad_norm"] for r in runs])
    assert after < before
    thr = results["setup"]["grad_norm_threshold"]
    assert thr == EXPERIMENT.make_config("smoke").critical.stop_below_grad_norm
    for r in runs:
        assert r["reached_threshold"] == (r["grad_norm"] < thr)


def test_ratios_are_fractions(results):
    for r in results["runs"]:
        for key in ("minimal_ratio", "negative_ratio", "zero_ratio", "sampled_ratio"):
            assert 0.0 <= r[key] <= 1.0
        assert math.isclose(r["minimal_ratio"] + r["negative_ratio"] + r["zero_ratio"], 1.0)
        assert math.isclose(r["sampled_ratio"] + r["sampled_lower"] + r["sampled_ties"], 1.0)


def test_saved_ratios_match_the_probe_on_saved_eigenvalues(results):
    rel_tol = results["setup"]["eig_rel_tol"]
    for r, spec in zip(results["runs"], results["spectra"], strict=True):
        lam = np.array(spec["eigenvalues"])
        assert np.all(np.diff(lam) >= 0)  # ascending, as saved
        assert r["eig_tol"] == pytest.approx(rel_tol * np.abs(lam).max())
        again = minimal_ratio(lam, tol=r["eig_tol"])
        assert (again.positive, again.negative, again.zero) == pytest.approx(
            (r["minimal_ratio"], r["negative_ratio"], r["zero_ratio"])
        )


def test_saved_eigenvalues_and_measures_match_the_rebuilt_model(results):
    x, y = _data(results)
    setup = results["setup"]
    for k in (0, len(results["runs"]) - 1):
        model, r = _rebuild(results, k), results["runs"][k]
        lam = hessian_eigenvalues(model, F.mse_loss, x, y).numpy()
        saved = np.array(results["spectra"][k]["eigenvalues"])
        np.testing.assert_allclose(lam, saved, rtol=0, atol=1e-9 * np.abs(saved).max())
        m64 = _rebuild(results, k).double()
        assert F.mse_loss(m64(x.double()), y.double()).item() == pytest.approx(r["loss"])
        assert gradient_norm(m64, F.mse_loss, x.double(), y.double()) == pytest.approx(
            r["grad_norm"], rel=1e-6
        )
        sampled = minimal_ratio_by_sampling(
            model, F.mse_loss, x, y, setup["n_samples"], setup["radius"], seed=r["seed"]
        )
        assert sampled.higher == r["sampled_ratio"]


def test_the_network_is_not_linear(results):
    act = results["setup"]["activation"]
    assert act in ACTIVATIONS
    model = _rebuild(results, 0)
    assert any(isinstance(m, ACTIVATIONS[act]) for m in model)
    # an affine 1-D function has zero second differences everywhere
    with torch.no_grad():
        f = model(torch.linspace(0, 6, 61).unsqueeze(1))[:, 0]
    assert (f[2:] - 2 * f[1:-1] + f[:-2]).abs().max() > 1e-4
    with pytest.raises(DlprobeError, match="activation"):
        validate(Config(activation="linear"))


def test_bad_phase_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="stop_below_grad_norm"):
        EXPERIMENT.make_config("quick", {"critical.stop_below_grad_norm": 0.0})
    with pytest.raises(DlprobeError, match="batch sizes"):
        EXPERIMENT.make_config("quick", {"critical.batch_size": 65})
    with pytest.raises(DlprobeError, match="1 input and 1 output"):
        EXPERIMENT.make_config("quick", {"model": "2-10-1"})


def test_full_profile_is_the_homework_setting():
    cfg = EXPERIMENT.make_config("full")
    assert cfg.seeds == 100 and cfg.function == "sine" and cfg.n_points == 64
    assert count_params(MLP([1, 10, 10, 1], cfg.activation)) == 141
    assert cfg.model == "1-10-10-1" and cfg.activation in ACTIVATIONS
    # phase 2 minimizes the squared gradient norm, full batch, for up to 10 000 epochs
    assert cfg.critical.objective == "grad_norm_sq" and cfg.critical.batch_size == 0
    assert cfg.critical.epochs == 10000 and cfg.n_samples == 5000
