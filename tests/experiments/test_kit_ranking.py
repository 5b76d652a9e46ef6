import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from dlprobe.experiments.kit.ranking import bootstrap_interval, granulated_tau, kendall_tau


def brute_tau(x, y):
    """Jiang et al.'s eq. 3 by a double loop over ordered pairs."""
    n, total = len(x), 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return total / (n * (n - 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tau_matches_a_double_loop_and_scipy_without_ties(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert kendall_tau(x, y) == pytest.approx(brute_tau(x, y), abs=1e-12)
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y)[0], abs=1e-12)


def test_tau_with_ties_none_and_extremes():
    x, y = [1, 1, 2, 3, None], [1, 2, 2, 3, 5.0]
    assert kendall_tau(x, y) == pytest.approx(brute_tau([1, 1, 2, 3], [1, 2, 2, 3]))
    assert kendall_tau([1, 2, 3], [3, 4, 9]) == 1.0
    assert kendall_tau([1, 2, 3], [9, 4, 3]) == -1.0
    assert math.isnan(kendall_tau([1.0, float("nan")], [1.0, 2.0]))


def test_granulated_tau_on_a_hand_made_grid():
    """Two axes a, b with two values each, two seeds: the gap follows a; the indicator
    follows a where b = 0 and opposes it where b = 1, and follows b everywhere."""
    rows = []
    for a, b, s in itertools.product((0, 1), (0, 1), (0, 1)):
        gap = a + 0.1 * s
        ind = (a if b == 0 else -a) + 10 * b + 0.01 * s
        rows.append({"a": a, "b": b, "s": s, "gap": gap, "m": ind})
    per_axis, psi = granulated_tau(rows, "m", "gap", ["a", "b", "s"])
    # axis a: groups (b, s) of 2 models differing in a: tau +1 where b = 0, -1 where b = 1
    assert per_axis["a"] == {"tau": 0.0, "groups": 4}
    # axis b: groups (a, s); the gap does not change with b (a tie): tau 0 in every group
    assert per_axis["b"] == {"tau": 0.0, "groups": 4}
    # axis s: groups (a, b); indicator and gap both rise with s
    assert per_axis["s"] == {"tau": 1.0, "groups": 4}
    assert psi == pytest.approx(1 / 3)
    # without s as an axis the seeds vary inside the groups: axis a's 2 groups (b = 0, 1)
    # of 4 have tau 1 and (2 agreeing - 4 disagreeing pairs) / 6 = -1/3, by hand
    per_axis, psi = granulated_tau(rows, "m", "gap", ["a", "b"])
    assert per_axis["a"]["groups"] == 2
    assert per_axis["a"]["tau"] == pytest.approx((1 - 1 / 3) / 2)
    assert per_axis["a"]["tau"] == pytest.approx(
        np.mean([brute_tau([r["m"] for r in rows if r["b"] == b],
                           [r["gap"] for r in rows if r["b"] == b]) for b in (0, 1)])
    )  # fmt: skip


def test_granulated_tau_skips_groups_of_one_and_undefined_axes():
    rows = [{"a": 0, "b": 0, "gap": 1.0, "m": 1.0}, {"a": 1, "b": 0, "gap": 2.0, "m": 3.0}]
    per_axis, psi = granulated_tau(rows, "m", "gap", ["a", "b"])
    assert per_axis["a"] == {"tau": 1.0, "groups": 1}
    assert per_axis["b"]["groups"] == 0 and math.isnan(per_axis["b"]["tau"])
    assert psi == 1.0


def test_bootstrap_interval_brackets_tau_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.5, size=40)
    lo, hi = bootstrap_interval(x, y, resamples=300, seed=1)
    assert lo < kendall_tau(x, y) < hi and lo > 0
    assert (lo, hi) == bootstrap_interval(x, y, resamples=300, seed=1)
    # a perfect ranking stays perfect in every resample (ties of duplicates count 0 and
    # lower tau-a, so the interval sits below 1 but above 0.8)
    lo, hi = bootstrap_interval(np.arange(30.0), np.arange(30.0), 200, 0)
    assert 0.8 < lo <= hi < 1.0
    assert all(math.isnan(v) for v in bootstrap_interval([1.0], [2.0], 10, 0))
