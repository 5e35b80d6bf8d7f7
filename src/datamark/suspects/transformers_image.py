"""A Hugging Face ``transformers`` image classifier as a local suspect: a model and its image processor, or a
``pipeline("image-classification")``.

The preprocessing is the model author's, never guessed: the image processor saved with the model
(``preprocessor_config.json``) resizes, crops, rescales and normalises as the model was trained. datamark only
hands over its uint8 N x H x W x C images, channels last, as a decoded image file would be: the processor then
resizes them to the model's input size (an 8 x 8 digit becomes, e.g., 224 x 224, with the processor's own
resampling), rescales 0-255 to the model's range where its config says so (``do_rescale``) and normalises with
its ``image_mean``/``image_std``. Grey images (C = 1) are repeated to three channels for a model that takes
three (what ``PIL.Image.convert("RGB")`` does, and what a pipeline does to every image); colour images are
refused by a one-channel model rather than converted by a formula the author never declared.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._device import device_of
from ..exceptions import SuspectError
from ..modalities import get_modality
from .base import Outputs
from .transformers import HFSuspect, _is_pipeline, _quiet, _transformers


class TransformersImageSuspect(HFSuspect):
    """Query a ``transformers`` image classifier on uint8 N x H x W x C images; returns N x K probabilities
    (softmax of the logits, or the pipeline's scores ordered by label id) or N labels.

    Args:
        model: an image-classification model (``model(pixel_values=...).logits``, e.g. from
            ``AutoModelForImageClassification``), or an ``image-classification`` pipeline (then
            ``image_processor`` is taken from it).
        image_processor: the model's own image processor (``AutoImageProcessor.from_pretrained(<its folder>)``);
            required with a bare model.
        outputs: ``"probs"`` or ``"labels"`` (the black-box setting to emulate).
        batch_size: images per forward pass.
    """

    task = "AutoModelForImageClassification"

    def __init__(self, model: Any, image_processor: Any = None, *, outputs: Outputs = "probs",
                 batch_size: int = 64) -> None:
        if _is_pipeline(model):
            image_processor = image_processor or getattr(model, "image_processor", None)
        model = self._setup(model, outputs, batch_size)
        if image_processor is None or not callable(image_processor):
            raise SuspectError(f"TransformersImageSuspect needs the model's image processor; got "
                               f"{type(image_processor).__name__}. Pass image_processor=AutoImageProcessor."
                               f"from_pretrained(<the model's folder>): datamark does not guess preprocessing.")
        self.channels = int(getattr(model.config, "num_channels", 3) or 3)
        if self.channels not in (1, 3):
            raise SuspectError(f"TransformersImageSuspect sends grey or RGB images; the model's config.num_channels "
                               f"is {self.channels}. Wrap a model that takes 1 or 3 channels.")
        self.image_processor = image_processor
        self.modality = get_modality("image")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> TransformersImageSuspect:
        """Load a saved classifier and its image processor from a local folder (never from the network)."""
        transformers = _transformers("transformers")
        with _quiet(transformers):
            model = transformers.AutoModelForImageClassification.from_pretrained(path, local_files_only=True)
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except OSError as err:  # no preprocessor_config.json: the author declared no preprocessing
            raise SuspectError(f"The folder '{path}' holds no image processor (preprocessor_config.json), so its "
                               f"preprocessing is unknown; save the model's processor there "
                               f"(processor.save_pretrained(folder)).") from err
        return cls(model, processor, **kwargs)

    def with_outputs(self, outputs: Outputs) -> TransformersImageSuspect:
        """The same model answering ``outputs`` (to run both black-box settings on one model)."""
        return TransformersImageSuspect(self.pipeline or self.model, self.image_processor, outputs=outputs,
                                        batch_size=self.batch_size)

    def describe(self) -> dict[str, Any]:
        """What evidence records (JSON values, no secrets); the evidence adds the weights' hash from ``model``."""
        return {"kind": "TransformersImageSuspect", "modality": "image", "model": type(self.model).__name__,
                "name_or_path": str(getattr(self.model.config, "_name_or_path", "") or ""),
                "image_processor": type(self.image_processor).__name__, "pipeline": self.pipeline is not None,
                "outputs": self.outputs, "num_classes": self.num_classes}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        try:
            images = self.modality.batch(inputs, "sent to a transformers image classifier")
        except ValueError as err:
            raise SuspectError(f"The {type(self.model).__name__} takes image input: {err}") from err
        if images.shape[-1] == 1 and self.channels == 3:
            images = np.repeat(images, 3, axis=-1)  # grey -> RGB, as PIL's convert("RGB")
        elif images.shape[-1] != self.channels:
            raise SuspectError(f"The {type(self.model).__name__} takes {self.channels}-channel images "
                               f"(config.num_channels); got a batch of shape {images.shape}. Probe it with grey "
                               f"images.")
        return self._answer(images, len(images))

    def _model_probs(self, images: np.ndarray) -> np.ndarray:
        device = device_of(self.model)
        chunks = [np.zeros((0, self.num_classes))]
        for start in range(0, len(images), self.batch_size):
            # channels_last said, not inferred: a 3 x 3 x 3 image would otherwise be read as channels first
            pixels = self.image_processor(images=list(images[start:start + self.batch_size]), return_tensors="pt",
                                          input_data_format="channels_last")["pixel_values"]
            chunks.append(self._logits_probs(self.model(pixel_values=pixels.to(device)).logits))
        return np.concatenate(chunks)

    def _pipeline_inputs(self, images: np.ndarray) -> tuple[Any, dict[str, Any]]:
        from PIL import Image

        return [Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x) for x in images], {}
