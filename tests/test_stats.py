import warnings

import numpy as np
import pytest
from scipy import stats

from datamark.exceptions import DegenerateTestWarning, ParameterError
from datamark.verify.stats import binomial_test, paired_ttest, wilcoxon_signed_rank


def test_ttest_matches_scipy_without_and_with_margin():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.2, 50), rng.normal(0.3, 0.2, 50)
    ours = paired_ttest(a, b, margin=0.0, alternative="greater")
    ref = stats.ttest_rel(a, b, alternative="greater")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9) and ours.statistic == pytest.approx(ref.statistic)
    ours = paired_ttest(a, b, margin=0.1, alternative="greater")
    ref = stats.ttest_1samp(a - b - 0.1, 0.0, alternative="greater")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.effect == pytest.approx(np.mean(a - b))


def test_ttest_less_is_the_mirror_of_greater():
    rng = np.random.default_rng(1)
    a, b = rng.random(40), rng.random(40)
    less = paired_ttest(a, b, margin=0.1, alternative="less")
    greater = paired_ttest(b, a, margin=0.1, alternative="greater")
    assert less.p_value == pytest.approx(greater.p_value, rel=1e-12)


def test_log10_p_survives_underflow():
    rng = np.random.default_rng(2)
    a, b = 0.99 + rng.normal(0, 1e-4, 100), rng.normal(0.01, 1e-4, 100)
    outcome = paired_ttest(a, b, margin=0.2)
    assert outcome.p_value == 0.0 and outcome.log10_p < -300


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.random(60), rng.random(60) * 0.8
    ours = wilcoxon_signed_rank(a, b, margin=0.1)
    ref = stats.wilcoxon(a - b - 0.1, alternative="greater")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_binomial_matches_scipy():
    ours = binomial_test(37, 100, p0=0.2)
    assert ours.p_value == pytest.approx(stats.binomtest(37, 100, 0.2, alternative="greater").pvalue, rel=1e-9)
    assert binomial_test(0, 100, p0=0.2).p_value == 1.0


@pytest.mark.parametrize("test", ["t", "wilcoxon", "binomial"])
def test_false_positive_rate_is_at_most_alpha_at_the_null_boundary(test):
    """Simulate models exactly at the H0 boundary (effect = margin); rejections at alpha=0.05 must be <= 5 %."""
    rng = np.random.default_rng(42)
    alpha, margin, n, runs = 0.05, 0.2, 50, 2000
    rejections = 0
    for _ in range(runs):
        if test == "binomial":
            p = binomial_test(int(rng.binomial(n, margin)), n, p0=margin).p_value
        else:
            control = rng.random(n)
            treated = control + margin + rng.normal(0, 0.1, n)
            fn = paired_ttest if test == "t" else wilcoxon_signed_rank
            p = fn(treated, control, margin=margin).p_value
        rejections += p < alpha
    upper = alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)  # Monte-Carlo slack of 3 standard errors
    assert rejections / runs <= upper


def test_power_under_h1():
    rng = np.random.default_rng(7)
    control = rng.random(100) * 0.1
    treated = np.clip(control + 0.6 + rng.normal(0, 0.1, 100), 0, 1)
    assert paired_ttest(treated, control, margin=0.2).p_value < 1e-10
    assert binomial_test(90, 100, p0=0.2).p_value < 1e-30


def test_degenerate_inputs_have_documented_outcomes():
    with pytest.warns(DegenerateTestWarning):
        assert paired_ttest([0.9], [0.1], margin=0.2).p_value == 1.0
    with pytest.warns(DegenerateTestWarning, match="sign test"):
        outcome = paired_ttest(np.ones(10), np.zeros(10), margin=0.2)
    assert outcome.p_value == pytest.approx(0.5 ** 10)
    with pytest.warns(DegenerateTestWarning):
        assert paired_ttest(np.zeros(10), np.zeros(10), margin=0.2).p_value == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired_ttest(np.random.default_rng(0).random(10), np.zeros(10), margin=0.2)  # no warning when regular


def test_bad_inputs_are_refused():
    with pytest.raises(ParameterError, match="equal length"):
        paired_ttest([1, 2, 3], [1, 2])
    with pytest.raises(ParameterError, match="finite"):
        paired_ttest([1, np.nan], [1, 2])
    with pytest.raises(ParameterError, match="alternative"):
        paired_ttest([1, 2], [1, 2], alternative="two-sided")
    with pytest.raises(ParameterError, match="p0"):
        binomial_test(3, 10, p0=0.0)


# --- the original DVBW label-only test, and why datamark does not use it -----------------------------------------
def original_dvbw_label_only_p(predictions, target):
    """As in the original DVBW code: two-sided Wilcoxon on (pred - target), reported as 1 - p."""
    return 1 - stats.wilcoxon(np.asarray(predictions) - target, zero_method="wilcox").pvalue


def test_original_label_only_test_misses_a_90_percent_watermark_and_ours_does_not():
    target, n = 0, 100
    preds = np.array([target] * 90 + list(np.random.default_rng(0).integers(1, 10, 10)))  # 90 % hit the target
    assert original_dvbw_label_only_p(preds, target) > 0.05  # "not verified": a false negative
    assert binomial_test(int((preds == target).sum()), n, p0=0.2).p_value < 1e-30


def test_original_label_only_test_accuses_a_benign_model_and_ours_does_not():
    target = 5
    preds = target + np.tile([-2, -1, 1, 2], 25)  # errors symmetric around the target, no target hits at all
    assert original_dvbw_label_only_p(preds, target) < 0.01  # "verified": a false accusation
    assert binomial_test(int((preds == target).sum()), 100, p0=0.2).p_value == 1.0
