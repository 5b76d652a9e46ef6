import json
import math
from dataclasses import replace

import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import Dataset, corrupt_labels, load_dataset
from dlprobe.experiments.generalization_measures import (
    EXPERIMENT,
    notes,
    own_label_probes,
    probe_seed,
)
from dlprobe.experiments.kit import generalization_figures as draw
from dlprobe.experiments.kit import probe_examples
from dlprobe.experiments.kit.indicators import INDICATORS, SIGNS, Probe, dinh_audit
from dlprobe.experiments.kit.outcomes import FINE
from dlprobe.experiments.kit.ranking import kendall_tau
from dlprobe.measure._functional import flat_params
from dlprobe.models import MLP
from dlprobe.train import PerModel
from dlprobe.train.per_model import ModelData

pytestmark = pytest.mark.xdist_group("generalization-measures")
ID = "generalization-measures"


@pytest.fixture
def results(smoke):
    return load_results(smoke(ID))


def _rows(gaps, values, **axes):
    """Fine rows over a 2 x 2 grid of lr and label noise with the given gaps and one
    indicator's values (every other indicator None)."""
    grid = [(lr, p) for lr in (0.1, 0.2) for p in (0.0, 0.1)]
    base = dict.fromkeys(INDICATORS) | {"width": 8, "depth": 1, "dropout": 0.0}
    base |= {"batch_size": 32, "weight_decay": 0.0, "outcome": FINE, **axes}
    return [
        {**base, "lr": lr, "label_noise": p, "gap": g, "keskar": v, "valley_width": v}
        for (lr, p), g, v in zip(grid, gaps, values, strict=True)
    ]


def test_ranking_on_constructed_rows_orients_tau_and_granulates_per_axis():
    """keskar = valley width = the gap's own order: keskar tau +1; the valley width (larger
    = flatter) oriented to -1. Per axis: lr groups are (noise 0, noise 0.1) pairs."""
    rows = _rows([0.1, 0.3, 0.2, 0.4], [1.0, 3.0, 2.0, 4.0])
    rank = {r["indicator"]: r for r in draw.ranking(rows, 50, 0)["ranking"]}
    assert rank["keskar"]["tau"] == 1.0 and rank["keskar"]["psi"] == 1.0
    assert rank["valley_width"]["tau"] == -1.0 and rank["valley_width"]["psi"] == -1.0
    assert set(rank["keskar"]["axes"]) == {"lr", "label_noise"}
    assert draw.ranking(rows, 50, 0)["ranking"][0]["indicator"] == "keskar"
    # an indicator that agrees within lr groups but disagrees across noise
    rows = _rows([0.1, 0.3, 0.2, 0.4], [2.0, 1.0, 4.0, 3.0])
    rank = {r["indicator"]: r for r in draw.ranking(rows, 50, 0)["ranking"]}
    assert rank["keskar"]["axes"] == {"lr": 1.0, "label_noise": -1.0}
    assert rank["keskar"]["psi"] == 0.0
    assert rank["keskar"]["tau"] == pytest.approx(kendall_tau([2, 1, 4, 3], [0.1, 0.3, 0.2, 0.4]))


def test_each_noise_level_is_probed_on_the_labels_its_models_trained_on():
    """The trainer's own labels (``ModelData``, as ``PerModel`` builds them) at the probe
    examples, found through inputs that encode their training index."""
    n, classes = 200, 10
    y = torch.arange(n) % classes
    x = torch.arange(n, dtype=torch.float32)[:, None]  # example i has input i
    data = Dataset("indexed", x, y, x[:10], y[:10], "classification", classes)
    cfg = EXPERIMENT.make_config("smoke")
    probe = Probe(
        *probe_examples(data, cfg.probe_examples, probe_seed(cfg)),
        n,
        *[0.0] * 5,
        1,
        0.0,
        1,
        cfg.seed,
    )
    probes = own_label_probes(data, probe, replace(cfg, label_noises=(0.0, 0.5)))
    trained = ModelData(data, PerModel(label_noise=[0.0, 0.5]), [cfg.seed] * 2).y  # (2, n)
    for k, noise in enumerate((0.0, 0.5)):
        at = probes[noise].x[:, 0].long()  # the probe examples' training indices
        assert torch.equal(probes[noise].x, probe.x)
        assert torch.equal(probes[noise].y, trained[k, at])
    assert torch.equal(probes[0.0].y, y[probe.x[:, 0].long()])
    assert (probes[0.5].y != probes[0.0].y).any(), "half the labels replaced: some differ"
    # the probe is a sample of the training set, not the corrupted examples first
    corrupted = set(corrupt_labels(data, 0.5, cfg.seed).meta["corrupted_indices"])
    share = sum(int(i) in corrupted for i in probe.x[:, 0]) / len(probe.x)
    assert 0.2 < share < 0.8, f"{share:.0%} of the probe examples are corrupted ones"


def test_the_best_single_setting_is_named_with_its_ceiling():
    """Label noise separates the gaps (0.1, 0.2 | 0.3, 0.4): 4 of 4 pairs, tau = (16 - 4 -
    4) / 12 = 2/3, its ceiling with two ties of two; lr orders 3 of 4 pairs (tau 1/3)."""
    rows = _rows([0.1, 0.3, 0.2, 0.4], [1.0, 3.0, 2.0, 4.0])
    (line,) = draw.setting_lines({"runs": rows, **draw.ranking(rows, 20, 0)})
    assert "label_noise orders the gap best: tau = 0.667, at most 0.667" in line
    assert "at label_noise 0.1 is above that of one at 0 in 4 of 4 pairs" in line
    assert line.endswith("indicators above it: Keskar sharpness.")


def test_saved_ranking_is_recomputed_from_the_saved_rows(results):
    fine = [r for r in results["runs"] if r["outcome"] == FINE]
    assert len(fine) >= 3, "the smoke profile must leave models to rank"
    gap = [r["gap"] for r in fine]
    for r in fine:
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
    for rec in results["ranking"]:
        tau = SIGNS[rec["indicator"]] * kendall_tau([r[rec["indicator"]] for r in fine], gap)
        if math.isnan(tau):
            assert rec["tau"] is None
        else:
            assert rec["tau"] == pytest.approx(tau)
            assert rec["lo"] <= rec["hi"]
    taus = [r["tau"] for r in results["ranking"] if r["tau"] is not None]
    assert taus == sorted(taus, reverse=True)


def test_every_model_met_the_target_or_is_named(results):
    cfg = EXPERIMENT.make_config("smoke")
    assert len(results["runs"]) == 4 * len(cfg.lr_factors) * len(cfg.label_noises) // 2
    for r in results["runs"]:
        if r["outcome"] == FINE:
            assert r["train_loss"] < cfg.train.stop_below_train_loss
            assert all(r[m] is not None for m in ("keskar", "l2_norm", "pac_bound", "regions"))
    text = " ".join(notes(results).observations)
    left_out = [r for r in results["runs"] if r["outcome"] != FINE]
    assert (f"{len(left_out)} of {len(results['runs'])}" in text) == bool(left_out)


def test_observations_and_summary_follow_the_saved_numbers(smoke, results):
    summary = json.loads((smoke(ID) / "summary.json").read_text())
    top = draw.best(results, "tau")
    first = next(o for o in summary["observations"] if o.startswith("Ranked first by tau"))
    assert f"{top['label']}, tau = {top['tau']:.3f}" in first
    assert ("excludes 0" in first) == (top["lo"] > 0)
    fine = sum(r["outcome"] == FINE for r in results["runs"])
    assert f"{fine} fine models enter the ranking" in summary["observations"][0]
    shares = results["probe_relabelled"]
    assert shares["0.0"] == 0.0 and shares["0.2"] > 0.0  # the smoke profile's two levels
    line = next(o for o in summary["observations"] if "own training labels" in o)
    assert all(f"{float(p):g}: {100 * v:.0f}%" in line for p, v in shares.items())
    # the verdicts of the fidelity table flip with the numbers
    flipped = {**results, "ranking": [{**r, "psi": -1.0} for r in results["ranking"]]}
    params = next(r for r in flipped["ranking"] if r["indicator"] == "params")
    params["psi"] = 1.0
    verdict = notes(flipped).fidelity[0]["verdict"]
    assert (
        verdict.startswith("differs because")
        and "parameter count (baseline) ranks first (Psi 1.000)" in verdict
    )
    assert "the sharpness family's best is" in verdict and "(Psi -1.000)" in verdict


def test_dinh_audit_changes_sharpness_and_norms_but_not_the_function(results):
    audit = results["dinh"]
    assert audit, "the smoke profile audits a fine model"
    tol = results["tolerance"]
    for d in audit:
        ind = d["indicators"]
        assert d["max_output_change"] < 1e-4
        assert ind["l2_norm"]["relative_change"] > tol  # weights scaled by 5 and 1/5
        assert ind["keskar"]["relative_change"] > tol
        for same in ("sensitivity", "jacobian", "path_norm", "spectral_product", "params"):
            assert ind[same]["relative_change"] <= tol, same
    changed, same = draw.dinh_verdicts(results)
    assert INDICATORS["l2_norm"] in changed and INDICATORS["sensitivity"] in same


def test_dinh_audit_of_a_tiny_model_by_hand():
    """L2 norm of the rescaled weights computed directly; the outputs and the spectral
    product (|a W1| |W2 / a|) stay."""
    data = load_dataset("digits").subset_train(40, seed=0)
    torch.manual_seed(0)
    model = MLP([64, 6, 10], "relu")
    x, y = probe_examples(data, 10, 0)
    probe = Probe(x, y, 40, 1e-3, 2, 0.1, 1, 0.3, 8, 0.1, 2, 0)
    audit = dinh_audit(model, flat_params(model), probe, data, 3.0)
    w1, b1, w2, b2 = (p.detach().double() for p in model.parameters())
    l2 = math.sqrt(sum(float((t**2).sum()) for t in (3 * w1, 3 * b1, w2 / 3, b2)))
    assert audit["indicators"]["l2_norm"]["rescaled"] == pytest.approx(l2, rel=1e-6)  # float32
    spectral = audit["indicators"]["spectral_product"]
    assert spectral["relative_change"] < 1e-6
    assert audit["max_output_change"] < 1e-4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"group": 99}, "group must be in"),
        ({"probe_examples": 2}, "probe_examples must be >= 3"),
        ({"train.stop_below_train_loss": 0.0}, "stop_below_train_loss"),
    ],
)
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(DlprobeError, match=message):
        EXPERIMENT.make_config("smoke", changes)
