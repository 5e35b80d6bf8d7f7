"""Where heavy tensor work runs: a CUDA GPU when one is visible, else the CPU; ``DATAMARK_DEVICE`` overrides.

Models live on the CPU between steps (checkpoints, suspects and the verifier never need a GPU); the trainer and
the crafting loops move a model to :func:`compute_device` for their own work and hand it back on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .exceptions import ParameterError


def compute_device() -> torch.device:
    """``$DATAMARK_DEVICE`` (e.g. ``cpu``, ``cuda``, ``cuda:1``) if set, else ``cuda`` if available, else ``cpu``."""
    name = os.environ.get("DATAMARK_DEVICE", "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ParameterError(f"DATAMARK_DEVICE='{name}' is not a device name; use 'cpu' or 'cuda'.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"DATAMARK_DEVICE='{name}' asks for a GPU but torch sees none; unset it or use 'cpu'.")
    return device


def device_of(model: torch.nn.Module) -> torch.device:
    """The device holding ``model``'s parameters (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def device_name(device: torch.device | None = None) -> str:
    """A readable name for results files: the GPU's model name or ``cpu``."""
    device = device or compute_device()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@contextlib.contextmanager
def on_device(model: torch.nn.Module, device: torch.device | None = None) -> Iterator[torch.device]:
    """Move ``model`` to ``device`` (default :func:`compute_device`) for a block of work, then back where it was."""
    device = device or compute_device()
    home = device_of(model)
    model.to(device)
    try:
        yield device
    finally:
        model.to(home)
