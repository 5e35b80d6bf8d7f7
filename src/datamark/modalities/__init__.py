"""Modalities: one object per kind of data owns everything that depends on it (see :mod:`.base`)."""

from .base import Modality, get_modality, modality_of
from .image import ImageModality, to_tensor
from .text import TextModality

__all__ = ["ImageModality", "Modality", "TextModality", "get_modality", "modality_of", "to_tensor"]
