"""Where heavy tensor work runs: a CUDA GPU when one is visible, else the CPU; ``DATAMARK_DEVICE`` overrides.

Models live on the CPU between steps (checkpoints, suspects and the verifier never need a GPU); the trainer and
the crafting loops move a model to :func:`compute_device` for their own work and hand it back on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import time
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


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cpus(sample_s: float = 0.1) -> float:
    """How many cores other work keeps busy right now.

    Linux: the share of non-idle time in ``/proc/stat`` over ``sample_s`` seconds (while this process sleeps),
    times the cores, so a job started a second ago counts; elsewhere the 1-minute load average, which lags.
    """
    def counters() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        total0, idle0 = counters()
        time.sleep(sample_s)
        total1, idle1 = counters()
    except (OSError, ValueError, IndexError):
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    elapsed = total1 - total0
    return 0.0 if elapsed <= 0 else (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / elapsed)


def default_threads() -> int:
    """Torch's CPU threads for a command that did not say: the usable cores that are idle now, at least one.

    torch's own default (one thread per core) assumes the machine is idle; beside another busy process its
    threads wait on each other at every parallel step and a 2-core run slowed 20-fold (issue 14). One thread per
    idle core keeps the slowdown near what losing the busy core costs.
    """
    usable = usable_cpus()
    return max(1, min(usable, int(usable - busy_cpus() + 0.5)))
