"""Black-box verification: draw probes, pair clean and triggered versions, query the suspect, test.

Probability mode (DVBW): the score of each probe is the suspect's probability of the target class, with and
without the trigger, and a one-sided paired t-test with margin tau asks whether the trigger raises it by more
than tau. Label-only mode: probes the suspect already assigns to the target without the trigger are set aside
(they cannot show a change), and an exact one-sided binomial test asks whether the trigger sends more than a
fraction tau of the others to the target. Both nulls hold for any model that did not learn the watermark as
long as the trigger moves it by at most tau; the label-only test is exact, so its false-positive rate is <= alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._rng import keyed_scores, seed_secret, select_smallest
from ..data.records import Records
from ..exceptions import ParameterError, QueryBudgetError
from ..key import Key
from ..suspects.base import Suspect, labels_of, require_probs
from ..triggers.base import Trigger
from .result import VerificationResult
from .stats import binomial_test, paired_ttest

Mode = Literal["probs", "labels"]


@dataclass(frozen=True)
class PairedScores:
    """Per-probe scores with (treated) and without (control) the trigger.

    Probability mode: the target-class probability. Label-only mode: 1.0 where the predicted label is the
    target, else 0.0 (probes with ``control == 1`` cannot show a change and are set aside by the tests).
    """

    treated: np.ndarray
    control: np.ndarray


def check_budget(suspect: Suspect, n: int) -> None:
    """Refuse, before sending anything, a query of ``n`` examples that a suspect's budget cannot cover."""
    left = getattr(suspect, "budget_left", None)
    if left is not None and n > left:
        raise QueryBudgetError(f"This verification needs {n} queries but the suspect's query budget has {left} "
                               f"left; raise the budget (--budget), lower n_probe (--n-probe), or use sequential "
                               f"verification (--sequential), which stops early and within the budget.")


@dataclass(frozen=True, kw_only=True)
class Verifier:
    """Settings of a verification; ``None`` takes the value the key recommends (from the method's paper)."""

    mode: Mode = "probs"
    n_probe: int | None = None
    margin: float | None = None
    alpha: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("probs", "labels"):
            raise ParameterError(f"The verification 'mode' must be 'probs' or 'labels'; got '{self.mode}'.")
        if self.n_probe is not None and self.n_probe < 2:
            raise ParameterError(f"The 'n_probe' parameter must be >= 2; got {self.n_probe}.")
        if self.margin is not None and not 0.0 <= self.margin < 1.0:
            raise ParameterError(f"The 'margin' (tau) must be in [0, 1); got {self.margin}.")
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            raise ParameterError(f"The significance 'alpha' must be in (0, 1); got {self.alpha}.")

    def _settings(self, key: Key) -> tuple[int, float, float]:
        rec = key.verification
        n_probe = self.n_probe if self.n_probe is not None else int(rec.get("n_probe", 100))
        margin = self.margin if self.margin is not None else float(rec.get("margin", 0.2))
        alpha = self.alpha if self.alpha is not None else float(rec.get("alpha", 0.01))
        if self.mode == "labels" and margin <= 0.0:
            raise ParameterError("Label-only verification needs a margin tau in (0, 1): it is the flip rate allowed "
                                 "under H0.")
        return n_probe, margin, alpha

    def select_probes(self, key: Key, data: Records, n_probe: int, *, keyed_order: bool = False) -> np.ndarray:
        """Probe rows: held-out rows outside the target class, ranked by a keyed hash of ``seed`` (reproducible).

        Rows come in position order, or with ``keyed_order`` in the order of their keyed hash: a random order
        fixed by the seed, which a sequential test needs (any prefix is then a random sample of the probes).
        """
        eligible = data.labels != key.target if key.target is not None else np.ones(len(data), dtype=bool)
        available = int(eligible.sum())
        if available < 2:
            raise ParameterError(f"The probe data {data.where} has {available} rows outside the target class; "
                                 f"verification needs at least 2 (and {n_probe} by default).")
        k = min(n_probe, available)
        scores = keyed_scores(seed_secret(self.seed), data.ids, "probe")
        rows = select_smallest(scores, k, eligible)
        return rows[np.lexsort((rows, scores[rows]))] if keyed_order else rows

    def settings(self, key: Key) -> dict[str, Any]:
        """The resolved settings of a run with ``key`` (what an evidence file records and a resume must match)."""
        n_probe, margin, alpha = self._settings(key)
        return {"verifier": "fixed", "mode": self.mode, "n_probe": n_probe, "margin": margin, "alpha": alpha,
                "seed": self.seed}

    def _prepare(self, suspect: Suspect, key: Key, data: Records, *, keyed_order: bool = False
                 ) -> tuple[tuple[int, float, float], np.ndarray]:
        """Check the key, data and suspect agree (before any query); return the settings and the probe rows."""
        if key.target is None:
            raise ParameterError("This verifier handles targeted watermarks; the key has no target class.")
        settings = self._settings(key)
        key.check_data(data.num_classes, data.input_shape, f"the probe data {data.where}")
        key.check_data(suspect.num_classes, data.input_shape, "the suspect model")
        if self.mode == "probs":
            require_probs(suspect, "Probability-mode verification")
        return settings, self.select_probes(key, data, settings[0], keyed_order=keyed_order)

    def _query(self, suspect: Suspect, clean: np.ndarray, triggered: np.ndarray, target: int) -> PairedScores:
        """One query of the clean and triggered probes; the per-probe scores of this mode."""
        n = len(clean)
        check_budget(suspect, 2 * n)
        both = np.concatenate([clean, triggered])
        if self.mode == "probs":
            score = suspect.query(both)[:, target]
        else:
            score = (labels_of(suspect, both) == target).astype(np.float64)
        return PairedScores(treated=score[n:], control=score[:n])

    def _hypotheses(self, margin: float) -> tuple[str, str, str]:
        """(score, H0, H1) in words for this mode."""
        if self.mode == "probs":
            return ("target-class probability", f"mean(P_target(triggered) - P_target(clean)) <= tau = {margin:g}",
                    f"mean(P_target(triggered) - P_target(clean)) > tau = {margin:g}")
        return ("predicted label",
                f"P(label(triggered) = target | label(clean) != target) <= tau = {margin:g} "
                f"(the trigger sends at most a fraction tau of probes to the target)",
                f"P(label(triggered) = target | label(clean) != target) > tau = {margin:g}")

    def verify(self, suspect: Suspect, key: Key, data: Records, *, trigger: Trigger | None = None,
               trigger_label: str = "key") -> VerificationResult:
        """Test whether ``suspect`` carries the watermark of ``key``, probing with held-out ``data``.

        ``trigger`` replaces the key's trigger (the Independent-T control); the key's is used otherwise.
        """
        (n_probe, margin, alpha), rows = self._prepare(suspect, key, data)
        trigger = trigger or Trigger.from_config(key.trigger)
        clean = data.inputs()[rows]
        start = suspect.queries
        scores = self._query(suspect, clean, trigger.apply(clean), key.target)
        if self.mode == "probs":
            outcome = paired_ttest(scores.treated, scores.control, margin=margin, alternative="greater")
            excluded = 0
        else:
            kept = scores.control == 0
            excluded = int((~kept).sum())
            outcome = binomial_test(int(scores.treated[kept].sum()), int(kept.sum()), p0=margin)
        score, h0, h1 = self._hypotheses(margin)
        return VerificationResult(commitment=key.commitment, method=str(key.method.get("name")), mode=self.mode,
                                  score=score, h0=h0, h1=h1, alpha=alpha, outcome=outcome, n_probe_requested=n_probe,
                                  n_excluded=excluded, queries=suspect.queries - start, seed=self.seed,
                                  trigger=trigger_label)


def verify(suspect: Suspect, key: Key, data: Records, *, mode: Mode = "probs", **settings) -> VerificationResult:
    """Shorthand for ``Verifier(mode=mode, **settings).verify(suspect, key, data)``."""
    return Verifier(mode=mode, **settings).verify(suspect, key, data)
