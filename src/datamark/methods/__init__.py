"""Watermark methods: each a frozen dataclass of hyper-parameters whose ``apply`` returns data and key."""

from .base import MarkBatch, Watermarked, WatermarkMethod
from .clean_label import CleanLabel, LabelConsistent
from .dvbw import BadNets, Blended, PoisonLabel
from .sleeper_agent import SleeperAgent
from .ubw import UBWP
from .ubw_c import UBWC
from .wanet import WaNet


def build_method(name: str, options: dict) -> WatermarkMethod:
    """The registered method ``name`` built from the ``options`` it accepts (others are ignored; untargeted
    methods ignore ``target``): one code path for the CLI and for scripts that take a method by name."""
    import dataclasses

    from ..exceptions import ParameterError
    from ..registry import METHODS

    if name not in METHODS:
        raise ParameterError(f"Unknown method '{name}'; choose one of {sorted(METHODS)}.")
    cls = METHODS[name]
    accepted = {f.name for f in dataclasses.fields(cls)} - ({"target"} if not cls.targeted else set())
    return cls(**{k: v for k, v in options.items() if k in accepted})


__all__ = ["build_method", "SleeperAgent", "UBWC", "UBWP", "BadNets", "Blended", "CleanLabel", "LabelConsistent",
           "MarkBatch", "PoisonLabel", "WatermarkMethod", "WaNet", "Watermarked"]
