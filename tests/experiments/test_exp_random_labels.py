import pytest
import torch
from exp_util import load_results

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.random_labels import EXPERIMENT, noisy_copies, notes

pytestmark = pytest.mark.xdist_group("random-labels")


def test_recorded_noise_levels_and_curves_cover_every_level_and_seed(smoke):
    results = load_results(smoke("random-labels"))
    cfg = EXPERIMENT.make_config("smoke")
    assert results["noise_levels"] == list(cfg.noise_levels)
    assert [r["noise"] for r in results["levels"]] == list(cfg.noise_levels)
    seeds = set(range(cfg.seed, cfg.seed + cfg.seeds))
    every = cfg.train.eval_every_epochs
    epochs = list(range(every, cfg.train.epochs + 1, every))
    for p in cfg.noise_levels:
        for s in seeds:
            rows = [r for r in results["curves"] if r["noise"] == p and r["seed"] == s]
            assert [r["epoch"] for r in rows] == epochs
        finals = [r for r in results["final"] if r["noise"] == p]
        assert {r["seed"] for r in finals} == seeds
        for r in finals:
            assert 0.0 <= r["critical_ratio"] <= 1.0
            assert r["l2_total"] > 0 and r["path_norm"] > 0
            assert r["peak_test_accuracy"] >= r["test_accuracy"]
            fit = r["epochs_to_fit"]
            assert fit is None or 1 <= fit <= cfg.train.epochs


def test_label_noise_leaves_the_test_labels_untouched():
    cfg = EXPERIMENT.make_config("quick", {"train_subset": 300, "noise_levels": (0.0, 0.4, 1.0)})
    raw = load_dataset(cfg.dataset)
    clean = raw.subset_train(cfg.train_subset, seed=cfg.seed)
    noisy = noisy_copies(cfg, clean)
    assert list(noisy) == [0.0, 0.4, 1.0]
    for p, data in noisy.items():
        assert torch.equal(data.y_test, raw.y_test), f"test labels changed at noise {p}"
        assert torch.equal(data.x_test, raw.x_test)
        assert torch.equal(data.x_train, clean.x_train)
        changed = (data.y_train != clean.y_train).float().mean().item()
        # shuffling keeps ~1/10 of the chosen labels by chance, never changes unchosen ones
        assert changed <= p + 1e-9
        assert changed >= 0.7 * p
    assert torch.equal(noisy[0.0].y_train, clean.y_train)


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="needs 0"):
        EXPERIMENT.make_config("quick", {"noise_levels": (0.5, 1.0)})
    with pytest.raises(DlprobeError, match="noise_levels must be <= 1"):
        EXPERIMENT.make_config("quick", {"noise_levels": (0.0, 1.5)})
    with pytest.raises(DlprobeError, match="repeated"):
        EXPERIMENT.make_config("quick", {"noise_levels": (0.0, 0.5, 0.5)})
    with pytest.raises(DlprobeError, match="corruption"):
        EXPERIMENT.make_config("quick", {"corruption": "flip"})
    with pytest.raises(DlprobeError, match="batch_size"):
        EXPERIMENT.make_config("quick", {"train_subset": 100, "train.batch_size": 128})


def test_quick_stand_in_is_digits_and_full_profile_is_the_homework_setting():
    quick = EXPERIMENT.make_config("quick")
    assert quick.dataset == "digits" and quick.hidden == (128, 128, 128)
    full = EXPERIMENT.make_config("full")
    assert full.dataset == "mnist" and full.hidden == (256, 256, 256) and full.train_subset == 0
    assert full.noise_levels == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert full.train.epochs == 200 and full.train.schedule == "cosine"


def _all_fine(results: dict, test_accuracy: dict[float, float]) -> dict:
    """The smoke results with every run fine, at the given mean test accuracy per level."""
    for r in results["final"]:
        r.update(outcome="fine", test_accuracy=test_accuracy[r["noise"]], train_loss=0.01)
        r["peak_test_accuracy"] = r["test_accuracy"]
    return results


def test_notes_follow_the_numbers_and_name_the_confound(smoke):
    results = _all_fine(load_results(smoke("random-labels")), {0.0: 0.95, 0.5: 0.6, 1.0: 0.1})
    n = notes(results)
    verdicts = {f["claim"]: f["verdict"] for f in n.fidelity}
    assert len(n.fidelity) == 7  # one row per reference result of SPEC.md
    assert verdicts["test accuracy falls with the noise"] == "reproduced"
    assert verdicts["random labels are fitted: training loss about 0"] == "reproduced"
    # smoke has no level in 60-80%: the claim cannot be reproduced, and says why
    assert "no level in 60-80%" in verdicts["at 60-80% noise test accuracy rises, then falls"]
    text = " ".join(n.observations)
    assert "(rise, then fall)" not in text  # peak == final everywhere
    assert "Confound:" in text and "r = " in text
    assert "the homework's regime" in text  # clean test accuracy 0.95 >= 0.9
    # a test accuracy that goes back up with the noise is not called a fall
    results = _all_fine(results, {0.0: 0.5, 0.5: 0.6, 1.0: 0.1})
    for r in results["final"]:
        if r["noise"] == 0.5:
            r["peak_test_accuracy"] = 0.7
    n = notes(results)
    verdicts = {f["claim"]: f["verdict"] for f in n.fidelity}
    assert verdicts["test accuracy falls with the noise"].startswith("differs because")
    text = " ".join(n.observations)
    assert "50% 0.700 (epoch" in text and "-> 0.600 (rise, then fall)" in text
    assert "below 0.9, unlike the homework's" in text


def test_runs_that_did_not_fit_are_left_out_of_the_trends_and_named(smoke):
    results = _all_fine(load_results(smoke("random-labels")), {0.0: 0.95, 0.5: 0.6, 1.0: 0.1})
    miss = next(r for r in results["final"] if r["noise"] == 1.0)
    miss.update(outcome="not converged", test_accuracy=0.99)
    n = notes(results)
    text = " ".join(n.observations)
    assert f"1 trained but missed train accuracy 0.99 (100% noise, seed {miss['seed']})" in text
    key = "100% noise: fine runs, train / test / peak test accuracy, critical ratio, L2 norm"
    assert n.summary[key][0] == len(results["seeds"]) - 1
    assert n.summary[key][2] == pytest.approx(0.1)  # the missed run's 0.99 is not in the mean
    assert f"(n={len(results['final']) - 1})" in text  # correlations over the fine runs only
