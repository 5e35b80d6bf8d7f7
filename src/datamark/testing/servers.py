"""Helpers for tests that start model servers in another process: a free port, waiting until one is ready, and
the checkpoint of a tiny test model to serve."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from ..suspects.serve import bind


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with bind() as sock:
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, *, timeout_s: float = 60.0,
               failure: Callable[[], str] = lambda: "") -> float:
    """Poll ``url`` (a readiness route) until it answers 200; the seconds it took.

    Fails with ``failure()`` (e.g. the server's log) if ``proc`` exits first, or after ``timeout_s``.
    """
    import httpx

    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode} before it was ready: {failure()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{url} was not ready after {timeout_s:.0f} s: {failure()}")
        time.sleep(0.1)


def tiny_spec(model):
    """The :class:`~datamark.models.checkpoint.ModelSpec` of a tiny digits model (``train_tiny``'s; an untrained
    one with ``build_model``): 8x8x1 inputs, 10 classes, the width read off its head."""
    from ..models.checkpoint import ModelSpec

    return ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.0,), std=(1.0,),
                     params={"width": model.head.in_features // 8})


def save_tiny_checkpoint(model, path: str | os.PathLike) -> None:
    """A checkpoint of a tiny digits model (see :func:`tiny_spec`)."""
    from ..models.checkpoint import save_checkpoint

    save_checkpoint(model, tiny_spec(model), path)
