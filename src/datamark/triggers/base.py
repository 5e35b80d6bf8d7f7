"""The trigger contract: a frozen object whose ``apply`` marks examples without side effects.

``apply(x)`` takes one example or a batch of its modality (a uint8 image array, a ``str`` or a 1-d object array
of ``str``, ...) and returns a new one of the same type, shape, dtype and valid range; ``to_config()`` /
``from_config()`` round-trip the trigger through the key (JSON-only values). A trigger that cannot mark every
example (a style rewrite needs a verb) says which with :meth:`Trigger.applicable`.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..exceptions import KeyFormatError
from ..registry import TRIGGERS


class Trigger(ABC):
    """Base class of all triggers; subclasses register under a name used in key files."""

    registry_name: ClassVar[str]
    modality: ClassVar[str]

    @abstractmethod
    def apply(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Return a marked copy of ``x`` (one example or a batch); ``x`` itself is never modified."""

    @abstractmethod
    def independent(self, rng: np.random.Generator) -> Trigger:
        """A trigger of the same kind drawn afresh from ``rng``: the wrong trigger of the Independent-T control."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The trigger's parameters as JSON-compatible values."""

    @abstractmethod
    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a clear error if examples of ``shape`` cannot carry this trigger."""

    #: False for triggers that cannot mark every example; they override :meth:`applicable`.
    always_applicable: ClassVar[bool] = True

    def prevalence(self, batch: np.ndarray) -> float | None:
        """The fraction of clean examples that already carry the trigger (None: not measurable for this kind)."""
        return None

    def applicable(self, batch: np.ndarray) -> np.ndarray:
        """Boolean mask of the examples of ``batch`` this trigger can mark (all of them unless overridden)."""
        return np.ones(len(batch), dtype=bool)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.registry_name, "params": self.params()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Trigger:
        """Rebuild any registered trigger from ``{"name", "params"}``."""
        try:
            trigger_cls = TRIGGERS[config["name"]]
            return trigger_cls(**trigger_cls.decode_params(config["params"]))
        except KeyError as err:
            raise KeyFormatError(f"Unknown or incomplete trigger config {sorted(config)}; known triggers are "
                                 f"{sorted(TRIGGERS)}.") from err

    @classmethod
    def decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)


def carrying(triggers: Sequence[Trigger], data: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask over ``rows`` (default all) of ``data`` (a :class:`~datamark.data.Records`): the examples
    every one of ``triggers`` can mark. Decodes nothing when every trigger marks any example."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
    mask = np.ones(len(rows), dtype=bool)
    picky = [t for t in triggers if not t.always_applicable]
    if picky:
        batch = data.take(rows)
        for trigger in picky:
            mask &= trigger.applicable(batch)
    return mask


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A uint8 array as JSON: shape and base64 bytes (compact, exact, no pickle)."""
    return {"shape": list(array.shape), "dtype": str(array.dtype), "base64": base64.b64encode(array.tobytes()).decode()}


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(obj["base64"])
    return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
