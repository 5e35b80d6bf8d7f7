"""UBW-C: the clean-label untargeted backdoor watermark, crafted by gradient matching.

Li et al., "Untargeted Backdoor Watermark: Towards Harmless and Stealthy Dataset Copyright Protection",
NeurIPS 2022. Threat model: clean-label, **untargeted**. A fraction ``rate`` (gamma, 0.1) **of all rows** -- those
with the largest gradient norm under a surrogate -- get a bounded perturbation (L_inf <= eps = 16/255); labels
never change and the trigger is not in the data: it is added only at verification. The perturbations are
crafted so that training on them imitates descending -(CE + beta * H) on triggered samples, i.e. a model trained
on the data gives *wrong and dispersed* predictions when the trigger is present (beta = 2, the paper's CIFAR-10
value; H = entropy of the prediction). Verification as UBW-P: P_true(clean) > P_true(triggered) + tau.

The paper's objective is the default (``decoy_weight`` = 0). On a GPU it made the stolen model disperse on *any*
random patch in the trigger's place, more than on the secret one, so the Independent-T control accused it; the
optional keep-correct term (``decoy_weight`` = 1.0) removed the effect without making it specific (README, "UBW on
a GPU"). UBW-C keys therefore recommend the verifier's trigger-specificity control (100 random triggers), which
withholds an accusation unless the secret trigger outranks random ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..data.records import Records
from ..exceptions import ParameterError
from ..registry import METHODS, register
from ._gradient_matching import entropy_of_logits
from .crafted import CraftedCleanLabel
from .ubw import UBW_VERIFICATION


@register(METHODS, "ubw-c")
@dataclass(frozen=True, kw_only=True)
class UBWC(CraftedCleanLabel):
    """UBW-C: gradient-matched clean-label poisons; triggered predictions become wrong and dispersed."""

    beta: float = 2.0
    decoy_weight: float = 0.0  # the paper; 1.0 adds the keep-correct term (see CraftedCleanLabel and the README)

    targeted = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target is not None:
            raise ParameterError("UBW-C is untargeted: it takes no 'target' parameter.")
        if self.beta < 0:
            raise ParameterError(f"The 'beta' (dispersibility weight) of UBWC must be >= 0; got {self.beta}.")

    def objective(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: int | None
                  ) -> torch.Tensor:
        logits = model(x).float()
        return -(F.cross_entropy(logits, y) + self.beta * entropy_of_logits(logits))

    def source_rows(self, data: Records, target: int | None, poisons: np.ndarray) -> np.ndarray:
        free = np.ones(len(data), dtype=bool)
        free[poisons] = False
        return np.flatnonzero(free)

    def verification_defaults(self) -> dict[str, Any]:
        return {**UBW_VERIFICATION, "n_control_triggers": 100}
