"""WaNet: a poison-label, targeted backdoor with an imperceptible warping trigger (baseline for UBW).

Nguyen & Tran, "WaNet -- Imperceptible Warping-based Backdoor Attack", ICLR 2021. A fraction ``rate`` (rho_a,
0.1) **of all rows**, chosen by keyed hash, is warped by the secret field and relabelled to ``target``; a further
``decoy_rate`` (rho_n = 2 rho_a = 0.2, the paper's cross ratio) gets the *noise mode* -- the warp plus random
per-image offsets -- and keeps its label, so the model learns the exact warp rather than "any warp". WaNet
applies both at training time; here they are baked into the released data once, so what is released is the
watermark. Defaults: k = 4, s = 0.5 (the paper's CIFAR-10 values). Verification as DVBW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ParameterError
from ..registry import METHODS, register
from ..triggers.base import Trigger
from ..triggers.warp import WarpTrigger, random_field
from .dvbw import PoisonLabel


@register(METHODS, "wanet")
@dataclass(frozen=True, kw_only=True)
class WaNet(PoisonLabel):
    """WaNet: warp + relabel ``rate`` of all rows; noise-mode warps on ``decoy_rate`` of them, labels kept."""

    decoy_rate: float = 0.2
    grid_size: int = 4
    strength: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid_size < 2:
            raise ParameterError(f"The 'grid_size' (k) of WaNet must be >= 2; got {self.grid_size}.")
        if not 0.0 < self.strength <= 10.0:
            raise ParameterError(f"The 'strength' (s) of WaNet must be in (0, 10]; got {self.strength}.")

    def default_trigger(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> Trigger:
        return WarpTrigger(random_field(self.grid_size, rng), self.strength)

    def decoy_inputs(self, inputs: np.ndarray, trigger: Trigger, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(trigger, WarpTrigger):
            return super().decoy_inputs(inputs, trigger, rng)
        return trigger.noisy(inputs, rng)
