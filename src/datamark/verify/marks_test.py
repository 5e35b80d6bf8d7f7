"""The exact test of multi-mark keys: does the suspect reveal the marks' secret choices more often than chance?

Each mark (see :mod:`datamark.marks`) hid one secret choice among ``options`` equally likely ones: a target class
(targeted methods), which of M + 1 candidate triggers was embedded (untargeted methods), or both (targeted
methods with candidates: a (candidate, class) pair, C x (M + 1) options). Per mark, the suspect's answers on
triggered probes -- the same probes asked with every trigger of the mark -- give one score per option
(:func:`option_scores`): for a targeted mark, per (candidate, class) the class's mean probability (or vote
share, label-only) among that candidate's triggered answers; for an untargeted mark, per candidate its effect
(mean 1 - P(true label), or share of labels off the true one). The mark singles out the option with the
strictly largest score (:func:`single_out`; ties single out nothing, so a constant model never hits) and is a
*hit* if that option is the secret one (:func:`mark_hit`, the one rule for every kind of mark).

H0: the suspect was not trained on this owner's watermarked data. Then the secret choices are uniform and
independent of the suspect and of the probes (probes are drawn with a different purpose of the secret, never
excluding a class), so each mark is a hit with probability at most 1 / options, independently across marks.
For a mark with candidates: the M + 1 candidates are drawn iid from the secret (each from its own purpose) and
none was ever seen by the suspect, so they are exchangeable; which one was embedded is an independent uniform
draw, and the target another, independent of both. The score table -- a function of the suspect, the probes
and the candidates, all asked in index order -- is therefore independent of the secret pair (embedded, target),
which is uniform over the C (M + 1) pairs: P(hit) = P(the strict maximum sits at that pair) <= 1 / (C (M + 1)),
with equality when the table has no ties. Nothing the verifier excludes depends on the secret (every class's
score counts, every probe is kept), which the bound needs.

* fixed n, counting hits (``marks-binomial``): p = P[Binomial(K, 1 / options) >= hits] is exact (one-sided, no
  margin needed);
* fixed n, keeping each mark's margin (``marks-randomization``, the default where a mark has only two options, as
  on binary tasks, where counting needs every one of 10 marks to hit): the statistic T sums, over marks, the share
  of the secret option minus the mean share of its class over all marks (:func:`centred_shares`: a model that
  answers every trigger with one class, or reacts to any trigger of the kind, gains nothing from it). Under H0 the
  secret choices are uniform over the options^K choice vectors and independent of the table, so
  p = #{choice vectors whose T >= the observed T} / options^K, enumerated exactly (:func:`randomization_p`,
  meet in the middle) -- a randomization test, valid for the same reason as the binomial one. Every mark is asked
  on the same probes (the table is still a function of the suspect, the probes and the triggers alone), so the
  marks' shares differ by their triggers, not by which hosts they were stamped on;
* sequential: the test martingale prod_j (1 + b (X_j / p0 - 1)), averaged over a few bets b, has expectation
  <= 1 under H0 whatever the order of marks, so stopping when it reaches 1 / alpha keeps the level alpha at any
  stopping time (Ville's inequality) -- and each mark is used once, so marks stay independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..exceptions import ParameterError
from ..marks import Mark
from .stats import TestOutcome, binomial_test

#: The name results give the randomization test (:func:`randomization_outcome`).
RANDOMIZATION_TEST_NAME = "exact randomization over marks' secret choices"
#: The largest half of the choice vectors :func:`randomization_p` enumerates (options ** ceil(K / 2)).
ENUMERATION_LIMIT = 2 ** 22
BETS = (0.2, 0.4, 0.6, 0.8)  # the mixture of bets of the sequential test (each a valid test martingale)
_LN10 = math.log(10.0)


def single_out(scores: np.ndarray) -> int | None:
    """The index of the strictly largest score, or None on a tie (a tie singles out nothing)."""
    best = int(np.argmax(scores))
    return None if int(np.sum(scores == scores[best])) > 1 else best


def class_scores(answers: np.ndarray, mode: str, num_classes: int) -> np.ndarray:
    """Per-class evidence from a mark's triggered probes: the mean probability, or the share of label votes."""
    if mode == "probs":
        return np.asarray(answers, dtype=np.float64).mean(axis=0)
    votes = np.bincount(np.asarray(answers, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return votes / max(len(answers), 1)


def off_true_score(answers: np.ndarray, mode: str, true: np.ndarray) -> float:
    """How far a candidate trigger pushes probes off their true label: mean 1 - P(true), or share of flips."""
    if mode == "probs":
        return float(np.mean(1.0 - np.asarray(answers)[np.arange(len(true)), true]))
    return float(np.mean(np.asarray(answers) != true))


def option_scores(mark: Mark, answers: list[np.ndarray], mode: str, true: np.ndarray, num_classes: int
                  ) -> np.ndarray:
    """The evidence for each of the mark's options, in the order of :meth:`Mark.choice`.

    ``answers`` holds one array per trigger in ``mark.triggers`` (its one trigger, or each candidate in order),
    all on the same probes with true labels ``true``. A targeted mark scores every (trigger, class) pair by
    :func:`class_scores`; an untargeted one every trigger by :func:`off_true_score`.
    """
    if mark.targeted:
        return np.concatenate([class_scores(a, mode, num_classes) for a in answers])
    return np.array([off_true_score(a, mode, true) for a in answers])


def is_hit(mark: Mark, scores: np.ndarray, num_classes: int) -> bool:
    """Whether the option scores of a mark (:func:`option_scores`) single out its secret choice."""
    return single_out(scores) == mark.choice(num_classes)


def mark_hit(mark: Mark, answers: list[np.ndarray], mode: str, true: np.ndarray, num_classes: int) -> bool:
    """Whether the suspect's answers single out the mark's secret choice (see :func:`option_scores`)."""
    return is_hit(mark, option_scores(mark, answers, mode, true, num_classes), num_classes)


def centred_shares(tables: np.ndarray, classes: int) -> np.ndarray:
    """Each mark's option scores (:func:`option_scores`: shares of its probes' answers) minus the mean score of the
    option's class over every mark and candidate (``tables``: K x options, options numbered
    ``candidate * classes + class``; an untargeted mark has ``classes`` = 1, so only a constant is removed). What
    is left is how much more a mark's trigger moves the suspect to a class than the key's triggers do on average."""
    shares = np.asarray(tables, dtype=np.float64)
    per_class = shares.reshape(len(shares), -1, classes).mean(axis=(0, 1))
    return shares - np.tile(per_class, shares.shape[1] // classes)


def enumerable(options: int, n_marks: int) -> bool:
    """Whether :func:`randomization_p` can enumerate every choice vector of ``n_marks`` marks exactly."""
    return options ** math.ceil(n_marks / 2) <= ENUMERATION_LIMIT


def _half_sums(rows: np.ndarray) -> np.ndarray:
    """sum_k rows[k, c_k] for every choice vector c of these rows."""
    sums = np.zeros(1)
    for row in rows:
        sums = (sums[:, None] + row[None, :]).ravel()
    return sums


def randomization_p(table: np.ndarray, choices: np.ndarray) -> tuple[float, float, float]:
    """(p, log10 p, T): the exact share of the options^K choice vectors c with sum_k table[k, c_k] >= the observed
    sum at ``choices``, enumerated by meeting in the middle (both halves' sums, one sorted). Sums within a rounding
    tolerance of the observed count as >=, so ties never make p smaller."""
    table = np.asarray(table, dtype=np.float64)
    n_marks, options = table.shape
    if not enumerable(options, n_marks):
        raise ParameterError(f"The randomization marks test would enumerate {options}^{n_marks} choice vectors; "
                             f"that is too many. Verify this key with the test 'marks-binomial'.")
    observed = float(table[np.arange(n_marks), np.asarray(choices)].sum())
    tolerance = 1e-9 * (1.0 + float(np.abs(table).max(axis=1).sum()))
    first, second = _half_sums(table[:n_marks // 2]), np.sort(_half_sums(table[n_marks // 2:]))
    at_least = int((len(second) - np.searchsorted(second, observed - tolerance - first, side="left")).sum())
    log10_p = math.log10(at_least) - n_marks * math.log10(options)
    return float(10.0 ** log10_p), log10_p, observed


def randomization_outcome(shares: np.ndarray, choices: np.ndarray, hits: int) -> TestOutcome:
    """The exact randomization test over the marks' secret choices on :func:`centred_shares` (see the module)."""
    n_marks, options = np.asarray(shares).shape
    p, log10_p, statistic = randomization_p(shares, choices)
    null = (f"the suspect did not learn this key's marks: the {n_marks} secret choices are uniform over the "
            f"{options}^{n_marks} choice vectors and independent of its answers")
    return TestOutcome(RANDOMIZATION_TEST_NAME, "greater", null, 1.0 / options, n_marks,
                       statistic, p, log10_p, statistic / n_marks,
                       f"T = {statistic:.3f}: the marks' secret options took {statistic / n_marks:+.3f} of the probes' "
                       f"answers more than the key's average for their class; {hits} of {n_marks} marks singled "
                       f"out their secret choice")


def marks_outcome(hits: int, n_marks: int, options: int) -> TestOutcome:
    """The exact one-sided binomial test on the number of hits among ``n_marks`` marks."""
    p0 = 1.0 / options
    base = binomial_test(hits, n_marks, p0=p0)
    null = (f"the suspect did not learn this key's marks: each of the {n_marks} marks is a hit with probability "
            f"<= 1/{options} = {p0:.3g}, independently")
    return TestOutcome("exact binomial over marks", "greater", null, p0, n_marks, float(hits), base.p_value,
                       base.log10_p, base.effect, f"{hits} of {n_marks} marks revealed their secret choice")


def e_process(hits: list[bool], options: int) -> np.ndarray:
    """log of the mixture test martingale after each mark (hits in the order the marks were asked)."""
    p0 = 1.0 / options
    x = np.asarray(hits, dtype=np.float64)
    factors = 1.0 + np.asarray(BETS)[:, None] * (x[None, :] / p0 - 1.0)
    wealth = np.exp(np.cumsum(np.log(factors), axis=1)).mean(axis=0)
    return np.log(wealth)


@dataclass(frozen=True)
class SequentialMarks:
    """Where the sequential marks test stands after some marks: its wealth and whether it can still reject."""

    log_wealth: np.ndarray  # after each mark asked
    n_marks: int
    options: int

    @property
    def max_log_wealth(self) -> float:
        return float(max(0.0, self.log_wealth.max())) if len(self.log_wealth) else 0.0

    def rejected(self, alpha: float) -> bool:
        return self.max_log_wealth >= math.log(1.0 / alpha)

    def hopeless(self, alpha: float) -> bool:
        """Even if every remaining mark hit, the wealth could not reach 1 / alpha: stopping loses no power."""
        left = self.n_marks - len(self.log_wealth)
        now = float(np.exp(self.log_wealth[-1])) if len(self.log_wealth) else 1.0
        p0 = 1.0 / self.options
        best = now * max((1 + b * (1 / p0 - 1)) ** left for b in BETS) * len(BETS)  # loose upper bound
        return not self.rejected(alpha) and best < 1.0 / alpha

    def outcome(self, hits: int) -> TestOutcome:
        asked = len(self.log_wealth)
        log10_p = -self.max_log_wealth / _LN10
        null = (f"the suspect did not learn this key's marks: each mark is a hit with probability <= "
                f"1/{self.options}, independently of the marks before it")
        statistic = float(self.log_wealth[-1] / _LN10) if asked else 0.0
        return TestOutcome("betting e-process over marks (anytime-valid)", "greater", null, 1.0 / self.options,
                           asked, statistic, float(10.0 ** log10_p), log10_p, hits / asked if asked else float("nan"),
                           f"{hits} of {asked} marks asked revealed their secret choice; statistic = log10 e-value "
                           f"at the stop; p = 1 / max e-value (Ville)")
