"""Bootstrap intervals and two-proportion tests (eval.stats)."""

import pytest

from eval.stats import bootstrap_ci, two_proportions


def test_bootstrap_ci_on_known_data():
    mean, lo, hi = bootstrap_ci([0.7] * 50)
    assert mean == lo == hi == pytest.approx(0.7)
    mean, lo, hi = bootstrap_ci([1.0] * 200 + [0.0] * 200)
    assert mean == 0.5 and 0.43 < lo < 0.47 and 0.53 < hi < 0.57  # about ±1.96 * 0.025
    assert bootstrap_ci([]) is None


def test_two_proportions_in_plain_words():
    sig = two_proportions(90, 100, 60, 100)
    assert sig["p_value"] < 0.001 and "statistically significant" in sig["plain"]
    not_sig = two_proportions(6, 10, 5, 10)
    assert not_sig["p_value"] > 0.5 and "could be chance" in not_sig["plain"]
