"""Welch's t-test computed with the standard library, against scipy's, and the verdict rule tables print."""

from __future__ import annotations

import random

import pytest

from effdet_plugin.commands.compare import incomplete_beta, verdict, welch_p

CASES = [
    ([0.332, 0.384, 0.276], [0.457, 0.429, 0.396]),  # three seeds each, p near 0.07
    ([0.374, 0.361, 0.387], [0.380, 0.356, 0.404]),  # level
    ([0.61, 0.62, 0.60, 0.63, 0.61], [0.55, 0.56, 0.54]),  # unequal counts, clearly apart
    ([0.5, 0.5, 0.5], [0.40, 0.45, 0.41]),  # one side without spread
    ([1e-4, 2e-4], [3e-4, 5e-4, 4e-4, 8e-4]),  # tiny figures: no absolute tolerance hides an error
    ([10.0, 12.0, 11.0, 13.0, 9.0, 10.5, 11.5, 12.5, 9.5, 10.0], [11.0, 11.2, 10.8, 11.1]),  # many seeds
    ([0.0, 1.0], [100.0, 101.0]),  # t far in the tail: p of order 1e-4
]


@pytest.mark.parametrize("a, b", CASES)
def test_welch_p_equals_scipy(a, b):
    from scipy.stats import ttest_ind

    expected = float(ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p(a, b) == pytest.approx(expected, rel=1e-9)
    assert welch_p(b, a) == pytest.approx(expected, rel=1e-9)


def test_welch_p_equals_scipy_on_random_samples():
    from scipy.stats import ttest_ind

    rng = random.Random(0)
    for _ in range(300):
        scale = rng.choice([1e-3, 1.0, 1e3])
        a = [rng.gauss(0, scale) for _ in range(rng.randint(2, 9))]
        shift, sd = rng.choice([0, 0.5, 3]) * scale, scale * rng.choice([0.2, 1, 5])
        b = [rng.gauss(shift, sd) for _ in range(rng.randint(2, 9))]
        assert welch_p(a, b) == pytest.approx(float(ttest_ind(a, b, equal_var=False).pvalue), rel=1e-8)


def test_incomplete_beta_equals_scipy_across_the_switch_point():
    from scipy.special import betainc

    for a, b in [(0.5, 0.5), (1.5, 0.5), (30.0, 0.5), (2.0, 7.0)]:
        for x in [0.0, 1e-6, 0.1, 0.5, a / (a + b), 0.9, 1 - 1e-9, 1.0]:
            assert incomplete_beta(a, b, x) == pytest.approx(float(betainc(a, b, x)), rel=1e-10, abs=1e-300)


def test_untestable_samples_give_no_p():
    assert welch_p([0.5], [0.4, 0.5]) is None  # one seed
    assert welch_p([0.4, 0.4], [0.3, 0.3]) is None  # no spread on either side


def test_verdict_claims_only_with_three_seeds_and_p_at_most_alpha():
    ahead = verdict([0.61, 0.62, 0.60, 0.63], [0.55, 0.56, 0.54])
    assert ahead.word == "ahead" and ahead.p < 0.05 and ahead.seeds == 3 and ahead.difference == pytest.approx(0.065)
    assert verdict([0.55, 0.56, 0.54], [0.61, 0.62, 0.60, 0.63]).word == "behind"
    # the same gap on two seeds: p is small, still level
    two = verdict([0.61, 0.62], [0.55, 0.56])
    assert two.word == "level" and two.p < 0.05 and two.seeds == 2
    # within noise: level, with its p
    noisy = verdict([0.374, 0.361, 0.387], [0.380, 0.356, 0.404])
    assert noisy.word == "level" and noisy.p > 0.05
    # one seed: no p, level
    assert verdict([0.9], [0.1, 0.2, 0.3]) == ("level", pytest.approx(0.7), None, 1)
