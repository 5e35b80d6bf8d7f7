"""Model specs and checkpoints: a checkpoint is a plain dict of tensors and primitives, loaded with
``torch.load(weights_only=True)`` so an untrusted file can never run code."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._io import atomic_path
from .._rng import isolated_torch_rng
from ..exceptions import DataFormatError, ParameterError
from ..registry import MODELS

CHECKPOINT_FORMAT = "datamark-model"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: architecture, its parameters, and the data it expects.

    ``input_shape`` is (H, W, C) of uint8 images; ``mean``/``std`` are per-channel on the [0, 1] scale. Text models
    (``modality = "text"``) have ``input_shape == mean == std == ()`` and their vocabulary in ``params``; audio
    models (``modality = "audio"``) have ``input_shape == (L,)`` (samples per clip), ``mean == std == ()`` and their
    sample rate in ``params``; graph models (``modality = "graph"``) have ``input_shape == mean == std == ()`` and
    their node encoding (``feature_spec``) and sizes in ``params``.
    """

    arch: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch not in MODELS:
            raise ParameterError(f"Unknown model architecture '{self.arch}'; choose one of {sorted(MODELS)}.")
        if self.num_classes < 2:
            raise ParameterError(f"A classifier needs at least 2 classes; got num_classes={self.num_classes}.")


def architecture_params(spec: ModelSpec) -> dict[str, Any]:
    """The architecture choices in ``spec.params`` (widths, sizes, readout), without what its training data set
    (a text model's vocabulary, an audio model's sample rate, a graph model's node encoding: a model class names
    those in ``data_params``). What a retrain of "the same architecture" on other data must pass on: a thief who
    narrowed a fastnet retrains a narrow one."""
    data_keys = getattr(MODELS[spec.arch], "data_params", ())
    return {name: value for name, value in spec.params.items() if name not in data_keys}


def build_model(spec: ModelSpec, *, seed: int = 0) -> nn.Module:
    """A freshly initialised model for ``spec``; initialisation is seeded without touching global RNG state."""
    cls = MODELS[spec.arch]
    with isolated_torch_rng(seed):
        if hasattr(cls, "from_spec"):  # models that take their own parameters (text: vocabulary, max_length)
            return cls.from_spec(spec)
        return cls(num_classes=spec.num_classes, in_channels=spec.input_shape[-1], mean=spec.mean, std=spec.std,
                   **spec.params)


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: str | os.PathLike, *, overwrite: bool = False,
                    extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` and its spec atomically; ``extra`` holds small JSON-like metadata (training config)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": {**dataclasses.asdict(spec), "input_shape": list(spec.input_shape), "mean": list(spec.mean),
                 "std": list(spec.std), "class_names": list(spec.class_names)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_path(path, overwrite=overwrite, what="checkpoint") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ModelSpec]:
    """Load a datamark checkpoint safely (no unpickling of code) and return the model in eval mode."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise DataFormatError(f"Cannot read model checkpoint '{path}': {err}. Pass a file written by "
                              f"'datamark train' or datamark.models.save_checkpoint.") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataFormatError(f"'{path}' is not a datamark model checkpoint (no format '{CHECKPOINT_FORMAT}').")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DataFormatError(f"Checkpoint '{path}' has format version {version!r}, not one this datamark reads "
                              f"(up to {CHECKPOINT_VERSION}); upgrade datamark or use the original file.")
    try:
        spec = _spec_from(payload.get("spec"))
        model = build_model(spec)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:  # ParameterError is a ValueError
        raise DataFormatError(f"The checkpoint '{path}' holds an invalid model spec or weights ({type(err).__name__}: "
                              f"{err}); it was edited or damaged. Use a file written by 'datamark train'.") from err
    return model.eval(), spec


def _spec_from(raw: Any) -> ModelSpec:
    """A :class:`ModelSpec` from a checkpoint's spec record; KeyError/TypeError/ValueError name what is wrong."""
    if not isinstance(raw, dict):
        raise TypeError(f"'spec' must be a mapping; got {type(raw).__name__}")
    fields = {**raw, **{name: tuple(raw[name]) for name in ("input_shape", "mean", "std", "class_names")}}
    spec = ModelSpec(**fields)
    counts = [spec.num_classes, *spec.input_shape]
    modality = getattr(MODELS[spec.arch], "modality", "image")
    rank = {"text": 0, "graph": 0, "audio": 1}.get(modality, 3)  # text, graph: no shape; audio (L,); images (H, W, C)
    if len(spec.input_shape) != rank or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                                             for c in counts):
        shape = {0: "(input_shape () for a text or graph model)", 1: "(input_shape (L,) samples for an audio model)"
                 }.get(rank, "(input_shape (H, W, C) for an image model)")
        raise ValueError(f"'num_classes' and 'input_shape' must be positive integers {shape}; got "
                         f"{spec.num_classes!r}, {spec.input_shape!r}")
    if not isinstance(spec.params, dict):
        raise TypeError(f"'params' must be a mapping; got {type(spec.params).__name__}")
    return spec
