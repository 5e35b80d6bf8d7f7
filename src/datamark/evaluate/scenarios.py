"""The three scenarios every method is judged in, for both black-box settings.

* Steal -- the suspect was trained on the watermarked data, queried with the key's trigger (should be caught);
* Independent-M -- a model trained on the clean data, queried with the key's trigger (must not be accused);
* Independent-T -- the stolen model queried with an independent trigger of the same kind (must not be accused:
  shows the test detects *this* watermark, not any perturbation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .._rng import generator, seed_secret
from ..data.records import Records
from ..key import Key
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


def evaluate_scenarios(key: Key, stolen: LocalSuspect, independent: LocalSuspect, test_data: Records, *,
                       verifier: Verifier | None = None, seed: int = 0) -> list[ScenarioRow]:
    """BA, WSR (or ASR-A, ASR-C, D_p) and both verification modes for the three scenarios (local models
    answer both modes)."""
    verifier = verifier or Verifier(seed=seed)
    key_trigger = Trigger.from_config(key.trigger)
    other = independent_trigger(key, seed)
    cases = {"Independent-T": (stolen, other, "independent"), "Independent-M": (independent, key_trigger, "key"),
             "Steal": (stolen, key_trigger, "key")}
    accuracy = {id(s): benign_accuracy(s, test_data) for s in (stolen, independent)}  # once per model
    rows = []
    for name in SCENARIOS:
        suspect, trigger, label = cases[name]
        results = {mode: replace(verifier, mode=mode).verify(
            suspect.with_outputs(mode), key, test_data, trigger=trigger, trigger_label=label)
            for mode in ("probs", "labels")}
        if key.target is not None:
            wsr, extra = watermark_success_rate(suspect, test_data, trigger, key.target), {}
        else:
            extra = untargeted_success(suspect, test_data, trigger)
            wsr = extra.pop("asr_a")
        rows.append(ScenarioRow(name, accuracy[id(suspect)], wsr, results["probs"], results["labels"], extra))
    return rows
