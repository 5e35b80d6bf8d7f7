"""The verification plan a key recommends, and the one set of rules every verification setting obeys.

A method writes its plan into the key at protect time; the verifier reads it back. Every value is checked with
the same rules whether it comes from the key file, a ``Verifier(...)`` argument or a command-line option, so an
edited key (a negative margin, alpha = 0.9, an unknown test) is refused instead of silently trusted.

Tests:

* ``marks-binomial`` (multi-mark keys, the default of every method that supports marks): the exact one-sided
  binomial test on the number of marks whose secret choice the suspect singles out, p0 = 1 / options.
* ``marks-randomization`` (multi-mark keys whose marks have two options, as on binary tasks: the default there):
  the exact randomization test over the marks' secret choices, on each mark's centred shares of the answers
  (:mod:`datamark.verify.marks_test`); counting hits would need every one of 10 marks to hit.
* ``paired-t`` / ``wilcoxon`` (single-mark keys: the papers' tests) with margin tau on paired probabilities;
  such keys also carry the trigger-specificity control (``n_control_triggers``), because without it a model
  trained on another owner's watermark of the same method can be accused.

``marked_rows`` (targeted marks tests; the default of graph keys): each mark is also asked on its own rows as
released -- the relabelled training examples the suspect would have learned -- and their class shares are added to
the mark's option scores. Exact for the same reason as the triggered probes: which rows a mark took and how they
were marked are drawn from other purposes of the secret than its target, so under H0 the answers on them are
independent of the secret choices. A model trained on the release remembers the labels it was taught there; a small
graph dataset gives each mark too few rows for its trigger alone to be learned reliably (issue 17).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..exceptions import ParameterError
from .confusion_test import CONFUSION_SCORES
from .marks_test import enumerable

MARKS_TEST = "marks-binomial"
MARKS_RANDOMIZATION = "marks-randomization"
MARKS_TESTS = (MARKS_TEST, MARKS_RANDOMIZATION)
#: Marks with at most this many options are tested by randomization by default (see the module).
RANDOMIZATION_MAX_OPTIONS = 2
#: Probes per mark of a randomization key's default plan (every mark asked on the same ones): more than the
#: count's 10, because the test weighs how far each mark moved the answers, which 10 probes measure coarsely.
RANDOMIZATION_PROBES_PER_MARK = 50
#: Control triggers run by default on a single-mark key (the papers' watermark): its test alone accuses models
#: trained on other owners' watermarks of the same method; 1/(100 + 1) < alpha = 0.01.
SINGLE_MARK_CONTROLS = 100
PAIRED_TESTS = ("paired-t", "wilcoxon")
TESTS = (*MARKS_TESTS, *PAIRED_TESTS)


def marks_test_for(options: int, n_marks: int) -> str:
    """The default test of a key of ``n_marks`` marks with ``options`` equally likely secret choices each: the
    randomization test where marks have few options and its null can be enumerated, else the binomial count."""
    small = options <= RANDOMIZATION_MAX_OPTIONS and enumerable(options, n_marks)
    return MARKS_RANDOMIZATION if small else MARKS_TEST


def check_margin(value: Any, where: str = "Verifier") -> float:
    """tau, the margin of H0, is a probability difference in [0, 1)."""
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ParameterError(f"The 'margin' (tau) of {where} must be in [0, 1); got {value!r}.")
    return float(value)


def check_alpha(value: Any, where: str = "Verifier") -> float:
    """The significance level; above 0.1 a verdict protects nobody, so it is refused."""
    if not _is_number(value) or not 0.0 < value <= 0.1:
        raise ParameterError(f"The significance 'alpha' of {where} must be in (0, 0.1]; got {value!r}.")
    return float(value)


def check_n_probe(value: Any, where: str = "Verifier") -> int:
    if not _is_int(value) or value < 2:
        raise ParameterError(f"The 'n_probe' of {where} must be an integer >= 2; got {value!r}.")
    return int(value)


def check_control_triggers(value: Any, where: str = "Verifier") -> int:
    if not _is_int(value) or value < 0:
        raise ParameterError(f"The 'n_control_triggers' of {where} must be an integer >= 0; got {value!r}.")
    return int(value)


def check_controls_reach(k: int, alpha: float) -> None:
    """The specificity control's smallest p-value is 1 / (k + 1): with too few controls it can never reject."""
    if k and 1.0 / (k + 1) >= alpha:
        raise ParameterError(f"The specificity control's smallest p-value is 1/(k+1) = {1 / (k + 1):.3g}, not "
                             f"below alpha = {alpha:g}; use at least {math.ceil(1 / alpha)} control triggers.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class VerificationPlan:
    """What a key recommends: the test, tau, the number of probes, alpha and the control triggers."""

    test: str
    margin: float
    n_probe: int
    alpha: float
    n_control_triggers: int = 0
    effect_test: str = "paired-t"  # marks keys: the paper's paired test, reported as the effect size
    # Clean probes per class of the confusion channel (datamark.confusion); 0: the key has no such channel.
    confusion_probes: int = 0
    # How the channel scores a partner (datamark.verify.confusion_test): "net" for keys written since it exists;
    # keys without the setting were written before it and keep the score they were verified with, "direct".
    confusion_score: str = "direct"
    # Whether the marks test also asks each mark's released rows (see the module); keys written before it: False.
    marked_rows: bool = False

    def __post_init__(self) -> None:
        where = "the key's verification plan"
        if self.test not in TESTS:
            raise ParameterError(f"The test '{self.test}' of {where} is unknown to this datamark; known: "
                                 f"{list(TESTS)}. Upgrade datamark.")
        check_margin(self.margin, where)
        check_n_probe(self.n_probe, where)
        check_alpha(self.alpha, where)
        check_control_triggers(self.n_control_triggers, where)
        check_controls_reach(self.n_control_triggers, self.alpha)
        if self.effect_test not in PAIRED_TESTS:
            raise ParameterError(f"The effect test '{self.effect_test}' of {where} is unknown; known: "
                                 f"{list(PAIRED_TESTS)}.")
        if not _is_int(self.confusion_probes) or self.confusion_probes < 0 or self.confusion_probes == 1:
            raise ParameterError(f"The 'confusion_probes' of {where} must be 0 (no confusion channel) or an integer "
                                 f">= 2; got {self.confusion_probes!r}.")
        if self.confusion_score not in CONFUSION_SCORES:
            raise ParameterError(f"The 'confusion_score' of {where} must be one of {list(CONFUSION_SCORES)}; got "
                                 f"{self.confusion_score!r}. The key was edited or written by a newer datamark.")
        if self.confusion_score != "direct" and not self.confusion_probes:
            raise ParameterError(f"{where} sets 'confusion_score' without a confusion channel (confusion_probes 0); "
                                 f"the key was edited.")
        if not isinstance(self.marked_rows, bool):
            raise ParameterError(f"The 'marked_rows' of {where} must be true or false; got {self.marked_rows!r}.")
        if self.marked_rows and not self.uses_marks:
            raise ParameterError(f"{where} asks the marked rows but the test '{self.test}'; they go with a marks "
                                 f"test. The key was edited.")
        if self.confusion_probes and not self.uses_marks:
            raise ParameterError(f"{where} has a confusion channel but the test '{self.test}'; the channel goes with "
                                 f"a marks test. The key was edited.")

    @property
    def uses_marks(self) -> bool:
        return self.test in MARKS_TESTS

    @classmethod
    def from_dict(cls, raw: Any) -> VerificationPlan:
        """The plan stored in a key (unknown fields refused, missing ones are the papers' DVBW defaults)."""
        if not isinstance(raw, dict):
            raise ParameterError(f"The key's verification plan must be an object; got {type(raw).__name__}.")
        known = {"test", "margin", "n_probe", "alpha", "n_control_triggers", "effect_test", "confusion_probes",
                 "confusion_score", "marked_rows"}
        informative = {"score", "alternative"}  # written by older versions, implied by the method
        unknown = set(raw) - known - informative
        if unknown:
            raise ParameterError(f"The key's verification plan has unknown settings {sorted(unknown)}; it was "
                                 f"edited or written by a newer datamark.")
        return cls(test=raw.get("test", "paired-t"), margin=raw.get("margin", 0.2), n_probe=raw.get("n_probe", 100),
                   alpha=raw.get("alpha", 0.01), n_control_triggers=raw.get("n_control_triggers", 0),
                   effect_test=raw.get("effect_test", "paired-t"), confusion_probes=raw.get("confusion_probes", 0),
                   confusion_score=raw.get("confusion_score", "direct"), marked_rows=raw.get("marked_rows", False))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
