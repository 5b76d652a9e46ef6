import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.config import validate
from dlprobe.data import function_dataset
from dlprobe.experiments.kit.critical import draw_lengths, ratios_at
from dlprobe.experiments.kit.stats import pearson
from dlprobe.experiments.minimal_ratio import EXPERIMENT, Config, notes
from dlprobe.measure.critical_points import zero_tolerance
from dlprobe.measure.gradient import gradient_norm
from dlprobe.measure.hessian import hessian_eigenvalues
from dlprobe.measure.minimal_ratio import minimal_ratio, minimal_ratio_by_sampling
from dlprobe.models import ACTIVATIONS, MLP, count_params
from dlprobe.train import TrainConfig

pytestmark = pytest.mark.xdist_group("minimal-ratio")


@pytest.fixture(scope="module")
def results(smoke):
    return load_results(smoke("minimal-ratio"))


def _rebuild(results: dict, k: int) -> MLP:
    """Run k's model at the float64 point where its Newton search ended."""
    setup = results["setup"]
    model = MLP(setup["widths"], setup["activation"]).double()
    flat = torch.tensor(results["final_params"][k]["params"], dtype=torch.float64)
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    return model


def _data(results: dict):
    setup = results["setup"]
    data = function_dataset(setup["function"], setup["n_points"])
    return data.x_train.double(), data.y_train.double()


def test_smoke_run_has_every_seed_spectrum_and_parameter_vector(results):
    cfg = EXPERIMENT.make_config("smoke")
    assert [r["seed"] for r in results["runs"]] == list(range(cfg.seeds))
    params = results["setup"]["params"]
    assert all(len(s["eigenvalues"]) == params for s in results["spectra"])
    assert all(len(p["params"]) == params for p in results["final_params"])


def test_phase_one_lengths_are_drawn_per_run_on_the_snapshot_grid(results):
    cfg = EXPERIMENT.make_config("smoke")
    lengths = [r["phase1_epochs"] for r in results["runs"]]
    assert lengths == draw_lengths(cfg.seed, cfg.seeds, cfg.min_epochs, cfg.train)
    assert len(set(lengths)) > 1  # runs stop at different places
    every = cfg.train.snapshot_every_epochs
    assert all(cfg.min_epochs - every <= e <= cfg.train.epochs and e % every == 0 for e in lengths)
    # a run's length depends on its seed only, not on the number of runs
    train = TrainConfig(epochs=5000, snapshot_every_epochs=10)
    assert draw_lengths(3, 40, 10, train)[:5] == draw_lengths(3, 5, 10, train)
    many = draw_lengths(0, 400, 10, train)
    assert np.median(many) == pytest.approx(math.sqrt(10 * 5000), rel=0.35)  # log-uniform


def test_newton_search_drives_the_gradient_down_and_outcomes_follow_the_criterion(results):
    tol = results["setup"]["grad_tol"]
    for r, s in zip(results["runs"], results["search"], strict=True):
        h = np.array(s["grad_norm"])
        assert h[0] == pytest.approx(r["grad_norm_before_search"])
        assert h[-1] == pytest.approx(r["grad_norm"])
        assert np.all(np.diff(h) <= 0)  # a step is kept only where it lowers |g|
        assert r["outcome"] == ("fine" if r["grad_norm"] < tol else "not converged")
    assert any(r["outcome"] == "fine" for r in results["runs"])


def test_zero_tolerance_follows_the_gradient_norm(results):
    """The old rule (1e-9 x max|λ|) ignored |g|; this one scales with it."""
    c = results["setup"]["zero_per_grad"]
    for r, s in zip(results["runs"], results["spectra"], strict=True):
        lam = np.array(s["eigenvalues"])
        floor = lam.size * np.finfo(float).eps * np.abs(lam).max()
        assert r["eig_tol"] == pytest.approx(max(c * r["grad_norm"], floor))
        again = minimal_ratio(lam, tol=r["eig_tol"])
        assert (again.positive, again.negative, again.zero) == pytest.approx(
            (r["minimal_ratio"], r["negative_ratio"], r["zero_ratio"])
        )
    lam = torch.tensor([[-1e-3, 2e-7, 5e-5, 1.0]], dtype=torch.float64)
    small, large = (zero_tolerance(lam, torch.tensor([g]), 1.0) for g in (1e-6, 1e-4))
    assert large.item() == pytest.approx(100 * small.item())
    assert minimal_ratio(lam[0], tol=small.item()).positive == 0.5  # 5e-5 is resolved
    assert minimal_ratio(lam[0], tol=large.item()).positive == 0.25  # 5e-5 counts as zero


def test_statistics_use_only_runs_at_critical_points(results):
    runs = results["runs"]
    crit = [r for r in runs if r["outcome"] == "fine"]
    summary = notes(results).summary
    counts = summary["runs / at a critical point / not reached / diverged"]
    assert counts[:2] == [len(runs), len(crit)] and sum(counts[1:]) == len(runs)
    log_loss = np.log10([r["loss"] for r in crit])
    r, n = pearson(log_loss, [r["minimal_ratio"] for r in crit])
    saved = summary["minimal ratio (eigenvalues) vs log10 loss: Pearson r / Spearman rho / n"]
    assert saved[2] == n == len(crit)
    assert (math.isnan(r) and math.isnan(saved[0])) or saved[0] == pytest.approx(r)
    # the tolerance figure recomputes the saved ratios at the c that was used
    c = results["setup"]["zero_per_grad"]
    assert ratios_at(results, c) == pytest.approx([r["minimal_ratio"] for r in crit])


def test_saved_eigenvalues_and_measures_match_the_rebuilt_model(results):
    x, y = _data(results)
    setup = results["setup"]
    for k in (0, len(results["runs"]) - 1):
        model, r = _rebuild(results, k), results["runs"][k]
        saved = np.array(results["spectra"][k]["eigenvalues"])
        lam = hessian_eigenvalues(model, F.mse_loss, x, y).numpy()
        np.testing.assert_allclose(lam, saved, rtol=0, atol=1e-9 * np.abs(saved).max())
        assert F.mse_loss(model(x), y).item() == pytest.approx(r["loss"], rel=1e-9)
        g = gradient_norm(model, F.mse_loss, x, y)
        assert g == pytest.approx(r["grad_norm"], rel=1e-3, abs=1e-13)
        sampled = minimal_ratio_by_sampling(
            model, F.mse_loss, x, y, setup["n_samples"], setup["radius"], seed=r["seed"]
        )
        assert sampled.higher == r["sampled_ratio"]


def test_the_network_is_not_linear(results):
    act = results["setup"]["activation"]
    assert act in ACTIVATIONS
    assert any(isinstance(m, ACTIVATIONS[act]) for m in _rebuild(results, 0))
    bends = []  # an affine 1-D function has zero second differences everywhere
    for k in range(len(results["runs"])):  # some critical points are constant functions
        with torch.no_grad():
            f = _rebuild(results, k)(torch.linspace(0, 6, 61, dtype=torch.float64)[:, None])[:, 0]
        bends.append(float((f[2:] - 2 * f[1:-1] + f[:-2]).abs().max()))
    assert max(bends) > 1e-4
    with pytest.raises(DlprobeError, match="activation"):
        validate(Config(activation="linear"))


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="min_epochs"):
        EXPERIMENT.make_config("quick", {"min_epochs": 5000})
    with pytest.raises(DlprobeError, match="snapshot_every_epochs"):
        EXPERIMENT.make_config("quick", {"train.snapshot_every_epochs": 0})
    with pytest.raises(DlprobeError, match="batch sizes"):
        EXPERIMENT.make_config("quick", {"train.batch_size": 65})
    with pytest.raises(DlprobeError, match="1 input and 1 output"):
        EXPERIMENT.make_config("quick", {"model": "2-10-1"})


def test_full_profile_is_the_homework_setting():
    cfg = EXPERIMENT.make_config("full")
    assert cfg.seeds == 100 and cfg.function == "sine" and cfg.n_points == 64
    assert cfg.model == "1-10-10-1" and count_params(MLP([1, 10, 10, 1], cfg.activation)) == 141
    assert cfg.train.batch_size == 0 and cfg.n_samples == 5000
