"""The three scenarios every method is judged in, for both black-box settings.

* Steal -- the suspect was trained on the watermarked data, queried with the key's trigger (should be caught);
* Independent-M -- a model trained on the clean data, queried with the key's trigger (must not be accused);
* Independent-T -- the stolen model queried with an independent trigger of the same kind (must not be accused:
  shows the test detects *this* watermark, not any perturbation). For a multi-mark key this is another owner's
  key of the same method (:func:`independent_key`): fresh triggers *and* fresh secret choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._rng import generator, seed_secret
from ..data.records import Records
from ..key import Key
from ..marks import independent_marks
from ..suspects.base import Suspect
from ..suspects.local import LocalSuspect
from ..triggers.base import Trigger
from ..verify.result import VerificationResult
from ..verify.verifier import Verifier
from .metrics import benign_accuracy, untargeted_success, watermark_success_rate

SCENARIOS = ("Independent-T", "Independent-M", "Steal")


@dataclass(frozen=True)
class ScenarioRow:
    """One scenario: BA, the watermark's success rate (WSR; ASR-A for untargeted keys), both verifications.

    ``extra`` holds the untargeted metrics beside ASR-A (``asr_c``, ``d_p``); it is empty for targeted keys.
    """

    scenario: str
    ba: float
    wsr: float
    probs: VerificationResult
    labels: VerificationResult
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "ba": self.ba, "wsr": self.wsr, **self.extra,
                "probs": self.probs.to_dict(), "labels": self.labels.to_dict()}


def independent_trigger(key: Key, seed: int) -> Trigger:
    """A trigger of the key's kind and size with a pattern the watermark never used."""
    return Trigger.from_config(key.trigger).independent(generator(seed_secret(seed), "independent-trigger"))


def independent_key(key: Key, seed: int) -> Key:
    """The key another owner of the same method could hold: a fresh secret, fresh triggers, fresh secret choices
    (targets or embedded candidates), drawn from ``seed``. Verifying a model with it is the Independent-T
    scenario of a multi-mark key, and the calibration studies' "other owner". Where the key's plan asks the marked
    rows, the other key asks *this* key's released rows with its own fresh targets: the hardest case for it, since
    a stolen model remembers those rows with this key's targets (its answers are still independent of the other
    key's, so the test stays exact)."""
    secret = seed_secret(seed)
    own = key.mark_list()
    marks = independent_marks(own, generator(secret, "independent-key"), int(key.dataset["num_classes"]))
    if key.plan.marked_rows:  # asked on this key's released rows, which the stolen model learned with other targets
        marks = tuple(replace(m, marked_ids=o.marked_ids, released_ids=o.released_ids) for m, o in zip(marks, own,
                                                                                                      strict=True))
    return replace(key, secret=secret.hex(), marks=tuple(m.to_config() for m in marks),
                   trigger=marks[0].trigger.to_config(), target=marks[0].target)


def mark_success(suspect: Suspect, data: Records, key: Key) -> dict[str, float]:
    """WSR (targeted) or ASR-A, ASR-C and D_p (untargeted) of the key's watermark, averaged over its marks."""
    per_mark = []
    for mark in key.mark_list():
        if mark.targeted:
            per_mark.append({"wsr": watermark_success_rate(suspect, data, mark.trigger, mark.target)})
        else:
            per_mark.append(untargeted_success(suspect, data, mark.trigger))
    return {name: float(np.mean([m[name] for m in per_mark])) for name in per_mark[0]}


def evaluate_scenarios(key: Key, stolen: LocalSuspect, independent: LocalSuspect, test_data: Records, *,
                       verifier: Verifier | None = None, seed: int = 0) -> list[ScenarioRow]:
    """BA, WSR (or ASR-A, ASR-C, D_p) and both verification modes for the three scenarios (local models
    answer both modes)."""
    verifier = verifier or Verifier()
    multi = key.plan.uses_marks
    key_trigger = Trigger.from_config(key.trigger)
    other_key = independent_key(key, seed) if multi else key
    other = None if multi else independent_trigger(key, seed)
    cases = {"Independent-T": (stolen, other_key, other, "independent"),
             "Independent-M": (independent, key, None, "key"), "Steal": (stolen, key, None, "key")}
    accuracy = {id(s): benign_accuracy(s, test_data) for s in (stolen, independent)}  # once per model
    rows = []
    for name in SCENARIOS:
        suspect, used_key, trigger, label = cases[name]
        results = {mode: replace(verifier, mode=mode).verify(
            suspect.with_outputs(mode), used_key, test_data, trigger=trigger, trigger_label=label)
            for mode in ("probs", "labels")}
        if multi:
            extra = mark_success(suspect, test_data, used_key)
        elif key.target is not None:
            extra = {"wsr": watermark_success_rate(suspect, test_data, trigger or key_trigger, key.target)}
        else:
            extra = untargeted_success(suspect, test_data, trigger or key_trigger)
        wsr = extra.pop("wsr") if "wsr" in extra else extra.pop("asr_a")
        rows.append(ScenarioRow(name, accuracy[id(suspect)], wsr, results["probs"], results["labels"], extra))
    return rows
