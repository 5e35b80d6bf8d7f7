"""Marks: the sub-watermarks of a key, each hiding one secret choice among equally likely options.

A key holds K marks (K = 1 is the single watermark of the papers). Each mark is one trigger stamped on its own
rows, plus a *secret choice* drawn uniformly from the key's secret, independently of everything else:

* targeted methods (DVBW, clean-label, WaNet): the mark's **target class**, uniform over the C classes;
* untargeted methods (UBW-P): **which of M + 1 candidate triggers** was embedded, uniform over the candidates;
* targeted methods with candidates (DVBW's ``n_candidates`` > 1, a datamark addition for few-class tasks): both,
  drawn independently -- the target class *and* which of M + 1 candidate triggers was embedded, so a mark has
  C x (M + 1) options instead of C (on a binary task, 10 instead of 2).

Why: under H0 a model that never saw *this* owner's data cannot know which option the secret chose, whatever it
learned from anyone else (other owners' watermarks of the same method included). So if each mark's verdict is
"the suspect singles out option o", the chance that o is the secret choice is at most 1 / (number of options),
independently across marks, and the number of hits is stochastically below Binomial(K, 1/options): an exact
false-accusation bound that needs no assumption about how specific triggers are (Data Taggants, ICLR 2025;
Huang, Gong and Reiter, CCS 2024).

Options are numbered ``candidate * classes + class`` (:meth:`Mark.choice`), where ``classes`` is C for a targeted
mark and 1 for an untargeted one, and a mark without candidates has the one candidate 0: the order in which
:func:`datamark.verify.marks_test.option_scores` lays out the evidence for each option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .exceptions import KeyFormatError
from .triggers.base import Trigger


@dataclass(frozen=True, eq=False)
class Mark:
    """One sub-watermark: the trigger on its rows and its secret choice.

    ``target`` is the secret target class (targeted methods; None otherwise). ``candidates`` (untargeted methods,
    and targeted ones drawn with ``n_candidates`` > 1) are the M + 1 triggers among which ``embedded`` (an index)
    was drawn; the embedded one is ``trigger``. ``marked_ids`` are the ids of the rows this mark changed;
    ``released_ids`` (keys whose plan asks the marked rows, :attr:`VerificationPlan.marked_rows`) the same rows'
    ids as released, in the same order: the examples the suspect was trained on, which the verifier asks again.
    """

    trigger: Trigger
    target: int | None = None
    candidates: tuple[Trigger, ...] = ()
    embedded: int | None = None
    marked_ids: tuple[str, ...] = ()
    released_ids: tuple[str, ...] = ()

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def triggers(self) -> tuple[Trigger, ...]:
        """The triggers a verifier asks, in order: the candidates, or the mark's one trigger."""
        return self.candidates or (self.trigger,)

    @property
    def own(self) -> int:
        """The index of the embedded trigger among :attr:`triggers`."""
        return self.embedded if self.candidates else 0

    def options(self, num_classes: int) -> int:
        """How many equally likely secret choices this mark had: C classes, M + 1 candidates, or C x (M + 1)."""
        return (num_classes if self.targeted else 1) * len(self.triggers)

    def choice(self, num_classes: int) -> int:
        """The secret option's index among :meth:`options`: ``embedded * classes + target`` (see the module)."""
        return self.own * (num_classes if self.targeted else 1) + (self.target or 0)

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"target": self.target, "marked_ids": list(self.marked_ids)}
        if self.released_ids:  # only keys whose plan asks the marked rows: every other key reads as before
            config["released_ids"] = list(self.released_ids)
        if self.candidates:
            config.update(candidates=[c.to_config() for c in self.candidates], embedded=self.embedded)
        else:
            config["trigger"] = self.trigger.to_config()
        return config

    @classmethod
    def from_config(cls, config: Any, *, num_classes: int, where: str) -> Mark:
        """Rebuild and validate a mark read from a key (targets and indices in range, candidates of one kind)."""
        if not isinstance(config, dict):
            raise KeyFormatError(f"{where} is not an object; the key is damaged.")
        target, ids = config.get("target"), config.get("marked_ids", [])
        if target is not None and not (_is_int(target) and 0 <= target < num_classes):
            raise KeyFormatError(f"{where} has target {target!r}; expected a class index in 0..{num_classes - 1}.")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise KeyFormatError(f"{where} has malformed 'marked_ids'; expected a list of row ids.")
        released = config.get("released_ids", [])
        if (not isinstance(released, list) or not all(isinstance(i, str) for i in released)
                or (released and len(released) != len(ids))):
            raise KeyFormatError(f"{where} has malformed 'released_ids'; expected one released row id per marked id.")
        if "candidates" not in config:
            return cls(Trigger.from_config(_dict(config.get("trigger"), where)), target, (), None, tuple(ids),
                       tuple(released))
        raw, embedded = config["candidates"], config.get("embedded")
        if not isinstance(raw, list) or len(raw) < 2:
            raise KeyFormatError(f"{where} has 'candidates' but not a list of at least 2 candidate triggers.")
        candidates = tuple(Trigger.from_config(_dict(c, where)) for c in raw)
        if len({type(c) for c in candidates}) != 1:
            raise KeyFormatError(f"{where} has candidate triggers of different kinds; the key is damaged.")
        if not (_is_int(embedded) and 0 <= embedded < len(candidates)):
            raise KeyFormatError(f"{where} has embedded index {embedded!r}; expected 0..{len(candidates) - 1}.")
        return cls(candidates[embedded], target, candidates, int(embedded), tuple(ids), tuple(released))

    def independent(self, rng: np.random.Generator, num_classes: int) -> Mark:
        """A mark of the same kind another owner could have drawn: fresh trigger(s) and a fresh secret choice."""
        # Triggers first, then the choices: the order the draws have always had (independent keys stay as they were).
        candidates = tuple(c.independent(rng) for c in self.candidates)
        embedded = int(rng.integers(len(candidates))) if candidates else None
        trigger = candidates[embedded] if candidates else self.trigger.independent(rng)
        target = None if self.target is None else int(rng.integers(num_classes))
        return Mark(trigger, target, candidates, embedded)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KeyFormatError(f"{where} has no trigger configuration; the key is damaged.")
    return value


def independent_marks(marks: tuple[Mark, ...], rng: np.random.Generator, num_classes: int) -> tuple[Mark, ...]:
    """Marks another owner of the same method could hold (the Independent-T scenario, calibration studies)."""
    return tuple(m.independent(rng, num_classes) for m in marks)
