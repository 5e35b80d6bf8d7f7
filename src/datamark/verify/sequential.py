"""Sequential (anytime-valid) verification: query in small rounds, stop as soon as the evidence is conclusive.

The test is a *test martingale by betting* (Shafer 2021; Waudby-Smith & Ramdas 2023, "Estimating means of
bounded random variables by betting", JRSS-B). Observations x_t lie in [lower, upper]; H0: E[x_t | past] <= m
(the margin tau). A gambler starting with wealth 1 bets a fraction lambda_t >= 0 on x_t exceeding m:

    K_t = prod_{i <= t} (1 + lambda_i (x_i - m)),   0 <= lambda_i < 1 / (m - lower)   (so K_t > 0),

with lambda_i chosen from x_1..x_{i-1} only (predictable). Under H0 K_t is a non-negative supermartingale, so by
Ville's inequality P(sup_t K_t >= 1/alpha) <= alpha: rejecting the first time K_t reaches 1/alpha keeps the
false-positive rate <= alpha *whenever* we stop or look, and 1 / max_t K_t is an anytime-valid p-value.
The bet is aGRAPA (the approximate growth-rate-optimal lambda = mean / second moment of the past payoffs, with
one pseudo-observation so the first bet is small), capped at ``bet_cap`` / (m - lower); W-S & R use caps of
1/2 to 3/4.

- Probability mode: x = P_target(triggered) - P_target(clean) in [-1, 1], m = tau; for an untargeted key
  x = P_true(clean) - P_true(triggered), on probes the suspect classifies correctly.
- Label-only mode: x = 1 if the trigger sends a probe to the target (untargeted: off its true label); probes
  that already do so without it are set aside; x in {0, 1}, m = p0 = tau.

Futility: a mirror martingale tests H0': E[x] >= m. Reaching 1/alpha there shows, at level alpha, that the
trigger moves the suspect by less than tau, so the run stops early for an innocent model too. Stopping for
futility only ever removes rejections, so the type-I error of the main test stays <= alpha. H0 assumes the
probes are i.i.d. draws (the keyed probe order makes each prefix a random sample of the held-out data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..data.records import Records
from ..exceptions import ParameterError
from ..key import Key
from ..suspects.base import Suspect, as_suspect
from ..triggers.base import Trigger
from .marks_test import SequentialMarks, e_process
from .result import VerificationResult
from .stats import TestOutcome
from .verifier import Objective, PairedScores, Verifier, trigger_of

_LN10 = math.log(10.0)


def betting_log_wealth(x, *, margin: float, lower: float, bet_cap: float = 0.5, prior_var: float = 0.25
                       ) -> np.ndarray:
    """log K_t for t = 1..T of the betting martingale testing H0: E[x] <= margin (vectorised over leading axes).

    Args:
        x: observations in [lower, upper], time along the last axis.
        margin: m, the largest mean allowed under H0; must exceed ``lower``.
        lower: the smallest possible observation (bets are capped so wealth stays positive).
        bet_cap: fraction of the largest safe bet 1 / (m - lower) that may be wagered, in (0, 1).
        prior_var: second moment of the pseudo-observation that damps the first bets.
    """
    if not margin > lower:
        raise ParameterError(f"The betting test needs margin > lower bound; got margin={margin}, lower={lower}.")
    if not 0.0 < bet_cap < 1.0:
        raise ParameterError(f"The 'bet_cap' must be in (0, 1); got {bet_cap}.")
    y = np.asarray(x, dtype=np.float64) - margin
    if y.shape[-1] == 0:
        return np.zeros(y.shape)
    zero = np.zeros(y.shape[:-1] + (1,))
    past_sum = np.concatenate([zero, np.cumsum(y, axis=-1)[..., :-1]], axis=-1)
    past_sq = np.concatenate([zero, np.cumsum(y * y, axis=-1)[..., :-1]], axis=-1)
    count = np.arange(1, y.shape[-1] + 1)  # past observations + the pseudo-observation
    bet = np.clip((past_sum / count) / ((prior_var + past_sq) / count), 0.0, bet_cap / (margin - lower))
    return np.cumsum(np.log1p(bet * y), axis=-1)


@dataclass(frozen=True)
class SequentialState:
    """The betting test after some observations: main (H0: mean <= m) and futility (H0': mean >= m) wealth."""

    n: int
    log_wealth: float
    max_log_wealth: float
    futility_log_wealth: float
    mean: float

    def rejected(self, alpha: float) -> bool:
        return self.max_log_wealth >= math.log(1.0 / alpha)

    def futile(self, alpha: float) -> bool:
        return self.futility_log_wealth >= math.log(1.0 / alpha)


def betting_state(x, *, margin: float, lower: float, upper: float, bet_cap: float = 0.5) -> SequentialState:
    """Both martingales over the observations ``x`` (1-d, in arrival order)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or not np.isfinite(x).all() or (x < lower - 1e-9).any() or (x > upper + 1e-9).any():
        raise ParameterError(f"Sequential observations must be a finite 1-d array in [{lower}, {upper}].")
    if len(x) == 0:
        return SequentialState(0, 0.0, 0.0, 0.0, float("nan"))
    main = betting_log_wealth(x, margin=margin, lower=lower, bet_cap=bet_cap)
    mirror = betting_log_wealth(-x, margin=-margin, lower=-upper, bet_cap=bet_cap)
    # Wealth starts at 1 (log 0), so the running maxima are >= 0; "+ 0.0" turns -0.0 into 0.0 for printing.
    return SequentialState(len(x), float(main[-1]) + 0.0, float(max(0.0, main.max())),
                           float(max(0.0, mirror.max())), float(x.mean()))


def sequential_outcome(state: SequentialState, *, margin: float, what: str) -> TestOutcome:
    """A :class:`TestOutcome` of the betting test: statistic = log10 e-value, p = 1 / max e-value (anytime-valid)."""
    log10_p = -state.max_log_wealth / _LN10
    return TestOutcome("betting e-process (anytime-valid)", "greater", f"{what} <= {margin:g}", margin, state.n,
                       state.log_wealth / _LN10, float(10.0 ** log10_p), log10_p, state.mean,
                       "statistic = log10 of the e-value at the stop; p = 1 / max e-value (Ville)")


@dataclass(frozen=True, kw_only=True)
class SequentialVerifier(Verifier):
    """Query ``batch_size`` probe pairs at a time until the betting test is conclusive at level ``alpha``.

    ``n_probe`` is the most probes ever drawn (default: the key's). The run stops when H0 is rejected
    ("evidence"), when the mirror test shows the effect is below tau ("futility", unless ``futility`` is
    False), when the probes run out ("max_probes"), or before a round the suspect's query budget cannot pay
    for ("budget"). Queries go through the same scoring as the fixed-n :class:`Verifier`.

    A multi-mark key is tested mark by mark instead (one round = one mark on ``probes_per_mark`` probes): a
    betting e-process on the marks' hits (see :mod:`.marks_test`) stops as soon as it reaches 1 / alpha, or
    when no run of hits could still get there ("futility"). It bets on hits whatever fixed-n marks test the key
    names (a ``marks-randomization`` key too): hits are what can be judged one mark at a time.
    """

    batch_size: int = 10
    futility: bool = True
    bet_cap: float = 0.5
    probes_per_mark: int = 1

    supports_controls: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_control_triggers:  # 0 is allowed: it turns a single-mark key's default control off
            raise ParameterError("The trigger-specificity control runs with the fixed-n test only; drop "
                                 "--sequential or --control-triggers.")
        if self.batch_size < 1:
            raise ParameterError(f"The sequential 'batch_size' (probes per round) must be >= 1; got {self.batch_size}.")
        if not 0.0 < self.bet_cap < 1.0:
            raise ParameterError(f"The 'bet_cap' must be in (0, 1); got {self.bet_cap}.")
        if self.probes_per_mark < 1:
            raise ParameterError(f"The sequential 'probes_per_mark' must be >= 1; got {self.probes_per_mark}.")

    def settings(self, key: Key) -> dict[str, Any]:
        per_round = ({"probes_per_mark": self.probes_per_mark} if key.plan.uses_marks
                     else {"batch_size": self.batch_size, "bet_cap": self.bet_cap})
        return {**super().settings(key), "verifier": "sequential", **per_round, "futility": self.futility}

    def _verify_marks(self, suspect: Suspect, key: Key, data: Records, trigger_label: str) -> VerificationResult:
        """Ask the marks one at a time, in the key's order, until the e-process is conclusive."""
        self._no_controls_for_marks()
        start, marks = suspect.queries, key.mark_list()
        (n_probe, margin, alpha), rows = self._prepare(suspect, key, data, keyed_order=True)
        per_mark = min(self.probes_per_mark, len(rows) // len(marks))
        if per_mark < 1:
            raise ParameterError(f"The key has {len(marks)} marks but the probe data {data.where} gave only "
                                 f"{len(rows)} probes; give more probe data.")
        released = self.released_rows(key, marks)
        inputs, options = data.inputs(), marks[0].options(key.dataset["num_classes"])
        hits, rounds, success, stop = [], [], [], "max_marks"
        state = SequentialMarks(np.zeros(0), len(marks), options)
        for j, mark in enumerate(marks):
            need = self.mark_cost(mark, per_mark, released=len(released[j]) if released else 0)
            left = as_suspect(suspect).budget_left
            if left is not None and left < need:
                stop = "budget"
                break
            probe_rows = rows[j * per_mark:(j + 1) * per_mark]
            answer = self.ask_mark(suspect, mark, inputs[probe_rows], data.labels[probe_rows], margin,
                                   released=self.released_inputs(released, j))
            hits.append(answer.hit)
            success.append(answer.success)
            if answer.scores is not None:
                rounds.append(answer.scores)
            state = SequentialMarks(e_process(hits, options), len(marks), options)
            if state.rejected(alpha):
                stop = "evidence"
                break
            if self.futility and state.hopeless(alpha):
                stop = "futility"
                break
        details = {"stopped": stop, "probes_used": len(hits) * per_mark, "rounds": len(hits),
                   "probes_per_mark": per_mark, "e_value_log10": float(state.log_wealth[-1] / _LN10) if hits else 0.0,
                   "max_e_value_log10": state.max_log_wealth / _LN10}
        if key.plan.confusion_probes:  # the marks alone, at the whole alpha: a valid test on its own
            details["confusion_channel"] = ("not asked: the sequential test covers the marks only; verify without "
                                            "--sequential to add the key's confusion channel")
        return self.marks_result(key, state.outcome(int(sum(hits))), marks, int(sum(hits)), n_probe, margin, alpha,
                                 per_mark, success, rounds, suspect.queries - start, trigger_label, details)

    def _observations(self, scores: PairedScores, objective: Objective) -> np.ndarray:
        """The betting test's observations, oriented so that H1 is "mean above tau"."""
        if self.mode == "probs":
            diff = scores.treated - scores.control
            return (diff if objective.targeted else -diff)[scores.kept]
        return scores.treated[scores.kept]

    def verify(self, suspect: Suspect, key: Key, data: Records, *, trigger: Trigger | None = None,
               trigger_label: str = "key") -> VerificationResult:
        """Like :meth:`Verifier.verify`, in rounds, stopping as soon as the evidence is conclusive."""
        if key.plan.uses_marks:
            return super().verify(suspect, key, data, trigger=trigger, trigger_label=trigger_label)
        (n_probe, margin, alpha), rows = self._prepare(suspect, key, data, keyed_order=True)
        trigger, objective = trigger_of(key, trigger), Objective.of(key)
        inputs = data.inputs()
        lower = -1.0 if self.mode == "probs" else 0.0
        start, rounds_scores = suspect.queries, []
        state, stop, rounds = betting_state([], margin=margin, lower=lower, upper=1.0), "max_probes", 0
        for first in range(0, len(rows), self.batch_size):
            batch = rows[first:first + self.batch_size]
            clean = inputs[batch]
            left = as_suspect(suspect).budget_left
            if left is not None and left < 2 * len(clean):
                stop = "budget"
                break
            rounds_scores.append(self._query(suspect, clean, trigger.apply(clean), data.labels[batch], objective))
            rounds += 1
            x = np.concatenate([self._observations(s, objective) for s in rounds_scores])
            state = betting_state(x, margin=margin, lower=lower, upper=1.0, bet_cap=self.bet_cap)
            if state.rejected(alpha):
                stop = "evidence"
                break
            if self.futility and state.futile(alpha):
                stop = "futility"
                break
        probes = sum(len(s.treated) for s in rounds_scores)
        score, h0, h1 = self._hypotheses(margin, objective)
        what = {(True, "probs"): "mean(P_target(triggered) - P_target(clean))",
                (True, "labels"): "P(flip to target)",
                (False, "probs"): "mean(P_true(clean) - P_true(triggered))",
                (False, "labels"): "P(flip off the true label)"}[objective.targeted, self.mode]
        details = {"stopped": stop, "probes_used": probes, "rounds": rounds, "batch_size": self.batch_size,
                   "e_value_log10": state.log_wealth / _LN10, "max_e_value_log10": state.max_log_wealth / _LN10,
                   "futility_e_value_log10": state.futility_log_wealth / _LN10, "bet_cap": self.bet_cap}
        return VerificationResult(commitment=key.commitment, method=str(key.method.get("name")), mode=self.mode,
                                  score=score, h0=h0, h1=h1, alpha=alpha,
                                  outcome=sequential_outcome(state, margin=margin, what=what),
                                  n_probe_requested=n_probe, n_excluded=probes - state.n,
                                  queries=suspect.queries - start, seed=self.seed, trigger=trigger_label,
                                  sequential=details, deviations=self.deviations(key), **self._provenance(key))
