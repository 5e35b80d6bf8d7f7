"""Watermark methods: each a frozen dataclass of hyper-parameters whose ``apply`` returns data and key."""

from .base import MarkBatch, Watermarked, WatermarkMethod
from .clean_label import CleanLabel, LabelConsistent
from .dvbw import BadNets, Blended, PoisonLabel
from .presets import PRESETS, Preset
from .sleeper_agent import SleeperAgent
from .ubw import UBWP
from .ubw_c import UBWC
from .wanet import WaNet


def build_method(name: str, options: dict, *, strict: bool = False) -> WatermarkMethod:
    """The registered method ``name`` built from ``options``: one code path for the CLI, scripts that take a
    method by name, and keys (whose stored parameters are validated by rebuilding the method).

    Options the method does not have are ignored, or with ``strict`` refused (untargeted methods accept a
    ``target`` of None)."""
    import dataclasses

    from ..exceptions import ParameterError
    from ..registry import METHODS

    if name not in METHODS:
        raise ParameterError(f"Unknown method '{name}'; choose one of {sorted(METHODS)}.")
    cls = METHODS[name]
    accepted = {f.name for f in dataclasses.fields(cls)} - ({"target"} if not cls.targeted else set())
    unknown = sorted(k for k, v in options.items() if k not in accepted and not (k == "target" and v is None))
    if strict and unknown:
        raise ParameterError(f"The method '{name}' has no parameter(s) {unknown}; its parameters are "
                             f"{sorted(accepted - {'trigger'})}.")
    try:
        return cls(**{k: v for k, v in options.items() if k in accepted})
    except TypeError as err:  # a value of the wrong type where arithmetic or comparison needs a number
        raise ParameterError(f"The method '{name}' got a parameter of the wrong type: {err}.") from err


__all__ = ["build_method", "SleeperAgent", "UBWC", "UBWP", "BadNets", "Blended", "CleanLabel", "LabelConsistent",
           "MarkBatch", "PoisonLabel", "PRESETS", "Preset", "WatermarkMethod", "WaNet", "Watermarked"]
