"""saddle-escape: the saddles, lines and descents of a smoke run against float64
recomputations from the saved parameters (autograd's dense Hessian of one model)."""

import json

import pytest
import torch
from exp_util import float64_mse, load_results

from dlprobe import DlprobeError
from dlprobe.config import from_dict
from dlprobe.data import function_dataset
from dlprobe.experiments.saddle_escape import EXPERIMENT, Config, notes

pytestmark = pytest.mark.xdist_group("saddle-escape")


@pytest.fixture(scope="module")
def smoke_run(smoke):
    run = smoke("saddle-escape")
    cfg = from_dict(Config, json.loads((run / "config.json").read_text())["config"])
    return run, load_results(run), cfg


def _loss_fn(run, results: dict, cfg: Config, k: int):
    """(L(flat), θ_k): run k's float64 loss as a function of its flat parameters, and θ_k."""
    data = function_dataset(cfg.function, cfg.n_points)
    widths = results["setup"]["widths"]
    return float64_mse(run, "grad-norm-phase", k, widths, cfg.activation, data)


def _saddles(results: dict) -> list[dict]:
    saddles = [r for r in results["runs"] if r["kind"] == "saddle"]
    assert saddles, "the smoke run reaches at least one saddle (the checks below need one)"
    return saddles


def test_every_critical_point_has_the_hessian_and_gradient_it_reports(smoke_run):
    run, results, cfg = smoke_run
    for r in [r for r in results["runs"] if not r["diverged"]]:
        loss, theta = _loss_fn(run, results, cfg, r["run"])
        grad = torch.func.grad(loss)(theta)
        assert r["loss"] == pytest.approx(loss(theta).item(), rel=1e-9)
        assert r["grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-6)
        assert r["critical"] == (grad.norm().item() < cfg.critical.stop_below_grad_norm)
        if not r["critical"]:
            continue
        lam = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta))
        tol = cfg.eig_rel_tol * lam.abs().max().item()
        assert r["lambda_min"] == pytest.approx(lam[0].item(), rel=1e-6, abs=1e-12)
        assert r["lambda_max"] == pytest.approx(lam[-1].item(), rel=1e-6)
        assert r["negative"] == int((lam < -tol).sum())
        assert r["kind"] == ("saddle" if lam[0] < -tol else "minimum")


def test_the_escape_step_lowers_the_recomputed_loss(smoke_run):
    """L(θ + α* u), u the downhill-oriented eigenvector of λ_min, is the reported loss_star,
    below the saddle's loss; the line's points and its quadratic model are L and L + ½λα²."""
    run, results, cfg = smoke_run
    for r in _saddles(results):
        loss, theta = _loss_fn(run, results, cfg, r["run"])
        lam, vec = torch.linalg.eigh(torch.autograd.functional.hessian(loss, theta))
        u = vec[:, 0] * (-1.0 if torch.func.grad(loss)(theta) @ vec[:, 0] > 0 else 1.0)
        after = loss(theta + r["alpha_star"] * u).item()
        assert r["loss_star"] == pytest.approx(after, rel=1e-6)
        assert after < r["loss"]
        line = [p for p in results["lines"] if p["run"] == r["run"]]
        assert len(line) == cfg.line_points
        for p in line[:: max(1, len(line) // 5)]:
            assert p["loss"] == pytest.approx(loss(theta + p["alpha"] * u).item(), rel=1e-6)
            quadratic = r["loss"] + 0.5 * lam[0].item() * p["alpha"] ** 2
            assert p["quadratic"] == pytest.approx(quadratic, rel=1e-9)
        assert min(p["loss"] for p in line if p["alpha"] != 0) == pytest.approx(r["loss_star"])


def test_descents_start_at_the_saddle_and_at_the_escaped_point(smoke_run):
    """Step 0 of each descent is the loss at its start (float32 training vs float64)."""
    _, results, _ = smoke_run
    for r in _saddles(results):
        start = {c["start"]: c["loss"] for c in results["curves"]
                 if c["run"] == r["run"] and c["step"] == 0}  # fmt: skip
        assert start["saddle"] == pytest.approx(r["loss"], rel=1e-4)
        assert start["escaped"] == pytest.approx(r["loss_star"], rel=1e-4)


def test_the_escape_claim_fails_when_a_step_raises_the_loss(smoke_run):
    _, results, _ = smoke_run
    claim = "at a saddle, a step along the eigenvector of a negative eigenvalue lowers the loss"
    verdict = {row["claim"]: row["verdict"] for row in notes(results).fidelity}
    assert verdict[claim] == "reproduced"
    worse = json.loads(json.dumps(results))
    r = _saddles(worse)[0]
    r["loss_star"] = r["loss"] * 1.5
    rows = {row["claim"]: row for row in notes(worse).fidelity}
    assert rows[claim]["verdict"].startswith("differs because the loss rose at 1 of")


def test_descent_must_be_full_batch_gradient_descent():
    with pytest.raises(DlprobeError, match="descent.batch_size must be 0"):
        EXPERIMENT.make_config("smoke", {"descent.batch_size": 4})


def test_each_descent_steps_at_its_saddles_stable_lr(smoke_run):
    """GD from a saddle runs at descent.lr / λ_max of that saddle (λ_max from the saved
    spectrum), the same for both starts."""
    _, results, cfg = smoke_run
    lam_max = {r["run"]: r["lambda_max"] for r in _saddles(results)}
    for end in results["descent_ends"]:
        assert end["lr"] == pytest.approx(cfg.descent.lr / lam_max[end["run"]], rel=1e-12)


def test_the_stall_claim_fails_when_gradient_descent_raises_the_loss(smoke_run):
    """A descent whose loss rose (an unstable step) is no stall, whatever the escape did."""
    _, results, _ = smoke_run
    claim = "gradient descent from the saddle stalls; after the negative-curvature step it goes on"
    rose = json.loads(json.dumps(results))
    for end in rose["descent_ends"]:
        loss = next(r["loss"] for r in rose["runs"] if r["run"] == end["run"])
        end["train_loss"] = loss * (50.0 if end["start"] == "saddle" else 40.0)
    row = {row["claim"]: row for row in notes(rose).fidelity}[claim]
    assert row["verdict"].startswith(
        "differs because GD from the saddle raised by 4900.0% (no stall)"
    )
