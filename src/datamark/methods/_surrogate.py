"""The base (surrogate) model a clean-label or gradient-matching method crafts its perturbations against.

The owner either passes a checkpoint (``base_model``) or lets datamark train one on the clean data; either way
the model must match the data (class count, image shape), and its training cost is part of the protect step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .._rng import torch_seed
from ..data.records import Records
from ..exceptions import ParameterError


@dataclass(frozen=True)
class BaseModel:
    """A model in eval mode, its spec, and where it came from (for the key and the cost report)."""

    model: nn.Module
    spec: Any
    source: str          # "checkpoint:<path>" or "trained:<arch>"
    train_seconds: float
    sha256: str | None = None  # of the checkpoint file, where one was loaded


def resolve_base_model(data: Records, *, checkpoint: str | None, arch: str, epochs: int | None, secret: bytes,
                       owner: str, progress: bool = False) -> BaseModel:
    """Load ``checkpoint`` or train ``arch`` on ``data`` (seeded from the secret); check it fits the data.

    ``owner`` names the method and parameter in error messages.
    """
    from .._io import file_sha256
    from ..models import default_config, fit, load_checkpoint

    start = time.perf_counter()
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise ParameterError(f"The base model of {owner} is not a file: {checkpoint!r}; pass the path of a "
                                 f"checkpoint trained on this dataset (datamark train).")
        model, spec = load_checkpoint(checkpoint)
        source, digest = f"checkpoint:{checkpoint}", file_sha256(checkpoint)
    else:
        overrides = {"epochs": epochs} if epochs else {}
        config = default_config(arch, seed=torch_seed(secret, "base-model") % (2 ** 31), **overrides)
        model, spec = fit(data, arch=arch, config=config, progress=progress)
        source, digest = f"trained:{arch}", None
    if spec.num_classes != data.num_classes:
        raise ParameterError(f"The base model of {owner} has {spec.num_classes} classes but the data "
                             f"{data.where} has {data.num_classes}; pass a checkpoint trained on this dataset.")
    if tuple(spec.input_shape) != tuple(data.input_shape):
        raise ParameterError(f"The base model of {owner} expects inputs of shape {tuple(spec.input_shape)} but "
                             f"the data {data.where} has {tuple(data.input_shape)}; pass a matching checkpoint.")
    for p in model.parameters():
        p.requires_grad_(False)
    return BaseModel(model.eval(), spec, source, time.perf_counter() - start, digest)

