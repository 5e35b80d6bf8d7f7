"""Triggers: what a watermark stamps into an example (image patterns now; text and audio share the contract)."""

from .base import Trigger
from .corners import CornerTrigger
from .image import PatternTrigger, default_patch_size, make_blend_trigger, make_patch_trigger, make_pattern
from .warp import WarpTrigger

__all__ = ["CornerTrigger", "PatternTrigger", "Trigger", "WarpTrigger", "default_patch_size", "make_blend_trigger",
           "make_patch_trigger", "make_pattern"]
from . import audio, graph, text  # noqa: E402, F401  (registers the "pulse", "subgraph", "word" and "style" triggers)
