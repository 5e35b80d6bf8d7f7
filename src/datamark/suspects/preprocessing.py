"""The declared preprocessing of a local model that carries none of its own (an ONNX graph): how datamark's batch
becomes the model's input, and what its output holds.

It is the V2 :class:`~._v2.TensorFormat` that describes an HTTP endpoint's input (datatype, layout, scale: one
validation, one encoder) plus what a server would otherwise do for itself: per-channel normalisation and the
kind of scores its graph ends with. Every field is declared by whoever knows the model; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import ParameterError
from ._v2 import Datatype, Layout, TensorFormat

ModelOutputs = Literal["logits", "probs", "labels"]


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """What a model expects and answers, declared by whoever knows it (the model's author or its card).

    The encoding of a batch is a V2 :class:`~._v2.TensorFormat` (the same ``datatype``, ``layout`` and ``scale``
    an HTTP endpoint is described with); a local model adds what a server would do for itself: the per-channel
    normalisation and the kind of scores its graph ends with.

    Args:
        layout: ``"NCHW"`` or ``"NHWC"`` (images), ``"NL"`` (audio waveforms).
        datatype: ``"FP32"`` or ``"UINT8"``: the element type of the model's input.
        scale: the value of a white pixel, ``1`` or ``255``; required for FP32 images, implied (255) for UINT8,
            not applicable to audio.
        mean / std: per-channel normalisation ``(x - mean) / std`` on the declared ``scale`` (ImageNet on scale 1:
            ``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``); one value serves every channel. Leave both
            out when the graph normalises for itself (an exported datamark model does). FP32 images only.
        model_outputs: what the graph's output holds: ``"logits"`` (softmax applied here), ``"probs"`` (checked
            to sum to 1, never re-normalised) or ``"labels"`` (integer class ids: a labels-only suspect).
    """

    layout: Layout
    datatype: Datatype
    model_outputs: ModelOutputs
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.datatype == "BYTES":
            raise ParameterError("The 'datatype' of an ONNX input must be 'FP32' or 'UINT8'; got 'BYTES' (text ONNX "
                                 "models are not supported: use a transformers folder with its tokenizer).")
        if self.model_outputs not in ("logits", "probs", "labels"):
            raise ParameterError(f"The 'model_outputs' of an ONNX model must be 'logits', 'probs' or 'labels'; got "
                                 f"{self.model_outputs!r}. Declare what its graph's output holds.")
        scale = self.scale
        if scale is None:
            if self.datatype == "FP32" and self.layout != "NL":
                raise ParameterError("An FP32 image input needs its 'scale' declared: the value of a white pixel, 1 "
                                     "or 255 (--scale); datamark does not guess it.")
            scale = 255.0 if self.layout != "NL" else 1.0
        if self.layout == "NL" and scale != 1.0:
            raise ParameterError(f"Audio (layout NL) is sent as waveforms in [-1, 1]; 'scale' does not apply, got "
                                 f"{scale}. Leave it out.")
        object.__setattr__(self, "scale", float(scale))
        TensorFormat(self.datatype, self.layout, float(scale))  # the V2 client's rules for datatype, layout, scale
        if (self.mean is None) != (self.std is None):
            raise ParameterError(f"Declare 'mean' and 'std' together; got mean={self.mean} and std={self.std}.")
        if self.mean is not None:
            if self.datatype != "FP32" or self.layout == "NL":
                raise ParameterError(f"'mean'/'std' normalise FP32 images only; got datatype {self.datatype}, layout "
                                     f"{self.layout}. Leave them out: such a model normalises in its graph.")
            mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
            if (len(mean) != len(std) and 1 not in (len(mean), len(std))) or min(std) <= 0:
                raise ParameterError(f"'mean' and 'std' need one value per channel each (or one for all), std > 0; "
                                     f"got mean={mean} and std={std}.")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)

    @property
    def format(self) -> TensorFormat:
        """The wire part of the declaration: datatype, layout and scale."""
        return TensorFormat(self.datatype, self.layout, float(self.scale or 255.0))

    @property
    def modality(self) -> str:
        """``"image"`` or ``"audio"``: the kind of batch this model takes."""
        return self.format.modality

    @property
    def channel_axis(self) -> int | None:
        """Where the channels are in the model's input (None for audio)."""
        return {"NCHW": 1, "NHWC": 3}.get(self.layout)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """A datamark batch (uint8 NHWC images, float32 waveforms) -> the model's input array."""
        arr = self.format.encode(batch)
        if self.mean is None:
            return arr
        shape = [1, 1, 1, 1]
        shape[self.channel_axis or 1] = -1
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The declaration as JSON values (what evidence records)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _floats(values: Any, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in (values if np.ndim(values) else [values]))
    except (TypeError, ValueError) as err:
        raise ParameterError(f"'{name}' must be numbers, one per channel; got {values!r}.") from err
    if not out or not all(np.isfinite(out)):
        raise ParameterError(f"'{name}' must be finite numbers, one per channel; got {values!r}.")
    return out
