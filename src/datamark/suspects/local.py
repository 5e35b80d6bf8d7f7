"""A suspect that is a model in this process: batching, eval mode, no gradients, the model's mode restored."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .._device import device_of
from ..exceptions import SuspectError
from ..models.checkpoint import ModelSpec, load_checkpoint
from ..models.train import to_tensor
from .base import Outputs, validate_output


class LocalSuspect:
    """Wrap a classifier taking float [0, 1] NCHW images; ``query`` takes uint8 NHWC images like the data."""

    def __init__(self, model: nn.Module, *, num_classes: int, input_shape: tuple[int, ...] | None = None,
                 outputs: Outputs = "probs", batch_size: int = 512) -> None:
        if outputs not in ("probs", "labels"):
            raise SuspectError(f"outputs must be 'probs' or 'labels'; got '{outputs}'.")
        self.model, self.num_classes, self.outputs = model, int(num_classes), outputs
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
                            batch_size=self.batch_size)

    def query(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs)
        if inputs.ndim != 4 or (self.input_shape is not None and tuple(inputs.shape[1:]) != self.input_shape):
            raise SuspectError(f"The model expects a batch of images of shape {self.input_shape} (H x W x C); got "
                               f"{inputs.shape}.")
        was_training = self.model.training
        self.model.eval()
        chunks = []
        try:
            device = device_of(self.model)  # the CPU, unless the caller put the model on a GPU
            with torch.no_grad():
                for start in range(0, len(inputs), self.batch_size):
                    logits = self.model(to_tensor(inputs[start:start + self.batch_size]).to(device))
                    chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        finally:
            self.model.train(was_training)
        self.queries += len(inputs)
        probs = np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes))
        out = probs if self.outputs == "probs" else probs.argmax(axis=1)
        return validate_output(out, self.outputs, len(inputs), self.num_classes, "the local model")
