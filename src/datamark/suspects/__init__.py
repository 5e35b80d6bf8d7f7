"""Suspects: the models a verifier queries, local or remote, behind one small protocol."""

from .base import Suspect, labels_of, require_probs, validate_output
from .local import LocalSuspect

__all__ = ["LocalSuspect", "Suspect", "labels_of", "require_probs", "validate_output"]
