"""A suspect that is a model in this process: batching, eval mode, no gradients, the model's mode restored."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .._device import device_of
from ..exceptions import SuspectError
from ..modalities import GraphModality, Modality, get_modality, modality_of_model
from ..models.checkpoint import ModelSpec, load_checkpoint
from .base import Outputs, validate_output


class LocalSuspect:
    """Wrap a classifier of any modality; ``query`` takes a batch like the data's (uint8 NHWC images, strings).

    The modality does the model-side preprocessing: image models take float [0, 1] NCHW tensors, text models
    tokenize for themselves (``model.tokenize``), audio models take float N x L waveforms at their
    ``sample_rate``. Without ``modality``, the model's is used (:func:`~datamark.modalities.modality_of_model`).
    """

    def __init__(self, model: nn.Module, *, num_classes: int, input_shape: tuple[int, ...] | None = None,
                 outputs: Outputs = "probs", batch_size: int = 512, modality: Modality | str | None = None) -> None:
        if outputs not in ("probs", "labels"):
            raise SuspectError(f"outputs must be 'probs' or 'labels'; got '{outputs}'.")
        self.model, self.num_classes, self.outputs = model, int(num_classes), outputs
        if modality is None:
            modality = modality_of_model(model)
        self.modality = get_modality(modality) if isinstance(modality, str) else modality
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.batch_size = batch_size
        self.queries = 0

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, outputs: Outputs = "probs", batch_size: int = 512
                        ) -> LocalSuspect:
        model, spec = load_checkpoint(path)
        return cls.from_model(model, spec, outputs=outputs, batch_size=batch_size)

    @classmethod
    def from_model(cls, model: nn.Module, spec: ModelSpec, *, outputs: Outputs = "probs",
                   batch_size: int = 512) -> LocalSuspect:
        return cls(model, num_classes=spec.num_classes, input_shape=spec.input_shape, outputs=outputs,
                   batch_size=batch_size)

    def with_outputs(self, outputs: Outputs) -> LocalSuspect:
        """The same model answering ``outputs`` (to run both black-box settings on one local model)."""
        return LocalSuspect(self.model, num_classes=self.num_classes, input_shape=self.input_shape, outputs=outputs,
                            batch_size=self.batch_size, modality=self.modality)

    @property
    def budget_left(self) -> int | None:
        """A local model has no query budget."""
        return None

    def describe(self) -> dict[str, Any]:
        """What evidence records: kind, outputs, classes and a non-image modality with what its inputs depend on
        (an audio model's sample rate; a graph model's node encoding, ``feature_spec``: the model's own where it
        records one, as :meth:`GraphModality.logits` encodes with it) -- the evidence adds the weights' SHA-256,
        which identifies the model."""
        kind: dict[str, Any] = {"modality": self.modality.name} if self.modality.name != "image" else {}
        if self.modality.name == "audio":
            kind["sample_rate"] = self.modality.sample_rate
        if self.modality.name == "graph":
            spec = getattr(self.model, "feature_spec", None)  # normalised to JSON values by GraphModality
            kind["feature_spec"] = (GraphModality(**spec) if spec is not None else self.modality).feature_spec()
        return {"kind": "LocalSuspect", "outputs": self.outputs, "num_classes": self.num_classes, **kind}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        try:
            inputs = self.modality.batch(inputs, "sent to the model")
        except ValueError as err:
            raise SuspectError(f"The model takes {self.modality.name} input: {err}") from err
        shape = self.modality.example_shape(inputs)
        if self.input_shape and shape != self.input_shape:
            what = "images of shape" if self.modality.name == "image" else f"{self.modality.name} examples of shape"
            raise SuspectError(f"The model expects a batch of {what} {self.input_shape}; got {inputs.shape}.")
        was_training = self.model.training
        self.model.eval()
        chunks = []
        try:
            device = device_of(self.model)  # the CPU, unless the caller put the model on a GPU
            with torch.no_grad():
                for start in range(0, len(inputs), self.batch_size):
                    logits = self.modality.logits(self.model, inputs[start:start + self.batch_size], device)
                    chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        finally:
            self.model.train(was_training)
        self.queries += len(inputs)
        probs = np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes))
        out = probs if self.outputs == "probs" else probs.argmax(axis=1)
        return validate_output(out, self.outputs, len(inputs), self.num_classes, "the local model")
