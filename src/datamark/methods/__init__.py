"""Watermark methods: each a frozen dataclass of hyper-parameters whose ``apply`` returns data and key."""

from .base import MarkBatch, Watermarked, WatermarkMethod
from .dvbw import BadNets, Blended, PoisonLabel
from .ubw import UBWP

__all__ = ["UBWP", "BadNets", "Blended", "MarkBatch", "PoisonLabel", "WatermarkMethod", "Watermarked"]
