"""Watermark methods: each a frozen dataclass of hyper-parameters whose ``apply`` returns data and key."""

from .base import Watermarked, WatermarkMethod
from .dvbw import BadNets, Blended, PoisonLabel

__all__ = ["BadNets", "Blended", "PoisonLabel", "WatermarkMethod", "Watermarked"]
