"""What a verifier may ask of a suspect model: a batch of examples in, probabilities or labels out.

A test never knows what the model is: a local checkpoint and an HTTP endpoint look the same from here.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

from ..exceptions import SuspectError

Outputs = Literal["probs", "labels"]


@runtime_checkable
class Suspect(Protocol):
    """``query`` returns an N x K probability array when ``outputs == "probs"``, else N integer labels."""

    outputs: Outputs
    num_classes: int
    queries: int

    def query(self, inputs: np.ndarray) -> np.ndarray: ...


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
