"""Named settings of a method that were measured together: ``datamark protect --preset robust`` instead of four flags.

A preset is a method, the data it was measured on and the parameters it sets. It fills only what the caller leaves
unset (an explicit option wins, and is reported), and it refuses data unlike what it was measured on rather than
stretch a measurement: the ``robust`` preset's 8-pixel trigger is one JPEG block of a 32-pixel image, and on an
8-pixel image it would be the whole image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ParameterError


@dataclass(frozen=True)
class Preset:
    """``options`` for ``method`` on ``modality`` data of at least ``min_side`` pixels (images), and why."""

    name: str
    method: str
    modality: str
    options: Mapping[str, Any] = field(default_factory=dict)
    min_side: int = 0
    why: str = ""

    def check(self, method: str, modality: str, example_shape: tuple[int, ...] = ()) -> None:
        """Refuse, in one line, a method or data the preset was not measured with."""
        if method != self.method:
            raise ParameterError(f"The preset '{self.name}' sets up the '{self.method}' method, not '{method}'; "
                                 f"drop the method or the preset.")
        if modality != self.modality:
            raise ParameterError(f"The preset '{self.name}' is for {self.modality} data (where it was measured), but "
                                 f"the data holds {modality}; choose the method's options yourself.")
        side = min(example_shape[:2]) if len(example_shape) >= 2 else 0
        if self.min_side and side < self.min_side:
            raise ParameterError(f"The preset '{self.name}' was measured on images of {self.min_side} px or more and "
                                 f"these are {side} px; choose the pattern and trigger size for them yourself.")

    def check_records(self, method: str, records: Any) -> None:
        """:meth:`check` on a dataset (its modality and the shape of its first example)."""
        import numpy as np

        self.check(method, records.modality.name, records.modality.example_shape(records.take(np.arange(1))))

    def fill(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``options`` with the preset's settings where they are unset (None or absent), and the explicit options
        that override one of the preset's settings."""
        merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        overridden = {k: options[k] for k in self.options if options.get(k) is not None
                      and options[k] != self.options[k]}
        return merged, overridden

    def build(self, **overrides: Any):
        """The preset's method (``overrides`` win, e.g. ``seed``), for the Python API and the benchmarks."""
        from . import build_method

        return build_method(self.method, self.fill(overrides)[0], strict=True)


PRESETS: dict[str, Preset] = {
    "robust": Preset(
        name="robust", method="badnets", modality="image", min_side=32,
        options={"pattern": "blocks", "trigger_size": 8, "decoy_rate": 0.1, "confusion_rate": 0.1},
        why="BadNets, 8-px flat-tile triggers, 10 % decoys and 10 % confusion rows: measured on CIFAR-10 against "
            "query purification, fine-tuning, pruning, distillation and data filters"),
}


def preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is refused with the list."""
    if name not in PRESETS:
        known = "; ".join(f"'{p.name}' ({p.why})" for p in PRESETS.values())
        raise ParameterError(f"Unknown preset '{name}'; choose {known}.")
    return PRESETS[name]
