"""Pure hypothesis tests on paired scores (numpy/scipy only; no models, no queries).

Each test returns a :class:`TestOutcome` with the statistic, the p-value and its log10 (exact even where the
p-value underflows), the effect, n, the margin and the null hypothesis in words. Degenerate inputs never crash:
n < 2 gives p = 1 (no evidence); zero-variance differences fall back to the exact sign test. Both cases warn
with :class:`DegenerateTestWarning`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from ..exceptions import DegenerateTestWarning, ParameterError

Alternative = Literal["greater", "less"]
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class TestOutcome:
    """The result of one test. ``effect`` is the mean paired difference (treated - control), or a rate."""

    test: str
    alternative: str
    null_hypothesis: str
    margin: float
    n: int
    statistic: float
    p_value: float
    log10_p: float
    effect: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired(treated, control) -> np.ndarray:
    treated, control = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if treated.shape != control.shape or treated.ndim != 1:
        raise ParameterError(f"Paired tests need two vectors of equal length; got shapes {treated.shape} and "
                             f"{control.shape}.")
    if not (np.isfinite(treated).all() and np.isfinite(control).all()):
        raise ParameterError("Paired tests need finite scores; got NaN or infinity.")
    return treated - control


def _check_alternative(alternative: str) -> None:
    if alternative not in ("greater", "less"):
        raise ParameterError(f"The 'alternative' must be 'greater' or 'less'; got '{alternative}'.")


def _null_text(alternative: str, margin: float, what: str) -> str:
    if alternative == "greater":
        return f"{what} of (treated - control) <= {margin:g}"
    return f"{what} of (treated - control) >= {-margin:g}"


def _sign_fallback(shifted: np.ndarray, alternative: str) -> tuple[float, float]:
    """Exact one-sided sign test on margin-shifted differences: p = 2^-n if all lie strictly on the H1 side."""
    beyond = shifted > 0 if alternative == "greater" else shifted < 0
    if beyond.all():
        return 0.5 ** len(shifted), -len(shifted) * math.log10(2.0)
    return 1.0, 0.0


def _degenerate(name: str, alternative: str, null: str, margin: float, n: int, effect: float,
                note: str) -> TestOutcome:
    warnings.warn(f"{name}: {note}", DegenerateTestWarning, stacklevel=3)
    return TestOutcome(name, alternative, null, margin, n, float("nan"), 1.0, 0.0, effect, note)


def paired_ttest(treated, control, *, margin: float = 0.0, alternative: Alternative = "greater") -> TestOutcome:
    """One-sided paired t-test with a margin.

    ``greater``: H0: mean(treated - control) <= margin, H1: it exceeds margin (DVBW: target probability with the
    trigger exceeds that without it by more than tau). ``less``: H0: mean(treated - control) >= -margin, H1: the
    treated score is lower by more than margin (UBW: the true-label probability drops by more than tau).
    """
    _check_alternative(alternative)
    diff = _paired(treated, control)
    n, name = len(diff), "paired t-test"
    null = _null_text(alternative, margin, "mean")
    effect = float(diff.mean()) if n else float("nan")
    if n < 2:
        return _degenerate(name, alternative, null, margin, n, effect, f"n={n} < 2 pairs; reporting p = 1")
    shifted = diff - margin if alternative == "greater" else diff + margin
    sd = shifted.std(ddof=1)
    if sd == 0.0 or not np.isfinite(sd):
        p, log10_p = _sign_fallback(shifted, alternative)
        warnings.warn(f"{name}: all {n} differences are equal; used the exact sign test", DegenerateTestWarning,
                      stacklevel=2)
        return TestOutcome(name, alternative, null, margin, n, float("nan"), p, log10_p, effect,
                           "zero variance: exact sign test")
    t = float(shifted.mean() / (sd / math.sqrt(n)))
    logp = stats.t.logsf(t, n - 1) if alternative == "greater" else stats.t.logcdf(t, n - 1)
    return TestOutcome(name, alternative, null, margin, n, t, float(math.exp(logp)), float(logp / _LN10), effect)


def wilcoxon_signed_rank(treated, control, *, margin: float = 0.0,
                         alternative: Alternative = "greater") -> TestOutcome:
    """One-sided Wilcoxon signed-rank test on margin-shifted paired differences (zeros dropped, Wilcoxon's rule).

    ``greater``: H0: the differences (treated - control - margin) are symmetric about a point <= 0.
    """
    _check_alternative(alternative)
    diff = _paired(treated, control)
    shifted = diff - margin if alternative == "greater" else diff + margin
    nonzero = shifted[shifted != 0]
    name, null = "Wilcoxon signed-rank", _null_text(alternative, margin, "median (pseudo-median)")
    effect = float(diff.mean()) if len(diff) else float("nan")
    if len(nonzero) < 2:
        if len(nonzero) == 0:
            return _degenerate(name, alternative, null, margin, len(diff), effect,
                               "no non-zero shifted differences; reporting p = 1")
        p, log10_p = _sign_fallback(nonzero, alternative)
        return TestOutcome(name, alternative, null, margin, len(diff), float("nan"), p, log10_p, effect,
                           "one non-zero difference: exact sign test")
    res = stats.wilcoxon(nonzero, alternative=alternative, zero_method="wilcox")
    p = float(res.pvalue)
    return TestOutcome(name, alternative, null, margin, len(diff), float(res.statistic), p,
                       float(math.log10(p)) if p > 0 else float("-inf"), effect)


def binomial_test(successes: int, n: int, *, p0: float) -> TestOutcome:
    """Exact one-sided binomial test. H0: the success probability is <= p0; H1: it is greater.

    Used for label-only verification: a success is a probe whose prediction the trigger sends to the target
    (or, untargeted, away from the true label); ``p0`` is the margin, the largest rate a model that never saw
    the watermark is allowed under H0.
    """
    if not 0.0 < p0 < 1.0:
        raise ParameterError(f"The binomial test's p0 (label-only margin) must be in (0, 1); got {p0}.")
    if not 0 <= successes <= n:
        raise ParameterError(f"successes must be in [0, n]; got {successes} of {n}.")
    name, null = "exact binomial", f"P(success) <= {p0:g}"
    rate = successes / n if n else float("nan")
    if n < 1:
        return _degenerate(name, "greater", null, p0, n, rate, "no trials; reporting p = 1")
    logp = float(stats.binom.logsf(successes - 1, n, p0)) if successes > 0 else 0.0
    return TestOutcome(name, "greater", null, p0, n, float(successes), float(math.exp(logp)), logp / _LN10, rate)
