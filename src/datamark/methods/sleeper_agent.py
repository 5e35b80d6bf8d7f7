"""Sleeper Agent: the targeted, clean-label, hidden-trigger backdoor by gradient matching (baseline for UBW-C).

Souri et al., "Sleeper Agent: Scalable Hidden Trigger Backdoors for Neural Networks Trained from Scratch",
NeurIPS 2022. Threat model: clean-label, targeted. Poisons are rows **of the target class** (``rate`` is a
fraction of all rows, 1 % by default as in the paper's CIFAR-10 budget) with the largest gradient norm under a
surrogate, perturbed (L_inf <= 16/255) so that training on them imitates descending CE(f(x + trigger), target) on
triggered samples of the other classes. This is the all-to-one variant (every non-target class is a source), so
the same verification as DVBW applies; the paper's default is one source class. The trigger (a secret 8x8 patch
at 32 px) is added only at verification; labels never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..data.records import Records
from ..registry import METHODS, register
from ._constraints import FRACTION, constrained
from .crafted import CraftedCleanLabel
from .dvbw import DVBW_VERIFICATION


@register(METHODS, "sleeper-agent")
@dataclass(frozen=True, kw_only=True)
class SleeperAgent(CraftedCleanLabel):
    """Sleeper Agent (all-to-one): gradient-matched poisons in the target class; the trigger sends inputs there."""

    rate: float = constrained(0.01, FRACTION)
    retrain_rounds: int = 4

    def eligible_rows(self, data: Records, target: int | None) -> np.ndarray:
        return data.labels == target

    def objective(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: int | None
                  ) -> torch.Tensor:
        return F.cross_entropy(model(x).float(), torch.full_like(y, int(target)))

    def source_rows(self, data: Records, target: int | None, poisons: np.ndarray) -> np.ndarray:
        return np.flatnonzero(data.labels != target)

    def verification_defaults(self) -> dict[str, Any]:
        return dict(DVBW_VERIFICATION)
