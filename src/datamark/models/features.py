"""Penultimate-layer features of the reference models, for data-inspection defences (Spectral Signatures,
Activation Clustering) that look at what a model has learnt rather than at its outputs.

Every reference architecture is ``features`` (image -> flat vector) then ``head`` (vector -> logits); a model
without a ``features`` module is refused with a clear error instead of guessing a layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError
from ..modalities.image import to_tensor


def features_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The penultimate representation of a float NCHW batch in [0, 1] (the input of the model's linear head)."""
    extractor = getattr(model, "features", None)
    if not isinstance(extractor, nn.Module):
        raise ParameterError(f"The model {type(model).__name__} has no 'features' module; the feature-based "
                             f"detectors need a model built as features -> head (every datamark architecture is).")
    return extractor(x)


def embed(model: nn.Module, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Penultimate features (float32, N x D) of uint8 NHWC ``images``, in eval mode, without gradients; the
    model's training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                out.append(features_of(model, to_tensor(images[start:start + batch_size])).float().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
