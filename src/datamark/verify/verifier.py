"""Black-box verification: draw probes, pair clean and triggered versions, query the suspect, test.

What the watermark does to a probe comes from the key (:class:`Objective`):

* **targeted** (DVBW, clean-label): the score of a probe is the suspect's probability of the target class, with
  and without the trigger; a one-sided paired test with margin tau (t-test, or Wilcoxon signed-rank where the
  key says so) asks whether the trigger *raises* it by more than tau. Probes come from outside the target class.
* **untargeted** (UBW): the score is the probability of the probe's *true* label; the same test, in the other
  direction, asks whether the trigger *lowers* it by more than tau (H1: P_benign > P_triggered + tau). Only probes
  the suspect classifies correctly without the trigger are used, as in the paper: more clean probes are queried
  until ``n_probe`` correct ones are found.

Label-only mode: a probe "succeeds" when the trigger sends its prediction to the target (targeted) or away from
the true label (untargeted); probes that already succeed without the trigger are set aside (they cannot show a
change), and an exact one-sided binomial test asks whether more than a fraction tau of the others succeed. Every
null holds for any model that did not learn the watermark as long as the trigger moves it by at most tau; the
label-only test is exact, so its false-positive rate is <= alpha.

Trigger-specificity control (``n_control_triggers`` = k > 0, a datamark addition): the kept probes are also
queried with k *independent* triggers of the key's kind, and an exact Monte Carlo rank test asks whether the
key's trigger moves the suspect more than random triggers of its kind do (p = (1 + #controls at least as strong)
/ (k + 1)). The suspect is accused only if both tests reject (an intersection-union test: its level is still
alpha). It guards against a model that reacts to *any* trigger of that kind -- for instance one trained on
somebody else's watermark of the same family -- which the first test alone would take for this key's watermark.
A key may recommend the control (UBW-C's does, k = 100: its paper objective fails Independent-T); a verifier left
at ``n_control_triggers=None`` follows the key, and an explicit 0 turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from .._rng import generator, keyed_scores, seed_secret, select_smallest
from ..confusion import partners
from ..data.records import Records
from ..exceptions import KeyFormatError, ParameterError, QueryBudgetError
from ..key import Key
from ..marks import Mark
from ..suspects.base import Suspect, as_suspect, labels_of, require_probs
from ..triggers.base import Trigger, carrying
from .confusion_test import class_scores, confusion_outcome, union_outcome
from .marks_test import (
    RANDOMIZATION_TEST_NAME,
    centred_shares,
    enumerable,
    is_hit,
    marks_outcome,
    option_scores,
    randomization_outcome,
)
from .marks_test import (
    class_scores as share_scores,
)
from .plan import (
    MARKS_RANDOMIZATION,
    SINGLE_MARK_CONTROLS,
    check_alpha,
    check_control_triggers,
    check_controls_reach,
    check_margin,
    check_n_probe,
)
from .result import VerificationResult
from .stats import TestOutcome, binomial_test, paired_ttest, wilcoxon_signed_rank

Mode = Literal["probs", "labels"]


class MarkAnswer(NamedTuple):
    """What one mark's probes told: whether it singled out the secret choice, the paired scores for the effect
    (probability mode; None label-only), its probes' success rate and every option's score (see
    :func:`datamark.verify.marks_test.option_scores`)."""

    hit: bool
    scores: PairedScores | None
    success: float
    options: np.ndarray


PAIRED_TESTS = {"paired-t": paired_ttest, "wilcoxon": wilcoxon_signed_rank}


def applicable_rows(key: Key, data: Records) -> np.ndarray:
    """Rows every trigger of ``key`` can mark (all rows, except for triggers such as a style rewrite that need
    something of the example); probes come only from these, whatever the suspect answers."""
    return carrying([Trigger.from_config(key.trigger), *(m.trigger for m in key.mark_list())], data)


@dataclass(frozen=True)
class Objective:
    """What a key's watermark does to a probe: push it to ``target`` or (``target is None``) off its true label.

    ``test`` is the paired test of probability mode ("paired-t" or "wilcoxon"), as the key recommends.
    """

    target: int | None
    test: str = "paired-t"

    @classmethod
    def of(cls, key: Key, target: int | None = None) -> Objective:
        """The objective of ``key`` (or of one of its marks, with that mark's ``target``); the paired test of
        probability mode is the key's (marks keys report a paired t-test as their effect)."""
        test = key.plan.test
        return cls(key.target if target is None else target, test if test in PAIRED_TESTS else "paired-t")

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def alternative(self) -> str:
        """The direction of H1 on (triggered - clean) scores: up for the target, down for the true label."""
        return "greater" if self.targeted else "less"

    def eligible(self, labels: np.ndarray) -> np.ndarray:
        """Rows that may serve as probes: outside the target class (targeted) or all rows (untargeted)."""
        return labels != self.target if self.targeted else np.ones(len(labels), dtype=bool)

    def probability(self, probs: np.ndarray, true: np.ndarray) -> np.ndarray:
        """The score of probability mode: P(target) or P(true label) per probe."""
        return probs[:, self.target] if self.targeted else probs[np.arange(len(probs)), true]

    def success(self, labels: np.ndarray, true: np.ndarray) -> np.ndarray:
        """The score of label-only mode: 1.0 where the prediction is the target / is not the true label."""
        hit = labels == self.target if self.targeted else labels != true
        return hit.astype(np.float64)

    def paired_test(self, treated: np.ndarray, control: np.ndarray, margin: float) -> TestOutcome:
        return PAIRED_TESTS[self.test](treated, control, margin=margin, alternative=self.alternative)


@dataclass(frozen=True)
class PairedScores:
    """Per-probe scores with (treated) and without (control) the trigger, and which probes the test uses.

    Probability mode: the probability of the target (targeted) or of the true label (untargeted); ``kept`` is
    all probes, or for untargeted keys those the suspect classifies correctly. Label-only mode: 1.0 where the
    probe succeeds (see :meth:`Objective.success`); ``kept`` is the probes that do not succeed without the trigger.
    """

    treated: np.ndarray
    control: np.ndarray
    kept: np.ndarray


def check_budget(suspect: Suspect, n: int, confusion: int = 0) -> None:
    """Refuse, before sending anything, a query of ``n`` examples that a suspect's budget cannot cover
    (``confusion`` of them the confusion channel's clean probes, which the key fixes)."""
    left = as_suspect(suspect).budget_left
    if left is not None and n > left:
        part = (f" ({confusion} of them the confusion channel's clean probes, fixed by the key; sequential "
                f"verification asks the marks only)" if confusion else "")
        raise QueryBudgetError(f"This verification needs {n} queries{part} but the suspect's query budget has "
                               f"{left} left; raise the budget (--budget), lower n_probe (--n-probe), or use "
                               f"sequential verification (--sequential), which stops early and within the budget.")


KEY_SEED = "key"  # how results show a probe seed derived from the key's (committed) secret


@dataclass(frozen=True, kw_only=True)
class Verifier:
    """Settings of a verification; ``None`` takes the value the key recommends (from the method's paper).

    ``seed=None`` (the default) derives the probe draw from the key's secret, which the published commitment
    fixes: the probes are chosen before anyone sees a suspect, so nobody can shop for a favourable seed. Any
    setting that differs from the key's plan is allowed but reported as a deviation in the result.
    """

    mode: Mode = "probs"
    n_probe: int | None = None
    margin: float | None = None
    alpha: float | None = None
    seed: int | None = None
    n_control_triggers: int | None = None  # specificity control's triggers; None: the key's plan
    # A single-mark key whose trigger was made by hand (not drawn from its secret) may accuse only with this: such
    # a trigger cannot be told from one a forger crafted on the suspect (see VerificationResult.owner_trigger).
    accept_owner_trigger: bool = False
    # The watermarked dataset protect wrote: a key whose plan asks the marked rows (graph keys) is verified on its
    # marks' released rows too (see datamark.verify.plan), which only the owner's copy of the release holds.
    released: Records | None = field(default=None, repr=False, compare=False)

    supports_controls: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.n_control_triggers is not None:
            check_control_triggers(self.n_control_triggers)
        if self.mode not in ("probs", "labels"):
            raise ParameterError(f"The verification 'mode' must be 'probs' or 'labels'; got '{self.mode}'.")
        if self.n_probe is not None:
            check_n_probe(self.n_probe)
        if self.margin is not None:
            check_margin(self.margin)
        if self.alpha is not None:
            check_alpha(self.alpha)
        if self.released is not None and not isinstance(self.released, Records):
            raise ParameterError(f"The verifier's 'released' must be the watermarked dataset as loaded "
                                 f"(datamark.data.load_data); got {type(self.released).__name__}.")
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool)):
            raise ParameterError(f"The probe 'seed' must be an integer or None (derived from the key); got "
                                 f"{self.seed!r}.")

    def _settings(self, key: Key) -> tuple[int, float, float]:
        plan = key.plan
        n_probe = self.n_probe if self.n_probe is not None else plan.n_probe
        margin = self.margin if self.margin is not None else plan.margin
        alpha = self.alpha if self.alpha is not None else plan.alpha
        if self.mode == "labels" and margin <= 0.0 and not plan.uses_marks:
            raise ParameterError("Label-only verification needs a margin tau in (0, 1): it is the flip rate allowed "
                                 "under H0.")
        return n_probe, margin, alpha

    def _provenance(self, key: Key) -> dict[str, str | None]:
        """Where the key's trigger and target come from, in words (None where the key could not be re-drawn for
        display), and whether a hand-made trigger's accusation is withheld or accepted (None: drawn)."""
        from .consistency import provenance

        found = provenance(key)
        hand_made = found is not None and found.owner_trigger
        return {"provenance": found.describe() if found is not None else None,
                "owner_trigger": ("accepted" if self.accept_owner_trigger else "withheld") if hand_made else None}

    def probe_secret(self, key: Key) -> bytes:
        """What ranks the probes: the key's secret (default) or a user-chosen seed (reported as a deviation)."""
        return key.secret_bytes if self.seed is None else seed_secret(self.seed)

    def select_probes(self, key: Key, data: Records, n_probe: int, *, keyed_order: bool = False) -> np.ndarray:
        """Probe rows, ranked by a keyed hash (reproducible): any held-out row for a multi-mark key (excluding a
        class would make the probes depend on the secret targets), rows outside the target class otherwise.

        Rows come in position order, or with ``keyed_order`` in the order of their keyed hash: a random order
        fixed by the key (or seed), which a sequential test needs (any prefix is then a random sample).
        """
        if key.plan.uses_marks:
            eligible = np.ones(len(data), dtype=bool)
        else:
            eligible = Objective.of(key).eligible(data.labels)
        eligible = eligible & applicable_rows(key, data)
        available = int(eligible.sum())
        if available < 2:
            where = "outside the target class" if key.target is not None else "in all"
            raise ParameterError(f"The probe data {data.where} has {available} rows {where}; verification needs at "
                                 f"least 2 (and {n_probe} by default).")
        k = min(n_probe, available)
        scores = keyed_scores(self.probe_secret(key), data.ids, "probe")
        rows = select_smallest(scores, k, eligible)
        return rows[np.lexsort((rows, scores[rows]))] if keyed_order else rows

    def control_triggers(self, key: Key) -> int:
        """k of the specificity control: the one asked for, else the key's plan; a single-mark key runs it
        (at least :data:`SINGLE_MARK_CONTROLS`) whatever its plan says, a multi-mark key does not need it."""
        if self.n_control_triggers is not None:
            return self.n_control_triggers
        plan = key.plan
        return 0 if plan.uses_marks else max(plan.n_control_triggers, SINGLE_MARK_CONTROLS)

    def settings(self, key: Key) -> dict[str, Any]:
        """The resolved settings of a run with ``key`` (what an evidence file records and a resume must match)."""
        n_probe, margin, alpha = self._settings(key)
        k = self.control_triggers(key)
        return {"verifier": "fixed", "mode": self.mode, "test": key.plan.test, "n_probe": n_probe,
                "margin": margin, "alpha": alpha, "seed": KEY_SEED if self.seed is None else self.seed,
                **({"n_control_triggers": k} if k else {}),
                **({"confusion_probes": key.plan.confusion_probes, "confusion_score": key.plan.confusion_score}
                   if key.plan.confusion_probes else {}),
                **({"marked_rows": True,
                    "released_fingerprint": None if self.released is None else self.released.fingerprint}
                   if key.plan.marked_rows else {})}

    def deviations(self, key: Key) -> list[dict[str, Any]]:
        """Settings of this run that differ from the key's plan (shown in the result and the evidence)."""
        plan = key.plan
        recommended = {"n_probe": plan.n_probe, "margin": plan.margin, "alpha": plan.alpha, "seed": KEY_SEED,
                       "n_control_triggers": replace(self, n_control_triggers=None).control_triggers(key)}
        used = {"n_probe": self.n_probe, "margin": self.margin, "alpha": self.alpha, "seed": self.seed,
                "n_control_triggers": self.n_control_triggers}
        return [{"setting": name, "key": recommended[name], "used": value} for name, value in used.items()
                if value is not None and value != recommended[name]]

    def _prepare(self, suspect: Suspect, key: Key, data: Records, *, keyed_order: bool = False,
                 all_rows: bool = False) -> tuple[tuple[int, float, float], np.ndarray]:
        """Check the key, data and suspect agree (before any query); return the settings and the probe rows."""
        settings = self._settings(key)
        k, alpha = self.control_triggers(key), settings[2]
        if k and not self.supports_controls:
            raise ParameterError(f"This single-mark key needs the trigger-specificity control (k = {k}: without "
                                 "it a model trained on another owner's watermark of the same method can be "
                                 "accused), which runs with the fixed-n test only; drop --sequential, protect "
                                 "with several marks (the default), or pass --control-triggers 0 to accept the "
                                 "risk.")
        check_controls_reach(k, alpha)
        key.check_data(data.num_classes, data.input_shape, f"the probe data {data.where}",
                       getattr(data.modality, "sample_rate", None))
        key.check_data(suspect.num_classes, data.input_shape, "the suspect model",
                       as_suspect(suspect).describe().get("sample_rate"))
        if self.mode == "probs":
            require_probs(suspect, "Probability-mode verification")
        n = len(data) if all_rows else settings[0]
        return settings, self.select_probes(key, data, n, keyed_order=keyed_order)

    def _scores(self, clean_out: np.ndarray, triggered_out: np.ndarray, true: np.ndarray,
                objective: Objective) -> PairedScores:
        """Per-probe scores of this mode from the suspect's answers on clean and triggered probes."""
        control, treated = self._score(clean_out, true, objective), self._score(triggered_out, true, objective)
        if self.mode == "probs":
            kept = np.ones(len(true), dtype=bool) if objective.targeted else clean_out.argmax(1) == true
            return PairedScores(treated, control, kept)
        return PairedScores(treated, control, control == 0)

    def _score(self, out: np.ndarray, true: np.ndarray, objective: Objective) -> np.ndarray:
        """The per-probe score of this mode: a probability (probs) or 1.0 for success (labels)."""
        return objective.probability(out, true) if self.mode == "probs" else objective.success(out, true)

    def _answers(self, suspect: Suspect, inputs: np.ndarray) -> np.ndarray:
        return suspect.query(inputs) if self.mode == "probs" else labels_of(suspect, inputs)

    def _query(self, suspect: Suspect, clean: np.ndarray, triggered: np.ndarray, true: np.ndarray,
               objective: Objective) -> PairedScores:
        """One query of the clean and triggered probes; the per-probe scores of this mode."""
        n = len(clean)
        check_budget(suspect, 2 * n)
        out = self._answers(suspect, np.concatenate([clean, triggered]))
        return self._scores(out[:n], out[n:], true, objective)

    def _correct_probes(self, suspect: Suspect, inputs: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                        n_probe: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Query clean candidates in keyed order until ``n_probe`` are classified correctly (untargeted keys).

        Returns the kept rows, the suspect's answers on them, and how many candidates were set aside.
        """
        kept_rows, kept_out, asked = [], [], 0
        while sum(len(r) for r in kept_rows) < n_probe and asked < len(rows):
            have = sum(len(r) for r in kept_rows)
            rate = have / asked if asked else 1.0
            ask = rows[asked:asked + max(1, int(np.ceil((n_probe - have) / max(rate, 0.1))))]
            check_budget(suspect, len(ask) + n_probe - have)
            out = self._answers(suspect, inputs[ask])
            predicted = out.argmax(1) if self.mode == "probs" else out
            correct = np.flatnonzero(predicted == labels[ask])[:n_probe - have]
            kept_rows.append(ask[correct])
            kept_out.append(out[correct])
            asked += len(ask)
        found = sum(len(r) for r in kept_rows)
        return np.concatenate(kept_rows), np.concatenate(kept_out), asked - found

    def _hypotheses(self, margin: float, objective: Objective) -> tuple[str, str, str]:
        """(score, H0, H1) in words for this mode and objective."""
        if objective.targeted:
            if self.mode == "probs":
                return ("target-class probability",
                        f"mean(P_target(triggered) - P_target(clean)) <= tau = {margin:g}",
                        f"mean(P_target(triggered) - P_target(clean)) > tau = {margin:g}")
            return ("predicted label",
                    f"P(label(triggered) = target | label(clean) != target) <= tau = {margin:g} "
                    f"(the trigger sends at most a fraction tau of probes to the target)",
                    f"P(label(triggered) = target | label(clean) != target) > tau = {margin:g}")
        if self.mode == "probs":
            return ("true-label probability (probes classified correctly)",
                    f"mean(P_true(clean) - P_true(triggered)) <= tau = {margin:g}",
                    f"mean(P_true(clean) - P_true(triggered)) > tau = {margin:g} (P_b > P_t + tau)")
        return ("predicted label",
                f"P(label(triggered) != true | label(clean) = true) <= tau = {margin:g} "
                f"(the trigger changes at most a fraction tau of correct predictions)",
                f"P(label(triggered) != true | label(clean) = true) > tau = {margin:g}")

    def verify(self, suspect: Suspect, key: Key, data: Records, *, trigger: Trigger | None = None,
               trigger_label: str = "key") -> VerificationResult:
        """Test whether ``suspect`` carries the watermark of ``key``, probing with held-out ``data``.

        ``trigger`` replaces the key's trigger (the Independent-T control of a single-mark key; for a multi-mark
        key, verify with another owner's key instead, see :func:`datamark.evaluate.scenarios.independent_key`).
        """
        if key.plan.uses_marks:
            if trigger is not None:
                raise ParameterError("A multi-mark key is verified with its own marks; to test another owner's "
                                     "watermark, verify with that owner's key (e.g. scenarios.independent_key).")
            return self._verify_marks(suspect, key, data, trigger_label)
        objective = Objective.of(key)
        start = suspect.queries
        used = trigger_of(key, trigger)
        if objective.targeted:
            (n_probe, margin, alpha), rows = self._prepare(suspect, key, data)
            probes = data.inputs()[rows]
            scores = self._query(suspect, probes, used.apply(probes), data.labels[rows], objective)
            excluded = int((~scores.kept).sum())
        else:  # all candidate rows in keyed order; clean queries until n_probe are classified correctly
            (n_probe, margin, alpha), rows = self._prepare(suspect, key, data, keyed_order=True, all_rows=True)
            inputs = data.inputs()
            rows, clean_out, excluded = self._correct_probes(suspect, inputs, data.labels, rows, n_probe)
            probes = inputs[rows]
            triggered_out = self._answers(suspect, used.apply(probes))
            scores = self._scores(clean_out, triggered_out, data.labels[rows], objective)
        if self.mode == "probs":
            outcome = objective.paired_test(scores.treated[scores.kept], scores.control[scores.kept], margin)
        else:
            outcome = binomial_test(int(scores.treated[scores.kept].sum()), int(scores.kept.sum()), p0=margin)
        k = self.control_triggers(key)
        specificity = (self._specificity(suspect, key, used, probes, data.labels[rows], scores, objective, k)
                       if k else None)
        score, h0, h1 = self._hypotheses(margin, objective)
        return VerificationResult(commitment=key.commitment, method=str(key.method.get("name")), mode=self.mode,
                                  score=score, h0=h0, h1=h1, alpha=alpha, outcome=outcome, n_probe_requested=n_probe,
                                  n_excluded=excluded, queries=suspect.queries - start, seed=self.seed,
                                  trigger=trigger_label, specificity=specificity, deviations=self.deviations(key),
                                  **self._provenance(key))

    # --- multi-mark keys ---------------------------------------------------------------------------------
    def mark_probes(self, suspect: Suspect, key: Key, data: Records) -> tuple[tuple[int, float, float],
                                                                                list[np.ndarray]]:
        """Settings and, per mark, its probe rows: the keyed probe order cut into K equal, disjoint slices; or,
        for the randomization test, its first n_probe / K probes (all there are, if fewer) for every mark: the
        same queries in all, so the marks' shares, compared with each other, differ only by their triggers."""
        (n_probe, margin, alpha), rows = self._prepare(suspect, key, data, keyed_order=True)
        marks = key.mark_list()
        n_marks = len(marks)
        if key.plan.test == MARKS_RANDOMIZATION and not enumerable(marks[0].options(int(key.dataset["num_classes"])),
                                                                    n_marks):
            raise ParameterError(f"The key names the randomization marks test, whose null over its {n_marks} marks "
                                 f"is too large to enumerate; its plan was edited. Use the key protect wrote.")
        if key.plan.test == MARKS_RANDOMIZATION and n_probe >= n_marks:
            return (n_probe, margin, alpha), [rows[:n_probe // n_marks]] * n_marks
        per_mark = len(rows) // n_marks
        if per_mark < 1:
            raise ParameterError(f"The key has {n_marks} marks but only {len(rows)} probes were drawn from "
                                 f"{data.where}; raise n_probe to at least {n_marks} or give more probe data.")
        return (n_probe, margin, alpha), [rows[j * per_mark:(j + 1) * per_mark] for j in range(n_marks)]

    def released_rows(self, key: Key, marks: tuple[Mark, ...]) -> list[np.ndarray] | None:
        """Each of ``marks``' (the key's) released rows, as positions in :attr:`released`, where the key's plan asks
        them (else None). Refuses, before any query, a missing release or one that lacks any of the rows."""
        if not key.plan.marked_rows:
            return None
        if self.released is None:
            raise ParameterError("This key's marks test also asks each mark's released rows (its plan's "
                                 "'marked_rows'); pass the watermarked dataset protect wrote: --released WM "
                                 "(Verifier(released=...)).")
        position = {row_id: i for i, row_id in enumerate(self.released.ids)}
        wanted = [row_id for m in marks for row_id in m.released_ids]
        missing = sum(row_id not in position for row_id in wanted)
        if missing:
            raise ParameterError(f"{missing} of the key's {len(wanted)} marked rows are not in "
                                 f"{self.released.where} as released; pass the watermarked dataset that this key's "
                                 f"protect wrote.")
        return [np.array([position[row_id] for row_id in m.released_ids], dtype=np.int64) for m in marks]

    def released_inputs(self, rows: list[np.ndarray] | None, j: int) -> np.ndarray | None:
        """Mark ``j``'s released examples (None where the plan does not ask them)."""
        return None if rows is None or self.released is None else self.released.take(rows[j])

    def ask_mark(self, suspect: Suspect, mark: Mark, inputs: np.ndarray, true: np.ndarray, margin: float,
                 clean: np.ndarray | None = None, released: np.ndarray | None = None) -> MarkAnswer:
        """Query one mark on its probes: its option scores, hit, paired scores and success rate (:class:`MarkAnswer`).

        Label-only mode asks only triggered probes; probability mode also asks the clean ones, for the paired
        effect beside the exact test, unless their answers are given (``clean``: marks that share their probes
        ask them once). A mark with candidate triggers asks its probes with every candidate. ``released`` (keys
        whose plan asks the marked rows) are the mark's rows as released: each class's share of the answers on
        them is added to the options of that class (see :mod:`datamark.verify.plan`).
        """
        asked = [self._answers_checked(suspect, t.apply(inputs)) for t in mark.triggers]
        own = asked[mark.own]
        objective = Objective(mark.target)
        options = option_scores(mark, asked, self.mode, true, suspect.num_classes)
        if released is not None:
            remembered = share_scores(self._answers_checked(suspect, released), self.mode, suspect.num_classes)
            options = options + np.tile(remembered, len(mark.triggers))
        hit = is_hit(mark, options, suspect.num_classes)
        if self.mode == "probs":
            clean = self._answers_checked(suspect, inputs) if clean is None else clean
            scores = self._scores(clean, own, true, objective)
            success = objective.success(own.argmax(1), true)
        else:
            scores, success = None, objective.success(own, true)
        return MarkAnswer(hit, scores, float(success.mean()), options)

    def marks_test(self, key: Key, marks: tuple[Mark, ...], answers: list[MarkAnswer]) -> TestOutcome:
        """The key's fixed-n marks test on the marks' answers: the binomial count of hits, or the randomization
        test on their centred shares (``marks-randomization``; see :mod:`datamark.verify.marks_test`)."""
        num_classes = int(key.dataset["num_classes"])
        hits = int(sum(a.hit for a in answers))
        if key.plan.test == MARKS_RANDOMIZATION:
            shares = centred_shares(np.stack([a.options for a in answers]), num_classes if marks[0].targeted else 1)
            return randomization_outcome(shares, np.array([m.choice(num_classes) for m in marks]), hits)
        return marks_outcome(hits, len(marks), marks[0].options(num_classes))

    def mark_cost(self, mark: Mark, n_probes: int, clean: bool = True, released: int = 0) -> int:
        """Queries :meth:`ask_mark` spends on ``n_probes`` probes: every trigger asked, plus the clean probes in
        probability mode (unless ``clean`` is False: their answers are given), plus ``released`` marked rows."""
        return n_probes * len(mark.triggers) + (n_probes if self.mode == "probs" and clean else 0) + released

    def _answers_checked(self, suspect: Suspect, inputs: np.ndarray) -> np.ndarray:
        check_budget(suspect, len(inputs))
        return self._answers(suspect, inputs)

    def _no_controls_for_marks(self) -> None:
        if self.n_control_triggers:
            raise ParameterError("The trigger-specificity control is for single-mark keys; a multi-mark key's own "
                                 "test is exact against other owners' watermarks. Drop --control-triggers.")

    def marks_effect(self, key: Key, rounds: list[PairedScores], targeted: bool, margin: float
                     ) -> TestOutcome | None:
        """The method's paired test with margin (t-test, or Wilcoxon for clean-label) over every probe of the
        marks asked (probability mode): the papers' effect size, reported beside the exact test, never the
        verdict."""
        if self.mode != "probs" or not rounds:
            return None
        treated = np.concatenate([r.treated[r.kept] for r in rounds])
        control = np.concatenate([r.control[r.kept] for r in rounds])
        direction = "greater" if targeted else "less"
        return PAIRED_TESTS[key.plan.effect_test](treated, control, margin=margin, alternative=direction)

    def _verify_marks(self, suspect: Suspect, key: Key, data: Records, trigger_label: str) -> VerificationResult:
        self._no_controls_for_marks()
        start, marks = suspect.queries, key.mark_list()
        (n_probe, margin, alpha), slices = self.mark_probes(suspect, key, data)
        released = self.released_rows(key, marks)
        inputs = data.inputs()
        shared = self.mode == "probs" and key.plan.test == MARKS_RANDOMIZATION  # one set of clean probes for all
        confusion_rows = self.confusion_probes(key, data)
        check_budget(suspect, sum(self.mark_cost(m, len(rows), clean=not shared,
                                                 released=len(released[j]) if released else 0)
                                  for j, (m, rows) in enumerate(zip(marks, slices, strict=True)))
                     + (len(slices[0]) if shared else 0) + len(confusion_rows), confusion=len(confusion_rows))
        clean = self._answers_checked(suspect, inputs[slices[0]]) if shared else None
        answers = [self.ask_mark(suspect, mark, inputs[rows], data.labels[rows], margin, clean,
                                 self.released_inputs(released, j))
                   for j, (mark, rows) in enumerate(zip(marks, slices, strict=True))]
        rounds = [a.scores for a in answers if a.scores is not None]
        hits = int(sum(a.hit for a in answers))
        outcome = self.marks_test(key, marks, answers)
        confusion = None
        if len(confusion_rows):
            confusion = self.confusion_test(key, self._answers_checked(suspect, inputs[confusion_rows]),
                                            data.labels[confusion_rows])
        return self.marks_result(key, outcome, marks, hits, n_probe, margin, alpha, len(slices[0]),
                                 [a.success for a in answers], rounds, suspect.queries - start, trigger_label,
                                 confusion=confusion)

    # --- the confusion channel (datamark.confusion) -------------------------------------------------------------
    def confusion_probes(self, key: Key, data: Records) -> np.ndarray:
        """The confusion channel's clean probe rows: the first ``confusion_probes`` of each class in the keyed probe
        order (none when the key has no channel). Refuses a key whose plan and method disagree (an edited key)."""
        per_class = key.plan.confusion_probes
        rate = (key.method.get("params") or {}).get("confusion_rate", 0)
        if bool(per_class) != bool(rate) or bool(rate) != bool(key.extra.get("confusion_ids")):
            raise KeyFormatError("The key's confusion channel is inconsistent (its plan, its method's confusion_rate "
                                 "and its relabelled rows disagree); it was edited. Use the key protect wrote.")
        if not per_class:
            return np.zeros(0, dtype=np.int64)
        scores = keyed_scores(self.probe_secret(key), data.ids, "confusion-probe")
        order = np.argsort(scores, kind="stable")
        labels = data.labels[order]
        chosen = np.concatenate([order[labels == c][:per_class] for c in range(data.num_classes)])
        return np.sort(chosen)

    def confusion_test(self, key: Key, answers: np.ndarray, true: np.ndarray) -> TestOutcome:
        """The exact rank test of the classes' secret partners on the suspect's clean answers
        (:mod:`datamark.verify.confusion_test`); ties are ordered by a draw of the probe secret, which the partners
        (the key's secret, another purpose) are independent of."""
        num_classes = int(key.dataset["num_classes"])
        table = class_scores(answers, true, num_classes, self.mode)
        tie_break = generator(self.probe_secret(key), "confusion-ties").random((num_classes, num_classes))
        return confusion_outcome(table, partners(key.secret_bytes, num_classes), tie_break,
                                 key.plan.confusion_probes, key.plan.confusion_score)

    def marks_result(self, key: Key, outcome: TestOutcome, marks: tuple[Mark, ...], hits: int, n_probe: int,
                     margin: float,
                     alpha: float, per_mark: int, success: list[float], rounds: list[PairedScores], queries: int,
                     trigger_label: str, sequential: dict[str, Any] | None = None,
                     confusion: TestOutcome | None = None) -> VerificationResult:
        """The result of a marks test (fixed or sequential), with its hypotheses in words; with the confusion
        channel's outcome, the verdict rests on their Bonferroni union (each channel at alpha / 2)."""
        targeted, n_triggers = marks[0].targeted, len(marks[0].triggers)
        options = marks[0].options(key.dataset["num_classes"])
        choice, choices, score = _choice_words(targeted, n_triggers, options)
        h0 = (f"the suspect was not trained on this watermark: it singles out each mark's secret {choice} with "
              f"probability <= 1/{options}, independently across the {len(marks)} marks")
        h1 = f"the suspect singles out the marks' secret {choices} more often than 1 in {options}"
        if outcome.test == RANDOMIZATION_TEST_NAME:
            score = (f"each mark's share of the answers per option ({choice}), minus the key's mean share of that "
                     f"class; T sums it over the marks' secret choices")
            h0 = (f"the suspect was not trained on this watermark: the marks' secret {choices} are uniform over the "
                  f"{options}^{len(marks)} possibilities and independent of its answers, so T is no larger than "
                  f"for a random choice of them")
            h1 = f"the suspect's answers lean to the marks' secret {choices}: T is larger than chance gives"
        if key.plan.marked_rows:
            score = (f"{score}; each class's share of the answers on the mark's own released rows (the relabelled "
                     f"examples a model trained on the release learned) is added to that class's options")
        details = {"n_marks": len(marks), "options_per_mark": options, "probes_per_mark": per_mark,
                   **({"released_rows_per_mark": [len(m.released_ids) for m in marks]} if key.plan.marked_rows
                      else {}),
                   "marks_asked": int(outcome.n), "hits": hits,
                   "probe_success_rate": float(np.mean(success)) if success else float("nan")}
        channels = None
        if confusion is not None:
            num_classes = int(key.dataset["num_classes"])
            channels = {"marks": outcome.to_dict(), "confusion": confusion.to_dict()}
            answer = "log-probability" if self.mode == "probs" else "answer share"
            net = (f", minus the mean {answer} of the class on the other class's clean probes"
                   if key.plan.confusion_score == "net" else "")
            score = (f"marks: {score}; confusion: each class's secret partner ranked among its {num_classes - 1} "
                     f"other classes by the suspect's mean {answer} on clean probes of the class{net}")
            h0 = (f"{h0}; and the classes' secret partners are uniform and independent of its answers on clean "
                  f"images (each partner's rank uniform on 1..{num_classes - 1})")
            h1 = f"{h1}, or it confuses each class with its secret partner more than chance gives"
            outcome = union_outcome(outcome, confusion)
        return VerificationResult(commitment=key.commitment, method=str(key.method.get("name")), mode=self.mode,
                                  score=score, h0=h0, h1=h1, alpha=alpha, outcome=outcome, n_probe_requested=n_probe,
                                  n_excluded=0, queries=queries, seed=self.seed, trigger=trigger_label,
                                  sequential=sequential, deviations=self.deviations(key), marks=details,
                                  channels=channels,
                                  effect=self.marks_effect(key, rounds, targeted, margin))

    def _specificity(self, suspect: Suspect, key: Key, used: Trigger, probes: np.ndarray, true: np.ndarray,
                     scores: PairedScores, objective: Objective, k: int) -> TestOutcome:
        """Is ``used`` an outlier among random triggers of its kind? A Monte Carlo rank test over triggers.

        Each of the ``k`` independent triggers is applied to the same kept probes; a trigger's
        effect is its mean score there (probability of the target / of *not* the true label, or success rate).
        Under H0 -- the suspect reacts to triggers of this kind but did not learn *this* one -- the key's trigger,
        drawn from the same distribution, is exchangeable with the controls, so p = (1 + #controls at least as
        strong) / (k + 1) is exact. Its smallest value is 1 / (k + 1), so k >= 1 / alpha - 1 is required.
        """
        # k >= 1/alpha was checked in _prepare, before any query
        kept = np.flatnonzero(scores.kept)
        check_budget(suspect, k * len(kept))
        rng = generator(self.probe_secret(key), "control-triggers")

        def strength(score: np.ndarray) -> float:  # larger = more watermark-like, in both directions
            return float(score.mean() if objective.targeted or self.mode == "labels" else -score.mean())

        effects = []
        for _ in range(k):
            out = self._answers(suspect, used.independent(rng).apply(probes[kept]))
            effects.append(strength(self._score(out, true[kept], objective)))
        key_effect = strength(scores.treated[kept])
        stronger = int(sum(e >= key_effect for e in effects))
        p = (1 + stronger) / (k + 1)
        null = "the key's trigger is exchangeable with random triggers of its kind (the suspect did not learn it)"
        return TestOutcome("trigger rank (Monte Carlo)", "greater", null, 0.0, k, float(stronger), p,
                           float(np.log10(p)), key_effect - float(np.mean(effects)),
                           f"{stronger} of {k} independent triggers moved the suspect at least as much as the key's")


def _choice_words(targeted: bool, n_triggers: int, options: int) -> tuple[str, str, str]:
    """A mark's secret choice in words (singular, plural) and its score: a target class, an embedded candidate,
    or both (a targeted mark with candidates)."""
    if not targeted:
        return (f"embedded trigger among its {options} candidates", f"embedded triggers among their {options} "
                f"candidates", "candidate trigger that moves answers furthest off the true label")
    if n_triggers == 1:
        return "target class", "target classes", "class singled out by the triggered answers"
    return (f"(embedded trigger, target class) pair among its {n_triggers} candidates x {options // n_triggers} "
            f"classes", "(embedded trigger, target class) pairs",
            "(candidate trigger, class) pair with the most probability (votes) in the triggered answers")


def trigger_of(key: Key, trigger: Trigger | None = None) -> Trigger:
    """``trigger`` if given (the Independent-T control), else the key's own trigger."""
    return trigger or Trigger.from_config(key.trigger)


def verify(suspect: Suspect, key: Key, data: Records, *, mode: Mode = "probs", **settings) -> VerificationResult:
    """Shorthand for ``Verifier(mode=mode, **settings).verify(suspect, key, data)``."""
    return Verifier(mode=mode, **settings).verify(suspect, key, data)



