"""What a thief does to a watermark, as small objects with one uniform call (the torchattacks pattern).

An attack is its hyper-parameters (a frozen dataclass: the constructor takes them, the data goes to the call) and
one kind, which says what it acts on:

* ``query`` -- the thief's API purifies every query or answer (JPEG, blur, output rounding, top-1 only);
  :meth:`QueryAttack.wrap` turns a suspect into the suspect the owner actually meets;
* ``model`` -- the thief changes the stolen model with a little clean data (fine-tuning, fine-pruning,
  distillation into a fresh network): :meth:`ModelAttack.apply`;
* ``data`` -- before training, the thief removes the rows a detector flags and retrains:
  :meth:`DataAttack.flag`;
* ``training`` -- the thief trains with a recipe that resists memorising triggers (strong augmentation, label
  smoothing): :meth:`TrainingAttack.recipe`.

Attacks are registered by name (:data:`~datamark.registry.ATTACKS`) and parsed from ``NAME[:PARAM=VALUE,...]``
(:func:`parse_attack`), the form the CLI and experiment files use. ``strength`` names the parameter that the
robustness benchmark sweeps for its trade-off curves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ...exceptions import ParameterError
from ...registry import ATTACKS, register

KINDS = ("query", "model", "data", "training")


@dataclass(frozen=True)
class Attack:
    """Base of every attack: the hyper-parameters are the dataclass fields; subclasses validate them in
    ``__post_init__`` with one-line :class:`~datamark.exceptions.ParameterError` messages."""

    kind: ClassVar[str] = ""
    #: The modalities it applies to (None: every modality).
    modalities: ClassVar[tuple[str, ...] | None] = None
    #: The parameter a strength sweep varies, and whether a larger value is a stronger attack.
    strength: ClassVar[str | None] = None
    stronger_when_larger: ClassVar[bool] = True
    registry_name: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        """The hyper-parameters, as recorded in results."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def label(self) -> str:
        """``name(param=value, ...)``: how tables name this attack."""
        inner = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.registry_name}({inner})" if inner else self.registry_name

    def check_modality(self, modality: str) -> None:
        """Refuse data of a modality this attack does not apply to, naming the ones it does."""
        if self.modalities is not None and modality not in self.modalities:
            raise ParameterError(f"The '{self.registry_name}' attack applies to {', '.join(self.modalities)} data, "
                                 f"not {modality}; choose another attack (datamark attack --list).")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.registry_name, "kind": self.kind, "params": self.params()}


class QueryAttack(Attack):
    """The thief's API transforms each query before the model sees it, and/or each answer before it is
    returned. Override one or both transforms; ``rng`` is the wrapper's seeded generator (for noise)."""

    kind = "query"
    #: Whether the answers still carry probabilities (False: labels only, verified in label-only mode).
    keeps_probs: ClassVar[bool] = True

    def transform_inputs(self, batch: np.ndarray, modality: str) -> np.ndarray:
        return batch

    def transform_outputs(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return probs

    def wrap(self, suspect: Any, *, seed: int = 0) -> Any:
        """The suspect as the owner meets it behind this thief's API."""
        from .purified import PurifiedSuspect
        return PurifiedSuspect(suspect, self, seed=seed)


class ModelAttack(Attack):
    """The thief changes the stolen model using clean data it holds (``thief_data``: labelled records; an
    attack that needs no labels says so and ignores them)."""

    kind = "model"
    #: False for an attack that ignores the model it is given (the own-data baseline): the suite then does not
    #: repeat it on the clean control, where it would train the very same model again.
    uses_model: ClassVar[bool] = True

    def apply(self, model: Any, spec: Any, thief_data: Any, *, seed: int = 0, progress: bool = False
              ) -> tuple[Any, Any]:
        """A new ``(model, spec)``; the input model is left unchanged."""
        raise NotImplementedError


class DataAttack(Attack):
    """The thief inspects the released data before training and drops what it flags; the suite then retrains
    with the thief's recipe on the remaining rows."""

    kind = "data"

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        """Sorted row indices of ``released`` to remove; ``model`` is a model trained on ``released`` (the
        feature extractor the detectors need)."""
        raise NotImplementedError


class TrainingAttack(Attack):
    """The thief trains on the released data with a recipe meant to resist memorising triggers."""

    kind = "training"

    def recipe(self, config: Any) -> Any:
        """The thief's training configuration, derived from the default ``config``."""
        raise NotImplementedError

    def architecture(self, spec: Any) -> dict[str, Any]:
        """The architecture params of the thief's fresh model: the stolen model's (``spec``), unless the recipe
        needs another build (DP-SGD: group norm)."""
        from ...models.checkpoint import architecture_params
        return architecture_params(spec)

    def details(self, config: Any, rows: int) -> dict[str, Any]:
        """What the results should say about this training beyond its parameters (DP-SGD: its epsilon)."""
        return {}


def ignores_model(name: str) -> bool:
    """Whether the registered attack ``name`` never uses the stolen model (a model attack whose ``uses_model`` is
    False: the own-data baseline), so that what it yields is an innocent model."""
    _load_all()
    return getattr(ATTACKS.get(name), "uses_model", True) is False


def register_attack(name: str):
    """Class decorator: register an attack under ``name`` (the ``NAME`` of :func:`parse_attack`)."""
    def decorate(cls):
        if cls.kind not in KINDS:
            raise RuntimeError(f"attack '{name}' has no kind among {KINDS}")
        return register(ATTACKS, name)(cls)
    return decorate


def _convert(text: str, field: dataclasses.Field, where: str) -> Any:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
    except ValueError:
        raise ParameterError(f"{where}: '{field.name}' must be {kind.split(' ')[0]}; got '{text}'.") from None
    return text


def parse_attack(spec: str) -> Attack:
    """An attack from ``NAME[:PARAM=VALUE,...]`` (e.g. ``jpeg:quality=50``, ``distill:rows=20000``), or attacks
    joined by ``+``, one thief's steps in the order they run (``loss-filter:fraction=0.2+distill``, :mod:`.chain`)."""
    _load_all()
    if "+" in spec:
        from .chain import AttackChain

        parts = spec.split("+")
        if not all(part.strip() for part in parts):
            raise ParameterError(f"Attack '{spec}' has an empty step; join attacks as A+B, e.g. "
                                 f"'loss-filter:fraction=0.2+distill:rows=20000'.")
        return AttackChain(tuple(parse_attack(part) for part in parts))
    name, _, rest = spec.strip().partition(":")
    if name not in ATTACKS:
        raise ParameterError(f"Unknown attack '{name}'; known attacks are {', '.join(sorted(ATTACKS))}.")
    cls = ATTACKS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        param, eq, text = item.partition("=")
        if not eq or param not in fields:
            raise ParameterError(f"Attack '{spec}': '{item}' is not PARAM=VALUE with PARAM one of "
                                 f"{', '.join(fields) or '(none)'}.")
        values[param] = _convert(text.strip(), fields[param], f"Attack '{spec}'")
    return cls(**values)


def attack_names(kind: str | None = None) -> list[str]:
    """Every registered attack (of ``kind``), sorted."""
    _load_all()
    return sorted(n for n, c in ATTACKS.items() if kind is None or c.kind == kind)


def _load_all() -> None:
    """Import the attack modules so that their registrations run."""
    from . import data, model, query, training  # noqa: F401
