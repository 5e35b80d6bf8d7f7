"""Suspects: the models a verifier queries, local or remote, behind one small protocol."""

from .base import Suspect, labels_of, require_probs, validate_output
from .http import HTTPSuspect
from .json_endpoint import JSONSuspect, JSONTemplate
from .local import LocalSuspect

# HTTP suspects import httpx/tenacity only when built; the server (``.serve``) imports FastAPI only when used.
__all__ = ["HTTPSuspect", "JSONSuspect", "JSONTemplate", "LocalSuspect", "Suspect", "labels_of", "require_probs",
           "validate_output"]
