"""Modalities: one object per kind of data owns everything that depends on it (see :mod:`.base`)."""

from .audio import AudioModality
from .base import Modality, get_modality, modality_of, modality_of_model
from .graph import GraphModality
from .image import ImageModality, to_tensor
from .text import TextModality

__all__ = ["AudioModality", "GraphModality", "ImageModality", "Modality", "TextModality", "get_modality",
           "modality_of", "modality_of_model", "to_tensor"]
