"""A verification result: the test outcome, the hypotheses in words, the settings and the verdict, as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .._io import atomic_path
from .stats import TestOutcome

RESULT_SCHEMA = "datamark.verify-result/1"  # the JSON document's kind and version (bump on a breaking change)


@dataclass(frozen=True)
class VerificationResult:
    """What a verifier concludes. ``accused`` is true only when H0 is rejected at level ``alpha``."""

    commitment: str
    method: str
    mode: str
    score: str
    h0: str
    h1: str
    alpha: float
    outcome: TestOutcome
    n_probe_requested: int
    n_excluded: int
    queries: int
    seed: int | None  # None: the probes were drawn with the key's secret (the committed default)
    trigger: str = "key"
    sequential: dict[str, Any] | None = None  # how a sequential run stopped (None for a fixed-n test)
    specificity: TestOutcome | None = None  # the trigger-specificity control, if it ran (see the verifier)
    deviations: list[dict[str, Any]] = field(default_factory=list)  # settings that differ from the key's plan
    marks: dict[str, Any] | None = None  # multi-mark keys: marks, options, hits, probes per mark
    effect: TestOutcome | None = None  # multi-mark keys, probability mode: the paired t-test, an effect size
    # Keys with a confusion channel (datamark.confusion): each channel's own outcome; ``outcome`` is then their
    # Bonferroni union (accused when either channel's p < alpha / 2).
    channels: dict[str, Any] | None = None
    # Where the key's triggers and secret choices come from (verify.consistency.Provenance.describe()); None: not
    # recorded. Said in the verdict when the owner chose them.
    provenance: str | None = None
    # A single-mark key's trigger made by hand rather than drawn from the secret: "withheld" (the default: no
    # accusation rests on it), "accepted" (the verifier was told to accept it), None (the trigger was drawn). A
    # pattern crafted on a clean suspect (a universal adversarial patch) passes the paper's test and the
    # specificity control there (benchmarks/results/forgery_cifar10_gpu.md), so only a commitment published
    # before the suspect existed can vouch for such a trigger, and the verifier cannot see when that was.
    owner_trigger: str | None = None

    @property
    def accused(self) -> bool:
        """H0 rejected, and -- where the specificity control ran -- the key's trigger beat the control triggers;
        never on a hand-made trigger unless the verifier was told to accept it."""
        return self._rejected_specifically and self.owner_trigger != "withheld"

    @property
    def _rejected_specifically(self) -> bool:
        """H0 rejected, and the specificity control passed where it ran."""
        specific = self.specificity is None or self.specificity.p_value < self.alpha
        return self.outcome.p_value < self.alpha and specific

    @property
    def verdict(self) -> str:
        if self._rejected_specifically and self.owner_trigger == "withheld":
            return (f"H0 rejected (p = {self.outcome.p_value:.3g} < alpha = {self.alpha:g}), but the key's trigger was "
                    f"made by hand, not drawn from its secret: a pattern crafted on the suspect itself passes this "
                    f"test on a clean model, so this is no evidence on its own. Not accused. Accept the trigger "
                    f"(--accept-owner-trigger) only if the key's commitment was published before the suspect "
                    f"existed; keys made with trigger_name (--trigger style|pulse|noise) need no such trust.")
        if self.outcome.p_value < self.alpha and not self.accused:
            return (f"H0 rejected (p = {self.outcome.p_value:.3g}) but the trigger-specificity control failed "
                    f"(p = {self.specificity.p_value:.3g} >= alpha = {self.alpha:g}): independent triggers of the "
                    f"same kind move the suspect as much as the key's, so this is no evidence of *this* watermark.")
        if self.accused:
            owner = f" The key's {self.provenance}." if self.provenance and "owner" in self.provenance else ""
            if self.owner_trigger == "accepted":
                owner += " Its hand-made trigger was accepted on the word that the commitment predates the suspect."
            return (f"H0 rejected (p = {self.outcome.p_value:.3g} < alpha = {self.alpha:g}): the suspect responds to "
                    f"the watermark; evidence that it was trained on the protected dataset, provided the key's "
                    f"commitment was published before the suspect model existed.{owner}")
        return (f"H0 not rejected (p = {self.outcome.p_value:.3g} >= alpha = {self.alpha:g}): no evidence that the "
                f"suspect was trained on the protected dataset.")

    @property
    def probe_seed(self) -> str:
        """How the probes were drawn, in words."""
        return ("derived from the key's secret (fixed by its published commitment)" if self.seed is None
                else f"user seed {self.seed} (a deviation from the key's)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("outcome", "specificity", "effect"):
            value = getattr(self, name)
            out[name] = value.to_dict() if value is not None else None
        out.update(accused=self.accused, verdict=self.verdict, probe_seed=self.probe_seed)
        return {"schema": RESULT_SCHEMA, **out}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        with atomic_path(path, overwrite=overwrite, what="result") as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
