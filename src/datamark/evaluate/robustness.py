"""Does the watermark survive the thief? Apply countermeasures to a stolen model (and, as the control, to a
clean one), re-verify with the owner's key, and put the thief's accuracy cost beside each p-value.

One row per (attack, model): the attacked model's (or purified API's) benign accuracy against the unattacked
model's, and the key's verification in both black-box settings (probabilities where the attacked API still
returns them). A watermark *survives* an attack when the stolen model is still accused; the same attack on the
clean model must not accuse in either setting (an attack must not turn an innocent model guilty). Rows are handed to
``on_row`` as they are made, so a long sweep keeps what it measured if it is interrupted.

What each kind needs: ``query`` attacks only the model; ``model`` attacks the thief's clean data
(``thief_data``); ``data`` and ``training`` attacks the released data (``released``) and a trainer, because
the thief retrains from it (the clean model is not retrained: it never saw the released data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.records import Records
from ..exceptions import ParameterError
from ..key import Key
from ..models.checkpoint import ModelSpec
from ..suspects.local import LocalSuspect
from ..verify.result import VerificationResult
from ..verify.verifier import Verifier
from .attacks.base import Attack, DataAttack, ModelAttack, QueryAttack, TrainingAttack, ignores_model
from .attacks.chain import AttackChain, purifier, steps_of
from .metrics import benign_accuracy

log = logging.getLogger(__name__)

#: (records, config, architecture params or None for the stolen model's) -> (model, spec)
Trainer = Callable[[Records, Any, "dict[str, Any] | None"], tuple[Any, ModelSpec]]


@dataclass(frozen=True)
class SurvivalRow:
    """One attack on one model: accuracy before/after, both verifications, and what the attack removed."""

    attack: dict[str, Any]            # Attack.to_dict(), or {"name": "none", ...} for the unattacked baseline
    label: str
    model: str                        # "stolen" or "clean"
    ba_before: float
    ba: float
    probs: VerificationResult | None  # None where the attacked API answers labels only
    labels: VerificationResult
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_points(self) -> float:
        """The thief's accuracy cost in percentage points (negative: the attack gained accuracy)."""
        return 100.0 * (self.ba_before - self.ba)

    @property
    def verdict(self) -> VerificationResult:
        """The result the owner would rely on: probabilities where the API returns them, else labels."""
        return self.probs if self.probs is not None else self.labels

    @property
    def accused(self) -> bool:
        return self.verdict.accused

    @property
    def accused_in_either_mode(self) -> bool:
        """Whether either setting accuses: what the clean control must never do (an owner may verify an innocent
        model behind a label-only API even where this one returns probabilities)."""
        return (self.probs is not None and self.probs.accused) or self.labels.accused

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "label": self.label, "model": self.model, "ba_before": self.ba_before,
                "ba": self.ba, "cost_points": self.cost_points, "accused": self.accused,
                "accused_in_either_mode": self.accused_in_either_mode,
                "p_probs": None if self.probs is None else self.probs.outcome.p_value,
                "p_labels": self.labels.outcome.p_value, "seconds": self.seconds, "details": self.details,
                "probs": None if self.probs is None else self.probs.to_dict(), "labels": self.labels.to_dict()}


def default_trainer(spec: ModelSpec, seed: int, *, progress: bool = False) -> Trainer:
    """The thief's recipe: a fresh model of the stolen one's architecture (its widths and sizes too) with that
    architecture's default training configuration; ``progress`` shows the training's rate and ETA."""
    from ..models import default_config, fit
    from ..models.checkpoint import architecture_params

    def train(records: Records, config: Any = None, arch_params: dict[str, Any] | None = None
              ) -> tuple[Any, ModelSpec]:
        return fit(records, arch=spec.arch, config=config or default_config(spec.arch, seed=seed), progress=progress,
                   **(architecture_params(spec) if arch_params is None else arch_params))
    return train


def _verify(key: Key, suspect: Any, test_data: Records, verifier: Verifier
            ) -> tuple[VerificationResult | None, VerificationResult]:
    with_probs = suspect.outputs == "probs"
    probs = replace(verifier, mode="probs").verify(suspect, key, test_data) if with_probs else None
    labels = replace(verifier, mode="labels").verify(
        suspect.with_outputs("labels") if with_probs else suspect, key, test_data)
    return probs, labels


KNOWN_KINDS = (QueryAttack, ModelAttack, DataAttack, TrainingAttack)


def check_needs(attack: Attack, *, thief_data: Records | None, released: Records | None) -> None:
    """Refuse, before any work, an attack whose inputs are missing: model attacks need the thief's clean data,
    data and training attacks the released data they retrain from (for a chain: what any of its steps needs)."""
    for step in steps_of(attack):
        if isinstance(step, ModelAttack) and thief_data is None:
            raise ParameterError(f"The '{step.registry_name}' attack needs the thief's clean data (thief_data=, "
                                 f"--thief-data).")
        if isinstance(step, (DataAttack, TrainingAttack)) and released is None:
            raise ParameterError(f"The '{step.registry_name}' attack retrains on the released data (released=, "
                                 f"--released).")


def attacked_suspect(attack: Attack, model: Any, spec: ModelSpec, *, thief_data: Records | None = None,
                     released: Records | None = None, train: Trainer | None = None, seed: int = 0,
                     progress: bool = False, marked_rows: Collection[int] | None = None
                     ) -> tuple[Any, dict[str, Any]]:
    """The suspect the owner meets after ``attack`` on ``(model, spec)``, and what the attack did (flagged
    rows for data attacks; given the positions of the watermarked rows in ``released`` (``marked_rows``: the
    owner's ``Watermarked.rows``), also how many of them it flagged: the detector's recall on the watermark).
    Raises a one-line ParameterError when the attack's inputs are missing."""
    steps = steps_of(attack)
    unknown = [type(step).__name__ for step in steps if not isinstance(step, KNOWN_KINDS)]
    if unknown:
        raise ParameterError(f"'{unknown[0]}' is not an attack of a known kind.")
    check_needs(attack, thief_data=thief_data, released=released)
    details: dict[str, Any] = {}
    retrain = [step for step in steps if isinstance(step, (DataAttack, TrainingAttack))]
    if retrain:
        train = train or default_trainer(spec, seed, progress=progress)
        model, spec, details = _retrain(retrain, model, spec, released, train, seed, marked_rows)
    if isinstance(attack, (ModelAttack, AttackChain)):  # a chain applies its model-side steps in turn
        model, spec = attack.apply(model, spec, thief_data, seed=seed, progress=progress)
    suspect: Any = LocalSuspect.from_model(model, spec)
    api = purifier([step for step in steps if isinstance(step, QueryAttack)])
    return (suspect if api is None else api.wrap(suspect, seed=seed)), details


def _retrain(steps: Sequence[Attack], model: Any, spec: ModelSpec, released: Records, train: Trainer, seed: int,
             marked_rows: Collection[int] | None) -> tuple[Any, ModelSpec, dict[str, Any]]:
    """The thief's model retrained from ``released``: without the rows any data step flags (each judging with the
    model trained on the whole release), with the training step's recipe and build where there is one."""
    from ..models import default_config

    details: dict[str, Any] = {}
    filters = [step for step in steps if isinstance(step, DataAttack)]
    data = released
    if filters:
        flagged = np.unique(np.concatenate([np.asarray(f.flag(model, spec, released, seed=seed), dtype=np.int64)
                                            for f in filters]))
        data = released.subset(np.setdiff1d(np.arange(len(released)), flagged))
        details["flagged_rows"] = int(len(flagged))
        if marked_rows is not None:
            details["marked_rows"] = len(marked_rows)
            details["flagged_marked_rows"] = int(np.isin(flagged, np.asarray(list(marked_rows))).sum())
    recipe = next((step for step in steps if isinstance(step, TrainingAttack)), None)
    config = None if recipe is None else recipe.recipe(default_config(spec.arch, seed=seed))
    new_model, new_spec = train(data, config, None if recipe is None else recipe.architecture(spec))
    return new_model, new_spec, details if recipe is None else {**details, **recipe.details(config, len(data))}


def survival(key: Key, attacks: Sequence[Attack], test_data: Records, *, stolen: tuple[Any, ModelSpec],
             clean: tuple[Any, ModelSpec] | None = None, thief_data: Records | None = None,
             released: Records | None = None, train: Trainer | None = None, verifier: Verifier | None = None,
             seed: int = 0, progress: bool = False, clean_kinds: Sequence[str] = ("query", "model"),
             on_row: Callable[[SurvivalRow], None] | None = None,
             marked_rows: Collection[int] | None = None) -> list[SurvivalRow]:
    """The survival table: the unattacked baseline, then every attack on the stolen model and, for the kinds in
    ``clean_kinds`` (query and model attacks; data and training attacks never), on the clean model; see the
    module docstring. ``marked_rows`` (the watermarked rows' positions in ``released``) adds each data attack's
    recall on them to its row's details."""
    verifier = verifier or Verifier()
    if verifier.released is None and released is not None:  # keys that ask their marked rows find them here
        verifier = replace(verifier, released=released)
    models = {"stolen": stolen, **({"clean": clean} if clean is not None else {})}
    for attack in attacks:
        attack.check_modality(test_data.modality.name)
        check_needs(attack, thief_data=thief_data, released=released)
    rows: list[SurvivalRow] = []

    def add(row: SurvivalRow) -> None:
        rows.append(row)
        p = row.verdict.outcome.p_value
        log.info("%s on the %s model: BA %.2f %% (cost %+.2f pt), p = %.3g, %s", row.label, row.model,
                 100 * row.ba, row.cost_points, p, "accused" if row.accused else "not accused")
        if on_row is not None:
            on_row(row)

    before = {}
    for name, (model, spec) in models.items():
        start = time.perf_counter()
        suspect = LocalSuspect.from_model(model, spec)
        before[name] = benign_accuracy(suspect, test_data)
        probs, labels = _verify(key, suspect, test_data, verifier)
        add(SurvivalRow({"name": "none", "kind": "none", "params": {}}, "none", name, before[name], before[name],
                        probs, labels, time.perf_counter() - start))
    for attack in attacks:
        for name, (model, spec) in models.items():
            if name == "clean" and (attack.kind in ("data", "training") or attack.kind not in clean_kinds):
                continue  # the innocent model never trained on the released data: nothing to filter or retrain
            if name == "clean" and ignores_model(attack.registry_name):
                continue  # the same fresh model as on the stolen one (own-data): its row already is a clean control
            start = time.perf_counter()
            suspect, details = attacked_suspect(attack, model, spec, thief_data=thief_data, released=released,
                                                train=train, seed=seed, progress=progress,
                                                marked_rows=marked_rows)
            ba = benign_accuracy(suspect, test_data)
            probs, labels = _verify(key, suspect, test_data, verifier)
            add(SurvivalRow(attack.to_dict(), attack.label, name, before[name], ba, probs, labels,
                            time.perf_counter() - start, details))
    return rows
