import pytest
import torch
from exp_util import assert_complete_run, assert_redraws, load_results, run_smoke

from dlprobe import DlprobeError
from dlprobe.data import load_dataset
from dlprobe.experiments.random_labels import PROFILES, Config, prepare_data

FIGURES = ["loss", "accuracy", "noise-curves", "noise-fit", "noise-complexity"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return run_smoke("random-labels", tmp_path_factory.mktemp("runs"))


def test_smoke_run_through_cli_and_redraw(smoke_run):
    assert_complete_run(smoke_run, FIGURES)
    assert_redraws(smoke_run)


def test_recorded_noise_levels_and_curves_cover_every_level_and_seed(smoke_run):
    results = load_results(smoke_run)
    cfg = PROFILES["smoke"]
    assert results["noise_levels"] == list(cfg.noise_levels)
    assert [r["noise"] for r in results["levels"]] == list(cfg.noise_levels)
    seeds = set(range(cfg.seed, cfg.seed + cfg.seeds))
    epochs = list(range(cfg.eval_every_epochs, cfg.epochs + 1, cfg.eval_every_epochs))
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
            assert fit is None or 1 <= fit <= cfg.epochs


def test_label_noise_leaves_the_test_labels_untouched():
    cfg = Config(train_subset=300, noise_levels=(0.0, 0.4, 1.0))
    clean, noisy = prepare_data(cfg, "cpu")
    raw = load_dataset(cfg.dataset)
    assert torch.equal(clean.y_test, raw.y_test) and torch.equal(clean.x_test, raw.x_test)
    for p, data in noisy.items():
        assert torch.equal(data.y_test, raw.y_test), f"test labels changed at noise {p}"
        assert torch.equal(data.x_train, clean.x_train)
        changed = (data.y_train != clean.y_train).float().mean().item()
        # shuffling keeps ~1/10 of the chosen labels by chance, never changes unchosen ones
        assert changed <= p + 1e-9
        assert changed >= 0.7 * p
    assert torch.equal(noisy[0.0].y_train, clean.y_train)


def test_bad_settings_are_rejected_before_training():
    with pytest.raises(DlprobeError, match="contain 0"):
        Config(noise_levels=(0.5, 1.0)).validate()
    with pytest.raises(DlprobeError, match=r"\[0, 1\]"):
        Config(noise_levels=(0.0, 1.5)).validate()
    with pytest.raises(DlprobeError, match="corruption"):
        Config(corruption="flip").validate()


def test_full_profile_is_the_homework_setting():
    full = PROFILES["full"]
    full.validate()
    assert full.dataset == "mnist" and full.hidden == (256, 256, 256) and full.train_subset == 0
    assert full.noise_levels == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
