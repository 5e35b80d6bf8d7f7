"""Declarative parameter constraints: a method field says what values it takes, one validator checks them all.

Constraints ride in the dataclass field's ``metadata`` (``rate: float = field(default=0.1, metadata=FRACTION)``)
and :func:`check_fields` -- called by :meth:`WatermarkMethod.__post_init__` -- checks every field of a method,
so a rule is written once and keys, the CLI and the Python API refuse the same values with the same message
("The 'rate' parameter of BadNets must be in (0, 1); got 1.5.").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ParameterError

CONSTRAINT = "constraint"
#: Field metadata: the key stores the parameter only where it differs from its default (an option added after keys
#: were written, so that a key made at the default is byte-identical to one made before the option existed).
KEY_WHEN_SET = "key_when_set"


@dataclass(frozen=True)
class Interval:
    """A real number in an interval; ``open_low`` / ``open_high`` exclude the ends; ``note`` explains the unit."""

    low: float
    high: float
    open_low: bool = True
    open_high: bool = True
    allow_none: bool = False
    note: str = ""

    def describe(self) -> str:
        text = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        return text + (f" ({self.note})" if self.note else "") + (" or None" if self.allow_none else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.allow_none
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return bool(above and below)


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of names (``allow_none``: None means the method's documented default)."""

    choices: Sequence[Any]
    allow_none: bool = False
    note: str = ""

    def describe(self) -> str:
        return f"one of {tuple(self.choices)}" + (f" or None ({self.note})" if self.allow_none else "")

    def accepts(self, value: Any) -> bool:
        return (value is None and self.allow_none) or (value is not None and value in self.choices)


@dataclass(frozen=True)
class AtLeast:
    """An integer >= ``low`` (``allow_none``: None means the method's default)."""

    low: int
    allow_none: bool = False
    note: str = ""

    def describe(self) -> str:
        return f"an integer >= {self.low}" + (f" ({self.note})" if self.note else "") + (
            " or None" if self.allow_none else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.allow_none
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= self.low


def constrained(default: Any, constraint: Interval | OneOf | AtLeast | None, *, key_when_set: bool = False) -> Any:
    """A dataclass field with ``default`` and a constraint checked by :func:`check_fields` (None: checked by the
    method itself); ``key_when_set``: the key stores it only where it differs from ``default``
    (:data:`KEY_WHEN_SET`)."""
    return dataclasses.field(default=default, metadata={CONSTRAINT: constraint, KEY_WHEN_SET: key_when_set})


def in_key(field: dataclasses.Field, value: Any) -> bool:
    """Whether a key stores ``field`` at ``value``: always, unless the field is :data:`KEY_WHEN_SET` and at its
    default."""
    return not (field.metadata.get(KEY_WHEN_SET) and value == field.default)


def check_fields(obj: Any) -> None:
    """Raise :class:`ParameterError` for the first field of ``obj`` whose value breaks its constraint."""
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        constraint = f.metadata.get(CONSTRAINT)
        if constraint is None:
            continue
        value = getattr(obj, f.name)
        if not constraint.accepts(value):
            shown = f"'{value}'" if isinstance(value, str) else repr(value)
            raise ParameterError(f"The '{f.name}' parameter of {name} must be {constraint.describe()}; got {shown}.")


#: The shared rules: a fraction of all rows, an opacity, an image pattern name.
FRACTION = Interval(0.0, 1.0)
OPACITY = Interval(0.0, 1.0, open_high=False)
