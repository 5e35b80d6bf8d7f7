"""A thief's countermeasures against dataset watermarks, and the survival suite that re-verifies after each.

See :mod:`.base` for the four kinds (query, model, data, training) and :func:`parse_attack` for the
``NAME:PARAM=VALUE`` form.
"""

from .base import (
                   KINDS,
                   Attack,
                   DataAttack,
                   ModelAttack,
                   QueryAttack,
                   TrainingAttack,
                   attack_names,
                   ignores_model,
                   parse_attack,
                   register_attack,
)
from .chain import AttackChain

__all__ = ["KINDS", "Attack", "AttackChain", "DataAttack", "ModelAttack", "QueryAttack", "TrainingAttack",
           "attack_names", "ignores_model", "parse_attack", "register_attack"]
