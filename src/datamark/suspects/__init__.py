"""Suspects: the models a verifier queries, local or remote, behind one small protocol."""

from .base import Suspect, as_suspect, labels_of, require_probs, validate_output
from .http import HTTPSuspect
from .json_endpoint import JSONSuspect, JSONTemplate
from .local import LocalSuspect

# HTTP suspects import httpx/tenacity only when built; the server (``.serve``) imports FastAPI only when used.
__all__ = ["HTTPSuspect", "JSONSuspect", "JSONTemplate", "LocalSuspect", "Suspect", "TransformersSuspect",
           "as_suspect", "labels_of", "require_probs", "validate_output"]


def __getattr__(name: str):
    """``TransformersSuspect`` on first use (its module is light, but it belongs with the optional text extra)."""
    if name == "TransformersSuspect":
        from .transformers import TransformersSuspect

        return TransformersSuspect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
