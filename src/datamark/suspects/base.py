"""What a verifier may ask of a suspect model: a batch of examples in, probabilities or labels out.

A test never knows what the model is: a local checkpoint and an HTTP endpoint look the same from here.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..exceptions import SuspectError

Outputs = Literal["probs", "labels"]


@runtime_checkable
class Suspect(Protocol):
    """``query`` returns an N x K probability array when ``outputs == "probs"``, else N integer labels.

    ``budget_left`` is how many more examples may be sent (None: no budget), checked before a query is spent;
    ``describe()`` is what results and evidence files record about the suspect (JSON values, no secrets).
    Objects that have only ``outputs``, ``num_classes``, ``queries`` and ``query`` are adapted by
    :func:`as_suspect` (no budget, described by their class).
    """

    outputs: Outputs
    num_classes: int
    queries: int

    @property
    def budget_left(self) -> int | None: ...

    def describe(self) -> dict[str, Any]: ...

    def query(self, inputs: np.ndarray) -> np.ndarray: ...


class _Adapted:
    """A minimal user suspect given the optional members of the protocol it lacks (no budget; described by its
    own ``describe`` or by its class)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = getattr(inner, "model", None)  # a local torch model: its weights' hash goes into evidence

    outputs = property(lambda self: self.inner.outputs)
    num_classes = property(lambda self: self.inner.num_classes)
    queries = property(lambda self: self.inner.queries)
    budget_left = property(lambda self: getattr(self.inner, "budget_left", None))

    def describe(self) -> dict[str, Any]:
        if callable(getattr(self.inner, "describe", None)):
            return dict(self.inner.describe())
        return {"kind": type(self.inner).__name__, "outputs": self.inner.outputs, "num_classes": self.inner.num_classes}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        return self.inner.query(inputs)


def as_suspect(obj: Any) -> Suspect:
    """``obj`` as a full :class:`Suspect`: itself if it has every member, else adapted; a clear error if it
    lacks the required ones."""
    missing = [m for m in ("outputs", "num_classes", "queries", "query") if not hasattr(obj, m)]
    if missing:
        raise SuspectError(f"{type(obj).__name__} is not a suspect: it has no {', '.join(missing)}. A suspect needs "
                           f"outputs ('probs' or 'labels'), num_classes, a queries counter and query(inputs).")
    if hasattr(obj, "budget_left") and callable(getattr(obj, "describe", None)):
        return obj
    return _Adapted(obj)


def labels_of(suspect: Suspect, inputs: np.ndarray) -> np.ndarray:
    """Predicted labels from any suspect (argmax of probabilities, or the labels it returns)."""
    out = suspect.query(inputs)
    return out.argmax(axis=1) if suspect.outputs == "probs" else out


def require_probs(suspect: Suspect, what: str) -> None:
    """Refuse a labels-only suspect before a single query is spent on a test that needs probabilities."""
    if suspect.outputs != "probs":
        raise SuspectError(f"{what} needs class probabilities but the suspect only returns labels; use "
                           f"label-only mode (mode='labels', --mode labels).")


def validate_output(out: np.ndarray, outputs: Outputs, n: int, num_classes: int, source: str) -> np.ndarray:
    """Check a suspect's answer (shape, class count, finite, normalised) so garbage never becomes a verdict."""
    out = np.asarray(out)
    if outputs == "probs":
        if out.shape != (n, num_classes):
            raise SuspectError(f"{source} returned probabilities of shape {out.shape}; expected ({n}, {num_classes}).")
        if not np.isfinite(out).all():
            raise SuspectError(f"{source} returned non-finite probabilities (NaN or infinity).")
        if (out < -1e-6).any() or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            raise SuspectError(f"{source} returned rows that are not probability vectors (negative or not summing "
                               f"to 1); if it returns logits, apply a softmax first.")
        return out.astype(np.float64)
    if out.shape != (n,):
        raise SuspectError(f"{source} returned labels of shape {out.shape}; expected ({n},).")
    if out.dtype.kind not in "iu" or (out < 0).any() or (out >= num_classes).any():
        raise SuspectError(f"{source} returned labels outside 0..{num_classes - 1}.")
    return out.astype(np.int64)
